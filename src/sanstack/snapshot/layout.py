"""The snapshot volume's on-disk format: geometry, superblock, tables and journal blocks.

docs/volume-format.md is the prose version of this module; the two change together. Every
integer is little-endian; every metadata unit is a 4 KiB page ending in a CRC32C, so a page
is written with one write and a torn or foreign page is detected, never trusted. A page of
all zero bytes is valid and means "never written" (a sparse file reads as such): the
encodings are chosen so zero is the default of every entry.

Pure codec (sans-IO): bytes in, dataclasses out, and back.
"""

from __future__ import annotations

import struct
import uuid as uuid_module
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Final

from sanstack.iscsi.digest import crc32c
from sanstack.snapshot.model import (
    FormatOptions,
    Holder,
    NotAVolume,
    OnFull,
    Schedule,
    SpacePolicy,
    VolumeError,
)

PAGE: Final = 4096
MAGIC: Final = b"SANSTKVL"
VERSION: Final = 2
VERSIONS: Final = (1, 2)  # format 1 is read only to upgrade it (snapshot/recovery.py)
UNMAPPED: Final = 0xFFFFFFFF  # a forward-map chunk number meaning "reads as zeroes"
HOME: Final = 0  # the on-disk p_enc of a chunk at its home location (p == v)
SUPERBLOCK_COPIES: Final = 2
SNAPSHOT_SLOT: Final = 128
MAP_ENTRY: Final = 8
TABLE_ENTRY: Final = 16
PAGE_TRAILER: Final = 8  # crc32c u32 + page number u32
MAP_PER_PAGE: Final = (PAGE - PAGE_TRAILER) // MAP_ENTRY  # 511
TABLE_PER_PAGE: Final = (PAGE - PAGE_TRAILER) // TABLE_ENTRY  # 255
SLOTS_PER_PAGE: Final = (PAGE - PAGE_TRAILER) // SNAPSHOT_SLOT  # 31
JOURNAL_HEADER: Final = 24
MAX_JOURNAL_PAGES: Final = 16384
MAX_CHUNKS: Final = 0xFFFFFFF0

_U32 = struct.Struct("<I")
_MAP = struct.Struct("<II")
_TABLE = struct.Struct("<IIII")
_TRAILER = struct.Struct("<II")


def _seal(page: bytearray, number: int) -> bytes:
    """Fill a page's trailer: its number (a page at the wrong place fails) and CRC32C."""
    _U32.pack_into(page, PAGE - 4, number)
    _U32.pack_into(page, PAGE - 8, 0)
    _U32.pack_into(page, PAGE - 8, crc32c(page))
    return bytes(page)


