"""A volume's bounded waits work in a request started eagerly, outside any Task (the NBD and
iSCSI servers run a request's first step that way, ``edge/tasks.start_eagerly``): a write
that waits for a snapshot's pause or for the free-space scan, a snapshot read that waits
for the scan. ``asyncio.timeout`` needs a Task, so ``wait_event`` falls back to a timer."""

from __future__ import annotations

import asyncio

import pytest
from tests.support.waits import until

from sanstack.edge.tasks import start_eagerly
from sanstack.snapshot.volume_tasks import wait_event


async def eagerly(event: asyncio.Event, seconds: float, outcome: list[str]) -> None:
    try:
        await wait_event(event, seconds)
    except TimeoutError:
        outcome.append("timed out")
    except asyncio.CancelledError:
        outcome.append("cancelled")
        raise
    else:
        outcome.append("set")


def test_an_eager_wait_returns_when_the_event_is_set() -> None:
    async def body() -> None:
        event = asyncio.Event()
        outcome: list[str] = []
        task = start_eagerly(asyncio.get_running_loop(), eagerly(event, 5.0, outcome))
        assert task is not None and outcome == []
        event.set()
        await until(task.done, 5.0, "the wait ended")
        assert outcome == ["set"]

    asyncio.run(body())


def test_an_eager_wait_times_out_after_its_bound() -> None:
    async def body() -> None:
        outcome: list[str] = []
        task = start_eagerly(asyncio.get_running_loop(), eagerly(asyncio.Event(), 0.05, outcome))
        assert task is not None
        await until(task.done, 5.0, "the wait timed out")
        assert outcome == ["timed out"] and not task.cancelled()

    asyncio.run(body())


def test_cancelling_an_eager_wait_is_a_cancellation_not_a_timeout() -> None:
    async def body() -> None:
        outcome: list[str] = []
        task = start_eagerly(asyncio.get_running_loop(), eagerly(asyncio.Event(), 5.0, outcome))
        assert task is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert outcome == ["cancelled"]
        assert len(asyncio.all_tasks()) == 1  # the waiter is gone too

    asyncio.run(body())


def test_a_wait_inside_a_task_still_times_out() -> None:
    async def body() -> None:
        outcome: list[str] = []
        await eagerly(asyncio.Event(), 0.05, outcome)
        assert outcome == ["timed out"]

    asyncio.run(body())
