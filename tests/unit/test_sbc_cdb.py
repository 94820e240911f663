"""Byte-exact vectors for the SBC-4 CDB codecs in ``sanstack.scsi.cdb``, both directions."""

from __future__ import annotations

import pytest

from sanstack.scsi.cdb import (
    CompareAndWriteCDB,
    GetLbaStatusCDB,
    PrefetchCDB,
    ReadCapacity10CDB,
    ReadCapacity16CDB,
    ReadWriteCDB,
    SynchronizeCacheCDB,
    UnmapCDB,
    UnmapDescriptor,
    UnmapParameterList,
    WriteSameCDB,
)
from sanstack.scsi.codes import ASC, Opcode, SenseKey
from sanstack.scsi.sense import CheckCondition

Codec = (
    ReadWriteCDB
    | WriteSameCDB
    | CompareAndWriteCDB
    | GetLbaStatusCDB
    | ReadCapacity10CDB
    | ReadCapacity16CDB
    | SynchronizeCacheCDB
    | PrefetchCDB
    | UnmapCDB
)

VECTORS: list[tuple[str, Codec]] = [
    # READ(6)/WRITE(6): 21-bit LBA, one-byte length where 0 means 256 (SBC-4 §5.14).
    ("08 01 23 45 10 00", ReadWriteCDB(Opcode.READ_6, 0x12345, 16)),
    ("08 00 00 00 00 00", ReadWriteCDB(Opcode.READ_6, 0, 256)),
    ("0a 1f ff ff 01 80", ReadWriteCDB(Opcode.WRITE_6, 0x1FFFFF, 1, control=0x80)),
    # READ/WRITE(10): flags, 4-byte LBA, group, 2-byte length, control.
    (
        "28 18 00 00 12 34 05 00 08 00",
        ReadWriteCDB(Opcode.READ_10, 0x1234, 8, dpo=True, fua=True, group=5),
    ),
    ("28 60 00 00 00 00 00 00 01 00", ReadWriteCDB(Opcode.READ_10, 0, 1, protect=3)),
    (
        "2a e8 ff ff ff ff 00 ff ff 04",
        ReadWriteCDB(Opcode.WRITE_10, 0xFFFFFFFF, 0xFFFF, protect=7, fua=True, control=4),
    ),
    # READ/WRITE(12): flags, 4-byte LBA, 4-byte length, group, control.
    (
        "a8 08 00 00 00 01 00 00 01 00 07 00",
        ReadWriteCDB(Opcode.READ_12, 1, 256, fua=True, group=7),
    ),
    ("aa 10 00 00 00 02 00 01 00 00 00 00", ReadWriteCDB(Opcode.WRITE_12, 2, 0x10000, dpo=True)),
    # READ/WRITE(16): flags, 8-byte LBA, 4-byte length, group, control.
    (
        "88 10 00 00 00 01 00 00 00 00 00 00 00 20 3f 00",
        ReadWriteCDB(Opcode.READ_16, 1 << 32, 32, dpo=True, group=0x3F),
    ),
    (
        "8a 08 ff ff ff ff ff ff ff ff 00 00 00 00 00 00",
        ReadWriteCDB(Opcode.WRITE_16, (1 << 64) - 1, 0, fua=True),
    ),
    # WRITE AND VERIFY / VERIFY: bits 2-1 are BYTCHK, no FUA.
    (
        "2e 12 00 00 00 10 00 00 02 00",
        ReadWriteCDB(Opcode.WRITE_AND_VERIFY_10, 16, 2, dpo=True, bytchk=1),
    ),
    (
        "ae 02 00 00 00 10 00 00 00 02 00 00",
        ReadWriteCDB(Opcode.WRITE_AND_VERIFY_12, 16, 2, bytchk=1),
    ),
    (
        "8e 00 00 00 00 00 00 00 00 10 00 00 00 02 00 00",
        ReadWriteCDB(Opcode.WRITE_AND_VERIFY_16, 16, 2),
    ),
    ("2f 20 00 00 00 00 00 00 01 00", ReadWriteCDB(Opcode.VERIFY_10, 0, 1, protect=1)),
    (
        "af 22 00 00 00 03 00 00 00 04 00 00",
        ReadWriteCDB(Opcode.VERIFY_12, 3, 4, protect=1, bytchk=1),
    ),
    (
        "8f 06 00 00 00 00 00 00 00 09 00 00 00 05 00 00",
        ReadWriteCDB(Opcode.VERIFY_16, 9, 5, bytchk=3),
    ),
    # ORWRITE(16) §5.11.
    (
        "8b 08 00 00 00 00 00 00 00 07 00 00 00 03 01 00",
        ReadWriteCDB(Opcode.ORWRITE_16, 7, 3, fua=True, group=1),
    ),
    # WRITE SAME(10)/(16) §5.48/5.49: ANCHOR 10h, UNMAP 08h, NDOB 01h (16 only).
    (
        "41 08 00 00 00 10 00 00 20 00",
        WriteSameCDB(Opcode.WRITE_SAME_10, 16, 32, unmap=True),
    ),
    (
        "41 f0 00 00 00 00 02 00 01 00",
        WriteSameCDB(Opcode.WRITE_SAME_10, 0, 1, protect=7, anchor=True, group=2),
    ),
    (
        "93 19 00 00 00 00 00 00 00 40 00 01 00 00 00 00",
        WriteSameCDB(Opcode.WRITE_SAME_16, 64, 0x10000, anchor=True, unmap=True, ndob=True),
    ),
    # COMPARE AND WRITE §5.3: bytes 10-12 reserved, NUMBER OF LOGICAL BLOCKS in byte 13.
    (
        "89 18 00 00 00 00 00 00 00 0a 00 00 00 02 00 00",
        CompareAndWriteCDB(10, 2, dpo=True, fua=True),
    ),
    ("89 20 00 00 00 00 00 00 00 00 00 00 00 ff 03 00", CompareAndWriteCDB(0, 255, 1, group=3)),
    # GET LBA STATUS §5.8: SERVICE ACTION IN(16) 12h.
    (
        "9e 12 00 00 00 00 00 00 01 00 00 00 00 18 00 00",
        GetLbaStatusCDB(0x100, 24),
    ),
    (
        "9e 12 ff ff ff ff ff ff ff ff 00 01 00 00 02 00",
        GetLbaStatusCDB((1 << 64) - 1, 0x10000, report_type=2),
    ),
    # READ CAPACITY(10) §5.20 and (16) §5.21.
    ("25 00 00 00 00 00 00 00 00 00", ReadCapacity10CDB()),
    ("25 00 00 00 00 07 00 00 01 00", ReadCapacity10CDB(7, pmi=True)),
    ("9e 10 00 00 00 00 00 00 00 00 00 00 00 20 00 00", ReadCapacity16CDB(32)),
    ("9e 10 00 00 00 00 00 00 00 05 00 00 00 0f 01 00", ReadCapacity16CDB(15, 5, pmi=True)),
    # SYNCHRONIZE CACHE(10)/(16) §5.25/5.26 and PRE-FETCH(10)/(16) §5.12/5.13: IMMED 02h.
    (
        "35 02 00 00 00 10 00 00 08 00",
        SynchronizeCacheCDB(Opcode.SYNCHRONIZE_CACHE_10, 16, 8, immed=True),
    ),
    (
        "91 00 00 00 00 01 00 00 00 00 00 00 00 00 04 00",
        SynchronizeCacheCDB(Opcode.SYNCHRONIZE_CACHE_16, 1 << 32, 0, group=4),
    ),
    ("34 02 00 00 00 01 00 00 01 00", PrefetchCDB(Opcode.PRE_FETCH_10, 1, 1, immed=True)),
    (
        "90 00 00 00 00 00 00 00 00 02 00 00 01 00 00 00",
        PrefetchCDB(Opcode.PRE_FETCH_16, 2, 256),
    ),
    # UNMAP §5.32: ANCHOR in byte 1 bit 0, PARAMETER LIST LENGTH in bytes 7-8.
    ("42 00 00 00 00 00 00 00 18 00", UnmapCDB(24)),
    ("42 01 00 00 00 00 05 01 00 00", UnmapCDB(256, anchor=True, group=5)),
]