def _check(page: bytes | memoryview, number: int, what: str) -> bool:
    """True for a valid sealed page, False for an all-zero one; raise for anything else."""
    if len(page) != PAGE:
        raise NotAVolume(f"{what} page {number} is {len(page)} bytes, not {PAGE}")
    crc, stored_number = _TRAILER.unpack_from(page, PAGE - 8)
    if crc == 0 and stored_number == 0 and not any(page):
        return False
    body = bytearray(page)
    _U32.pack_into(body, PAGE - 8, 0)
    if crc32c(body) != crc or stored_number != number:
        raise NotAVolume(f"{what} page {number} fails its CRC32C (torn or foreign data)")
    return True


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where everything lives, in bytes from the start of the base device.

    ``volume_chunks`` (N) chunks are presented as the volume; the pool has
    ``pool_chunks`` (P = N + reserve) so every chunk of the volume can be rewritten once
    while the snapshots keep the old one: the reserve is the snapshot area.
    """

    block_size: int
    chunk_size: int
    volume_chunks: int
    pool_chunks: int
    max_snapshots: int
    journal_pages: int
    snapshot_table: int
    journal: int
    forward_map: int
    chunk_table: int
    data: int

    @property
    def reserve_chunks(self) -> int:
        return self.pool_chunks - self.volume_chunks

    @property
    def snapshot_table_pages(self) -> int:
        return -(-self.max_snapshots // SLOTS_PER_PAGE)

    @property
    def map_pages(self) -> int:
        return -(-self.volume_chunks // MAP_PER_PAGE)

    @property
    def table_pages(self) -> int:
        return -(-self.pool_chunks // TABLE_PER_PAGE)

    @property
    def metadata_bytes(self) -> int:
        return self.data

    def chunk_offset(self, p: int) -> int:
        return self.data + p * self.chunk_size

    @classmethod
    def plan(cls, device_bytes: int, options: FormatOptions) -> Geometry:
        """Lay out a device: metadata first, then the pool of chunks, reserve by policy."""
        cs = options.chunk_size
        slots_pages = -(-options.max_snapshots // SLOTS_PER_PAGE)
        # About the size of the maps (at least 512 KiB, at most 64 MiB): a checkpoint,
        # every half ring, then rewrites the changed map pages at most once per ~68 first
        # writes per page of journal (136 first writes fit a page).
        estimate = device_bytes // cs * (MAP_ENTRY + TABLE_ENTRY) // PAGE
        journal_pages = min(MAX_JOURNAL_PAGES, max(128, estimate))
        fixed = (SUPERBLOCK_COPIES + slots_pages + journal_pages) * PAGE
        # Each pool chunk costs its data plus at most one map and one table entry.
        per_chunk = cs + MAP_ENTRY + TABLE_ENTRY
        pool = max(0, (device_bytes - fixed - 2 * PAGE - cs) // per_chunk)
        while pool > 0:
            reserve = max(1, -(-pool * options.reserve_percent // 100))
            volume = pool - reserve
            map_pages = -(-volume // MAP_PER_PAGE)
            table_pages = -(-pool // TABLE_PER_PAGE)
            meta = fixed + (map_pages + table_pages) * PAGE
            data = -(-meta // cs) * cs
            if volume > 0 and data + pool * cs <= device_bytes:
                break
            pool -= 1
        else:
            raise VolumeError(f"a {device_bytes}-byte device is too small for a volume")
        if pool > MAX_CHUNKS:
            raise VolumeError(
                f"the device needs {pool} chunks of {cs} bytes; use a larger --chunk-size"
            )
        snapshot_table = SUPERBLOCK_COPIES * PAGE
        journal = snapshot_table + slots_pages * PAGE
        forward_map = journal + journal_pages * PAGE
        chunk_table = forward_map + map_pages * PAGE
        return cls(
            block_size=options.block_size,
            chunk_size=cs,
            volume_chunks=volume,
            pool_chunks=pool,
            max_snapshots=options.max_snapshots,
            journal_pages=journal_pages,
            snapshot_table=snapshot_table,
            journal=journal,
            forward_map=forward_map,
            chunk_table=chunk_table,
            data=data,
        )


# -- superblock ------------------------------------------------------------------------

_SB = struct.Struct(
    "<8sI"  # magic, version
    "Q16sd"  # generation, uuid, created
    "IIQQI"  # block_size, chunk_size, volume_chunks, pool_chunks, max_snapshots
    "IQQQQQ"  # journal_pages, snapshot_table, journal, forward_map, chunk_table, data
    "QII"  # journal_tail_seq, epoch, next_snapshot_id
    "II"  # restore_snapshot_id, restore_epoch
    "BBB"  # policy: warn, delete, on_full
    "IHB40s"  # schedule: interval (0 = none), keep, weight, prefix
    "64sI108s"  # holder: host, pid, control
    "B"  # clean: closed without pending work
)
_ON_FULL = (OnFull.DELETE, OnFull.FAIL_WRITES)


@dataclass(frozen=True, slots=True)
class Superblock:
    """Block 0 and block 1 hold two copies; the valid one with the higher generation wins.

    The superblock is rewritten only at a checkpoint, at open and at close; everything in
    between is in the journal, replayed from ``journal_tail_seq``.
    """

    geometry: Geometry
    uuid: bytes
    created: float
    generation: int = 0
    # A page boundary: journal writes start on a block of any base device (<= 4 KiB).
    journal_tail_seq: int = 8
    epoch: int = 1
    next_snapshot_id: int = 1
    restore_snapshot_id: int = 0
    restore_epoch: int = 0
    policy: SpacePolicy = field(default_factory=SpacePolicy)
    schedule: Schedule | None = None
    holder: Holder | None = None
    clean: bool = True
    version: int = VERSION

    @classmethod
    def new(cls, geometry: Geometry, created: float) -> Superblock:
        return cls(geometry=geometry, uuid=uuid_module.uuid4().bytes, created=created)

    @property
    def uuid_text(self) -> str:
        return str(uuid_module.UUID(bytes=self.uuid))

    def encode(self) -> bytes:
        g = self.geometry
        s = self.schedule
        h = self.holder
        body = _SB.pack(
            MAGIC,
            self.version,
            self.generation,
            self.uuid,
            self.created,
            g.block_size,
            g.chunk_size,
            g.volume_chunks,
            g.pool_chunks,
            g.max_snapshots,
            g.journal_pages,
            g.snapshot_table,
            g.journal,
            g.forward_map,
            g.chunk_table,
            g.data,
            self.journal_tail_seq,
            self.epoch,
            self.next_snapshot_id,
            self.restore_snapshot_id,
            self.restore_epoch,
            self.policy.warn_percent,
            self.policy.delete_percent,
            _ON_FULL.index(self.policy.on_full),
            s.interval if s else 0,
            s.keep if s else 0,
            s.weight if s else 0,
            (s.prefix if s else "").encode(),
            (h.host if h else "").encode()[:64],
            h.pid if h else 0,
            (h.control if h else "").encode()[:108],
            int(self.clean),
        )
        page = bytearray(PAGE)
        page[: len(body)] = body
        return _seal(page, 0)

    @classmethod
    def decode(cls, page: bytes | memoryview) -> Superblock:
        if bytes(page[:8]) != MAGIC:
            raise NotAVolume("no sanstack volume here (superblock magic missing)")
        if not _check(page, 0, "superblock"):
            raise NotAVolume("no sanstack volume here (empty superblock)")
        (
            _magic,
            version,
            generation,
            uuid,
            created,
            block_size,
            chunk_size,
            volume_chunks,
            pool_chunks,
            max_snapshots,
            journal_pages,
            snapshot_table,
            journal,
            forward_map,
            chunk_table,
            data,
            tail,
            epoch,
            next_id,
            restore_id,
            restore_epoch,
            warn,
            delete,
            on_full,
            interval,
            keep,
            weight,
            prefix,
            host,
            pid,
            control,
            clean,
        ) = _SB.unpack_from(page)
        if version not in VERSIONS:
            raise NotAVolume(f"volume format version {version} is not supported (only 1 and 2)")
        geometry = Geometry(
            block_size=block_size,
            chunk_size=chunk_size,
            volume_chunks=volume_chunks,
            pool_chunks=pool_chunks,
            max_snapshots=max_snapshots,
            journal_pages=journal_pages,
            snapshot_table=snapshot_table,
            journal=journal,
            forward_map=forward_map,
            chunk_table=chunk_table,
            data=data,
        )
        host_text = host.rstrip(b"\0").decode(errors="replace")
        return cls(
            geometry=geometry,
            uuid=uuid,
            created=created,
            generation=generation,
            journal_tail_seq=tail,
            epoch=epoch,
            next_snapshot_id=next_id,
            restore_snapshot_id=restore_id,
            restore_epoch=restore_epoch,
            policy=SpacePolicy(warn, delete, _ON_FULL[min(on_full, 1)]),
            schedule=(
                Schedule(interval, keep, weight, prefix.rstrip(b"\0").decode())
                if interval
                else None
            ),
            holder=(
                Holder(host_text, pid, control.rstrip(b"\0").decode(errors="replace"))
                if pid
                else None
            ),
            clean=bool(clean),
            version=version,
        )

    def next_generation(self, **changes: object) -> Superblock:
        return replace(self, generation=self.generation + 1, **changes)  # type: ignore[arg-type]


def newest_superblock(pages: list[bytes | memoryview]) -> Superblock:
    """The valid copy with the highest generation; the error of the first if none is valid."""
    found: list[Superblock] = []
    first_error: NotAVolume | None = None
    for page in pages:
        try:
            found.append(Superblock.decode(page))
        except NotAVolume as exc:
            first_error = first_error or exc
    if not found:
        assert first_error is not None
        raise first_error
    return max(found, key=lambda sb: sb.generation)


# -- snapshot table --------------------------------------------------------------------


class SnapshotFlag(IntEnum):
    KEEP = 0x01
    DELETING = 0x02  # deleted by the operator, still held by a reader
    SCHEDULED = 0x04


_SLOT = struct.Struct("<IIdBBB63sQ")


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """One slot of the snapshot table; ``id == 0`` is an empty slot.

    A snapshot taken at ``epoch`` sees every chunk version born at or before ``epoch``
    and still alive after it.
    """

    slot: int
    id: int
    epoch: int
    created: float
    weight: int
    flags: int
    name: str

    @property
    def keep(self) -> bool:
        return bool(self.flags & SnapshotFlag.KEEP)

    @property
    def deleting(self) -> bool:
        return bool(self.flags & SnapshotFlag.DELETING)

    @property
    def scheduled(self) -> bool:
        return bool(self.flags & SnapshotFlag.SCHEDULED)

    def encode(self) -> bytes:
        name = self.name.encode()
        return _SLOT.pack(
            self.id, self.epoch, self.created, self.weight, self.flags, len(name), name, 0
        ).ljust(SNAPSHOT_SLOT, b"\0")

    @classmethod
    def decode(cls, slot: int, data: bytes | memoryview) -> SnapshotRecord:
        sid, epoch, created, weight, flags, name_len, name, _ = _SLOT.unpack_from(data)
        return cls(slot, sid, epoch, created, weight, flags, name[:name_len].decode())

    @classmethod
    def empty(cls, slot: int) -> SnapshotRecord:
        return cls(slot, 0, 0, 0.0, 0, 0, "")


def encode_slot_page(records: list[SnapshotRecord], number: int) -> bytes:
    page = bytearray(PAGE)
    for i, record in enumerate(records):
        page[i * SNAPSHOT_SLOT : (i + 1) * SNAPSHOT_SLOT] = record.encode()
    return _seal(page, number)


def decode_slot_page(page: bytes | memoryview, number: int) -> list[SnapshotRecord]:
    """The snapshots (non-empty slots) of snapshot-table page ``number``."""
    if not _check(page, number, "snapshot table"):
        return []
    out = []
    for i in range(SLOTS_PER_PAGE):
        record = SnapshotRecord.decode(
            number * SLOTS_PER_PAGE + i, page[i * SNAPSHOT_SLOT : (i + 1) * SNAPSHOT_SLOT]
        )
        if record.id:
            out.append(record)
    return out


# -- forward map and chunk table pages -------------------------------------------------


def encode_map_page(entries: list[tuple[int, int]], number: int) -> bytes:
    """Forward-map page: (p_enc, birth) per volume chunk; p_enc 0 = home, ~0 = unmapped."""
    page = bytearray(PAGE)
    for i, (p_enc, birth) in enumerate(entries):
        _MAP.pack_into(page, i * MAP_ENTRY, p_enc, birth)
    return _seal(page, number)


def decode_map_page(page: bytes | memoryview, number: int) -> list[tuple[int, int]] | None:
    """The page's entries, or None for a never-written page (every chunk home, birth 0)."""
    if not _check(page, number, "forward map"):
        return None
    return list(_MAP.iter_unpack(bytes(page[: MAP_PER_PAGE * MAP_ENTRY])))


