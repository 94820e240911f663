"""Bounded waits for a condition that another task or process is still bringing about.

A test asserts on state only once the condition it needs holds; it never sleeps for a
guessed time. Each wait polls ``check`` until it is true and fails the test, saying what it
waited for, after ``within`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

POLL = 0.02


async def until(check: Callable[[], bool], within: float, what: str) -> None:
    """Wait (on the event loop) until ``check()`` holds; fail the test after ``within`` s."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() >= deadline:
            pytest.fail(f"not within {within}s: {what}")
        await asyncio.sleep(POLL)


async def until_async(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """``until`` for a check that has to do I/O (ask a device, say)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() >= deadline:
            pytest.fail(f"not within {within}s: {what}")
        await asyncio.sleep(POLL)


def wait_until(check: Callable[[], bool], within: float, what: str) -> None:
    """``until`` for a test without an event loop (driving processes)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() >= deadline:
            pytest.fail(f"not within {within}s: {what}")
        time.sleep(POLL)