@pytest.mark.parametrize(("hex_cdb", "decoded"), VECTORS)
def test_decode(hex_cdb: str, decoded: Codec) -> None:
    assert type(decoded).decode(bytes.fromhex(hex_cdb)) == decoded


@pytest.mark.parametrize(("hex_cdb", "decoded"), VECTORS)
def test_encode(hex_cdb: str, decoded: Codec) -> None:
    assert decoded.encode() == bytes.fromhex(hex_cdb)


def test_decode_accepts_memoryview() -> None:
    cdb = memoryview(bytes.fromhex("28 00 00 00 00 01 00 00 02 00"))
    assert ReadWriteCDB.decode(cdb) == ReadWriteCDB(Opcode.READ_10, 1, 2)


def test_read_write_fua_only_where_defined() -> None:
    # Bit 3 of byte 1 is reserved in VERIFY; it must not surface as FUA.
    decoded = ReadWriteCDB.decode(bytes.fromhex("2f 08 00 00 00 00 00 00 01 00"))
    assert not decoded.fua
    assert decoded.cdb_length == 10


def test_read6_ignores_reserved_bits_above_the_lba() -> None:
    assert ReadWriteCDB.decode(bytes.fromhex("08 e1 00 00 01 00")).lba == 0x10000


@pytest.mark.parametrize(
    ("codec", "cdb"),
    [
        (ReadWriteCDB, "12 00 00 00 ff 00"),  # INQUIRY
        (ReadWriteCDB, "28 00 00 00"),  # short
        (WriteSameCDB, "2a 00 00 00 00 00 00 00 00 00"),
        (WriteSameCDB, "93 00 00"),
        (CompareAndWriteCDB, "88 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"),
        (GetLbaStatusCDB, "9e 10 00 00 00 00 00 00 00 00 00 00 00 20 00 00"),
        (ReadCapacity16CDB, "9e 12 00 00 00 00 00 00 00 00 00 00 00 20 00 00"),
        (ReadCapacity16CDB, "9e 10 00"),
        (ReadCapacity10CDB, "28 00 00 00 00 00 00 00 00 00"),
        (SynchronizeCacheCDB, "34 00 00 00 00 00 00 00 00 00"),
        (PrefetchCDB, "90 00 00 00 00 00 00 00 00 00"),
        (UnmapCDB, "41 00 00 00 00 00 00 00 00 00"),
        (UnmapCDB, ""),
    ],
)
def test_decode_rejects_other_or_short_cdbs(codec: type[Codec], cdb: str) -> None:
    with pytest.raises(ValueError, match="CDB"):
        codec.decode(bytes.fromhex(cdb))