def encode_table_page(entries: list[tuple[int, int, int]], number: int) -> bytes:
    """Chunk-table page: (v_enc, birth, death) per pool chunk; v_enc 0 = no dead version."""
    page = bytearray(PAGE)
    for i, (v_enc, birth, death) in enumerate(entries):
        _TABLE.pack_into(page, i * TABLE_ENTRY, v_enc, birth, death, 0)
    return _seal(page, number)


def decode_table_page(page: bytes | memoryview, number: int) -> list[tuple[int, int, int]] | None:
    if not _check(page, number, "chunk table"):
        return None
    return [
        (v_enc, birth, death)
        for v_enc, birth, death, _ in _TABLE.iter_unpack(
            bytes(page[: TABLE_PER_PAGE * TABLE_ENTRY])
        )
    ]


# -- journal ---------------------------------------------------------------------------


class RecordType(IntEnum):
    """Journal records: each sets state absolutely, so replaying one twice is harmless."""

    MAP = 1  # v, p, birth: volume chunk v now lives in pool chunk p (UNMAPPED: zeroes)
    DEAD = 2  # p, v, birth, death: pool chunk p keeps v's version born..died for snapshots
    SNAPSHOT = 3  # slot + 128-byte slot image (id 0 clears the slot)
    EPOCH = 4  # epoch, next_snapshot_id
    RESTORE = 5  # snapshot id, restore epoch (0, 0: no restore running)
    SETTINGS = 6  # policy and schedule
    MARK = 7  # proven_seq: every journal unit before it, and its data, survived a FLUSH


