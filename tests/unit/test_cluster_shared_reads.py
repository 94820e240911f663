"""``DiskExecutor.read``: a READ of a disk waiting in the PR queue, not started yet, is shared
by every caller asking for that disk meanwhile (a flood of ``cluster status`` queues one READ
per disk, not one per request); a caller that comes once it started queues its own (it may
need the disk as it is after its own command), and so do the sharers of a READ whose caller
gave up before it started."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from tests.support.waits import until

from sanstack.block.device import DeviceNotReady
from sanstack.cluster.disks import DiskExecutor
from sanstack.cluster.work_queue import WorkQueue
from sanstack.mpio.reservations import HostRegistration
from sanstack.scsi.pr_codec import PRType, ReadKeysData, ReadReservationData

T = TypeVar("T")
KEY = 0x1111


class CountingDisk:
    """A disk whose READs are counted and can be held (``hold``) or made to fail."""

    def __init__(self) -> None:
        self.registration = HostRegistration()
        self.reads = 0
        self.generation = 0
        self.hold: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def pr_read_keys(self) -> ReadKeysData:
        self.reads += 1
        if self.hold is not None:
            await self.hold.wait()
        if self.fail is not None:
            raise self.fail
        return ReadKeysData(self.generation, (KEY,))

    async def pr_read_reservation(self) -> ReadReservationData:
        return ReadReservationData(self.generation, KEY, 0, PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)

    async def pr_register(self, key: int, *, aptpl: bool = False) -> None:
        raise AssertionError("not used")

    async def pr_reserve(self, pr_type: PRType) -> None:
        raise AssertionError("not used")

    async def pr_release(self, pr_type: PRType) -> None:
        raise AssertionError("not used")

    async def pr_preempt(self, victim_key: int, pr_type: PRType, *, abort: bool = False) -> None:
        raise AssertionError("not used")


def run(body: Callable[[WorkQueue, asyncio.Event], Awaitable[T]]) -> T:
    """``body`` with a one-worker PR queue whose worker is busy until the event is set."""

    async def main() -> T:
        queue = WorkQueue("pr", 1, 64)
        busy = asyncio.Event()
        blocker = asyncio.ensure_future(queue.run(busy.wait, 30))
        await until(lambda: queue.stats.running == 1, 5, "the worker busy")
        try:
            return await body(queue, busy)
        finally:
            busy.set()
            await blocker
            await queue.close()

    return asyncio.run(main())


def test_callers_of_a_queued_read_share_it() -> None:
    disk = CountingDisk()

    async def body(queue: WorkQueue, busy: asyncio.Event) -> None:
        executor = DiskExecutor(queue, KEY, lambda: 0.0)
        readers = [asyncio.ensure_future(executor.read(disk)) for _ in range(10)]
        await until(lambda: queue.stats.queued == 1, 5, "one READ queued")
        assert not any(r.done() for r in readers)  # all asked (the check ran after they did)
        busy.set()
        answers = await asyncio.gather(*readers)
        assert all(a == answers[0] for a in answers)
        assert disk.reads == 1

    run(body)


def test_a_caller_after_the_read_started_queues_its_own() -> None:
    disk = CountingDisk()

    async def body(queue: WorkQueue, busy: asyncio.Event) -> None:
        executor = DiskExecutor(queue, KEY, lambda: 0.0)
        busy.set()
        disk.hold = asyncio.Event()
        first = asyncio.ensure_future(executor.read(disk))
        await until(lambda: disk.reads == 1, 5, "the first READ under way")
        disk.generation = 7  # the disk changed after the first READ began
        second = asyncio.ensure_future(executor.read(disk))
        await until(lambda: queue.stats.queued == 1, 5, "a second READ queued")
        disk.hold.set()
        keys_first, _ = await first
        keys_second, _ = await second
        assert (keys_first.prgeneration, keys_second.prgeneration) == (7, 7)
        assert disk.reads == 2

    run(body)


def test_sharers_of_a_read_whose_caller_gave_up_queue_their_own() -> None:
    disk = CountingDisk()

    async def body(queue: WorkQueue, busy: asyncio.Event) -> None:
        executor = DiskExecutor(queue, KEY, lambda: 0.0)
        first = asyncio.ensure_future(executor.read(disk))
        await until(lambda: queue.stats.queued == 1, 5, "the first READ queued")
        second = asyncio.ensure_future(executor.read(disk))
        await asyncio.sleep(0)  # one turn of the loop: the second asks, joining the first's
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        busy.set()
        keys, _reservation = await asyncio.wait_for(second, 5)
        assert keys.reservation_keys == (KEY,)
        assert disk.reads == 1  # the given-up READ was skipped, the second's ran

    run(body)


def test_the_error_of_a_shared_read_is_every_sharer_s() -> None:
    disk = CountingDisk()
    disk.fail = DeviceNotReady("no path for READ KEYS")

    async def body(queue: WorkQueue, busy: asyncio.Event) -> None:
        executor = DiskExecutor(queue, KEY, lambda: 0.0)
        readers = [asyncio.ensure_future(executor.read(disk)) for _ in range(3)]
        await until(lambda: queue.stats.queued == 1, 5, "one READ queued")
        busy.set()
        results = await asyncio.gather(*readers, return_exceptions=True)
        assert all(isinstance(r, DeviceNotReady) for r in results)
        assert disk.reads == 1

    run(body)


def test_a_recent_read_answers_status_until_it_is_old_or_a_pr_out_outdates_it() -> None:
    async def body(queue: WorkQueue, busy: asyncio.Event) -> None:
        busy.set()
        now = [100.0]
        registered: list[int] = []

        class Registering(CountingDisk):
            async def pr_register(self, key: int, *, aptpl: bool = False) -> None:
                registered.append(key)

        disk = Registering()
        executor = DiskExecutor(queue, KEY, lambda: now[0])
        first, age = await executor.read_recent(disk, 3.0)
        assert (disk.reads, age) == (1, 0.0)
        now[0] += 2.0
        again, age = await executor.read_recent(disk, 3.0)
        assert (disk.reads, again, age) == (1, first, 2.0)  # no command: 2 s old
        now[0] += 2.0
        await executor.read_recent(disk, 3.0)
        assert disk.reads == 2  # 4 s old: read again
        await executor.register(disk)  # a PR OUT: what was read may be out of date
        assert registered == [KEY]
        await executor.read_recent(disk, 3.0)
        assert disk.reads == 3

    run(body)