@pytest.mark.parametrize(
    "value",
    [
        ReadWriteCDB(Opcode.READ_6, 0x200000, 1),
        ReadWriteCDB(Opcode.READ_6, 0, 0),
        ReadWriteCDB(Opcode.READ_6, 0, 257),
        ReadWriteCDB(Opcode.WRITE_6, 0, 1, fua=True),
        ReadWriteCDB(Opcode.READ_10, 1 << 32, 1),
        ReadWriteCDB(Opcode.READ_10, 0, 0x10000),
        ReadWriteCDB(Opcode.READ_12, 1 << 32, 1),
        ReadWriteCDB(Opcode.READ_16, 0, 1 << 32),
        ReadWriteCDB(Opcode.READ_16, 0, 1, protect=8),
        ReadWriteCDB(Opcode.READ_16, 0, 1, group=0x40),
        ReadWriteCDB(Opcode.VERIFY_10, 0, 1, fua=True),
        ReadWriteCDB(Opcode.WRITE_10, 0, 1, bytchk=1),
        WriteSameCDB(Opcode.WRITE_SAME_10, 0, 1, ndob=True),
        WriteSameCDB(Opcode.WRITE_SAME_10, 0, 0x10000),
        WriteSameCDB(Opcode.WRITE_10, 0, 1),
        CompareAndWriteCDB(0, 256),
        GetLbaStatusCDB(0, 1 << 32),
        ReadCapacity10CDB(1 << 32),
        ReadCapacity16CDB(1 << 32),
        SynchronizeCacheCDB(Opcode.SYNCHRONIZE_CACHE_10, 0, 0x10000),
        SynchronizeCacheCDB(Opcode.PRE_FETCH_16, 0, 1),
        PrefetchCDB(Opcode.PRE_FETCH_10, 1 << 32, 1),
        UnmapCDB(0x10000),
    ],
)
def test_encode_rejects_values_the_cdb_cannot_carry(value: Codec) -> None:
    with pytest.raises(ValueError):
        value.encode()


# -- UNMAP parameter list (SBC-4 §5.32.2) ---------------------------------------------------

ONE_DESCRIPTOR = bytes.fromhex(
    "00 16 00 10 00 00 00 00"  # UNMAP DATA LENGTH 22, BLOCK DESCRIPTOR DATA LENGTH 16
    "00 00 00 00 00 00 01 00 00 00 00 08 00 00 00 00"
)


def test_unmap_parameter_list_vectors() -> None:
    plist = UnmapParameterList.of([(0x100, 8)])
    assert plist.encode() == ONE_DESCRIPTOR
    assert UnmapParameterList.decode(ONE_DESCRIPTOR) == plist
    assert plist.descriptors == (UnmapDescriptor(0x100, 8),)


def test_unmap_parameter_list_empty() -> None:
    empty = bytes.fromhex("00 06 00 00 00 00 00 00")
    assert UnmapParameterList.of([]).encode() == empty
    assert UnmapParameterList.decode(empty).descriptors == ()


def test_unmap_parameter_list_two_descriptors_roundtrip() -> None:
    plist = UnmapParameterList.of([(1, 2), ((1 << 64) - 1, 0xFFFFFFFF)])
    data = plist.encode()
    assert data[:4] == bytes.fromhex("00 26 00 20")
    assert UnmapParameterList.decode(memoryview(data)) == plist


def test_unmap_parameter_list_ignores_partial_and_missing_descriptors() -> None:
    # A partial trailing descriptor is ignored, and a descriptor length larger than the list
    # is cut to the bytes present.
    assert UnmapParameterList.decode(ONE_DESCRIPTOR[:-1]).descriptors == ()
    claims_two = bytearray(ONE_DESCRIPTOR)
    claims_two[2:4] = (32).to_bytes(2, "big")
    assert len(UnmapParameterList.decode(bytes(claims_two)).descriptors) == 1
    odd_length = bytearray(ONE_DESCRIPTOR + bytes(8))
    odd_length[2:4] = (24).to_bytes(2, "big")
    assert len(UnmapParameterList.decode(bytes(odd_length)).descriptors) == 1


def test_unmap_parameter_list_shorter_than_header() -> None:
    with pytest.raises(CheckCondition) as info:
        UnmapParameterList.decode(bytes(7))
    assert info.value.key == SenseKey.ILLEGAL_REQUEST
    assert info.value.asc == ASC.PARAMETER_LIST_LENGTH_ERROR