_REC_HEAD = struct.Struct("<BH")
_J_HEAD = struct.Struct("<4sIQIHH")  # magic, crc, seq, page, count, bytes
J_MAGIC: Final = b"SJNL"
_MAP_REC = struct.Struct("<IIII")  # format 2: v, p, birth, CRC32C of the chunk
_MAP_REC_V1 = struct.Struct("<III")
_MARK_REC = struct.Struct("<Q")
_DEAD_REC = struct.Struct("<IIII")
_SLOT_REC = struct.Struct("<I")
_EPOCH_REC = struct.Struct("<II")
_RESTORE_REC = struct.Struct("<II")
_SETTINGS_REC = struct.Struct("<BBBIHB40s")


@dataclass(frozen=True, slots=True)
class MapRecord:
    v: int
    p: int
    birth: int
    crc: int = 0  # CRC32C of the whole chunk p holds (0 for UNMAPPED, and in format 1)


@dataclass(frozen=True, slots=True)
class DeadRecord:
    p: int
    v: int
    birth: int
    death: int


@dataclass(frozen=True, slots=True)
class SnapshotSlotRecord:
    record: SnapshotRecord


@dataclass(frozen=True, slots=True)
class EpochRecord:
    epoch: int
    next_snapshot_id: int


@dataclass(frozen=True, slots=True)
class RestoreRecord:
    snapshot_id: int
    restore_epoch: int


