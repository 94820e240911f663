"""Byte-exact vectors for format 2's journal units and doublewrite directory
(sanstack/snapshot/journal_format.py, docs/volume-format.md "Journal (format 2)")."""

from __future__ import annotations

import google_crc32c
import pytest

from sanstack.snapshot.journal_format import (
    DOUBLEWRITE_SLOTS,
    UNIT,
    UNIT_CAPACITY,
    decode_directory,
    decode_journal_unit,
    directory_offset,
    encode_directory,
    encode_journal_unit,
    ring_units,
)
from sanstack.snapshot.layout import (
    PAGE,
    DeadRecord,
    Geometry,
    MapRecord,
    MarkRecord,
    encode_record,
)
from sanstack.snapshot.model import FormatOptions, NotAVolume


def h(text: str) -> bytes:
    return bytes.fromhex(" ".join(line.split("#")[0] for line in text.splitlines()))


def crc_with_zero_field(data: bytes, at: int) -> int:
    body = bytearray(data)
    body[at : at + 4] = bytes(4)
    return int(google_crc32c.value(bytes(body)))


def test_unit_bytes() -> None:
    records = [encode_record(MarkRecord(5)), encode_record(MapRecord(1, 2, 3, 0xAABBCCDD))]
    unit = encode_journal_unit(0x0102030405, 77, records)
    assert len(unit) == UNIT == 512 and UNIT_CAPACITY == 488
    assert unit[:24] == h(
        """
        53 4a 4e 32                  # magic "SJN2"
        """
    ) + crc_with_zero_field(unit, 4).to_bytes(4, "little") + h(
        """
        05 04 03 02 01 00 00 00      # sequence number
        4d 00 00 00                  # ring index 77
        02 00                        # 2 records
        1e 00                        # 30 bytes of records
        """
    )
    assert unit[24:54] == h(
        """
        07 08 00  05 00 00 00 00 00 00 00                     # MARK: proven_seq 5
        01 10 00  01 00 00 00  02 00 00 00  03 00 00 00  dd cc bb aa  # MAP v p birth crc
        """
    )
    assert unit[54:] == bytes(UNIT - 54)
    assert decode_journal_unit(unit, 0x0102030405, 77) == [
        MarkRecord(5),
        MapRecord(1, 2, 3, 0xAABBCCDD),
    ]


def test_unit_end_of_log() -> None:
    unit = encode_journal_unit(9, 9, [encode_record(DeadRecord(4, 1, 0, 3))])
    assert decode_journal_unit(unit, 10, 9) is None  # an older lap
    assert decode_journal_unit(unit, 9, 10) is None  # elsewhere
    assert decode_journal_unit(bytes(UNIT), 9, 9) is None  # never written or zeroed
    for offset in (5, 12, 24, 30, UNIT - 1):
        bad = bytearray(unit)
        bad[offset] ^= 1
        assert decode_journal_unit(bytes(bad), 9, 9) is None
    old_page = h("53 4a 4e 4c") + bytes(UNIT - 4)  # format 1's page magic "SJNL"
    assert decode_journal_unit(old_page, 9, 9) is None
    with pytest.raises(ValueError, match="do not fit"):
        encode_journal_unit(1, 1, [bytes(UNIT_CAPACITY + 1)])


def test_unit_with_a_record_past_its_length_is_not_a_volume() -> None:
    unit = bytearray(encode_journal_unit(3, 3, [encode_record(MapRecord(1, 2, 3))]))
    unit[22:24] = (10).to_bytes(2, "little")
    unit[4:8] = crc_with_zero_field(bytes(unit), 4).to_bytes(4, "little")
    with pytest.raises(NotAVolume, match="journal unit 3 has a record past its end"):
        decode_journal_unit(bytes(unit), 3, 3)


def test_directory_bytes() -> None:
    page = encode_directory(7, [(0x10000, 0x11223344), (0x20000, 0x55667788)])
    assert len(page) == PAGE
    assert page[:4] == b"SDWD" and page[4:8] == crc_with_zero_field(page, 4).to_bytes(4, "little")
    assert page[8:44] == h(
        """
        07 00 00 00 00 00 00 00                 # checkpoint generation
        02 00 00 00                             # 2 entries
        00 00 01 00 00 00 00 00  44 33 22 11    # page at 0x10000, CRC32C of its image
        00 00 02 00 00 00 00 00  88 77 66 55
        """
    )
    assert page[44:] == bytes(PAGE - 44)
    assert decode_directory(page) == [(0x10000, 0x11223344), (0x20000, 0x55667788)]
    torn = bytearray(page)
    torn[30] ^= 1
    assert decode_directory(bytes(torn)) == []
    assert decode_directory(bytes(PAGE)) == []


def test_the_ring_leaves_room_for_the_doublewrite_at_the_end_of_the_region() -> None:
    g = Geometry.plan(1 << 30, FormatOptions())
    assert DOUBLEWRITE_SLOTS == 32
    assert ring_units(g) == (g.journal_pages - 33) * 8
    assert directory_offset(g) == g.journal + ring_units(g) * UNIT
    assert directory_offset(g) + 33 * PAGE == g.forward_map
