"""Byte-exact vectors for the snapshot volume's on-disk format (sanstack/snapshot/layout.py).

The expected bytes are written out by hand from docs/volume-format.md, not captured from
the encoder: a change to any offset, width or encoding fails here first, and must change
the document (and the format version) with it. Every integer is little-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import google_crc32c
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sanstack.snapshot.layout import (
    JOURNAL_CAPACITY,
    JOURNAL_HEADER,
    MAP_PER_PAGE,
    PAGE,
    SLOTS_PER_PAGE,
    TABLE_PER_PAGE,
    UNMAPPED,
    VERSION,
    DeadRecord,
    EpochRecord,
    Geometry,
    MapRecord,
    MarkRecord,
    Record,
    RestoreRecord,
    SettingsRecord,
    SnapshotFlag,
    SnapshotRecord,
    SnapshotSlotRecord,
    Superblock,
    decode_journal_page,
    decode_map_page,
    decode_slot_page,
    decode_table_page,
    encode_journal_page,
    encode_map_page,
    encode_record,
    encode_slot_page,
    encode_table_page,
    newest_superblock,
)
from sanstack.snapshot.model import (
    FormatOptions,
    Holder,
    NotAVolume,
    OnFull,
    Schedule,
    SpacePolicy,
    VolumeError,
)

# CRC32C (Castagnoli) of 4096 zero bytes: what an empty page's body checksums to.
CRC32C_OF_ZERO_PAGE = 0x98F94189


def h(text: str) -> bytes:
    """Hex bytes, spaced and split over lines at will; ``#`` starts a comment."""
    return bytes.fromhex("".join(line.split("#", 1)[0] for line in text.splitlines()))


def crc_of(page: bytes, at: int) -> int:
    """CRC32C of ``page`` with the 4-byte CRC field at ``at`` zeroed (independent of sanstack)."""
    body = bytearray(page)
    body[at : at + 4] = bytes(4)
    return int(google_crc32c.value(bytes(body)))


def reseal(page: bytearray, number: int) -> bytes:
    """Re-seal a table/map/superblock page after editing it (trailer: CRC32C, number)."""
    page[PAGE - 4 :] = number.to_bytes(4, "little")
    page[PAGE - 8 : PAGE - 4] = bytes(4)
    page[PAGE - 8 : PAGE - 4] = crc_of(bytes(page), PAGE - 8).to_bytes(4, "little")
    return bytes(page)


def test_page_constants() -> None:
    assert PAGE == 4096
    assert VERSION == 2
    assert UNMAPPED == 0xFFFFFFFF
    assert (MAP_PER_PAGE, TABLE_PER_PAGE, SLOTS_PER_PAGE) == (511, 255, 31)
    assert JOURNAL_HEADER == 24
    assert JOURNAL_CAPACITY == 4072
    assert int(google_crc32c.value(bytes(4096))) == CRC32C_OF_ZERO_PAGE


# -- superblock ------------------------------------------------------------------------

GEOMETRY = Geometry(
    block_size=512,
    chunk_size=4096,
    volume_chunks=0x0102030405,
    pool_chunks=0x0A0B0C0D0E,
    max_snapshots=4096,
    journal_pages=128,
    snapshot_table=0x2000,
    journal=0x87000,
    forward_map=0x107000,
    chunk_table=0x208000,
    data=0x400000,
)
UUID = bytes(range(16))


def full_superblock() -> Superblock:
    return Superblock(
        geometry=GEOMETRY,
        uuid=UUID,
        created=1.5,
        generation=7,
        journal_tail_seq=0x1122334455,
        epoch=9,
        next_snapshot_id=4,
        restore_snapshot_id=2,
        restore_epoch=8,
        policy=SpacePolicy(70, 85, OnFull.FAIL_WRITES),
        schedule=Schedule(3600, 24, 2, "hourly"),
        holder=Holder("node-a", 4242, "/run/sanstack.sock"),
        clean=False,
    )