@dataclass(frozen=True, slots=True)
class SettingsRecord:
    policy: SpacePolicy
    schedule: Schedule | None


@dataclass(frozen=True, slots=True)
class MarkRecord:
    """Written after a FLUSH completed: journal units below ``proven_seq`` (with the data
    their MAP records name) are on the medium. Its mere presence proves that FLUSH ended."""

    proven_seq: int


Record = (
    MapRecord
    | DeadRecord
    | SnapshotSlotRecord
    | EpochRecord
    | RestoreRecord
    | SettingsRecord
    | MarkRecord
)


def encode_record(record: Record) -> bytes:
    if isinstance(record, MapRecord):
        kind = RecordType.MAP
        body = _MAP_REC.pack(record.v, record.p, record.birth, record.crc)
    elif isinstance(record, MarkRecord):
        kind, body = RecordType.MARK, _MARK_REC.pack(record.proven_seq)
    elif isinstance(record, DeadRecord):
        kind = RecordType.DEAD
        body = _DEAD_REC.pack(record.p, record.v, record.birth, record.death)
    elif isinstance(record, SnapshotSlotRecord):
        kind = RecordType.SNAPSHOT
        body = _SLOT_REC.pack(record.record.slot) + record.record.encode()
    elif isinstance(record, EpochRecord):
        kind, body = RecordType.EPOCH, _EPOCH_REC.pack(record.epoch, record.next_snapshot_id)
    elif isinstance(record, RestoreRecord):
        kind = RecordType.RESTORE
        body = _RESTORE_REC.pack(record.snapshot_id, record.restore_epoch)
    else:
        p, s = record.policy, record.schedule
        kind = RecordType.SETTINGS
        body = _SETTINGS_REC.pack(
            p.warn_percent,
            p.delete_percent,
            _ON_FULL.index(p.on_full),
            s.interval if s else 0,
            s.keep if s else 0,
            s.weight if s else 0,
            (s.prefix if s else "").encode(),
        )
    return _REC_HEAD.pack(kind, len(body)) + body


