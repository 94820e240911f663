"""The snapshot volume's metadata core: who owns every chunk, and why (sans-IO).

Model (dm-thin's block times and ZFS's birth times and deadlists, on one device):

* An *epoch* counter advances when a snapshot is taken. Every version of a volume chunk
  ``v`` lives in one pool chunk ``p`` and has a ``birth`` epoch; it dies (``death``) when a
  write replaces it. Snapshot ``s``, taken at epoch ``E``, sees the versions with
  ``birth <= E < death``.
* The forward map holds each chunk's live version ``(p, birth)``. A write to a chunk born
  after the newest snapshot goes in place: one write, no metadata. Otherwise (the chunk is
  shared with a snapshot) the data goes to a free chunk and the old version is recorded as
  dead in the chunk table (``p -> v, birth, death``): one data write plus a share of one
  journal page, whatever the number of snapshots.
* A dead version is *owned* by its newest viewer, the newest snapshot that sees it. Deleting
  a snapshot hands each owned version to the next older viewer or frees it, so a delete
  costs what that snapshot owns, never the volume size.
* Free space is not stored: a pool chunk is free when it is neither live nor seen by a
  snapshot. Open finds it by classifying the chunk table, page by page, against the
  snapshot list *as it is at that moment*; a delete during that scan changes the list,
  and every page classified after it sees the change (KB829440's race has no window here:
  the scan and the delete are steps of one owner, never concurrent).

A freed chunk is not reused at once: it waits until the record that freed it is in the
journal (``mark_durable``) and until every I/O that started before the free has finished
(``io_begin``/``io_end``), so no reader can see a chunk's new owner's data.
"""

from __future__ import annotations

import bisect
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import IntEnum

from sanstack.block.device import LBAExtent, ProvisioningStatus
from sanstack.snapshot.layout import (
    MAP_PER_PAGE,
    SLOTS_PER_PAGE,
    TABLE_PER_PAGE,
    UNMAPPED,
    DeadRecord,
    EpochRecord,
    MapRecord,
    MarkRecord,
    Record,
    RestoreRecord,
    SettingsRecord,
    SnapshotFlag,
    SnapshotRecord,
    SnapshotSlotRecord,
    Superblock,
    decode_map_page,
    decode_slot_page,
    decode_table_page,
)
from sanstack.snapshot.model import (
    Schedule,
    SnapshotExists,
    SnapshotInfo,
    SnapshotNotFound,
    SnapshotRefused,
    SpacePolicy,
    VolumeBusy,
    check_snapshot_name,
)


def _provisioning(p: int) -> ProvisioningStatus:
    return ProvisioningStatus.DEALLOCATED if p == UNMAPPED else ProvisioningStatus.MAPPED


class Chunk(IntEnum):
    """What a pool chunk holds (one byte per chunk in memory)."""

    UNKNOWN = 0  # not classified yet (the free-space scan has not reached it)
    FREE = 1
    LIVE = 2  # the volume's current version of some chunk
    DEAD = 3  # an old version some snapshot still sees
    PENDING = 4  # freed, waiting for its journal record and for older I/O to finish


class WriteKind(IntEnum):
    IN_PLACE = 1  # exclusive to the volume: overwrite p
    REDIRECT = 2  # shared, unmapped or not yet restored: write a fresh chunk


@dataclass(frozen=True, slots=True)
class WritePlan:
    kind: WriteKind
    p: int  # the chunk to overwrite (IN_PLACE) or to fill the rest of the chunk from
    #        (REDIRECT; UNMAPPED means zeroes)