SUPERBLOCK_HEAD = h(
    """
    53 41 4e 53 54 4b 56 4c                          # @0: magic "SANSTKVL"
    02 00 00 00                                      # @8: version 2
    07 00 00 00 00 00 00 00                          # @12: generation 7
    00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  # @20: uuid
    00 00 00 00 00 00 f8 3f                          # @36: created 1.5 (double)
    00 02 00 00                                      # @44: block_size 512
    00 10 00 00                                      # @48: chunk_size 4096
    05 04 03 02 01 00 00 00                          # @52: volume_chunks
    0e 0d 0c 0b 0a 00 00 00                          # @60: pool_chunks
    00 10 00 00                                      # @68: max_snapshots 4096
    80 00 00 00                                      # @72: journal_pages 128
    00 20 00 00 00 00 00 00                          # @76: snapshot_table 0x2000
    00 70 08 00 00 00 00 00                          # @84: journal 0x87000
    00 70 10 00 00 00 00 00                          # @92: forward_map 0x107000
    00 80 20 00 00 00 00 00                          # @100: chunk_table 0x208000
    00 00 40 00 00 00 00 00                          # @108: data 0x400000
    55 44 33 22 11 00 00 00                          # @116: journal_tail_seq
    09 00 00 00                                      # @124: epoch 9
    04 00 00 00                                      # @128: next_snapshot_id 4
    02 00 00 00                                      # @132: restore_snapshot_id 2
    08 00 00 00                                      # @136: restore_epoch 8
    46 55 01                                         # @140: warn 70, delete 85, fail
    10 0e 00 00                                      # @143: schedule interval 3600
    18 00                                            # @147: keep 24
    02                                               # @149: weight 2
    """
)


def test_superblock_bytes() -> None:
    page = full_superblock().encode()
    assert len(page) == PAGE
    assert page[:150] == SUPERBLOCK_HEAD
    assert page[150:190] == b"hourly".ljust(40, b"\0")  # schedule prefix
    assert page[190:254] == b"node-a".ljust(64, b"\0")  # holder host
    assert page[254:258] == h("92 10 00 00")  # holder pid 4242
    assert page[258:366] == b"/run/sanstack.sock".ljust(108, b"\0")  # control socket
    assert page[366] == 0  # clean: False
    assert page[367 : PAGE - 8] == bytes(PAGE - 8 - 367)
    assert page[PAGE - 4 :] == bytes(4)  # both copies are sealed as page 0
    assert page[PAGE - 8 : PAGE - 4] == crc_of(page, PAGE - 8).to_bytes(4, "little")


def test_superblock_round_trip() -> None:
    sb = full_superblock()
    assert Superblock.decode(sb.encode()) == sb
    bare = Superblock(geometry=GEOMETRY, uuid=UUID, created=0.0)
    decoded = Superblock.decode(bare.encode())
    assert decoded == bare
    assert decoded.schedule is None and decoded.holder is None and decoded.clean
    page = bare.encode()
    assert page[140:143] == h("50 5a 00")  # default policy: 80 %, 90 %, delete
    assert page[143:366] == bytes(366 - 143)  # no schedule, no holder
    assert page[366] == 1


def test_superblock_refuses_foreign_torn_and_newer() -> None:
    page = bytearray(full_superblock().encode())
    with pytest.raises(NotAVolume, match="magic"):
        Superblock.decode(bytes(PAGE))
    with pytest.raises(NotAVolume, match="magic"):
        Superblock.decode(b"XANSTKVL" + bytes(page[8:]))
    torn = bytearray(page)
    torn[200] ^= 0x01
    with pytest.raises(NotAVolume, match="superblock page 0"):
        Superblock.decode(bytes(torn))
    newer = bytearray(page)
    newer[8:12] = (3).to_bytes(4, "little")
    with pytest.raises(NotAVolume, match="version 3 is not supported"):
        Superblock.decode(reseal(newer, 0))
    older = bytearray(page)
    older[8:12] = (1).to_bytes(4, "little")  # format 1 decodes: open upgrades it
    assert Superblock.decode(reseal(older, 0)).version == 1
    elsewhere = reseal(bytearray(page), 1)  # a sealed page of another number
    with pytest.raises(NotAVolume, match="superblock page 0"):
        Superblock.decode(elsewhere)


