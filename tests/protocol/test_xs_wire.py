"""The xenstore wire codec: frames, the incremental decoder, arguments, errors, watch events,
paths, permissions; and a hypothesis fuzz of each decoder (the client and the simulated daemon
share them, so this is where both are fuzzed)."""

from __future__ import annotations

import errno
import struct
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol.xs_wire import (
    ACK,
    ERROR_NAMES,
    HEADER_SIZE,
    PAYLOAD_MAX,
    FrameDecoder,
    Message,
    Perm,
    PermAccess,
    XsOp,
    XsWireError,
    encode,
    errno_of,
    error_name,
    error_payload,
    format_perms,
    join_strings,
    one_arg,
    parse_perms,
    parse_watch_event,
    split_strings,
    validate_path,
    watch_payload,
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


def test_feed_frames_gives_the_same_frames_as_plain_tuples() -> None:
    frames = FrameDecoder().feed_frames(STREAM)
    assert frames == MESSAGES
    assert all(type(f) is tuple for f in frames)


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
    assert dec.feed(header) == []
    assert dec.buffered == 0
    error = dec.error
    assert isinstance(error, XsWireError)
    assert "4097-byte payload" in str(error)
    assert error.code == ErrorNumber.INVALID_ARG
    assert error.domain == ErrorDomain.XENSTORE
    # The stream has lost its framing: the decoder stays broken.
    with pytest.raises(XsWireError) as info:
        dec.feed(MESSAGES[0].encode())
    assert info.value is error


def test_decoder_returns_the_frames_before_a_huge_length() -> None:
    # A peer answers what came before the bad header, then drops the connection (as C does).
    dec = FrameDecoder()
    bad = struct.pack("=IIII", XsOp.READ, 2, 0, 0xFFFFFFFF)
    assert dec.feed(MESSAGES[0].encode() + bad + b"x" * 100) == [MESSAGES[0]]
    assert dec.error is not None
    assert dec.buffered == 0


def test_decoder_limit_is_configurable() -> None:
    dec = FrameDecoder(max_payload=8)
    assert dec.feed(encode(XsOp.READ, 1, 0, b"12345678")) == [
        Message(XsOp.READ, 1, 0, b"12345678")
    ]
    assert dec.error is None
    assert dec.feed(encode(XsOp.READ, 1, 0, b"123456789")) == []
    assert dec.error is not None


def test_decoder_accepts_unknown_op_codes() -> None:
    # Deciding what an unknown type means is the peer's job (the C daemon answers EINVAL).
    frame = struct.pack("=IIII", 999, 1, 0, 2) + b"ab"
    assert FrameDecoder().feed(frame) == [Message(999, 1, 0, b"ab")]


def test_join_and_split_strings() -> None:
    assert join_strings("/a", b"tok") == b"/a\0tok\0"
    assert split_strings(b"/a\0tok\0") == ["/a", "tok"]
    # Only NUL-terminated strings count, as in the C daemon and libxenstore.
    assert split_strings(b"a\0b") == ["a"]
    assert split_strings(b"ab") == []
    assert split_strings(b"") == []
    assert split_strings(b"\0") == [""]
    assert split_strings(b"a\0\0") == ["a", ""]
    assert split_strings(b"\xff\0") == ["\udcff"]
    with pytest.raises(XsWireError, match="NUL"):
        join_strings("a\0b")


@pytest.mark.parametrize(
    ("payload", "arg"),
    [(b"/a\0", "/a"), (b"\0", ""), (b"T\0", "T"), (b"\xff\0", "\udcff"),
     (b"", None), (b"/a", None), (b"/a\0\0", None), (b"/a\0b", None), (b"\0/a\0", None)],
)
def test_one_arg(payload: bytes, arg: str | None) -> None:
    assert one_arg(payload) == arg


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
        assert error_name(error_payload(name)) == name
    assert ACK == b"OK\0"


def test_error_name_reads_what_was_sent() -> None:
    assert error_name(b"ENOENT\0") == "ENOENT"
    assert error_name(b"ENOENT") == "ENOENT"
    assert error_name(b"EQUOTA\0") == "EQUOTA"  # oxenstored's, outside the table
    assert error_name(b"") == "EINVAL"
    assert error_name(b"\0") == "EINVAL"
    assert error_name(b"E\xffX\0") == "E\ufffdX"


def test_watch_payload_and_event() -> None:
    assert watch_payload("/a/b", "tok") == b"/a/b\0tok\0"
    assert watch_payload("@releaseDomain", "t\u00e9") == b"@releaseDomain\0t\xc3\xa9\0"
    assert parse_watch_event(b"/a/b\0tok\0") == ("/a/b", "tok")
    assert parse_watch_event(b"/a/b\0tok") == ("/a/b", "tok")
    assert parse_watch_event(b"/a/b\0tok\0extra\0") == ("/a/b", "tok")
    assert parse_watch_event(b"/a/b") is None
    assert parse_watch_event(b"") is None
    with pytest.raises(XsWireError, match="NUL"):
        watch_payload("/a", "t\0k")
    with pytest.raises(XsWireError, match="encoded"):
        watch_payload("/a", "\ud800")


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


# -- fuzz: each decoder takes any bytes and answers only in its documented way -----------------

frames = st.builds(
    Message,
    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
    st.binary(max_size=300),
)


@given(st.lists(frames, max_size=6), st.lists(st.integers(0, 2000), max_size=8))
def test_fuzz_decoder_reassembles_any_chunking(msgs: list[Message], cuts: list[int]) -> None:
    stream = b"".join(m.encode() for m in msgs)
    points = sorted({min(c, len(stream)) for c in cuts})
    dec = FrameDecoder()
    got: list[Message] = []
    start = 0
    for point in [*points, len(stream)]:
        got += dec.feed(stream[start:point])
        start = point
    assert got == msgs
    assert dec.buffered == 0 and dec.error is None


@given(st.lists(st.binary(max_size=600), max_size=10))
def test_fuzz_decoder_on_arbitrary_bytes(chunks: list[bytes]) -> None:
    dec = FrameDecoder()
    stream = b""
    got: list[Message] = []
    for chunk in chunks:
        if dec.error is not None:
            with pytest.raises(XsWireError):
                dec.feed(chunk)
            continue
        stream += chunk
        got += dec.feed(chunk)
        assert dec.buffered < HEADER_SIZE + PAYLOAD_MAX
    # What came out is exactly the stream's leading whole frames, re-encodable byte for byte.
    out = b"".join(m.encode() for m in got)
    assert stream.startswith(out)
    if dec.error is None:
        assert len(stream) - len(out) == dec.buffered
    else:
        assert dec.buffered == 0
        assert struct.unpack_from("=IIII", stream, len(out))[3] > PAYLOAD_MAX


@given(st.integers(PAYLOAD_MAX + 1, 2**32 - 1), st.lists(frames, max_size=3))
def test_fuzz_decoder_stops_at_a_huge_length(length: int, before: list[Message]) -> None:
    dec = FrameDecoder()
    head = b"".join(m.encode() for m in before)
    assert dec.feed(head + struct.pack("=IIII", 2, 1, 0, length) + b"x" * 50) == before
    assert dec.error is not None and dec.buffered == 0


@given(st.binary(max_size=300))
def test_fuzz_argument_decoders(payload: bytes) -> None:
    parts = split_strings(payload)
    assert len(parts) == payload.count(b"\0")
    assert join_strings(*(p.encode("utf-8", "surrogateescape") for p in parts)) == \
        payload[:payload.rfind(b"\0") + 1]
    arg = one_arg(payload)
    if arg is not None:
        assert parts == [arg] and payload == arg.encode("utf-8", "surrogateescape") + b"\0"
    else:
        assert payload.count(b"\0") != 1 or not payload.endswith(b"\0")
    assert isinstance(error_name(payload), str) and error_name(payload)
    event = parse_watch_event(payload)
    assert (event is None) == (b"\0" not in payload)


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_fuzz_watch_payload_round_trips(path: str, token: str) -> None:
    try:
        payload = watch_payload(path, token)
    except XsWireError:
        assert "\0" in path + token or any("\ud800" <= c <= "\udfff" for c in path + token)
        return
    assert parse_watch_event(payload) == (path, token)
    assert split_strings(payload) == [path, token]
    assert len(encode(XsOp.WATCH_EVENT, 0, 0, payload)) == HEADER_SIZE + len(payload)


@given(st.text(max_size=20))
def test_fuzz_perm_parse_raises_only_its_own_error(text: str) -> None:
    try:
        perm = Perm.parse(text)
    except XsWireError:
        return
    assert 0 <= perm.domid <= 0xFFFF
    assert Perm.parse(str(perm)) == perm


@given(st.binary(max_size=100))
def test_fuzz_perm_lists_raise_only_their_own_error(payload: bytes) -> None:
    try:
        perms = parse_perms(payload)
    except XsWireError:
        return
    if perms:
        assert parse_perms(format_perms(perms)) == perms
