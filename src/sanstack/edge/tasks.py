"""Run a coroutine's first step at once; make a Task only if it really waits.

A cached READ never suspends: the file backstore serves it with ``preadv(RWF_NOWAIT)`` on
the event loop. Creating and scheduling an asyncio Task for it would cost more than the read.
Python 3.12's ``asyncio.eager_task_factory`` does this for every task; sanstack supports 3.11,
so the target's command path does it by hand with ``start_eagerly``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any


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