def test_newest_superblock_wins_by_generation_and_survives_a_torn_copy() -> None:
    old = full_superblock()
    new = old.next_generation(epoch=10)
    assert new.generation == 8
    pages: list[bytes | memoryview] = [new.encode(), memoryview(old.encode())]
    assert newest_superblock(pages) == new
    assert newest_superblock(list(reversed(pages))) == new
    torn = bytearray(new.encode())
    torn[100] ^= 0xFF
    assert newest_superblock([bytes(torn), old.encode()]) == old
    with pytest.raises(NotAVolume, match="magic"):
        newest_superblock([bytes(PAGE), bytes(torn)])


def test_holder_fields_are_truncated_to_their_width() -> None:
    sb = Superblock(
        geometry=GEOMETRY,
        uuid=UUID,
        created=0.0,
        holder=Holder("h" * 70, 1, "/" + "c" * 120),
    )
    holder = Superblock.decode(sb.encode()).holder
    assert holder == Holder("h" * 64, 1, "/" + "c" * 107)
    no_pid = Superblock(geometry=GEOMETRY, uuid=UUID, created=0.0, holder=Holder("h", 0, "c"))
    assert Superblock.decode(no_pid.encode()).holder is None  # pid 0: no holder


def test_unknown_on_full_byte_decodes_as_fail_writes() -> None:
    page = bytearray(full_superblock().encode())
    page[142] = 7
    assert Superblock.decode(reseal(page, 0)).policy.on_full == OnFull.FAIL_WRITES


# -- snapshot table --------------------------------------------------------------------

SLOT_RECORD = SnapshotRecord(
    slot=33,
    id=3,
    epoch=4,
    created=2.0,
    weight=1,
    flags=SnapshotFlag.KEEP | SnapshotFlag.SCHEDULED,
    name="s1",
)
SLOT_BYTES = h(
    """
    03 00 00 00                  # id 3
    04 00 00 00                  # epoch 4
    00 00 00 00 00 00 00 40      # created 2.0 (double)
    01                           # weight 1
    05                           # flags KEEP | SCHEDULED
    02                           # name length 2
    73 31                        # "s1"
    """
) + bytes(128 - 21)  # rest of the 63-byte name, 8 reserved bytes, padding to 128


def test_snapshot_slot_bytes() -> None:
    assert SLOT_RECORD.encode() == SLOT_BYTES
    assert SnapshotRecord.decode(33, SLOT_BYTES) == SLOT_RECORD
    assert SnapshotRecord.empty(5).encode() == bytes(128)
    assert SLOT_RECORD.keep and SLOT_RECORD.scheduled and not SLOT_RECORD.deleting


def test_snapshot_table_page() -> None:
    # Page 1 holds slots 31..61; slot 33 is its third entry.
    records = [SnapshotRecord.empty(31 + i) for i in range(SLOTS_PER_PAGE)]
    records[2] = SLOT_RECORD
    page = encode_slot_page(records, 1)
    assert page[2 * 128 : 3 * 128] == SLOT_BYTES
    assert page[:256] == bytes(256)
    assert page[PAGE - 4 :] == h("01 00 00 00")
    assert page[PAGE - 8 : PAGE - 4] == crc_of(page, PAGE - 8).to_bytes(4, "little")
    assert decode_slot_page(page, 1) == [SLOT_RECORD]
    assert decode_slot_page(bytes(PAGE), 0) == []  # never written: no snapshots
    with pytest.raises(NotAVolume, match="snapshot table page 2"):
        decode_slot_page(page, 2)


