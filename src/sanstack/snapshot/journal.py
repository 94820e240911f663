"""The volume's journal writer and checkpointer: group commit on a ring of 4 KiB pages.

Every metadata change is a group of records (``VolumeState`` applied it in memory already)
that must reach the device before the operation is acknowledged. Groups queue here; one
writer task packs whole groups into pages (a group never straddles two pages, so a crash
keeps all of it or none), writes the pages, then resolves every waiter of those pages:
many concurrent first-writes share one journal write.

A checkpoint writes the pages of the maps and tables that changed, then a superblock whose
``journal_tail_seq`` says where replay starts; only after that may the ring reuse older
pages. It is taken by the same task, so journal pages and checkpoint images are never
written concurrently; the images are captured in one synchronous step and written only
after every record emitted before the capture is in the journal (an image must never get
ahead of the log that explains it).

At open, ``recover`` reads both back: the checkpoint's images, then the log after them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sanstack.block.device import BlockDevice, DeviceNotReady
from sanstack.snapshot.layout import (
    JOURNAL_CAPACITY,
    PAGE,
    Record,
    Superblock,
    decode_journal_page,
    encode_journal_page,
    encode_record,
)
from sanstack.snapshot.model import Holder
from sanstack.snapshot.state import VolumeState

log = logging.getLogger(__name__)

# Checkpoint when half the ring is used, so writers rarely wait for one.
CHECKPOINT_FRACTION = 0.5
MAX_PAGES_PER_WRITE = 32
RESERVE_PAGES = 64


async def recover(base: BlockDevice, superblock: Superblock) -> tuple[VolumeState, int]:
    """At open: the state as the last checkpoint wrote it (snapshot table, forward map),
    then every whole page of the log after it. Also the sequence number the log goes on at.

    The chunk table is not read here: the volume's free-space scan reads it in the background.
    """
    g = superblock.geometry
    bs = base.block_size
    per_page = PAGE // bs
    state = VolumeState(superblock)
    raw = await base.read(g.snapshot_table // bs, g.snapshot_table_pages * per_page)
    for n in range(g.snapshot_table_pages):
        state.load_snapshot_page(n, raw[n * PAGE : (n + 1) * PAGE])
    for first in range(0, g.map_pages, 256):
        count = min(256, g.map_pages - first)
        raw = await base.read((g.forward_map + first * PAGE) // bs, count * per_page)
        for i in range(count):
            state.load_map_page(first + i, raw[i * PAGE : (i + 1) * PAGE])
    seq = superblock.journal_tail_seq
    while True:
        index = seq % g.journal_pages
        count = min(64, g.journal_pages - index)
        raw = await base.read((g.journal + index * PAGE) // bs, count * PAGE // bs)
        for i in range(count):
            records = decode_journal_page(raw[i * PAGE : (i + 1) * PAGE], seq, index + i)
            if records is None:
                return state, seq
            for record in records:
                state.replay(record)
            seq += 1


@dataclass(slots=True)
class _Group:
    records: list[bytes]
    size: int
    number: int  # the state's record number of the group's last record
    done: asyncio.Future[None]


@dataclass(slots=True)
class _Batch:
    """Pages packed for one write to the ring, starting at sequence number ``first_seq``."""

    first_seq: int
    pages: list[bytes]
    groups: list[_Group]  # the groups the pages carry, resolved once they are written
    still_open: list[bytes] | None  # the last page's records, if it has room for more


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
        self._open_records: list[bytes] | None = None
        self.checkpoints = 0
        self.pages_written = 0
        g = superblock.geometry
        self._ring = g.journal_pages
        self._ring_offset = g.journal
        self._sectors = PAGE // base.block_size

    @property
    def failed(self) -> BaseException | None:
        """Why the writer stopped (the device failed), or None while it works."""
        return self._failed

    @property
    def superblock(self) -> Superblock:
        return self._superblock

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="journal")

    def submit(self, records: list[Record]) -> asyncio.Future[None]:
        """Queue a group (synchronously, right after the state emitted it)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if self._failed is not None:
            done.set_exception(DeviceNotReady(f"volume journal failed: {self._failed}"))
            return done
        encoded = [encode_record(r) for r in records]
        if sum(map(len, encoded)) > JOURNAL_CAPACITY:
            raise ValueError("a record group larger than a journal page")
        number = self._state.records_emitted(len(records))
        self._state.seal_frees(number)
        if not records:
            done.set_result(None)
            return done
        self._queue.append(_Group(encoded, sum(map(len, encoded)), number, done))
        self._wake.set()
        return done

    async def commit(self, records: list[Record]) -> None:
        await self.submit(records)

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
        await self._write_pages(batch)
        self._acknowledge(batch)

    async def _wait_for_room(self, *, checkpointing: bool) -> int:
        """Wait for room in the ring: a checkpoint frees it (the scan must end first). A
        checkpoint's own drain may use the last RESERVE_PAGES. Returns the ring's limit."""
        limit = self._ring - 1 - (0 if checkpointing else RESERVE_PAGES)
        while self._next_seq - self._tail >= limit:
            if checkpointing:
                raise RuntimeError("journal ring overflow during a checkpoint")
            if not self._can_checkpoint():
                await asyncio.sleep(0.01)
                continue
            await self._checkpoint()
        return limit

    def _reopen_last_page(self) -> tuple[int, list[bytes]]:
        """Where the next write starts, and the records already in its first page.

        The last page written may still have room: it is rewritten with more records (same
        sequence number), so the ring advances by pages of records, not by batches. A page
        covered by a FLUSH or a checkpoint is sealed instead.
        """
        if self._open_records is not None and self._next_seq % self._ring != 0:
            return self._next_seq - 1, list(self._open_records)
        return self._next_seq, []

    def _pack(self, limit: int) -> _Batch:
        """Move whole groups from the queue into pages, as many as one write may span."""
        first_seq, current = self._reopen_last_page()
        size = sum(map(len, current))
        room = min(
            MAX_PAGES_PER_WRITE,
            limit - (self._next_seq - self._tail) + (self._next_seq - first_seq),
            self._ring - first_seq % self._ring,  # no wrap inside one write
        )
        pages: list[bytes] = []
        groups: list[_Group] = []
        reopened = bool(current)  # the open page, not yet given a new group
        while self._queue:
            group = self._queue[0]
            if size + group.size > JOURNAL_CAPACITY:
                if reopened and not pages:  # it is full: leave it as written
                    first_seq, current, size, reopened = self._next_seq, [], 0, False
                    continue
                pages.append(self._page(first_seq + len(pages), current))
                current, size = [], 0
                if len(pages) >= room:
                    break
                continue
            self._queue.popleft()
            current.extend(group.records)
            size += group.size
            groups.append(group)
            reopened = False
        if current:
            pages.append(self._page(first_seq + len(pages), current))
        # Rewriting a page assumes 4 KiB writes do not tear on power loss (true of 4Kn and
        # 512e disks and NVMe); with a volatile cache a FLUSH seals the page anyway.
        still_open = current if current and size < JOURNAL_CAPACITY else None
        return _Batch(first_seq, pages, groups, still_open)

    async def _write_pages(self, batch: _Batch) -> None:
        start = batch.first_seq % self._ring
        lba = (self._ring_offset + start * PAGE) // self._base.block_size
        try:
            await self._base.write(lba, b"".join(batch.pages))
        except BaseException as exc:  # these groups left the queue: fail them here
            for group in batch.groups:
                if not group.done.done():
                    group.done.set_exception(DeviceNotReady(f"volume journal failed: {exc}"))
            raise

    def _acknowledge(self, batch: _Batch) -> None:
        """The batch is in the journal: advance the ring and resolve its groups' waiters."""
        self._next_seq = batch.first_seq + len(batch.pages)
        self._open_records = batch.still_open
        self.pages_written += len(batch.pages)
        self._state.mark_durable(max(g.number for g in batch.groups))
        for group in batch.groups:
            if not group.done.done():
                group.done.set_result(None)
        self._on_durable()

    def _page(self, seq: int, records: list[bytes]) -> bytes:
        return encode_journal_page(seq, seq % self._ring, records)

    def seal(self) -> None:
        """No more records go into the last page written (it is covered by a FLUSH)."""
        self._open_records = None

    # -- checkpoint -------------------------------------------------------------------

    async def _checkpoint(self) -> None:
        state = self._state
        images: list[tuple[int, bytes]] = []
        g = self._superblock.geometry
        for n in sorted(state.dirty_slots):
            images.append((g.snapshot_table + n * PAGE, state.slot_page_image(n)))
        for n in sorted(state.dirty_map):
            images.append((g.forward_map + n * PAGE, state.map_page_image(n)))
        for n in sorted(state.dirty_table):
            images.append((g.chunk_table + n * PAGE, state.table_page_image(n)))
        state.dirty_slots.clear()
        state.dirty_map.clear()
        state.dirty_table.clear()
        self._open_records = None  # replay starts after it: nothing more may go there
        # Records queued before the capture are in the images; they must still reach the
        # journal before any image does, so replay from the old tail never meets an image
        # ahead of its records. They go at sequence numbers >= tail.
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
        bs = self._base.block_size
        for offset, image in images:
            await self._base.write(offset // bs, image)
        await self._base.flush()
        state.mark_flushed(barrier)
        self._superblock = self._superblock.next_generation(clean=False, **fields)
        await self._write_superblock_page()
        await self._base.flush()
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

    async def invalidate_after_replay(self) -> None:
        """Zero the pages after the end of the log found at open.

        A multi-page write cut short can leave a later page whole after a torn one; replay
        stops at the torn page, but once new pages are written over it, that stale page
        would continue the sequence at the next crash. Zeroing as many pages as one write
        can span removes it.
        """
        start = self._next_seq % self._ring
        # Never reach the live log, which continues from the tail around the ring.
        count = min(MAX_PAGES_PER_WRITE, self._ring - 1 - (self._next_seq - self._tail))
        if count <= 0:
            return
        first = min(count, self._ring - start)
        bs = self._base.block_size
        await self._base.write((self._ring_offset + start * PAGE) // bs, bytes(first * PAGE))
        if count > first:
            await self._base.write(self._ring_offset // bs, bytes((count - first) * PAGE))
        await self._base.flush()

    async def mark_open(self, holder: Holder | None) -> None:
        """At open: record who holds the volume, and that it was not closed cleanly."""
        self._superblock = self._superblock.next_generation(holder=holder, clean=False)
        await self._write_superblock_page()
        await self._base.flush()
