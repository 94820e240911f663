"""The background work a ``SnapshotVolume`` owns, and small helpers its I/O shares.

Each coroutine here runs as one of the volume's tasks (started by the volume, cancelled
and awaited at its close): maintenance (free-space scan, reclaim, freed-chunk release,
the space policy, the periodic FLUSH), the restore merge, and the schedule. They use the
volume's own state and events; they are kept apart only to keep volume.py readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from sanstack.block.device import DeviceNotReady, LBAExtent, ProvisioningStatus
from sanstack.snapshot.layout import PAGE, UNMAPPED
from sanstack.snapshot.model import OnFull

if TYPE_CHECKING:
    from sanstack.snapshot.volume import SnapshotVolume

log = logging.getLogger("sanstack.snapshot.volume")

SCAN_PAGES_PER_STEP: Final = 64
RECLAIM_PER_STEP: Final = 4096
RESTORE_CHUNKS_PER_STEP: Final = 256


async def maintain(volume: SnapshotVolume) -> None:
    state = volume.state
    g = volume.geometry
    bs = volume.base.block_size
    while not state.scan_done:
        first = state.scan_next_page
        count = min(SCAN_PAGES_PER_STEP, g.table_pages - first)
        raw = await volume.base.read((g.chunk_table + first * PAGE) // bs, count * PAGE // bs)
        for i in range(count):
            state.scan_page(first + i, raw[i * PAGE : (i + 1) * PAGE])
        volume._scan_progress.set()
        await asyncio.sleep(0)
    volume._scan_complete.set()
    volume._scan_progress.set()
    while True:
        await reclaim_all(volume)
        await apply_policy(volume)
        if volume.state.waiting_for_flush():  # dm-thin commits every second; so do we
            await volume._flush_base()
        volume._wake.clear()
        with contextlib.suppress(TimeoutError):
            await wait_event(volume._wake, 1.0)


async def apply_policy(volume: SnapshotVolume) -> None:
    state = volume.state
    if state.policy.on_full != OnFull.DELETE:
        return
    while state.kept_percent() >= state.policy.delete_percent and not state.reclaim_pending:
        candidates = state.deletion_candidates()
        if not candidates:
            return
        victim = candidates[0]
        log.warning(
            "snapshot space %.0f%% used (auto-delete at %d%%): deleting %r",
            state.used_percent(),
            state.policy.delete_percent,
            victim.name,
        )
        async with volume._admin:
            with contextlib.suppress(Exception):
                await volume.journal.commit(state.delete_snapshot(victim.name))
        await reclaim_all(volume)


async def reclaim_all(volume: SnapshotVolume) -> None:
    state = volume.state
    while state.reclaim_pending:
        state.reclaim_step(RECLAIM_PER_STEP)
        await volume.journal.commit([])  # tags the frees; they wait for durability
        volume._after_durable()
        await asyncio.sleep(0)


async def restore_merge(volume: SnapshotVolume) -> None:
    """Copy the snapshot's chunks back, as dm-snapshot's merge does, while I/O goes on."""
    state = volume.state
    while not state.scan_done:  # bounded waits; close cancels this task
        with contextlib.suppress(DeviceNotReady):
            await volume.wait_scan()
    v = 0
    while v < state.n:
        for u in list(state.restore_candidates(v, RESTORE_CHUNKS_PER_STEP)):
            async with volume._writing(), volume._locked_chunk(u):
                if state.unrestored(u):
                    source = state.snapshots[state.restore_snapshot_id].epoch
                    p = state.snapshot_chunk(source, u)
                    if p == UNMAPPED:
                        await volume._write_chunk_locked(u, 0, None)
                    else:
                        data = await volume._pool_read(p, 0, volume._per_chunk)
                        await volume._write_chunk_locked(u, 0, memoryview(data))
                    volume._restore_done += 1
        v += RESTORE_CHUNKS_PER_STEP
        await asyncio.sleep(0)
    async with volume._admin:
        await volume.journal.commit(state.finish_restore())
    volume._wake.set()
    log.info("restore finished: %d chunks copied back", volume._restore_done)


async def run_schedule(volume: SnapshotVolume) -> None:
    from sanstack.snapshot.schedule import next_due, scheduled_name, to_prune

    while True:
        schedule = volume.state.schedule
        if schedule is None:
            return
        snaps = volume.state.visible_snapshots()
        due = next_due(schedule, snaps, time.time())
        await asyncio.sleep(max(0.0, due - time.time()))
        schedule = volume.state.schedule
        if schedule is None:
            return
        now = time.time()
        try:
            await volume.create_snapshot(
                scheduled_name(schedule, now),
                weight=schedule.weight,
                scheduled=True,
            )
        except Exception as exc:  # a refused snapshot is logged, the schedule goes on
            log.warning("scheduled snapshot not taken: %s", exc)
            await asyncio.sleep(min(schedule.interval, 60))
        for record in to_prune(schedule, volume.state.visible_snapshots()):
            with contextlib.suppress(Exception):
                await volume.delete_snapshot(record.name)


@dataclass(slots=True)
class ChunkLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holders and waiters: the entry goes when the last one leaves


async def wait_event(event: asyncio.Event, seconds: float) -> None:
    """``event.wait()`` bounded by ``seconds`` (raises TimeoutError).

    ``asyncio.timeout`` rather than ``wait_for``: on 3.11 a task cancelled inside
    ``wait_for`` on an Event could stay "cancelling" forever, hanging close.
    """
    if event.is_set():
        return
    async with asyncio.timeout(seconds):
        await event.wait()


def extents(
    chunk_of: Callable[[int], int], lba: int, max_count: int, num_blocks: int, per: int
) -> list[LBAExtent]:
    """GET LBA STATUS from a chunk map: runs of mapped and deallocated blocks from ``lba``."""
    end = min(num_blocks, lba + max_count)
    out: list[LBAExtent] = []
    while lba < end and len(out) < 64:
        v = lba // per
        status = (
            ProvisioningStatus.DEALLOCATED if chunk_of(v) == UNMAPPED else ProvisioningStatus.MAPPED
        )
        start = lba
        while lba < end:
            v = lba // per
            here = (
                ProvisioningStatus.DEALLOCATED
                if chunk_of(v) == UNMAPPED
                else ProvisioningStatus.MAPPED
            )
            if here != status:
                break
            lba = min(end, (v + 1) * per)
        out.append(LBAExtent(start, lba - start, status))
    return out
