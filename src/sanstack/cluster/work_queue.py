"""A bounded work queue with its own workers: the node's reservation work runs on one.

KB967724's deadlock was the cluster's reservation work and MPIO's work items waiting on
each other in one shared pool at startup. Here the two never share a pool: path work
(logins, ALUA, failover, re-driven I/O) belongs to the host's sessions and maps, which run
on their own tasks; reservation work (arbitration, defence, fencing of hundreds of disks)
runs on this queue's workers. Both are bounded: a job waits at most ``timeout`` for room
in the queue and ``timeout`` again to run, so nothing waits for ever, and a full queue is
an error the caller sees (``WorkQueueFull``), not an unbounded backlog.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sanstack.edge.tasks import wait_ended
from sanstack.errors import SanstackError

log = logging.getLogger(__name__)
T = TypeVar("T")


class WorkQueueFull(SanstackError):
    """No room in the queue within the job's bound."""


class WorkQueueClosed(SanstackError):
    """The queue closed before the job ran."""


@dataclass(slots=True)
class _Job:
    run: Callable[[], Awaitable[Any]]
    timeout: float
    result: asyncio.Future[Any]


@dataclass(slots=True)
class WorkQueueStats:
    queued: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    timed_out: int = 0
    rejected: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "queued": self.queued,
            "running": self.running,
            "done": self.done,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "rejected": self.rejected,
        }


class WorkQueue:
    def __init__(self, name: str, workers: int, capacity: int) -> None:
        if workers < 1 or capacity < 1:
            raise ValueError("a work queue needs at least one worker and one slot")
        self.name = name
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=capacity)
        self._workers = [asyncio.create_task(self._work()) for _ in range(workers)]
        self._closed = False
        self.stats = WorkQueueStats()

    async def run(self, job: Callable[[], Awaitable[T]], bound: float) -> T:
        """Run ``job`` on a worker and return its result; at most ``bound`` seconds to get
        a place in the queue, then ``bound`` to run (it is cancelled after that)."""
        if self._closed:
            raise WorkQueueClosed(f"{self.name} work queue is closed")
        entry = _Job(job, bound, asyncio.get_running_loop().create_future())
        try:
            async with asyncio.timeout(bound):  # not wait_for: see _work
                await self._queue.put(entry)
        except TimeoutError:
            self.stats.rejected += 1
            raise WorkQueueFull(
                f"{self.name} work queue full for {bound:g} s ({self._queue.maxsize} queued)"
            ) from None
        self.stats.queued = self._queue.qsize()
        try:
            result: T = await entry.result
        except asyncio.CancelledError:
            entry.result.cancel()  # a worker that picks it up later skips it
            raise
        return result

    async def _work(self) -> None:
        while True:
            entry = await self._queue.get()
            self.stats.queued = self._queue.qsize()
            if entry.result.done():  # its caller gave up while it waited
                continue
            self.stats.running += 1
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for drops a cancellation that
                # comes as the job ends, and the worker would outlive close().
                async with asyncio.timeout(entry.timeout):
                    value = await entry.run()
            except TimeoutError:
                self.stats.timed_out += 1
                if not entry.result.done():
                    entry.result.set_exception(
                        TimeoutError(f"{self.name} job took more than {entry.timeout:g} s")
                    )
            except asyncio.CancelledError:
                if not entry.result.done():
                    entry.result.set_exception(WorkQueueClosed(f"{self.name} work queue closed"))
                raise
            except Exception as exc:  # the job's error is its caller's
                self.stats.failed += 1
                if not entry.result.done():
                    entry.result.set_exception(exc)
            else:
                self.stats.done += 1
                if not entry.result.done():
                    entry.result.set_result(value)
            finally:
                self.stats.running -= 1

    async def close(self) -> None:
        """Cancel the workers (a running job is cancelled) and fail every queued job."""
        self._closed = True
        for worker in self._workers:
            worker.cancel()
        await wait_ended(self._workers, f"{self.name} workers")
        while not self._queue.empty():
            entry = self._queue.get_nowait()
            if not entry.result.done():
                entry.result.set_exception(WorkQueueClosed(f"{self.name} work queue closed"))
