"""Tasks at the edges: started eagerly, and waited for (bounded) once cancelled.

A cached READ never suspends: the file backstore serves it with ``preadv(RWF_NOWAIT)`` on
the event loop. Creating and scheduling an asyncio Task for it would cost more than the read.
Python 3.12's ``asyncio.eager_task_factory`` does this for every task; sanstack supports 3.11,
so the command paths do it by hand with ``start_eagerly``.

Every edge that aborts or cancels tasks then waits for them to end, but never without bound
(ARCHITECTURE.md rule 5): ``wait_ended`` waits ``TASK_END_WAIT_SECONDS`` at most and logs
what is still running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Coroutine, Generator
from typing import Any, Final, TypeVar

log = logging.getLogger(__name__)

# How long an aborted or cancelled task may take to end. A task that outlives it is logged
# and left to finish on its own: the caller (a task management response, a shutdown) goes on.
TASK_END_WAIT_SECONDS: Final = 10.0

_TaskT = TypeVar("_TaskT", bound="asyncio.Future[Any]")


class _Resume:
    """Hands a suspended coroutine to a Task: re-yields what it waits on, then drives it."""

    __slots__ = ("_coro", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting: object) -> None:
        self._coro = coro
        self._waiting = waiting

    def __await__(self) -> Generator[Any, Any, None]:
        coro = self._coro
        waiting = self._waiting
        while True:
            try:
                value = yield waiting
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation the Task throws in goes to the coroutine
                try:
                    waiting = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting = coro.send(value)
                except StopIteration:
                    return


async def _continue(coro: Coroutine[Any, Any, None], waiting: object) -> None:
    await _Resume(coro, waiting)


def start_eagerly(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]
) -> asyncio.Task[None] | None:
    """Run ``coro`` until it first waits. None if it already finished; else its Task.

    An exception from the first step propagates to the caller, as it would from ``await``.
    """
    try:
        waiting = coro.send(None)
    except StopIteration:
        return None
    return loop.create_task(_continue(coro, waiting))


async def wait_ended(tasks: Collection[_TaskT], what: str) -> set[_TaskT]:
    """Wait until ``tasks`` end, ``TASK_END_WAIT_SECONDS`` at most; return those that ended.

    Those still running are logged, as "N ``what`` still running" (``what`` is a plural,
    such as "aborted tasks"), and left to end on their own. Never raises ``TimeoutError``.
    """
    if not tasks:
        return set()
    done, pending = await asyncio.wait(tasks, timeout=TASK_END_WAIT_SECONDS)
    if pending:
        log.warning("%d %s still running after %ss", len(pending), what, TASK_END_WAIT_SECONDS)
    return done


def still_wanted() -> None:
    """Raise CancelledError when this task was asked to stop: a retry loop calls it each
    time round, so a cancellation some library call swallowed (3.11's ``wait_for`` does,
    when its inner awaitable ends as the cancellation comes) still ends the loop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
