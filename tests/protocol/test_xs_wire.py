"""The xenstore wire codec: frames, the incremental decoder, strings, paths, permissions."""

from __future__ import annotations

import errno
import struct
import sys

import pytest

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol.xs_wire import (
    ERROR_NAMES,
    HEADER_SIZE,
    PAYLOAD_MAX,
    FrameDecoder,
    Message,
    Perm,
    PermAccess,
    XsOp,
    XsWireError,
    ack_ok,
    encode,
    errno_of,
    error_payload,
    format_perms,
    join_strings,
    parse_perms,
    split_strings,
    validate_path,
)


def test_op_codes_are_libxenstores() -> None:
    expected = {
        "CONTROL": 0, "DIRECTORY": 1, "READ": 2, "GET_PERMS": 3, "WATCH": 4, "UNWATCH": 5,
        "TRANSACTION_START": 6, "TRANSACTION_END": 7, "INTRODUCE": 8, "RELEASE": 9,
        "GET_DOMAIN_PATH": 10, "WRITE": 11, "MKDIR": 12, "RM": 13, "SET_PERMS": 14,
        "WATCH_EVENT": 15, "ERROR": 16, "IS_DOMAIN_INTRODUCED": 17, "RESUME": 18,
        "SET_TARGET": 19, "RESTRICT": 20, "RESET_WATCHES": 21, "DIRECTORY_PART": 22,
    }
    for name, number in expected.items():
        assert XsOp[name] == number


def test_header_is_four_native_uint32() -> None:
    frame = encode(XsOp.READ, 7, 3, b"/local\0")
    assert len(frame) == HEADER_SIZE + 7 == 23
    assert frame[:16] == struct.pack("=IIII", 2, 7, 3, 7)
    assert struct.unpack("@IIII", frame[:16]) == (2, 7, 3, 7)  # native order, no padding
    assert Message(XsOp.READ, 7, 3, b"/local\0").encode() == frame


def test_encode_refuses_oversized_payload() -> None:
    assert len(encode(XsOp.WRITE, 1, 0, b"x" * PAYLOAD_MAX)) == HEADER_SIZE + PAYLOAD_MAX
    with pytest.raises(XsWireError, match="4097"):
        encode(XsOp.WRITE, 1, 0, b"x" * (PAYLOAD_MAX + 1))


MESSAGES = [
    Message(XsOp.DIRECTORY, 1, 0, b"/local/domain\0"),
    Message(XsOp.WATCH_EVENT, 0, 0, b"/local/domain/3\0tok\0"),
    Message(XsOp.READ, 0xFFFFFFFF, 0xFFFFFFFF, b""),
    Message(XsOp.WRITE, 5, 9, bytes(range(256)) * 16),  # exactly 4096 bytes
    Message(XsOp.ERROR, 6, 0, b"ENOENT\0"),
    Message(XsOp.TRANSACTION_START, 7, 0, b"\0"),
]
STREAM = b"".join(m.encode() for m in MESSAGES)


def test_decoder_whole_stream_in_one_feed() -> None:
    dec = FrameDecoder()
    assert dec.feed(STREAM) == MESSAGES
    assert dec.buffered == 0


def test_decoder_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        dec = FrameDecoder()
        got = dec.feed(STREAM[:cut]) + dec.feed(STREAM[cut:])
        assert got == MESSAGES, cut
        assert dec.buffered == 0


def test_decoder_split_at_every_pair_of_boundaries_of_small_frames() -> None:
    small = b"".join(m.encode() for m in MESSAGES if len(m.payload) < 64)
    expected = [m for m in MESSAGES if len(m.payload) < 64]
    for i in range(len(small) + 1):
        for j in range(i, len(small) + 1):
            dec = FrameDecoder()
            got = dec.feed(small[:i]) + dec.feed(small[i:j]) + dec.feed(small[j:])
            assert got == expected, (i, j)


def test_decoder_byte_by_byte() -> None:
    dec = FrameDecoder()
    got: list[Message] = []
    for i in range(len(STREAM)):
        got += dec.feed(STREAM[i:i + 1])
        assert dec.buffered < HEADER_SIZE + PAYLOAD_MAX
    assert got == MESSAGES


def test_decoder_messages_are_messages_with_int_fields() -> None:
    (msg,) = FrameDecoder().feed(MESSAGES[0].encode())
    assert isinstance(msg, Message)
    assert msg.op == XsOp.DIRECTORY and msg.payload == b"/local/domain\0"
    assert isinstance(msg.payload, bytes)


def test_decoder_rejects_oversized_length_before_buffering() -> None:
    dec = FrameDecoder()
    header = struct.pack("=IIII", XsOp.WRITE, 1, 0, PAYLOAD_MAX + 1)
    with pytest.raises(XsWireError, match="4097-byte payload") as info:
        dec.feed(header)
    assert dec.buffered == 0
    assert info.value.code == ErrorNumber.INVALID_ARG
    assert info.value.domain == ErrorDomain.XENSTORE
    # The stream has lost its framing: the decoder stays broken.
    with pytest.raises(XsWireError):
        dec.feed(MESSAGES[0].encode())


def test_decoder_rejects_huge_length_after_good_frames() -> None:
    dec = FrameDecoder()
    bad = struct.pack("=IIII", XsOp.READ, 2, 0, 0xFFFFFFFF)
    with pytest.raises(XsWireError):
        dec.feed(MESSAGES[0].encode() + bad + b"x" * 100)
    assert dec.buffered == 0