def decode_record(kind: int, body: bytes) -> Record:
    if kind == RecordType.MAP:
        if len(body) == _MAP_REC_V1.size:
            return MapRecord(*_MAP_REC_V1.unpack(body))
        return MapRecord(*_MAP_REC.unpack(body))
    if kind == RecordType.MARK:
        return MarkRecord(*_MARK_REC.unpack(body))
    if kind == RecordType.DEAD:
        return DeadRecord(*_DEAD_REC.unpack(body))
    if kind == RecordType.SNAPSHOT:
        (slot,) = _SLOT_REC.unpack_from(body)
        return SnapshotSlotRecord(SnapshotRecord.decode(slot, body[4:]))
    if kind == RecordType.EPOCH:
        return EpochRecord(*_EPOCH_REC.unpack(body))
    if kind == RecordType.RESTORE:
        return RestoreRecord(*_RESTORE_REC.unpack(body))
    if kind == RecordType.SETTINGS:
        warn, delete, on_full, interval, keep, weight, prefix = _SETTINGS_REC.unpack(body)
        schedule = (
            Schedule(interval, keep, weight, prefix.rstrip(b"\0").decode()) if interval else None
        )
        return SettingsRecord(SpacePolicy(warn, delete, _ON_FULL[min(on_full, 1)]), schedule)
    raise NotAVolume(f"journal record type {kind} is unknown")


JOURNAL_CAPACITY: Final = PAGE - JOURNAL_HEADER


def encode_journal_page(seq: int, page_number: int, records: list[bytes]) -> bytes:
    """One journal page: header (magic, CRC32C, sequence, page, count, length), records."""
    body = b"".join(records)
    if len(body) > JOURNAL_CAPACITY:
        raise ValueError(f"{len(body)} bytes of records do not fit a journal page")
    page = bytearray(PAGE)
    page[JOURNAL_HEADER : JOURNAL_HEADER + len(body)] = body
    _J_HEAD.pack_into(page, 0, J_MAGIC, 0, seq, page_number, len(records), len(body))
    _U32.pack_into(page, 4, crc32c(page))
    return bytes(page)


def decode_journal_page(
    page: bytes | memoryview, seq: int, page_number: int
) -> list[Record] | None:
    """The records of the page if it is the valid page ``seq``; None where the log ends.

    A page from an earlier lap of the ring has an older sequence number, and a page whose
    write was cut short fails its CRC: both end the replay, and neither was acknowledged.
    """
    magic, crc, page_seq, number, count, length = _J_HEAD.unpack_from(page)
    if magic != J_MAGIC or page_seq != seq or number != page_number:
        return None
    if length > JOURNAL_CAPACITY:
        return None
    check = bytearray(page)
    _U32.pack_into(check, 4, 0)
    if crc32c(check) != crc:
        return None
    records: list[Record] = []
    offset = JOURNAL_HEADER
    end = JOURNAL_HEADER + length
    for _ in range(count):
        kind, size = _REC_HEAD.unpack_from(page, offset)
        offset += _REC_HEAD.size
        if offset + size > end:
            raise NotAVolume(f"journal page {page_number} has a record past its end")
        records.append(decode_record(kind, bytes(page[offset : offset + size])))
        offset += size
    return records
