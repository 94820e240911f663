"""The background work a ``SnapshotVolume`` owns, and two small helpers its I/O uses.

Each coroutine here runs as one of the volume's tasks (started by the volume, cancelled
and awaited at its close): maintenance (free-space scan, reclaim, freed-chunk release,
the space policy, the periodic FLUSH), the restore merge, and the schedule. They see the
volume only through ``HostVolume``, the part of it they drive; they live here to keep
volume.py, which is the volume's I/O, readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Final, Protocol

from sanstack.block.device import BlockDevice, DeviceNotReady
from sanstack.snapshot.journal import Journal
from sanstack.snapshot.layout import PAGE
from sanstack.snapshot.model import OnFull, SnapshotInfo
from sanstack.snapshot.state import VolumeState

log = logging.getLogger("sanstack.snapshot.volume")

SCAN_PAGES_PER_STEP: Final = 64
RECLAIM_PER_STEP: Final = 4096
RESTORE_CHUNKS_PER_STEP: Final = 256


class HostVolume(Protocol):
    """What the background tasks use of the volume that runs them (``SnapshotVolume``)."""

    @property
    def state(self) -> VolumeState: ...

    @property
    def base(self) -> BlockDevice: ...

    @property
    def journal(self) -> Journal: ...

    def scan_progressed(self) -> None:
        """The scan classified more pages: a writer short of a free chunk may look again."""

    def scan_finished(self) -> None:
        """Every pool chunk is classified: snapshot reads and restores may go on."""

    async def wait_for_work(self, seconds: float) -> None:
        """Until I/O or an operation asks for maintenance, or ``seconds`` pass."""

    def release_freed(self) -> None:
        """Hand back the freed chunks whose free is durable and no older I/O still reads."""

    async def flush_base(self) -> None:
        """FLUSH the device under the volume; every journalled record is then on the medium."""

    async def prove(self) -> None:
        """FLUSH, and make the records it covered trusted at replay (a MARK, FLUSHed)."""

    async def wait_scan(self, timeout: float = ...) -> None:  # noqa: ASYNC109
        """Until the free-space scan is done; ``DeviceNotReady`` if it takes too long."""

    async def restore_chunk(self, v: int) -> None:
        """Copy chunk ``v`` back from the snapshot being restored, unless a write did."""

    async def finish_restore(self) -> None:
        """Record that the restore is complete: every chunk was copied back."""

    async def create_snapshot(
        self, name: str, *, weight: int = 1, keep: bool = False, scheduled: bool = False
    ) -> SnapshotInfo: ...

    async def delete_snapshot(self, name: str) -> None: ...


async def maintain(volume: HostVolume) -> None:
    state = volume.state
    g = state.geometry
    bs = volume.base.block_size
    while not state.scan_done:
        first = state.scan_next_page
        count = min(SCAN_PAGES_PER_STEP, g.table_pages - first)
        raw = await volume.base.read((g.chunk_table + first * PAGE) // bs, count * PAGE // bs)
        for i in range(count):
            state.scan_page(first + i, raw[i * PAGE : (i + 1) * PAGE])
        volume.scan_progressed()
        await asyncio.sleep(0)
    volume.scan_finished()
    while True:
        await reclaim_all(volume)
        await apply_policy(volume)
        if state.waiting_for_flush():  # dm-thin commits every second; so do we
            await volume.prove()
        await volume.wait_for_work(1.0)


async def apply_policy(volume: HostVolume) -> None:
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
        with contextlib.suppress(Exception):
            await volume.delete_snapshot(victim.name)
        await reclaim_all(volume)


async def reclaim_all(volume: HostVolume) -> None:
    state = volume.state
    while state.reclaim_pending:
        state.reclaim_step(RECLAIM_PER_STEP)
        await volume.journal.commit([])  # tags the frees; they wait for durability
        volume.release_freed()
        await asyncio.sleep(0)


async def restore_merge(volume: HostVolume) -> None:
    """Copy the snapshot's chunks back, as dm-snapshot's merge does, while I/O goes on."""
    state = volume.state
    while not state.scan_done:  # bounded waits; close cancels this task
        with contextlib.suppress(DeviceNotReady):
            await volume.wait_scan()
    v = 0
    while v < state.n:
        for u in list(state.restore_candidates(v, RESTORE_CHUNKS_PER_STEP)):
            await volume.restore_chunk(u)
        v += RESTORE_CHUNKS_PER_STEP
        await asyncio.sleep(0)
    await volume.finish_restore()
    log.info("restore finished: %d chunks copied back", state.restore_done)


async def run_schedule(volume: HostVolume) -> None:
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

    A timer on a waiter task, not ``asyncio.timeout``: the NBD and iSCSI servers run a
    request's first step eagerly, outside its own Task (``edge/tasks.start_eagerly``), where
    ``asyncio.timeout`` finds no Task, or the caller's, which its expiry would cancel. Nor
    ``wait_for``: on 3.11 a task cancelled inside ``wait_for`` on an Event could stay
    "cancelling" forever, hanging close. A cancellation of ours cancels the waiter (the
    future the Task waits on) and comes through as CancelledError, never as TimeoutError.
    """
    if event.is_set():
        return
    loop = asyncio.get_running_loop()
    waiter = loop.create_task(event.wait())
    expired: list[bool] = []

    def expire() -> None:
        expired.append(True)
        waiter.cancel()

    timer = loop.call_later(seconds, expire)
    try:
        await waiter
    except asyncio.CancelledError:
        if expired and waiter.cancelled():  # the timer's doing, not a cancellation of ours
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()
        waiter.cancel()