# -- forward map and chunk table -------------------------------------------------------

MAP_BYTES = h(
    """
    00 00 00 00  03 00 00 00     # chunk 0: home (p_enc 0), birth 3
    ff ff ff ff  00 00 00 00     # chunk 1: unmapped, birth 0
    2a 00 00 00  07 00 00 00     # chunk 2: pool chunk 41 (p_enc = p + 1), birth 7
    """
)


def test_map_page_bytes() -> None:
    entries = [(0, 3), (UNMAPPED, 0), (42, 7)]
    page = encode_map_page(entries, 2)
    assert page[:24] == MAP_BYTES
    assert page[24 : PAGE - 8] == bytes(PAGE - 8 - 24)
    assert MAP_PER_PAGE * 8 == PAGE - 8  # entries end exactly at the trailer
    assert page[PAGE - 4 :] == h("02 00 00 00")
    assert page[PAGE - 8 : PAGE - 4] == crc_of(page, PAGE - 8).to_bytes(4, "little")
    decoded = decode_map_page(page, 2)
    assert decoded is not None
    assert len(decoded) == MAP_PER_PAGE
    assert decoded[:3] == entries
    assert decoded[3:] == [(0, 0)] * (MAP_PER_PAGE - 3)


def test_empty_map_page_is_a_sealed_zero_body() -> None:
    page = encode_map_page([], 0)
    assert page == bytes(PAGE - 8) + h("89 41 f9 98") + bytes(4)  # CRC32C of 4096 zeroes


TABLE_BYTES = h(
    """
    0a 00 00 00                  # v_enc 10: volume chunk 9
    01 00 00 00                  # birth 1
    04 00 00 00                  # death 4
    00 00 00 00                  # reserved
    """
)


def test_table_page_bytes() -> None:
    page = encode_table_page([(10, 1, 4), (0, 0, 0)], 3)
    assert page[:16] == TABLE_BYTES
    assert page[16 : PAGE - 8] == bytes(PAGE - 8 - 16)  # 255 entries end at 4080; 8 pad
    assert TABLE_PER_PAGE * 16 == PAGE - 16
    assert page[PAGE - 4 :] == h("03 00 00 00")
    assert page[PAGE - 8 : PAGE - 4] == crc_of(page, PAGE - 8).to_bytes(4, "little")
    decoded = decode_table_page(page, 3)
    assert decoded is not None
    assert len(decoded) == TABLE_PER_PAGE
    assert decoded[0] == (10, 1, 4)
    assert set(decoded[1:]) == {(0, 0, 0)}


MapOrTable = Callable[[bytes, int], object]


@pytest.mark.parametrize(
    ("decode", "page", "what"),
    [
        (decode_map_page, encode_map_page([(1, 2)], 5), "forward map"),
        (decode_table_page, encode_table_page([(1, 2, 3)], 5), "chunk table"),
    ],
)
def test_map_and_table_pages_all_zero_corrupt_or_misplaced(
    decode: MapOrTable, page: bytes, what: str
) -> None:
    assert decode(bytes(PAGE), 5) is None  # never written
    assert decode(page, 5) is not None
    for offset in (0, 7, 2000, PAGE - 8, PAGE - 1):  # an entry, padding, the trailer
        corrupt = bytearray(page)
        corrupt[offset] ^= 0x40
        with pytest.raises(NotAVolume, match=f"{what} page 5 fails its CRC32C"):
            decode(bytes(corrupt), 5)
    with pytest.raises(NotAVolume, match=f"{what} page 6"):
        decode(page, 6)  # a valid page, at the wrong place
    with pytest.raises(NotAVolume, match=f"{what} page 5 is 4095 bytes"):
        decode(page[:-1], 5)


# -- journal ---------------------------------------------------------------------------

