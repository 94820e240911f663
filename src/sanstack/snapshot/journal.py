"""The volume's journal writer and checkpointer: group commit on a ring of 512-byte units.

Every metadata change is a group of records (``VolumeState`` applied it in memory already)
that must reach the device before the operation is acknowledged. Groups queue here; one
writer task packs whole groups into units (a group never straddles two units, so a crash
keeps all of it or none), writes the units, then resolves every waiter of those units:
many concurrent first-writes share one journal write. A unit is written once per lap of
the ring: a batch starts on fresh units (never rewriting one that holds acknowledged
records, which a torn write could lose) and ends on a block boundary of the base device.

After each completed FLUSH the next batch carries a MARK record: the units before the
FLUSH, and the data their MAP records name, are on the medium. Replay checks the data of
MAP records after the newest MARK it finds (snapshot/recovery.py); ``VolumeState`` keeps
a chunk whose record is not yet behind a MARK on the medium from being overwritten.

A checkpoint writes the pages of the maps and tables that changed (each batch first to the
doublewrite slots, so a torn page can be rebuilt), then a superblock whose
``journal_tail_seq`` says where replay starts; only after that may the ring reuse older
units. It is taken by the same task, so journal units and checkpoint images are never
written concurrently; the images are captured in one synchronous step and written only
after every record emitted before the capture is in the journal and flushed (an image must
never get ahead of the log that explains it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sanstack.block.device import BlockDevice, DeviceNotReady
from sanstack.iscsi.digest import crc32c
from sanstack.snapshot.images import capture_images
from sanstack.snapshot.journal_format import (
    DOUBLEWRITE_SLOTS,
    UNIT,
    UNIT_CAPACITY,
    directory_offset,
    encode_directory,
    encode_journal_unit,
    ring_units,
)
from sanstack.snapshot.layout import (
    PAGE,
    Geometry,
    MarkRecord,
    Record,
    Superblock,
    encode_record,
)
from sanstack.snapshot.model import Holder
from sanstack.snapshot.state import VolumeState

log = logging.getLogger(__name__)

# Checkpoint when half the ring is used, so writers rarely wait for one.
CHECKPOINT_FRACTION = 0.5
MAX_UNITS_PER_WRITE = 256
RESERVE_UNITS = 256


@dataclass(slots=True)
class Truncation:
    """Where replay stopped before the end of the valid units: a MAP record whose data did
    not arrive. Open rewrites unit ``seq`` with its ``kept`` records and clears the rest."""

    seq: int
    kept: list[Record]
    valid_end: int  # the first sequence number after the valid units found


@dataclass(slots=True)
class _Group:
    records: list[bytes]
    size: int
    number: int  # the state's record number of the group's last record
    done: asyncio.Future[None]


@dataclass(slots=True)
class _Batch:
    """Units packed for one write to the ring, starting at sequence number ``first_seq``."""

    first_seq: int
    units: list[bytes]
    groups: list[_Group]  # the groups the units carry, resolved once they are written
    mark: tuple[int, int] | None  # the MARK it carries: (proven_seq, record it proves)


@dataclass(slots=True)
class FlushToken:
    """What a FLUSH issued now will cover, taken just before it is issued."""

    next_seq: int
    durable: int
    mark_record: int


class Journal:
    """Owns the journal ring and the superblock of one open volume."""

    def __init__(
        self,
        base: BlockDevice,
        state: VolumeState,
        superblock: Superblock,
        next_seq: int,
        *,
        can_checkpoint: Callable[[], bool],
        on_durable: Callable[[], None],
    ) -> None:
        self._base = base
        self._state = state
        self._superblock = superblock
        self._next_seq = next_seq
        self._tail = superblock.journal_tail_seq
        self._can_checkpoint = can_checkpoint
        self._on_durable = on_durable
        self._queue: deque[_Group] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set whenever the writer has nothing left to do
        self._task: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None
        self._checkpoint_requested = False
        # The MARK to write next (proven_seq, record), and the newest one written.
        self._mark_due: tuple[int, int] | None = None
        self._mark_written = (0, 0)
        self.checkpoints = 0
        self.units_written = 0
        g = superblock.geometry
        self._ring = ring_units(g)
        self._ring_offset = g.journal
        self._per_block = max(1, base.block_size // UNIT)
        self._sectors = PAGE // base.block_size

    @property
    def failed(self) -> BaseException | None:
        """Why the writer stopped (the device failed), or None while it works."""
        return self._failed

    @property
    def superblock(self) -> Superblock:
        return self._superblock

    @property
    def pages_written(self) -> int:
        """Journal writes in 4 KiB pages, for the benchmarks."""
        return self.units_written * UNIT // PAGE

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="journal")

    def submit(self, records: list[Record], *, mark: bool = False) -> asyncio.Future[None]:
        """Queue a group (synchronously, right after the state emitted it). ``mark``: write
        the due MARK even if the group is empty."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if self._failed is not None:
            done.set_exception(DeviceNotReady(f"volume journal failed: {self._failed}"))
            return done
        encoded = [encode_record(r) for r in records]
        if sum(map(len, encoded)) > UNIT_CAPACITY:
            raise ValueError("a record group larger than a journal unit")
        number = self._state.records_emitted(len(records))
        self._state.seal_frees(number)
        if not records and not (mark and self._mark_due is not None):
            done.set_result(None)
            return done
        self._queue.append(_Group(encoded, sum(map(len, encoded)), number, done))
        self._wake.set()
        return done

    async def commit(self, records: list[Record], *, mark: bool = False) -> None:
        await self.submit(records, mark=mark)

    async def close(self, *, clean: bool) -> None:
        """Drain the queue, checkpoint (if the state allows) and stop the writer."""
        if self._task is None:
            return
        if self._failed is None:
            self._checkpoint_requested = self._can_checkpoint()
            self._wake.set()
            while (self._queue or self._checkpoint_requested) and self._failed is None:
                self._idle.clear()
                await self._idle.wait()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._failed is None:
            await self._write_superblock(clean=clean)

    # -- FLUSH and MARK ---------------------------------------------------------------

    def flush_token(self) -> FlushToken:
        return FlushToken(self._next_seq, self._state.durable, self._mark_written[1])

    def flushed(self, token: FlushToken) -> None:
        """A FLUSH issued at ``token`` completed: what it covered is on the medium."""
        state = self._state
        state.mark_flushed(token.durable)
        state.mark_proven(token.mark_record)  # a MARK written before it is on the medium
        if token.next_seq > max(self._mark_written[0], (self._mark_due or (0, 0))[0]):
            self._mark_due = (token.next_seq, token.durable)

    async def flush(self) -> None:
        """FLUSH the base device, keeping the record of what it proved."""
        token = self.flush_token()
        await self._base.flush()
        self.flushed(token)

    # -- the writer task --------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                self._idle.set()
                await self._wake.wait()
                self._wake.clear()
                while self._queue or self._checkpoint_requested:
                    if self._queue:
                        await self._write_some()
                    used = self._next_seq - self._tail
                    if (
                        self._checkpoint_requested or used >= self._ring * CHECKPOINT_FRACTION
                    ) and self._can_checkpoint():
                        await self._checkpoint()
                    elif self._checkpoint_requested:
                        self._checkpoint_requested = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the device failed: every waiter learns it
            self._failed = exc
            self._idle.set()
            log.error("volume journal stopped: %s", exc)
            while self._queue:
                group = self._queue.popleft()
                if not group.done.done():
                    group.done.set_exception(DeviceNotReady(f"volume journal failed: {exc}"))

    async def _write_some(self, *, checkpointing: bool = False) -> None:
        """Write as many queued groups as one device write takes, then acknowledge them."""
        limit = await self._wait_for_room(checkpointing=checkpointing)
        batch = self._pack(limit)
        if not batch.groups:
            return
        await self._write_units(batch)
        self._acknowledge(batch)

    async def _wait_for_room(self, *, checkpointing: bool) -> int:
        """Wait for room in the ring: a checkpoint frees it (the scan must end first). A
        checkpoint's own drain may use the last RESERVE_UNITS. Returns the ring's limit."""
        # The last block is kept for the MARK the next open writes after the log.
        limit = self._ring - 2 * self._per_block - (0 if checkpointing else RESERVE_UNITS)
        while self._next_seq - self._tail >= limit:
            if checkpointing:
                raise RuntimeError("journal ring overflow during a checkpoint")
            if not self._can_checkpoint():
                await asyncio.sleep(0.01)
                continue
            await self._checkpoint()
        return limit

    def _pack(self, limit: int) -> _Batch:
        """Move whole groups from the queue into fresh units, as many as one write spans.

        The first unit starts with a MARK when one is due. On a device without a volatile
        cache every batch carries one that covers the batch itself: the data its records
        name was on the medium before it was issued, and each unit is checked on its own.
        """
        first_seq = self._next_seq
        room = min(
            MAX_UNITS_PER_WRITE,
            limit - (self._next_seq - self._tail),
            self._ring - first_seq % self._ring,  # no wrap inside one write
        )
        self_proving = not self._state.flush_needed
        marked = self_proving or self._mark_due is not None
        mark_size = len(encode_record(MarkRecord(0)))
        pages: list[list[bytes]] = []
        groups: list[_Group] = []
        current: list[bytes] = []
        size = mark_size if marked else 0
        while self._queue:
            group = self._queue[0]
            if size + group.size > UNIT_CAPACITY:
                pages.append(current)
                current, size = [], 0
                if len(pages) >= room - self._per_block:
                    break
                continue
            self._queue.popleft()
            current.extend(group.records)
            size += group.size
            groups.append(group)
        if current or not pages:
            pages.append(current)
        while len(pages) % self._per_block:  # the next batch starts on its own block
            pages.append([])
        mark = self._mark_due
        if self_proving and groups:
            mark = (first_seq + len(pages), max(g.number for g in groups))
        if marked and mark is not None:
            pages[0].insert(0, encode_record(MarkRecord(mark[0])))
        else:
            mark = None
        units = [self._unit(first_seq + i, records) for i, records in enumerate(pages)]
        return _Batch(first_seq, units, groups, mark)

    async def _write_units(self, batch: _Batch) -> None:
        start = batch.first_seq % self._ring
        lba = (self._ring_offset + start * UNIT) // self._base.block_size
        try:
            await self._base.write(lba, b"".join(batch.units))
        except BaseException as exc:  # these groups left the queue: fail them here
            for group in batch.groups:
                if not group.done.done():
                    group.done.set_exception(DeviceNotReady(f"volume journal failed: {exc}"))
            raise

    def _acknowledge(self, batch: _Batch) -> None:
        """The batch is in the journal: advance the ring and resolve its groups' waiters."""
        self._next_seq = batch.first_seq + len(batch.units)
        self.units_written += len(batch.units)
        state = self._state
        state.mark_durable(max(g.number for g in batch.groups))
        if batch.mark is not None:
            self._mark_written = batch.mark
            if self._mark_due == batch.mark:
                self._mark_due = None
        if not state.flush_needed:  # written is durable: these units are proven at once
            self.flushed(FlushToken(self._next_seq, state.durable, self._mark_written[1]))
        for group in batch.groups:
            if not group.done.done():
                group.done.set_result(None)
        self._on_durable()

    def _unit(self, seq: int, records: list[bytes]) -> bytes:
        return encode_journal_unit(seq, seq % self._ring, records)

    # -- checkpoint -------------------------------------------------------------------

    async def _checkpoint(self) -> None:
        state = self._state
        g = self._superblock.geometry
        images = capture_images(state)
        # Records queued before the capture are in the images; they must still reach the
        # journal, and the medium, before any image does, so replay from the old tail never
        # meets an image ahead of the records (and data) it trusts. They go at sequence
        # numbers >= tail.
        tail = self._next_seq
        barrier = state.emitted
        while state.durable < barrier and self._queue:
            await self._write_some(checkpointing=True)
        fields = {
            "journal_tail_seq": tail,
            "epoch": state.epoch,
            "next_snapshot_id": state.next_snapshot_id,
            "restore_snapshot_id": state.restore_snapshot_id,
            "restore_epoch": state.restore_epoch,
            "policy": state.policy,
            "schedule": state.schedule,
        }
        await self.flush()
        await write_images(self._base, g, images, self._superblock.generation + 1)
        self._superblock = self._superblock.next_generation(clean=False, **fields)
        await self._write_superblock_page()
        await self.flush()
        state.mark_proven(barrier)  # in the tables now: replay never reads those records
        self._tail = tail
        self._checkpoint_requested = False
        self.checkpoints += 1

    async def _write_superblock_page(self) -> None:
        copy = self._superblock.generation % 2
        await self._base.write(copy * self._sectors, self._superblock.encode())

    async def _write_superblock(self, *, clean: bool) -> None:
        """At close: no holder any more, and whether the volume was left clean."""
        self._superblock = self._superblock.next_generation(clean=clean, holder=None)
        await self._write_superblock_page()
        await self._base.flush()

    async def invalidate_after_replay(self, truncation: Truncation | None) -> None:
        """Clear what follows the end of the log found at open, then prove what is before.

        A multi-unit write cut short can leave a later unit whole after a torn one, and a
        MAP record whose data did not arrive ends the log before units that are whole;
        once new units are written over the end, those would continue the sequence at the
        next crash. Replay stopped inside unit ``truncation.seq``: it is rewritten with the
        records replay kept (a unit does not tear), and every unit after it is zeroed.
        Then a MARK says all of it is on the medium, so its data is never checked again.
        """
        bs = self._base.block_size
        per_block = self._per_block
        end = self._next_seq
        rewrite: list[bytes] = []
        block_first = 0
        if truncation is not None:
            block_first = truncation.seq - truncation.seq % per_block
            raw = await self._base.read(
                (self._ring_offset + block_first % self._ring * UNIT) // bs, 1
            )
            rewrite = [
                bytes(raw[i * UNIT : (i + 1) * UNIT]) for i in range(truncation.seq - block_first)
            ]
            rewrite.append(self._unit(truncation.seq, [encode_record(r) for r in truncation.kept]))
            while (block_first + len(rewrite)) % per_block:
                rewrite.append(self._unit(block_first + len(rewrite), []))
            end = block_first + len(rewrite)
        self._next_seq = end
        # The order matters at each step, each FLUSHed before the next: the units after
        # the end go first (else a rewritten unit could be followed by stale whole ones),
        # then the rewrite, then the MARK (else it could prove the unit not yet rewritten).
        # Never reach the live log, which continues from the tail around the ring.
        beyond = MAX_UNITS_PER_WRITE + max(0, (truncation.valid_end if truncation else 0) - end)
        count = min(beyond, self._ring - 2 * per_block - (end - self._tail))
        start = end % self._ring
        if count > 0:
            first = min(count, self._ring - start)
            await self._base.write((self._ring_offset + start * UNIT) // bs, bytes(first * UNIT))
            if count > first:
                await self._base.write(self._ring_offset // bs, bytes((count - first) * UNIT))
        await self.flush()
        if rewrite:
            lba = (self._ring_offset + block_first % self._ring * UNIT) // bs
            await self._base.write(lba, b"".join(rewrite))
            await self.flush()
        mark = (self._next_seq, self._state.durable)
        units = [self._unit(self._next_seq, [encode_record(MarkRecord(mark[0]))])]
        while len(units) % per_block:
            units.append(self._unit(self._next_seq + len(units), []))
        start = self._next_seq % self._ring
        await self._base.write((self._ring_offset + start * UNIT) // bs, b"".join(units))
        self._next_seq += len(units)
        self._mark_written = mark
        self._mark_due = None
        await self.flush()

    async def mark_open(self, holder: Holder | None) -> None:
        """At open: record who holds the volume, and that it was not closed cleanly."""
        self._superblock = self._superblock.next_generation(holder=holder, clean=False)
        await self._write_superblock_page()
        await self._base.flush()


async def write_images(
    base: BlockDevice, g: Geometry, images: list[tuple[int, bytes]], generation: int
) -> None:
    """Write checkpoint images in place, each batch first to the doublewrite slots.

    Batch by batch: the directory and the images to the slots, FLUSH, then the images in
    place, FLUSH. A torn slot is never used (its directory entry's CRC fails, and its
    page's in-place write has not begun); a torn page is rebuilt from its slot at open.
    """
    bs = base.block_size
    directory = directory_offset(g)
    for first in range(0, len(images), DOUBLEWRITE_SLOTS):
        batch = images[first : first + DOUBLEWRITE_SLOTS]
        page = encode_directory(generation, [(offset, crc32c(image)) for offset, image in batch])
        await base.write(directory // bs, page + b"".join(image for _, image in batch))
        await base.flush()
        for offset, image in batch:
            await base.write(offset // bs, image)
        await base.flush()
