"""A volume's bounded waits work in a request started eagerly, outside any Task (the NBD and
iSCSI servers run a request's first step that way, ``edge/tasks.start_eagerly``): a write
that waits for a snapshot's pause or for the free-space scan, a snapshot read that waits
for the scan. ``asyncio.timeout`` would find no Task there, or the caller's (here the test's
own, as when a server callback runs inside some Task), and cancel that one at its expiry;
``wait_event`` is a timer on a waiter instead. Each test runs on the default loop and on
uvloop (what the daemons run)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop
from tests.support.waits import until

from sanstack.edge.tasks import start_eagerly
from sanstack.snapshot.volume_tasks import wait_event


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    def runner(coro: Coroutine[Any, Any, None]) -> None:
        if request.param == "uvloop":
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as loop_runner:
                loop_runner.run(coro)
        else:
            asyncio.run(coro)

    return runner


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


def test_an_eager_wait_returns_when_the_event_is_set(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def body() -> None:
        event = asyncio.Event()
        outcome: list[str] = []
        task = start_eagerly(asyncio.get_running_loop(), eagerly(event, 5.0, outcome))
        assert task is not None and outcome == []
        event.set()
        await until(task.done, 5.0, "the wait ended")
        assert outcome == ["set"]

    run(body())


def test_an_eager_wait_times_out_after_its_bound(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def body() -> None:
        outcome: list[str] = []
        task = start_eagerly(asyncio.get_running_loop(), eagerly(asyncio.Event(), 0.05, outcome))
        assert task is not None
        await until(task.done, 5.0, "the wait timed out")
        assert outcome == ["timed out"] and not task.cancelled()

    run(body())


def test_cancelling_an_eager_wait_is_a_cancellation_not_a_timeout(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def body() -> None:
        outcome: list[str] = []
        task = start_eagerly(asyncio.get_running_loop(), eagerly(asyncio.Event(), 5.0, outcome))
        assert task is not None
        await asyncio.sleep(0)  # one turn: the Task takes the coroutine over (its first step)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert outcome == ["cancelled"]
        assert len(asyncio.all_tasks()) == 1  # the waiter is gone too

    run(body())


def test_a_wait_inside_a_task_still_times_out(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def body() -> None:
        outcome: list[str] = []
        await eagerly(asyncio.Event(), 0.05, outcome)
        assert outcome == ["timed out"]

    run(body())
