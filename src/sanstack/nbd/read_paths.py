"""What the NBD server asks of a device to read it without a joined copy or a coroutine.

Kept apart from ``nbd/server.py``: that module is compiled (``sanstack/native.py``), and a
``runtime_checkable`` Protocol must stay an interpreted class for ``isinstance`` to take it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

Parts = Sequence[bytes | memoryview]


class ReadSink(Protocol):
    """What a ``ReadStarter`` tells of a read's end: ``read_done`` with its data, or
    ``read_slow`` with a coroutine to make and await for the rest (retries, a path failed
    over, the error), which the sink never runs inside the call."""

    def read_done(self, parts: Parts) -> None: ...

    def read_slow(self, resume: Callable[[], Awaitable[Parts]]) -> None: ...


class ReadTicket(Protocol):
    def cancel(self) -> None:
        """Give the read up: its sink is told nothing more."""
        ...


@runtime_checkable
class ReadStarter(Protocol):
    """A device that starts a read without a coroutine (``MultipathDevice``: a read through
    a map completes in a callback of its session, and the NBD reply is queued there): a
    request costs no coroutine frames, future or loop callback. None: the read cannot
    start that way now, and goes the coroutine way (``read_parts`` or ``read``)."""

    def start_read(self, lba: int, count: int, sink: ReadSink) -> ReadTicket | None: ...


@runtime_checkable
class PartsReader(Protocol):
    """A device whose reads come in pieces (``MultipathDevice``, ``ISCSIDevice``: one per
    Data-In PDU): the reply writes the pieces as they are instead of a joined copy."""

    async def read_parts(self, lba: int, count: int) -> Sequence[bytes | memoryview]: ...
