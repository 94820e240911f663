"""``SnapshotVolume``: a block device with persistent snapshots, stacked on any block device.

The asyncio edge over ``VolumeState`` (the decisions) and ``Journal`` (the metadata
writes). The volume owns its background work, each a task it cancels at close:

* the journal writer (group commit, checkpoints);
* maintenance: the free-space scan at open, reclaim after deletes, freed-chunk release,
  the space policy's automatic deletes;
* the restore merge, while a restore runs (it resumes at the next open after a crash);
* the schedule, while one is set.

I/O to the volume never waits for the scan: reads need only the forward map, loaded
before ``open`` returns, and a write that needs a fresh chunk takes one the scan has
already proved free. Snapshot reads wait for the scan, since a snapshot's old versions
are what it finds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Final

from sanstack.block.device import (
    BlockDevice,
    DeviceIdentity,
    DeviceNotReady,
    DeviceReadOnly,
    LBAExtent,
    SpaceExhausted,
)
from sanstack.iscsi.digest import crc32c
from sanstack.snapshot.journal import Journal
from sanstack.snapshot.layout import (
    PAGE,
    UNMAPPED,
    Geometry,
    Superblock,
    newest_superblock,
)
from sanstack.snapshot.model import (
    FormatOptions,
    Holder,
    NotAVolume,
    OnFull,
    Progress,
    Schedule,
    SnapshotInfo,
    SnapshotRefused,
    SpacePolicy,
    VolumeBusy,
    VolumeInfo,
)
from sanstack.snapshot.recovery import recover_or_upgrade
from sanstack.snapshot.state import VolumeState, WriteKind
from sanstack.snapshot.volume_tasks import (
    ChunkLock,
    maintain,
    restore_merge,
    run_schedule,
    wait_event,
)

log = logging.getLogger(__name__)

DRAIN_TIMEOUT: Final = 15.0  # PSM's "inactive time-out", much shorter: writes are fast
SPACE_WAIT: Final = 30.0  # a writer waits this long for automatic deletes to free space
SCAN_WAIT: Final = 60.0
UNMAP_STEP_BYTES: Final = 64 << 20


async def format_volume(
    base: BlockDevice,
    options: FormatOptions | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
) -> VolumeInfo:
    """Make ``base`` an empty volume: discard everything, then write the superblocks."""
    options = options or FormatOptions()
    if PAGE % base.block_size or options.block_size % base.block_size:
        raise NotAVolume(
            f"the device's {base.block_size}-byte blocks do not divide the volume's layout"
        )
    geometry = Geometry.plan(base.capacity_bytes, options)
    bs = base.block_size
    total = base.num_blocks
    step = UNMAP_STEP_BYTES // bs
    # Metadata first: a half-formatted device must never show an old journal or table.
    meta_blocks = geometry.data // bs
    await base.unmap(0, meta_blocks)
    lba = meta_blocks
    while lba < total:
        count = min(step, total - lba)
        await base.unmap(lba, count)
        lba += count
        if progress:  # in chunks, like every other progress report
            per = geometry.chunk_size // bs
            progress(Progress("format", lba // per, total // per))
    superblock = Superblock.new(geometry, time.time())
    await base.write(PAGE // bs, superblock.next_generation().encode())
    await base.write(0, superblock.encode())
    await base.flush()
    volume = await SnapshotVolume.open(base, close_base=False)
    try:
        await volume.wait_scan()
        return volume.info()
    finally:
        await volume.close()


class SnapshotVolume(BlockDevice):
    """The live volume; snapshots are read through ``open_snapshot``."""

    def __init__(
        self,
        base: BlockDevice,
        state: VolumeState,
        next_seq: int,
        *,
        holder: Holder | None,
        close_base: bool,
    ) -> None:
        sb = state.superblock
        g = sb.geometry
        self.base = base
        self.state = state
        self.geometry = g
        self.block_size = g.block_size
        self.num_blocks = g.volume_chunks * g.chunk_size // g.block_size
        self.identity = DeviceIdentity.from_seed(f"volume:{sb.uuid_text}")
        self.thin_provisioned = True
        self.write_cache = base.write_cache
        self.holder = holder
        self._close_base = close_base
        self._chunk = g.chunk_size
        self._per_chunk = g.chunk_size // g.block_size
        self._base_per_chunk = g.chunk_size // base.block_size
        self._data_lba = g.data // base.block_size
        state.flush_needed = base.write_cache
        self.journal = Journal(
            base,
            state,
            sb,
            next_seq,
            can_checkpoint=lambda: state.scan_done,
            on_durable=self.release_freed,
        )
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._scan_progress = asyncio.Event()
        self._scan_complete = asyncio.Event()
        self._space_freed = asyncio.Event()
        self._gate_open = asyncio.Event()
        self._gate_open.set()
        self._writes_in_flight = 0
        self._writes_drained = asyncio.Event()
        self._writes_drained.set()
        self._chunk_locks: dict[int, ChunkLock] = {}
        self._admin = asyncio.Lock()  # snapshot create/delete/restore, one at a time
        self._schedule_task: asyncio.Task[None] | None = None
        self.snapshot_devices: set[BlockDevice] = set()

    # -- open and close ---------------------------------------------------------------

    @classmethod
    async def open(
        cls, base: BlockDevice, *, holder: Holder | None = None, close_base: bool = True
    ) -> SnapshotVolume:
        bs = base.block_size
        per_page = PAGE // bs
        head = await base.read(0, 2 * per_page)
        superblock = newest_superblock([head[:PAGE], head[PAGE : 2 * PAGE]])
        g = superblock.geometry
        if g.data + g.pool_chunks * g.chunk_size > base.capacity_bytes:
            raise NotAVolume("the device is smaller than the volume its superblock describes")
        state, next_seq, truncation = await recover_or_upgrade(base, superblock)
        state.start()
        volume = cls(base, state, next_seq, holder=holder, close_base=close_base)
        try:
            await volume.journal.mark_open(holder)
            await volume.journal.invalidate_after_replay(truncation)
            volume.journal.start()
            volume._spawn(maintain(volume), "volume-maintenance")
            # One group per delete: each is whole by itself, and many would not fit a page.
            for record in state.finish_deletes_at_open():
                await volume.journal.commit([record])
            if state.restore_snapshot_id:
                volume._spawn(restore_merge(volume), "volume-restore")
            if state.schedule:
                volume._schedule_task = volume._spawn(run_schedule(volume), "volume-schedule")
        except BaseException:
            await volume.close()  # stops what was started; the caller sees the error
            raise
        return volume

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("volume task %s failed: %s", task.get_name(), task.exception())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Stop the background work first: closing a snapshot device may commit a record
        # (a held delete completes), and a task running meanwhile would meet a closed volume.
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for device in list(self.snapshot_devices):
            await device.close()
        try:
            await wait_event(self._writes_drained, DRAIN_TIMEOUT)
        except TimeoutError:
            log.warning("closing the volume with writes still in flight")
        try:
            await self.journal.close(clean=self.state.scan_done)
        finally:
            if self._close_base:
                await self.base.close()

    def health(self) -> str | None:
        if self._closed:
            return "the volume is closed"
        if self.journal.failed is not None:
            return f"the volume's metadata journal failed: {self.journal.failed}"
        return self.base.health()

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceNotReady("the volume is closed")
        if self.journal.failed is not None:
            raise DeviceNotReady(f"the volume's metadata journal failed: {self.journal.failed}")

    # -- I/O --------------------------------------------------------------------------

    async def read(self, lba: int, count: int) -> bytes:
        self._check_open()
        state = self.state
        if state.restore_snapshot_id and not state.scan_done:
            await self.wait_scan()  # unrestored chunks are found among old versions
        gen = state.io_begin()
        try:
            return await self._read_chunks(lba, count, state.volume_chunk)
        finally:
            state.io_end(gen)
            self._after_io()

    async def _read_chunks(self, lba: int, count: int, chunk_of: Callable[[int], int]) -> bytes:
        """Read blocks, mapping each volume chunk to its pool chunk with ``chunk_of``."""
        per = self._per_chunk
        bs = self.block_size
        parts: list[bytes | memoryview] = []
        run_p = run_off = run_len = -1
        end = lba + count
        while lba < end:
            v, offset = divmod(lba, per)
            n = min(per - offset, end - lba)
            p = chunk_of(v)
            if p == UNMAPPED:
                if run_len > 0:
                    parts.append(await self._pool_read(run_p, run_off, run_len))
                    run_len = -1
                parts.append(bytes(n * bs))
            elif run_len > 0 and p * per + offset == run_p * per + run_off + run_len:
                run_len += n
            else:
                if run_len > 0:
                    parts.append(await self._pool_read(run_p, run_off, run_len))
                run_p, run_off, run_len = p, offset, n
            lba += n
        if run_len > 0:
            parts.append(await self._pool_read(run_p, run_off, run_len))
        return parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) else b"".join(parts)

    async def _pool_read(self, p: int, offset: int, count: int) -> bytes | memoryview:
        ratio = self.block_size // self.base.block_size
        lba = self._data_lba + p * self._base_per_chunk + offset * ratio
        return await self.base.read(lba, count * ratio)

    async def _pool_write(self, p: int, offset: int, data: bytes | memoryview) -> None:
        ratio = self.block_size // self.base.block_size
        await self.base.write(self._data_lba + p * self._base_per_chunk + offset * ratio, data)

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """Admit a write: past the snapshot gate, and counted for the next gate to drain.

        A write takes no I/O generation here: a redirect works under its chunk's lock, on
        chunks nobody else can free (its own live chunk, or a held snapshot's), and must
        not hold back the release of chunks it is itself waiting for. An in-place write
        takes a generation around its device write (see ``write``).
        """
        self._check_open()
        if self.read_only:
            raise DeviceReadOnly("the volume is read-only")
        while not self._gate_open.is_set():  # another pause may start as one ends
            try:
                await wait_event(self._gate_open, DRAIN_TIMEOUT * 2)
            except TimeoutError:
                raise DeviceNotReady("the volume stayed paused for a snapshot") from None
            self._check_open()
        if self.state.restore_snapshot_id and not self.state.scan_done:
            await self.wait_scan()  # unrestored chunks are found among old versions
        self._writes_in_flight += 1
        self._writes_drained.clear()
        try:
            yield
        finally:
            self._writes_in_flight -= 1
            if not self._writes_in_flight:
                self._writes_drained.set()
            self._after_io()

    async def write(self, lba: int, data: bytes | memoryview) -> None:
        async with self._writing():
            view = memoryview(data)
            per = self._per_chunk
            bs = self.block_size
            state = self.state
            end = lba + len(view) // bs
            pos = 0
            while lba < end:
                v, offset = divmod(lba, per)
                n = min(per - offset, end - lba)
                piece = view[pos * bs : (pos + n) * bs]
                plan = state.plan_write(v)
                if plan.kind == WriteKind.IN_PLACE and v not in self._chunk_locks:
                    # Coalesce the run of in-place chunks that follow in the pool.
                    run = n
                    while lba + run < end:
                        v2 = (lba + run) // per
                        plan2 = state.plan_write(v2)
                        if (
                            plan2.kind != WriteKind.IN_PLACE
                            or plan2.p != plan.p + (v2 - v)
                            or v2 in self._chunk_locks
                        ):
                            break
                        run += min(per, end - lba - run)
                    # No await since the plan: the generation covers p before anyone
                    # can free it (an unmap of v), so p is not reused under this write.
                    gen = state.io_begin()
                    try:
                        await self._pool_write(plan.p, offset, view[pos * bs : (pos + run) * bs])
                    finally:
                        state.io_end(gen)
                    n = run
                else:
                    await self._write_chunk(v, offset, piece)
                lba += n
                pos += n

    @contextlib.asynccontextmanager
    async def _locked_chunk(self, v: int) -> AsyncIterator[None]:
        """Hold chunk ``v``'s lock; the lock exists only while someone uses or awaits it."""
        entry = self._chunk_locks.get(v)
        if entry is None:
            entry = self._chunk_locks[v] = ChunkLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._chunk_locks[v]

    async def _write_chunk(self, v: int, offset: int, piece: memoryview | None) -> None:
        """Write part of chunk ``v`` (None: unmap it) under the chunk's lock."""
        async with self._locked_chunk(v):
            await self._write_chunk_locked(v, offset, piece)

    async def _write_chunk_locked(self, v: int, offset: int, piece: memoryview | None) -> None:
        state = self.state
        plan = state.plan_write(v)
        if piece is not None and plan.kind == WriteKind.IN_PLACE:
            await self._pool_write(plan.p, offset, piece)  # p is v's: frees need v's lock
            return
        if piece is None and state.map_p[v] == UNMAPPED and not state.unrestored(v):
            return
        if state.needs_snapshot_space(v) and state.reserve_full():
            await self._make_room()
        if piece is None:
            await self.journal.commit(state.commit_write(v, UNMAPPED))
            return
        new_p = await self._allocate()
        try:
            whole = offset == 0 and len(piece) == self._chunk
            if whole:
                crc = crc32c(piece)
                await self._pool_write(new_p, 0, piece)
            else:
                if plan.p == UNMAPPED:
                    buffer = bytearray(self._chunk)
                else:
                    buffer = bytearray(await self._pool_read(plan.p, 0, self._per_chunk))
                start = offset * self.block_size
                buffer[start : start + len(piece)] = piece
                crc = crc32c(buffer)
                await self._pool_write(new_p, 0, memoryview(buffer))
        except BaseException:
            state.release_unused(new_p)
            raise
        await self.journal.commit(state.commit_write(v, new_p, crc))

    async def _allocate(self) -> int:
        state = self.state
        deadline = time.monotonic() + SCAN_WAIT
        while True:
            p = state.allocate()
            if p is not None:
                return p
            state.release_pending()
            p = state.allocate()
            if p is not None:
                return p
            if state.scan_done and not state.pending_count and not state.reclaim_pending:
                raise SpaceExhausted("the volume has no free chunk")
            left = deadline - time.monotonic()
            if left <= 0:
                raise SpaceExhausted("no free chunk became available in time")
            self._scan_progress.clear()
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await wait_event(self._scan_progress, min(left, 0.05))
            self._check_open()

    async def _make_room(self) -> None:
        """The snapshot reserve is full and this write would keep an old version."""
        state = self.state
        if state.policy.on_full == OnFull.FAIL_WRITES:
            raise SpaceExhausted("the snapshot reserve is full (policy: fail-writes)")
        deadline = time.monotonic() + SPACE_WAIT
        while state.reserve_full():
            if not state.reclaim_pending and not state.pending_count:
                candidates = state.deletion_candidates()
                if not candidates:
                    raise SpaceExhausted(
                        "the snapshot reserve is full and every snapshot is marked keep"
                    )
                victim = candidates[0]
                log.warning(
                    "snapshot reserve full: deleting snapshot %r (weight %d)",
                    victim.name,
                    victim.weight,
                )
                await self.journal.commit(state.delete_snapshot(victim.name))
                self._wake.set()
            left = deadline - time.monotonic()
            if left <= 0:
                raise SpaceExhausted("snapshot space was not freed in time")
            self._space_freed.clear()
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await wait_event(self._space_freed, min(left, 0.05))

    async def flush(self) -> None:
        self._check_open()
        await self.journal.commit([])
        await self.prove()

    async def flush_base(self) -> None:
        """FLUSH the device; every record already in the journal is then on the medium."""
        await self.journal.flush()
        self.release_freed()

    async def prove(self) -> None:
        """FLUSH, then, if records are flushed that no MARK on the medium covers, write a
        MARK and FLUSH again: chunks those records name may then be overwritten in place,
        and chunks they freed reused."""
        await self.flush_base()
        if self.state.needs_proof():
            await self.journal.commit([], mark=True)
            await self.flush_base()

    async def unmap(self, lba: int, count: int) -> None:
        """Deallocate whole chunks; the blocks of a partly covered chunk are written with
        zeroes instead, so every unmapped block reads back as zeroes (LBPRZ)."""
        async with self._writing():
            per = self._per_chunk
            end = lba + count
            while lba < end:
                v, offset = divmod(lba, per)
                n = min(per - offset, end - lba)
                if n == per:
                    await self._write_chunk(v, 0, None)
                elif self.state.volume_chunk(v) != UNMAPPED:  # unmapped reads zeroes already
                    await self._write_chunk(v, offset, memoryview(bytes(n * self.block_size)))
                lba += n

    async def get_lba_status(self, lba: int, max_count: int) -> list[LBAExtent]:
        self._check_open()
        return self.state.lba_status(self.state.volume_chunk, lba, max_count)

    # -- background work (with the restore below: the HostVolume its tasks drive) -----

    def _after_io(self) -> None:
        if self.state.pending_count:
            self.release_freed()

    def release_freed(self) -> None:
        if self.state.release_pending():
            self._space_freed.set()
            self._scan_progress.set()

    def scan_progressed(self) -> None:
        self._scan_progress.set()

    def scan_finished(self) -> None:
        self._scan_complete.set()
        self._scan_progress.set()

    async def wait_for_work(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await wait_event(self._wake, seconds)

    async def wait_scan(self, timeout: float = SCAN_WAIT) -> None:  # noqa: ASYNC109
        try:
            await wait_event(self._scan_complete, timeout)
        except TimeoutError:
            raise DeviceNotReady("the free-space scan did not finish in time") from None

    async def wait_background(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until the scan, reclaim, freed-chunk release and any restore are done."""
        deadline = time.monotonic() + timeout
        await self.wait_scan(timeout)
        state = self.state
        while state.reclaim_pending or state.pending_count or state.restore_snapshot_id:
            if time.monotonic() > deadline:
                raise TimeoutError("background work of the volume is still running")
            self._wake.set()
            await self.journal.commit([])
            self.release_freed()
            await asyncio.sleep(0.005)

    # -- snapshots --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _paused_writes(self) -> AsyncIterator[None]:
        """Hold new writes and wait for those in flight: the point in time."""
        self._gate_open.clear()
        try:
            try:
                await wait_event(self._writes_drained, DRAIN_TIMEOUT)
            except TimeoutError:
                raise SnapshotRefused(
                    f"writes in flight did not drain within {DRAIN_TIMEOUT:.0f} s"
                ) from None
            yield
        finally:
            self._gate_open.set()

    async def create_snapshot(
        self, name: str, *, weight: int = 1, keep: bool = False, scheduled: bool = False
    ) -> SnapshotInfo:
        self._check_open()
        async with self._admin, self._paused_writes():
            # FLUSH before and after: every version the snapshot sees, then the snapshot
            # itself, is on the medium when create returns, even on a write-back device.
            await self.flush_base()
            record, records = self.state.create_snapshot(
                name, time.time(), weight=weight, keep=keep, scheduled=scheduled
            )
            await self.journal.commit(records)
            await self.flush_base()
        return self.state.snapshot_info(record)

    def snapshots(self) -> list[SnapshotInfo]:
        state = self.state
        return [state.snapshot_info(s) for s in state.visible_snapshots()]

    async def delete_snapshot(self, name: str) -> None:
        self._check_open()
        async with self._admin:
            await self.journal.commit(self.state.delete_snapshot(name))
        self._wake.set()

    async def set_snapshot(
        self, name: str, *, weight: int | None = None, keep: bool | None = None
    ) -> SnapshotInfo:
        self._check_open()
        async with self._admin:
            record, records = self.state.set_attributes(name, weight=weight, keep=keep)
            await self.journal.commit(records)
        return self.state.snapshot_info(record)

    def open_snapshot(self, name: str) -> BlockDevice:
        self._check_open()
        from sanstack.snapshot.snapshot_device import SnapshotDevice

        record = self.state.hold(name)
        device = SnapshotDevice(self, record)
        self.snapshot_devices.add(device)
        return device

    async def release_snapshot(self, device: BlockDevice, snapshot_id: int) -> None:
        """Called by a snapshot device's close: drop its hold (may finish a delete)."""
        self.snapshot_devices.discard(device)
        records = self.state.release(snapshot_id)
        if not self._closed or records:
            await self.journal.commit(records)
        self._wake.set()

    async def read_snapshot(self, epoch: int, lba: int, count: int) -> bytes:
        await self.wait_scan()
        state = self.state
        gen = state.io_begin()
        try:
            return await self._read_chunks(lba, count, lambda v: state.snapshot_chunk(epoch, v))
        finally:
            state.io_end(gen)
            self._after_io()

    # -- restore ----------------------------------------------------------------------

    async def restore(self, name: str) -> None:
        """Make the volume's content the snapshot's, online; other snapshots stay valid."""
        self._check_open()
        await self.wait_scan()
        async with self._admin, self._paused_writes():
            if self.state.restore_snapshot_id:
                raise VolumeBusy("a restore is already running")
            records = self.state.begin_restore(name)
            await self.journal.commit(records)
        self._spawn(restore_merge(self), "volume-restore")

    async def restore_chunk(self, v: int) -> None:
        async with self._writing(), self._locked_chunk(v):
            state = self.state
            if not state.unrestored(v):
                return
            p = state.snapshot_chunk(state.snapshots[state.restore_snapshot_id].epoch, v)
            if p == UNMAPPED:
                await self._write_chunk_locked(v, 0, None)
            else:
                data = await self._pool_read(p, 0, self._per_chunk)
                await self._write_chunk_locked(v, 0, memoryview(data))
            state.restore_done += 1

    async def finish_restore(self) -> None:
        async with self._admin:
            await self.journal.commit(self.state.finish_restore())
        self._wake.set()

    # -- settings and reporting -------------------------------------------------------

    async def set_policy(self, policy: SpacePolicy) -> None:
        self._check_open()
        async with self._admin:
            await self.journal.commit(self.state.change_settings(policy, self.state.schedule))
        self._wake.set()

    async def set_schedule(self, schedule: Schedule | None) -> None:
        self._check_open()
        async with self._admin:
            await self.journal.commit(self.state.change_settings(self.state.policy, schedule))
        if self._schedule_task is not None:
            self._schedule_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._schedule_task
            self._schedule_task = None
        if schedule is not None:
            self._schedule_task = self._spawn(run_schedule(self), "volume-schedule")

    def info(self) -> VolumeInfo:
        state = self.state
        g = self.geometry
        background: list[Progress] = []
        if not state.scan_done:
            background.append(Progress("scan", state.scan_next_page, g.table_pages))
        if state.reclaim_pending:
            total = state.reclaim_total
            background.append(Progress("reclaim", total - state.reclaim_pending, total))
        if state.restore_snapshot_id:
            background.append(Progress("restore", state.restore_done, state.restore_total))
        free = len(state.free) if state.scan_done else 0
        return VolumeInfo(
            uuid=state.superblock.uuid_text,
            format_version=self.journal.superblock.version,
            size_bytes=g.volume_chunks * g.chunk_size,
            block_size=g.block_size,
            chunk_size=g.chunk_size,
            reserve_bytes=g.reserve_chunks * g.chunk_size,
            snapshot_used_bytes=state.snapshot_used * g.chunk_size,
            snapshot_used_percent=round(state.used_percent(), 2),
            free_bytes=free * g.chunk_size,
            snapshots=sum(1 for s in state.snapshots.values() if not s.deleting),
            max_snapshots=g.max_snapshots,
            policy=state.policy,
            schedule=state.schedule,
            holder=self.holder,
            background=background,
        )
