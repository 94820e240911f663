"""Format 2's journal region: a ring of 512-byte units, then the checkpoint's doublewrite.

A unit is one sector, the unit a power cut cannot tear, and once written it is never
written again until the ring comes round: a batch of records goes to fresh units, and a
batch ends on a boundary of the base device's block so the next one starts on its own
block (padded with valid units of no records). docs/volume-format.md, "Journal (format
2)" and "Checkpoints", has the byte layouts; pure codec (sans-IO).
"""

from __future__ import annotations

import struct
from typing import Final

from sanstack.iscsi.digest import crc32c
from sanstack.snapshot.layout import PAGE, Geometry, Record, decode_record
from sanstack.snapshot.model import NotAVolume

UNIT: Final = 512
UNITS_PER_PAGE: Final = PAGE // UNIT
UNIT_HEADER: Final = 24
UNIT_CAPACITY: Final = UNIT - UNIT_HEADER  # 488 bytes of records
UNIT_MAGIC: Final = b"SJN2"
DOUBLEWRITE_SLOTS: Final = 32  # images per doublewrite batch
DIRECTORY_MAGIC: Final = b"SDWD"

_U32 = struct.Struct("<I")
_UNIT_HEAD = struct.Struct("<4sIQIHH")  # magic, crc, seq, ring index, count, bytes
_REC_HEAD = struct.Struct("<BH")
_DIR_HEAD = struct.Struct("<4sIQI")  # magic, crc, checkpoint generation, count
_DIR_ENTRY = struct.Struct("<QI")  # byte offset of the page, CRC32C of its image


def ring_units(g: Geometry) -> int:
    """Units in the journal ring: the region less the doublewrite directory and slots."""
    return (g.journal_pages - DOUBLEWRITE_SLOTS - 1) * UNITS_PER_PAGE


def directory_offset(g: Geometry) -> int:
    """The doublewrite directory page; the slots follow it."""
    return g.journal + (g.journal_pages - DOUBLEWRITE_SLOTS - 1) * PAGE


def encode_journal_unit(seq: int, index: int, records: list[bytes]) -> bytes:
    body = b"".join(records)
    if len(body) > UNIT_CAPACITY:
        raise ValueError(f"{len(body)} bytes of records do not fit a journal unit")
    unit = bytearray(UNIT)
    unit[UNIT_HEADER : UNIT_HEADER + len(body)] = body
    _UNIT_HEAD.pack_into(unit, 0, UNIT_MAGIC, 0, seq, index, len(records), len(body))
    _U32.pack_into(unit, 4, crc32c(unit))
    return bytes(unit)


def decode_journal_unit(unit: bytes | memoryview, seq: int, index: int) -> list[Record] | None:
    """The records of unit ``seq`` at ring ``index``; None where the log ends (never
    written, zeroed, an older lap, another format, or torn)."""
    magic, crc, unit_seq, unit_index, count, length = _UNIT_HEAD.unpack_from(unit)
    if magic != UNIT_MAGIC or unit_seq != seq or unit_index != index:
        return None
    if length > UNIT_CAPACITY:
        return None
    check = bytearray(unit)
    _U32.pack_into(check, 4, 0)
    if crc32c(check) != crc:
        return None
    records: list[Record] = []
    offset = UNIT_HEADER
    end = UNIT_HEADER + length
    for _ in range(count):
        kind, size = _REC_HEAD.unpack_from(unit, offset)
        offset += _REC_HEAD.size
        if offset + size > end:
            raise NotAVolume(f"journal unit {index} has a record past its end")
        records.append(decode_record(kind, bytes(unit[offset : offset + size])))
        offset += size
    return records


def encode_directory(generation: int, entries: list[tuple[int, int]]) -> bytes:
    """The doublewrite directory: which page each slot's image belongs at, and its CRC."""
    if len(entries) > DOUBLEWRITE_SLOTS:
        raise ValueError("more images than doublewrite slots")
    page = bytearray(PAGE)
    _DIR_HEAD.pack_into(page, 0, DIRECTORY_MAGIC, 0, generation, len(entries))
    for i, (offset, crc) in enumerate(entries):
        _DIR_ENTRY.pack_into(page, _DIR_HEAD.size + i * _DIR_ENTRY.size, offset, crc)
    _U32.pack_into(page, 4, crc32c(page))
    return bytes(page)


def decode_directory(page: bytes | memoryview) -> list[tuple[int, int]]:
    """The directory's entries; none if it is not a whole directory page."""
    magic, crc, _generation, count = _DIR_HEAD.unpack_from(page)
    if magic != DIRECTORY_MAGIC or count > DOUBLEWRITE_SLOTS:
        return []
    check = bytearray(page)
    _U32.pack_into(check, 4, 0)
    if crc32c(check) != crc:
        return []
    return [
        _DIR_ENTRY.unpack_from(page, _DIR_HEAD.size + i * _DIR_ENTRY.size) for i in range(count)
    ]