RECORD_VECTORS: list[tuple[Record, bytes]] = [
    (
        MapRecord(v=0x01020304, p=0x0A0B0C0D, birth=5, crc=0x11223344),  # CRC32C of p
        h("01 10 00  04 03 02 01  0d 0c 0b 0a  05 00 00 00  44 33 22 11"),
    ),
    (
        MapRecord(v=3, p=UNMAPPED, birth=2),  # journal p is literal: UNMAPPED, not p_enc
        h("01 10 00  03 00 00 00  ff ff ff ff  02 00 00 00  00 00 00 00"),
    ),
    (
        MarkRecord(proven_seq=0x0102030405),  # units before 0x0102030405 are proven
        h("07 08 00  05 04 03 02 01 00 00 00"),
    ),
    (
        DeadRecord(p=7, v=9, birth=2, death=3),
        h("02 10 00  07 00 00 00  09 00 00 00  02 00 00 00  03 00 00 00"),
    ),
    (
        SnapshotSlotRecord(SLOT_RECORD),
        h("03 84 00  21 00 00 00") + SLOT_BYTES,  # slot 33, then the 128-byte slot image
    ),
    (
        SnapshotSlotRecord(SnapshotRecord.empty(33)),  # id 0: clears the slot
        h("03 84 00  21 00 00 00") + bytes(128),
    ),
    (
        EpochRecord(epoch=9, next_snapshot_id=4),
        h("04 08 00  09 00 00 00  04 00 00 00"),
    ),
    (
        RestoreRecord(snapshot_id=3, restore_epoch=10),
        h("05 08 00  03 00 00 00  0a 00 00 00"),
    ),
    (
        RestoreRecord(snapshot_id=0, restore_epoch=0),  # no restore running
        h("05 08 00  00 00 00 00  00 00 00 00"),
    ),
    (
        SettingsRecord(SpacePolicy(70, 85, OnFull.FAIL_WRITES), Schedule(3600, 24, 2, "hourly")),
        h("06 32 00  46 55 01  10 0e 00 00  18 00  02") + b"hourly".ljust(40, b"\0"),
    ),
    (
        SettingsRecord(SpacePolicy(), None),
        h("06 32 00  50 5a 00  00 00 00 00  00 00  00") + bytes(40),
    ),
]


@pytest.mark.parametrize(("record", "expected"), RECORD_VECTORS)
def test_record_bytes(record: Record, expected: bytes) -> None:
    encoded = encode_record(record)
    assert encoded == expected
    page = encode_journal_page(1, 1, [encoded])
    assert decode_journal_page(page, 1, 1) == [record]


def test_journal_page_bytes() -> None:
    records = [encode_record(r) for r, _ in RECORD_VECTORS]
    body = b"".join(records)
    page = encode_journal_page(0x0102030405, 77, records)
    assert page[:4] == b"SJNL"
    assert page[8:24] == h(
        """
        05 04 03 02 01 00 00 00      # sequence number
        4d 00 00 00                  # ring page 77
        0b 00                        # 11 records
        """
    ) + len(body).to_bytes(2, "little")
    assert page[4:8] == crc_of(page, 4).to_bytes(4, "little")  # CRC over the whole page
    assert page[24 : 24 + len(body)] == body
    assert page[24 + len(body) :] == bytes(PAGE - 24 - len(body))  # no trailer here
    assert decode_journal_page(page, 0x0102030405, 77) == [r for r, _ in RECORD_VECTORS]


