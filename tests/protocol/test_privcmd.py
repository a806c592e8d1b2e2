"""The simulated hypercall endpoint's records: sizes, layout, encode/decode."""

from __future__ import annotations

import struct
import uuid

import pytest

from aiovirt.protocol.privcmd import (
    DOMAIN_INFO,
    PAGE_KIB,
    PHYSINFO,
    REPLY,
    REQUEST,
    DomainInfoRecord,
    PhysInfo,
    PrivcmdOp,
    decode_domain_infos,
    encode_domain_info,
)

UUID = uuid.UUID("8f5d6a3e-02c1-9b7e-4d22-a1b0c3e5f719")


def record(domid: int, **kw: int | bytes) -> DomainInfoRecord:
    fields: dict[str, int | bytes] = dict(
        domid=domid, flags=1 << 4, tot_pages=65536, max_pages=65536, shared_info_frame=1234,
        cpu_time=18_732_104_588, nr_online_vcpus=1, max_vcpu_id=0, ssidref=0, handle=UUID.bytes,
    )
    fields.update(kw)
    return DomainInfoRecord(**fields)  # type: ignore[arg-type]


def test_struct_sizes() -> None:
    assert REQUEST.size == 24
    assert REPLY.size == 16
    assert DOMAIN_INFO.size == 72  # Xen 3.0's dom0_getdomaininfo_t on x86_64
    assert PHYSINFO.size == struct.calcsize("=IIIIIQQ")
    assert PAGE_KIB == 4


def test_domain_info_layout_offsets() -> None:
    raw = encode_domain_info(record(3, flags=0x20, tot_pages=7, max_pages=9, cpu_time=11,
                                    nr_online_vcpus=2, max_vcpu_id=1))
    assert len(raw) == 72
    assert struct.unpack_from("=H", raw, 0) == (3,)
    assert struct.unpack_from("=I", raw, 4) == (0x20,)
    assert struct.unpack_from("=QQ", raw, 8) == (7, 9)
    assert struct.unpack_from("=Q", raw, 32) == (11,)
    assert struct.unpack_from("=II", raw, 40) == (2, 1)
    assert raw[52:68] == UUID.bytes


def test_domain_info_round_trip() -> None:
    records = [record(0, handle=bytes(16)), record(3), record(65535, cpu_time=2**64 - 1)]
    payload = b"".join(encode_domain_info(r) for r in records)
    decoded = decode_domain_infos(payload, 3)
    assert decoded == records
    assert all(isinstance(r, DomainInfoRecord) for r in decoded)
    assert decoded[1].uuid == UUID
    assert decode_domain_infos(payload, 1) == records[:1]
    assert decode_domain_infos(b"", 0) == []


def test_domain_info_short_payload_is_an_error() -> None:
    payload = encode_domain_info(record(1))
    with pytest.raises(ValueError, match="too short"):
        decode_domain_infos(payload, 2)
    with pytest.raises(ValueError):
        decode_domain_infos(payload, -1)


def test_request_and_reply_round_trip() -> None:
    req = REQUEST.pack(PrivcmdOp.SETDOMAINMAXMEM, 42, 3, 0, 262144)
    assert REQUEST.unpack(req) == (PrivcmdOp.SETDOMAINMAXMEM, 42, 3, 0, 262144)
    rep = REPLY.pack(PrivcmdOp.GETDOMAININFOLIST, 42, -3, 0)
    assert REPLY.unpack(rep) == (PrivcmdOp.GETDOMAININFOLIST, 42, -3, 0)


def test_physinfo_round_trip() -> None:
    info = PhysInfo(2, 1, 2, 1, 2_394_000, 524_032, 262_144)
    assert PhysInfo(*PHYSINFO.unpack(PHYSINFO.pack(*info))) == info


def test_ops_are_distinct() -> None:
    assert len({int(op) for op in PrivcmdOp}) == len(PrivcmdOp)
