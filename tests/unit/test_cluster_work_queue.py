"""The node's bounded work queue: results and errors reach the caller, a full queue and a
slow job are bounded, closing fails what is queued, and a job stuck on one queue never
holds up another queue (the KB967724 shape: reservation work beside path work)."""

from __future__ import annotations

import asyncio

import pytest
from tests.support.waits import until

from sanstack.cluster.work_queue import WorkQueue, WorkQueueClosed, WorkQueueFull


def run(coro: object) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))  # type: ignore[arg-type]


def test_results_and_errors_reach_the_caller() -> None:
    async def body() -> None:
        queue = WorkQueue("pr", workers=2, capacity=4)

        async def ok() -> int:
            return 7

        async def bad() -> int:
            raise ValueError("device said no")

        assert await queue.run(ok, 1) == 7
        with pytest.raises(ValueError, match="device said no"):
            await queue.run(bad, 1)
        assert queue.stats.done == 1 and queue.stats.failed == 1
        await queue.close()

    run(body())


def test_a_full_queue_and_a_slow_job_are_bounded() -> None:
    async def body() -> None:
        queue = WorkQueue("pr", workers=1, capacity=1)
        release = asyncio.Event()

        async def stuck() -> None:
            await release.wait()

        first = asyncio.create_task(queue.run(stuck, 5))
        await until(lambda: queue.stats.running == 1, 5, "the first job on the worker")
        second = asyncio.create_task(queue.run(stuck, 5))
        await until(lambda: queue.stats.queued == 1, 5, "the second job in the one slot")
        with pytest.raises(WorkQueueFull):
            await queue.run(stuck, 0.05)
        assert queue.stats.rejected == 1
        release.set()
        await asyncio.gather(first, second)

        async def slow() -> None:
            await asyncio.sleep(5)

        with pytest.raises(TimeoutError):
            await queue.run(slow, 0.05)
        assert queue.stats.timed_out == 1
        await queue.close()

    run(body())


def test_close_fails_queued_and_running_jobs() -> None:
    async def body() -> None:
        queue = WorkQueue("pr", workers=1, capacity=2)
        forever = asyncio.Event()

        async def stuck() -> None:
            await forever.wait()

        jobs = [asyncio.create_task(queue.run(stuck, 30)) for _ in range(2)]
        await until(
            lambda: queue.stats.running == 1 and queue.stats.queued == 1,
            5,
            "one running, one queued",
        )
        await queue.close()
        for job in jobs:
            with pytest.raises(WorkQueueClosed):
                await job
        with pytest.raises(WorkQueueClosed):
            await queue.run(stuck, 1)

    run(body())


def test_a_saturated_queue_never_holds_up_another() -> None:
    async def body() -> None:
        path_work = WorkQueue("path", workers=1, capacity=1)
        pr_work = WorkQueue("pr", workers=1, capacity=1)
        blocked = asyncio.Event()

        async def stuck() -> None:
            await blocked.wait()

        held = [asyncio.create_task(path_work.run(stuck, 30)) for _ in range(2)]
        await until(
            lambda: path_work.stats.running == 1 and path_work.stats.queued == 1,
            5,
            "the path queue saturated",
        )

        async def register() -> str:
            return "registered"

        assert await pr_work.run(register, 1) == "registered"
        blocked.set()
        await asyncio.gather(*held)
        await path_work.close()
        await pr_work.close()

    run(body())