def test_journal_page_end_of_log() -> None:
    records = [encode_record(MapRecord(1, 2, 3)), encode_record(DeadRecord(4, 1, 0, 3))]
    page = encode_journal_page(9, 9, records)
    assert decode_journal_page(page, 9, 9) == [MapRecord(1, 2, 3), DeadRecord(4, 1, 0, 3)]
    assert decode_journal_page(page, 10, 9) is None  # an older lap of the ring
    assert decode_journal_page(page, 9, 10) is None  # a page from elsewhere
    assert decode_journal_page(bytes(PAGE), 9, 9) is None  # never written (or zeroed)
    for offset in (5, 12, 24, 40, 1000, PAGE - 1):  # header, records, zero tail
        bad = bytearray(page)
        bad[offset] ^= 0x01
        assert decode_journal_page(bytes(bad), 9, 9) is None
    # Torn writes: the first sectors are the new page, the rest an older one's, either
    # from an earlier lap of the ring or the earlier image of the same (open) page.
    lap = encode_journal_page(9 - 8, 9, [encode_record(MapRecord(7, 7, 1))] * 200)
    assert decode_journal_page(page[:512] + lap[512:], 9, 9) is None
    grown = encode_journal_page(9, 9, [*records, *[encode_record(MapRecord(5, 6, 3))] * 60])
    assert decode_journal_page(grown[:512] + page[512:], 9, 9) is None
    # A length beyond the page's capacity ends the log even before the CRC is checked.
    long = bytearray(page)
    long[22:24] = (JOURNAL_CAPACITY + 1).to_bytes(2, "little")
    assert decode_journal_page(bytes(long), 9, 9) is None


def test_journal_page_with_a_record_past_its_length_is_not_a_volume() -> None:
    # A writer bug, not a crash: the CRC is valid, the count and length disagree.
    page = bytearray(encode_journal_page(3, 3, [encode_record(MapRecord(1, 2, 3))]))
    page[22:24] = (10).to_bytes(2, "little")  # 15 bytes of record, length says 10
    page[4:8] = bytes(4)
    page[4:8] = crc_of(bytes(page), 4).to_bytes(4, "little")
    with pytest.raises(NotAVolume, match="journal page 3 has a record past its end"):
        decode_journal_page(bytes(page), 3, 3)


def test_journal_page_with_an_unknown_record_type_is_not_a_volume() -> None:
    page = bytearray(encode_journal_page(3, 3, [encode_record(EpochRecord(2, 2))]))
    page[24] = 9
    page[4:8] = bytes(4)
    page[4:8] = crc_of(bytes(page), 4).to_bytes(4, "little")
    with pytest.raises(NotAVolume, match="record type 9"):
        decode_journal_page(bytes(page), 3, 3)