class VolumeState:
    """All metadata of one open volume, and every decision about it."""

    def __init__(self, superblock: Superblock) -> None:
        g = superblock.geometry
        self.superblock = superblock
        self.geometry = g
        self.n = g.volume_chunks
        self.pool = g.pool_chunks
        self.epoch = superblock.epoch
        self.next_snapshot_id = superblock.next_snapshot_id
        self.restore_snapshot_id = superblock.restore_snapshot_id
        self.restore_epoch = superblock.restore_epoch
        self.policy = superblock.policy
        self.schedule = superblock.schedule
        self.map_p = array("I", range(self.n))
        self.map_birth = array("I", bytes(4 * self.n))
        self.dead_v = array("I", bytes(4 * self.pool))  # v + 1, 0 = no dead version
        self.dead_birth = array("I", bytes(4 * self.pool))
        self.dead_death = array("I", bytes(4 * self.pool))
        self.chunk = bytearray(self.pool)
        self.snapshots: dict[int, SnapshotRecord] = {}  # by id
        self._by_name: dict[str, int] = {}
        self._epochs: list[int] = []  # of every snapshot still protecting data, sorted
        self._epoch_owner: dict[int, int] = {}  # epoch -> snapshot id
        self.versions: dict[int, list[int]] = {}  # v -> dead chunks, in birth order
        self.owned: dict[int, set[int]] = {}  # snapshot id -> dead chunks it is newest for
        # Oldest first: the scan finds free chunks in pool order, so a run of first writes
        # lands in ascending, contiguous chunks that later reads and writes coalesce.
        self.free: deque[int] = deque()
        self.live_count = 0
        self.dead_count = 0
        self.pending_count = 0
        self._replayed: set[int] = set()  # chunk-table entries newer than the disk page
        self.scan_next_page = 0
        self.scan_done = False
        self._reclaim: deque[int] = deque()
        self.reclaim_total = 0  # versions queued since the reclaim queue was last empty
        self.holds: dict[int, int] = {}  # snapshot id -> readers (and a running restore)
        # Durability and grace bookkeeping for freed chunks.
        self.emitted = 0
        self.durable = 0
        self.flushed = 0
        # Records up to ``proven`` are behind a MARK that is itself on the medium: replay
        # never checks their data again, so their chunks may be overwritten or reused.
        self.proven = 0
        self._unproven: dict[int, int] = {}  # v -> its MAP record, until proven
        self._unproven_order: deque[tuple[int, int]] = deque()
        # Epochs of deleted snapshots whose delete is not flushed yet: a lost delete
        # brings the snapshot back, so its chunks must not be overwritten in place.
        self._fading: list[tuple[int, int]] = []  # (delete record, epoch)
        self.flush_needed = True  # the base device has a volatile write cache
        self._io_gen = 0
        self._io_in_flight: dict[int, int] = {}
        self._pending: deque[tuple[int, int, list[int]]] = deque()
        self._pending_now: list[int] = []
        self.dirty_map: set[int] = set()
        self.dirty_table: set[int] = set()
        self.dirty_slots: set[int] = set()
        self.restore_total = 0
        self.restore_done = 0  # chunks the merge copied back since this volume was opened

    # -- loading ----------------------------------------------------------------------

    def load_map_page(self, number: int, page: bytes | memoryview) -> None:
        entries = decode_map_page(page, number)
        if entries is None:
            return
        base = number * MAP_PER_PAGE
        for i, (p_enc, birth) in enumerate(entries[: self.n - base]):
            v = base + i
            self.map_p[v] = v if p_enc == 0 else (UNMAPPED if p_enc == UNMAPPED else p_enc - 1)
            self.map_birth[v] = birth

    def load_snapshot_page(self, number: int, page: bytes | memoryview) -> None:
        for record in decode_slot_page(page, number):
            self._put_snapshot(record)

    def replay(self, record: Record) -> None:
        """Apply one journal record found at open (before ``start``)."""
        self._apply(record)
        if isinstance(record, DeadRecord):
            self._replayed.add(record.p)

    def start(self) -> None:
        """After loading and replay: mark live chunks; the free-space scan comes next."""
        chunk = self.chunk
        for p in self.map_p:
            if p != UNMAPPED:
                chunk[p] = Chunk.LIVE
        self.live_count = self.n - self.map_p.count(UNMAPPED)
        if self.restore_snapshot_id:
            self._hold(self.restore_snapshot_id)
            self.restore_total = sum(1 for v in range(self.n) if self.unrestored(v))

    def _apply(self, record: Record) -> None:
        if isinstance(record, MapRecord):
            self.map_p[record.v] = record.p
            self.map_birth[record.v] = record.birth
            self.dirty_map.add(record.v // MAP_PER_PAGE)
        elif isinstance(record, DeadRecord):
            p = record.p
            self.dead_v[p] = record.v + 1
            self.dead_birth[p] = record.birth
            self.dead_death[p] = record.death
            self.dirty_table.add(p // TABLE_PER_PAGE)
        elif isinstance(record, SnapshotSlotRecord):
            self._put_snapshot(record.record)
        elif isinstance(record, EpochRecord):
            self.epoch = record.epoch
            self.next_snapshot_id = record.next_snapshot_id
        elif isinstance(record, RestoreRecord):
            self.restore_snapshot_id = record.snapshot_id
            self.restore_epoch = record.restore_epoch
        elif isinstance(record, MarkRecord):
            pass  # the journal's, read by replay
        else:
            self.policy = record.policy
            self.schedule = record.schedule

    def _put_snapshot(self, record: SnapshotRecord) -> None:
        self.dirty_slots.add(record.slot // SLOTS_PER_PAGE)
        old = next((s for s in self.snapshots.values() if s.slot == record.slot), None)
        if old is not None and old.id != record.id:
            self._forget_snapshot(old)
        if record.id == 0:
            return
        if record.id not in self.snapshots:
            bisect.insort(self._epochs, record.epoch)
            self._epoch_owner[record.epoch] = record.id
        self.snapshots[record.id] = record
        self._by_name[record.name] = record.id

    def _forget_snapshot(self, record: SnapshotRecord) -> None:
        del self.snapshots[record.id]
        if self._by_name.get(record.name) == record.id:
            del self._by_name[record.name]
        i = bisect.bisect_left(self._epochs, record.epoch)
        if i < len(self._epochs) and self._epochs[i] == record.epoch:
            del self._epochs[i]
        self._epoch_owner.pop(record.epoch, None)

    # -- records ----------------------------------------------------------------------

    def _emit(self, out: list[Record], record: Record) -> None:
        self._apply(record)
        out.append(record)

    def records_emitted(self, count: int) -> int:
        """The edge tells how many records it queued; returns the last record number."""
        self.emitted += count
        return self.emitted

    # -- free-space scan --------------------------------------------------------------

    def scan_page(self, number: int, page: bytes | memoryview) -> None:
        """Classify the pool chunks of chunk-table page ``number`` (read from disk now)."""
        entries = decode_table_page(page, number)
        base = number * TABLE_PER_PAGE
        end = min(base + TABLE_PER_PAGE, self.pool)
        chunk = self.chunk
        for p in range(base, end):
            if chunk[p] != Chunk.UNKNOWN:
                continue
            if entries is not None and p not in self._replayed:
                v_enc, birth, death = entries[p - base]
                self.dead_v[p] = v_enc
                self.dead_birth[p] = birth
                self.dead_death[p] = death
            self._classify(p)
        self.scan_next_page = number + 1
        if self.scan_next_page >= self.geometry.table_pages:
            self.scan_done = True
            self._replayed.clear()

    def _classify(self, p: int) -> None:
        v_enc = self.dead_v[p]
        owner = self._newest_viewer(self.dead_birth[p], self.dead_death[p]) if v_enc else None
        if owner is None:
            self.chunk[p] = Chunk.FREE
            self.free.append(p)
            return
        self.chunk[p] = Chunk.DEAD
        self.dead_count += 1
        self._add_version(v_enc - 1, p)
        self.owned.setdefault(owner, set()).add(p)

    def _newest_viewer(self, birth: int, death: int) -> int | None:
        """The id of the newest snapshot seeing a version born..died, if any."""
        i = bisect.bisect_left(self._epochs, death) - 1
        if i >= 0 and self._epochs[i] >= birth:
            return self._epoch_owner[self._epochs[i]]
        return None

    def _add_version(self, v: int, p: int) -> None:
        # A write appends (births only grow); the scan inserts in pool order.
        chain = self.versions.setdefault(v, [])
        birth = self.dead_birth
        if not chain or birth[chain[-1]] <= birth[p]:
            chain.append(p)
        else:
            bisect.insort(chain, p, key=birth.__getitem__)

    def _drop_version(self, p: int) -> None:
        v = self.dead_v[p] - 1
        chain = self.versions.get(v)
        if chain is not None:
            chain.remove(p)
            if not chain:
                del self.versions[v]

    # -- reading ----------------------------------------------------------------------

    def snapshot_chunk(self, epoch: int, v: int) -> int:
        """The pool chunk holding ``v`` as snapshot ``epoch`` saw it (UNMAPPED: zeroes)."""
        if self.map_birth[v] <= epoch:
            return self.map_p[v]
        chain = self.versions.get(v)
        if not chain:
            return UNMAPPED
        i = bisect.bisect_right(chain, epoch, key=self.dead_birth.__getitem__) - 1
        if i < 0:
            return UNMAPPED
        p = chain[i]
        return p if epoch < self.dead_death[p] else UNMAPPED

    def unrestored(self, v: int) -> bool:
        """During a restore: does ``v`` still hold data newer than the restored snapshot?"""
        if not self.restore_snapshot_id:
            return False
        birth = self.map_birth[v]
        source = self.snapshots[self.restore_snapshot_id]
        return source.epoch < birth < self.restore_epoch

    def volume_chunk(self, v: int) -> int:
        """The pool chunk a read of the volume's ``v`` comes from."""
        if self.restore_snapshot_id and self.unrestored(v):
            return self.snapshot_chunk(self.snapshots[self.restore_snapshot_id].epoch, v)
        return self.map_p[v]

    def lba_status(
        self, chunk_of: Callable[[int], int], lba: int, max_count: int
    ) -> list[LBAExtent]:
        """GET LBA STATUS of a chunk map (``volume_chunk`` or a snapshot's): runs of mapped
        and deallocated blocks from ``lba``."""
        per = self.geometry.chunk_size // self.geometry.block_size
        end = min(self.n * per, lba + max_count)
        out: list[LBAExtent] = []
        while lba < end and len(out) < 64:
            status = _provisioning(chunk_of(lba // per))
            start = lba
            while lba < end:
                v = lba // per
                if _provisioning(chunk_of(v)) != status:
                    break
                lba = min(end, (v + 1) * per)
            out.append(LBAExtent(start, lba - start, status))
        return out

    # -- writing ----------------------------------------------------------------------

    def plan_write(self, v: int) -> WritePlan:
        if self.restore_snapshot_id and self.unrestored(v):
            source = self.snapshots[self.restore_snapshot_id].epoch
            return WritePlan(WriteKind.REDIRECT, self.snapshot_chunk(source, v))
        p = self.map_p[v]
        if p != UNMAPPED and self.map_birth[v] > self._newest_epoch() and not self.unproven(v):
            return WritePlan(WriteKind.IN_PLACE, p)  # no snapshot sees this version
        return WritePlan(WriteKind.REDIRECT, p)

    def _newest_epoch(self) -> int:
        newest = self._epochs[-1] if self._epochs else 0
        if self._fading:
            newest = max(newest, *(epoch for _, epoch in self._fading))
        return newest

    def unproven(self, v: int) -> bool:
        """Is ``v``'s chunk named by a MAP record replay would still check against its data?
        Overwritten in place, the chunk would fail that check: such writes redirect."""
        return self._unproven.get(v, 0) > self.proven

    def needs_snapshot_space(self, v: int) -> bool:
        """Would replacing ``v``'s live version keep the old one for a snapshot?"""
        p = self.map_p[v]
        return p != UNMAPPED and self._newest_viewer(self.map_birth[v], self.epoch) is not None

    def allocate(self) -> int | None:
        while self.free:
            p = self.free.popleft()
            if self.chunk[p] == Chunk.FREE:
                self.chunk[p] = Chunk.LIVE
                return p
        return None

    def release_unused(self, p: int) -> None:
        """Give back a chunk allocated for a write that failed before it was mapped."""
        self.chunk[p] = Chunk.FREE
        self.free.appendleft(p)

    def commit_write(self, v: int, new_p: int, crc: int = 0) -> list[Record]:
        """Map ``v`` to ``new_p`` (already written, its CRC32C ``crc``; or UNMAPPED) and
        retire the old one."""
        out: list[Record] = []
        old_p, old_birth = self.map_p[v], self.map_birth[v]
        self._emit(out, MapRecord(v, new_p, self.epoch, crc if new_p != UNMAPPED else 0))
        if new_p != UNMAPPED:
            self.live_count += 1
            number = self.emitted + 1  # the group goes to the journal right after this
            self._unproven[v] = number
            self._unproven_order.append((number, v))
        if old_p != UNMAPPED:
            self.live_count -= 1
            owner = self._newest_viewer(old_birth, self.epoch)
            if owner is None:
                self._free_later([old_p])
            else:
                self._emit(out, DeadRecord(old_p, v, old_birth, self.epoch))
                self.chunk[old_p] = Chunk.DEAD
                self.dead_count += 1
                self._add_version(v, old_p)
                self.owned.setdefault(owner, set()).add(old_p)
        return out

    # -- freeing with grace -----------------------------------------------------------

    def io_begin(self) -> int:
        gen = self._io_gen
        self._io_in_flight[gen] = self._io_in_flight.get(gen, 0) + 1
        return gen

    def io_end(self, gen: int) -> None:
        left = self._io_in_flight[gen] - 1
        if left:
            self._io_in_flight[gen] = left
        else:
            del self._io_in_flight[gen]

    def _free_later(self, chunks: list[int]) -> None:
        for p in chunks:
            self.chunk[p] = Chunk.PENDING
        self.pending_count += len(chunks)
        self._pending_now.extend(chunks)

    def seal_frees(self, last_record: int) -> None:
        """Tag chunks freed since the last call with the record that must be durable first."""
        if self._pending_now:
            self._pending.append((last_record, self._io_gen, self._pending_now))
            self._pending_now = []
            self._io_gen += 1

    def mark_durable(self, record: int) -> None:
        self.durable = max(self.durable, record)
        if not self.flush_needed:
            self.flushed = self.durable

    def mark_flushed(self, record: int) -> None:
        """Records up to ``record`` were in the journal before a completed device FLUSH."""
        self.flushed = max(self.flushed, min(record, self.durable))
        if self._fading:
            self._fading = [(r, e) for r, e in self._fading if r > self.flushed]

    def mark_proven(self, record: int) -> None:
        """Records up to ``record`` are behind a MARK on the medium (or in a checkpoint)."""
        self.proven = max(self.proven, min(record, self.flushed))
        order = self._unproven_order
        while order and order[0][0] <= self.proven:
            number, v = order.popleft()
            if self._unproven.get(v) == number:
                del self._unproven[v]

    def waiting_for_flush(self) -> bool:
        """Are freed chunks held back only because their free is not proven yet?"""
        return bool(self._pending) and self._pending[0][0] > self.proven

    def needs_proof(self) -> bool:
        """Are there flushed records that no MARK on the medium covers yet?"""
        return self.proven < self.flushed

    def release_pending(self) -> int:
        """Move chunks whose free is durable and older than every I/O to the free list."""
        oldest_io = min(self._io_in_flight, default=self._io_gen + 1)
        released = 0
        while self._pending:
            record, gen, chunks = self._pending[0]
            # The free must be proven: reused before, a power cut could lose the free
            # (or replay stop before it) and keep the new owner's data.
            if record > self.proven or gen >= oldest_io:
                break
            self._pending.popleft()
            for p in chunks:
                if self.chunk[p] == Chunk.PENDING:
                    self.chunk[p] = Chunk.FREE
                    self.free.append(p)
                    released += 1
            self.pending_count -= len(chunks)
        return released

    # -- snapshots --------------------------------------------------------------------

    def create_snapshot(
        self, name: str, created: float, *, weight: int, keep: bool, scheduled: bool
    ) -> tuple[SnapshotRecord, list[Record]]:
        check_snapshot_name(name)
        if name in self._by_name:
            if self.snapshots[self._by_name[name]].deleting:
                raise SnapshotExists(
                    f"snapshot {name!r} is being deleted; its readers still hold it"
                )
            raise SnapshotExists(f"snapshot {name!r} already exists")
        if self.restore_snapshot_id:
            raise VolumeBusy("a restore is running; snapshots can be taken when it ends")
        if len(self.snapshots) >= self.geometry.max_snapshots:
            raise SnapshotRefused(
                f"the volume has {len(self.snapshots)} snapshots, its maximum; delete some"
            )
        if not 0 <= weight <= 255:
            raise SnapshotRefused(f"weight {weight} is not within 0..255")
        used = self.used_percent()
        if used >= self.policy.warn_percent:
            raise SnapshotRefused(
                f"snapshot space is {used:.0f}% used, at or above the warning threshold "
                f"({self.policy.warn_percent}%); delete snapshots or change the policy"
            )
        used_slots = {s.slot for s in self.snapshots.values()}
        slot = next(i for i in range(self.geometry.max_snapshots) if i not in used_slots)
        flags = (SnapshotFlag.KEEP if keep else 0) | (SnapshotFlag.SCHEDULED if scheduled else 0)
        record = SnapshotRecord(
            slot, self.next_snapshot_id, self.epoch, created, weight, flags, name
        )
        out: list[Record] = []
        self._emit(out, SnapshotSlotRecord(record))
        self._emit(out, EpochRecord(self.epoch + 1, self.next_snapshot_id + 1))
        return record, out

    def find(self, name: str) -> SnapshotRecord:
        sid = self._by_name.get(name)
        if sid is None or self.snapshots[sid].deleting:
            raise SnapshotNotFound(f"no snapshot named {name!r}")
        return self.snapshots[sid]

    def set_attributes(
        self, name: str, *, weight: int | None, keep: bool | None
    ) -> tuple[SnapshotRecord, list[Record]]:
        record = self.find(name)
        if weight is not None and not 0 <= weight <= 255:
            raise SnapshotRefused(f"weight {weight} is not within 0..255")
        flags = record.flags
        if keep is not None:
            flags = (flags | SnapshotFlag.KEEP) if keep else (flags & ~SnapshotFlag.KEEP)
        new = replace(record, weight=record.weight if weight is None else weight, flags=flags)
        out: list[Record] = []
        self._emit(out, SnapshotSlotRecord(new))
        return new, out

    def delete_snapshot(self, name: str) -> list[Record]:
        """Delete now, or mark it deleting while readers (or a restore) still hold it."""
        record = self.find(name)
        out: list[Record] = []
        if self.holds.get(record.id):
            deleting = replace(record, flags=record.flags | SnapshotFlag.DELETING)
            self._emit(out, SnapshotSlotRecord(deleting))
            return out
        self._remove(record, out)
        return out

    def _remove(self, record: SnapshotRecord, out: list[Record]) -> None:
        self._fading.append((self.emitted + 1, record.epoch))
        self._emit(out, SnapshotSlotRecord(SnapshotRecord.empty(record.slot)))
        owned = self.owned.pop(record.id, ())
        if not self._reclaim:
            self.reclaim_total = 0
        self.reclaim_total += len(owned)
        self._reclaim.extend(owned)

    def _hold(self, sid: int) -> None:
        self.holds[sid] = self.holds.get(sid, 0) + 1

    def hold(self, name: str) -> SnapshotRecord:
        record = self.find(name)
        self._hold(record.id)
        return record

    def release(self, sid: int) -> list[Record]:
        """Drop one hold; the last one of a deleting snapshot completes its delete."""
        left = self.holds.get(sid, 0) - 1
        out: list[Record] = []
        if left > 0:
            self.holds[sid] = left
            return out
        self.holds.pop(sid, None)
        record = self.snapshots.get(sid)
        if record is not None and record.deleting:
            self._remove(record, out)
        return out

    def finish_deletes_at_open(self) -> list[Record]:
        """Snapshots deleted while held when the previous owner stopped: delete them now."""
        out: list[Record] = []
        for record in list(self.snapshots.values()):
            if record.deleting and not self.holds.get(record.id):
                self._remove(record, out)
        return out

    @property
    def reclaim_pending(self) -> int:
        return len(self._reclaim)

    def reclaim_step(self, limit: int) -> int:
        """Re-home up to ``limit`` versions of deleted snapshots; returns how many."""
        done = 0
        while self._reclaim and done < limit:
            p = self._reclaim.popleft()
            done += 1
            if self.chunk[p] != Chunk.DEAD:
                continue
            owner = self._newest_viewer(self.dead_birth[p], self.dead_death[p])
            if owner is not None:
                self.owned.setdefault(owner, set()).add(p)
                continue
            self._drop_version(p)
            self.dead_count -= 1
            self._free_later([p])
        return done

    # -- restore ----------------------------------------------------------------------

    def begin_restore(self, name: str) -> list[Record]:
        if self.restore_snapshot_id:
            raise VolumeBusy("a restore is already running")
        record = self.find(name)
        self._hold(record.id)
        out: list[Record] = []
        self._emit(out, EpochRecord(self.epoch + 1, self.next_snapshot_id))
        self._emit(out, RestoreRecord(record.id, self.epoch))
        self.restore_total = sum(1 for v in range(self.n) if self.unrestored(v))
        self.restore_done = 0
        return out

    def restore_candidates(self, start: int, limit: int) -> Iterator[int]:
        for v in range(start, min(self.n, start + limit)):
            if self.unrestored(v):
                yield v

    def finish_restore(self) -> list[Record]:
        sid = self.restore_snapshot_id
        out: list[Record] = []
        self._emit(out, RestoreRecord(0, 0))
        out.extend(self.release(sid))
        return out

    # -- settings, space and listing --------------------------------------------------

    def change_settings(self, policy: SpacePolicy, schedule: Schedule | None) -> list[Record]:
        out: list[Record] = []
        self._emit(out, SettingsRecord(policy, schedule))
        return out

    @property
    def snapshot_used(self) -> int:
        return self.dead_count + self.pending_count

    def used_percent(self) -> float:
        return 100.0 * self.snapshot_used / max(1, self.geometry.reserve_chunks)

    def kept_percent(self) -> float:
        """Like ``used_percent`` without chunks already freed and waiting for release:
        what another delete could still lower (the policy must not delete for those)."""
        return 100.0 * self.dead_count / max(1, self.geometry.reserve_chunks)

    def reserve_full(self) -> bool:
        return self.snapshot_used >= self.geometry.reserve_chunks

    def deletion_candidates(self) -> list[SnapshotRecord]:
        """Snapshots the space policy may delete: lowest weight first, then oldest."""
        ready = [s for s in self.snapshots.values() if not s.keep and not s.deleting]
        return sorted(ready, key=lambda s: (s.weight, s.epoch))

    def visible_snapshots(self) -> list[SnapshotRecord]:
        return sorted(self.snapshots.values(), key=lambda s: s.epoch)

    def snapshot_info(self, record: SnapshotRecord) -> SnapshotInfo:
        i = bisect.bisect_left(self._epochs, record.epoch)
        previous = self._epochs[i - 1] if i > 0 else -1
        unique = sum(1 for p in self.owned.get(record.id, ()) if self.dead_birth[p] > previous)
        g = self.geometry
        return SnapshotInfo(
            name=record.name,
            id=record.id,
            created=record.created,
            epoch=record.epoch,
            weight=record.weight,
            keep=record.keep,
            scheduled=record.scheduled,
            state="deleting" if record.deleting else "ready",
            size_bytes=g.volume_chunks * g.chunk_size,
            used_bytes=unique * g.chunk_size,
        )