def test_decoder_limit_is_configurable() -> None:
    dec = FrameDecoder(max_payload=8)
    assert dec.feed(encode(XsOp.READ, 1, 0, b"12345678")) == [
        Message(XsOp.READ, 1, 0, b"12345678")
    ]
    with pytest.raises(XsWireError):
        dec.feed(encode(XsOp.READ, 1, 0, b"123456789"))


def test_decoder_accepts_unknown_op_codes() -> None:
    # Deciding what an unknown type means is the peer's job (the C daemon answers EINVAL).
    frame = struct.pack("=IIII", 999, 1, 0, 2) + b"ab"
    assert FrameDecoder().feed(frame) == [Message(999, 1, 0, b"ab")]


def test_join_and_split_strings() -> None:
    assert join_strings("/a", b"tok") == b"/a\0tok\0"
    assert split_strings(b"/a\0tok\0") == ["/a", "tok"]
    assert split_strings(b"a\0b") == ["a", "b"]
    assert split_strings(b"") == []
    assert split_strings(b"\0") == [""]
    assert split_strings(b"a\0\0") == ["a", ""]
    assert split_strings(b"\xff\0") == ["\udcff"]
    with pytest.raises(XsWireError, match="NUL"):
        join_strings("a\0b")


def test_error_names_and_errnos() -> None:
    assert ERROR_NAMES[:4] == ("EINVAL", "EACCES", "EEXIST", "EISDIR")
    assert errno_of("ENOENT") == errno.ENOENT
    assert errno_of("EROFS") == errno.EROFS
    assert errno_of("EAGAIN") == errno.EAGAIN
    assert errno_of("E2BIG") == errno.E2BIG
    assert errno_of("EWHATEVER") == errno.EINVAL
    assert error_payload("ENOENT") == b"ENOENT\0"
    assert error_payload("EBOGUS") == b"EINVAL\0"
    for name in ERROR_NAMES:
        assert errno_of(name) == getattr(errno, name)


def test_ack_ok() -> None:
    assert ack_ok(b"OK\0") and ack_ok(b"OK")
    assert not ack_ok(b"ENOENT\0")


GOOD_PATHS = [
    "/",
    "/local",
    "/local/domain/0/name",
    "/vm/8f5d6a3e-02c1-9b7e-4d22-a1b0c3e5f719/image/ostype",
    "/tool/x_y-z@1",
    "name",
    "device/vif/0/state",
    "/local/domain/32767/" + "a" * 2048,
    "/" + "a" * 2047,
]
BAD_PATHS = [
    ("", "empty"),
    ("/local//domain", "'//'"),
    ("/local/", "ends with '/'"),
    ("rel/", "ends with '/'"),
    ("/local/dom ain", "invalid character ' '"),
    ("/local/dom.ain", "invalid character '.'"),
    ("/caf\u00e9", "invalid character"),
    ("/a\0b", "invalid character"),
    ("/" + "a" * 2048, "too long"),
    ("/local/domain/1/" + "a" * 2049, "too long"),
    ("@introduceDomain", "only valid for watches"),
]


@pytest.mark.parametrize("path", GOOD_PATHS)
def test_valid_paths(path: str) -> None:
    validate_path(path)


@pytest.mark.parametrize(("path", "why"), BAD_PATHS)
def test_invalid_paths(path: str, why: str) -> None:
    with pytest.raises(XsWireError) as info:
        validate_path(path)
    assert why in str(info.value)
    assert isinstance(info.value, VirtError) and isinstance(info.value, ValueError)


def test_relative_paths_only_when_allowed() -> None:
    validate_path("name", allow_relative=True)
    with pytest.raises(XsWireError, match="not absolute"):
        validate_path("name", allow_relative=False)


def test_special_paths_only_when_allowed() -> None:
    for special in ("@introduceDomain", "@releaseDomain"):
        validate_path(special, allow_special=True)
    with pytest.raises(XsWireError):
        validate_path("@bad path", allow_special=True)
    with pytest.raises(XsWireError):
        validate_path(b"/local", allow_special=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "perm"),
    [
        ("n0", Perm(0, PermAccess.NONE)),
        ("r5", Perm(5, PermAccess.READ)),
        ("w32752", Perm(32752, PermAccess.WRITE)),
        ("b65535", Perm(65535, PermAccess.BOTH)),
        ("r0x10", Perm(16, PermAccess.READ)),
        ("r010", Perm(8, PermAccess.READ)),
    ],
)
def test_perm_parse_and_format(text: str, perm: Perm) -> None:
    assert Perm.parse(text) == perm
    assert Perm.parse(str(perm)) == perm


@pytest.mark.parametrize(
    "text", ["", "r", "x5", "R5", "r-1", "r65536", "r 5", "r5 ", "r1_0", "r08", "r\u0663", "rabc"]
)
def test_perm_parse_rejects(text: str) -> None:
    with pytest.raises(XsWireError):
        Perm.parse(text)


def test_perm_lists() -> None:
    perms = [Perm(0, PermAccess.NONE), Perm(3, PermAccess.READ)]
    assert format_perms(perms) == b"n0\0r3\0"
    assert parse_perms(b"n0\0r3\0") == perms
    assert parse_perms(format_perms(perms)) == perms
    with pytest.raises(XsWireError, match="owner"):
        format_perms([])
    with pytest.raises(XsWireError):
        parse_perms(b"n0\0bogus\0")


def test_native_byte_order_matches_this_machine() -> None:
    frame = encode(1, 0x01020304, 0, b"")
    assert int.from_bytes(frame[4:8], sys.byteorder) == 0x01020304