def test_journal_page_capacity() -> None:
    one = encode_record(DeadRecord(1, 2, 3, 4))  # 19 bytes
    fits = [one] * (JOURNAL_CAPACITY // len(one))
    assert len(decode_journal_page(encode_journal_page(1, 1, fits), 1, 1) or []) == len(fits)
    with pytest.raises(ValueError, match="do not fit"):
        encode_journal_page(1, 1, [*fits, one])
    # A first write is a MAP and a DEAD record: 38 bytes, 107 of them per format 1 page.
    first_write = encode_record(MapRecord(1, 2, 3)) + encode_record(DeadRecord(4, 1, 0, 3))
    assert len(first_write) == 38
    assert JOURNAL_CAPACITY // len(first_write) == 107


# -- geometry --------------------------------------------------------------------------


def check_plan(device: int, options: FormatOptions) -> Geometry:
    g = Geometry.plan(device, options)
    cs = options.chunk_size
    regions = [
        (0, 2 * PAGE),  # superblock copies A and B
        (g.snapshot_table, g.snapshot_table_pages * PAGE),
        (g.journal, g.journal_pages * PAGE),
        (g.forward_map, g.map_pages * PAGE),
        (g.chunk_table, g.table_pages * PAGE),
        (g.data, g.pool_chunks * cs),
    ]
    end = 0
    for start, size in regions:
        assert start % PAGE == 0
        assert start >= end  # in order, no overlap
        end = start + size
    assert g.snapshot_table == 2 * PAGE
    assert g.journal == g.snapshot_table + g.snapshot_table_pages * PAGE
    assert g.forward_map == g.journal + g.journal_pages * PAGE
    assert g.chunk_table == g.forward_map + g.map_pages * PAGE
    assert g.data % cs == 0
    assert g.data - (g.chunk_table + g.table_pages * PAGE) < cs  # only alignment padding
    assert g.data + g.pool_chunks * cs <= device
    assert g.snapshot_table_pages * SLOTS_PER_PAGE >= options.max_snapshots
    assert g.map_pages * MAP_PER_PAGE >= g.volume_chunks
    assert g.table_pages * TABLE_PER_PAGE >= g.pool_chunks
    reserve = g.pool_chunks - g.volume_chunks
    assert g.reserve_chunks == reserve
    assert reserve == max(1, -(-g.pool_chunks * options.reserve_percent // 100))
    assert g.volume_chunks > 0
    estimate = device // cs * 24 // PAGE
    assert g.journal_pages == min(16384, max(128, estimate))
    assert (g.block_size, g.chunk_size, g.max_snapshots) == (
        options.block_size,
        cs,
        options.max_snapshots,
    )
    return g


def test_plan_of_one_gib_with_defaults() -> None:
    g = check_plan(1 << 30, FormatOptions())
    assert g.snapshot_table_pages == 133  # 4096 slots / 31 per page
    assert g.journal_pages == 1536  # 262144 chunks x 24 bytes / 4096
    assert g.journal == 2 * PAGE + 133 * PAGE
    assert g.chunk_offset(0) == g.data
    assert g.chunk_offset(5) == g.data + 5 * 4096
    assert g.metadata_bytes == g.data
    # 20 % of the pool is the snapshot reserve; the rest is the volume.
    assert 0.199 < g.reserve_chunks / g.pool_chunks <= 0.201
    assert g.data + g.pool_chunks * 4096 > (1 << 30) - 128 * 4096  # little waste


@given(
    device=st.integers(min_value=2 << 20, max_value=1 << 44).map(lambda n: n // 4096 * 4096),
    reserve=st.integers(min_value=1, max_value=90),
    chunk_shift=st.integers(min_value=12, max_value=20),
    max_snapshots=st.integers(min_value=16, max_value=65536),
)
def test_plan_invariants(device: int, reserve: int, chunk_shift: int, max_snapshots: int) -> None:
    options = FormatOptions(
        reserve_percent=reserve, chunk_size=1 << chunk_shift, max_snapshots=max_snapshots
    )
    try:
        check_plan(device, options)
    except VolumeError as exc:
        assert "too small" in str(exc)


@pytest.mark.parametrize("device", [0, 4096, 1 << 20, 1_064_960])
def test_plan_refuses_a_device_too_small(device: int) -> None:
    with pytest.raises(VolumeError, match=f"a {device}-byte device is too small"):
        Geometry.plan(device, FormatOptions())


def test_plan_smallest_volume() -> None:
    # Two superblocks + 133 slot pages + 128 journal pages + a map and a table page = 265
    # pages of metadata; 4 KiB chunks after them. The first size that plans a volume:
    smallest = next(size for size in range(1 << 20, 2 << 20, 4096) if _plans(size, FormatOptions()))
    g = check_plan(smallest, FormatOptions())
    assert g.data == 265 * PAGE
    assert (g.volume_chunks, g.pool_chunks) == (1, 2)


def _plans(size: int, options: FormatOptions) -> bool:
    try:
        Geometry.plan(size, options)
    except VolumeError:
        return False
    return True


def test_plan_refuses_more_chunks_than_32_bits() -> None:
    with pytest.raises(VolumeError, match="use a larger --chunk-size"):
        Geometry.plan(1 << 45, FormatOptions(chunk_size=4096))


def test_struct_sizes_match_the_document() -> None:
    # Field widths as docs/volume-format.md tabulates them.
    assert struct.calcsize("<8sIQ16sdIIQQIIQQQQQQIIIIBBBIHB40s64sI108sB") == 367
    assert len(SLOT_BYTES) == 128
