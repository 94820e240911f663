"""The one loop that drives a sans-IO connection core from an ``asyncio.Protocol``.

The target's connections, the initiator's sessions and the NBD server's connections are
each an ``asyncio.Protocol`` around a sans-IO core. This module is the part they share, as
aioquic shares one protocol class between client and server: bytes in, the core's events
out to the edge's handlers, everything a core produced in one batch written with one
``writelines`` (32 commands completing together cost one syscall), and one timer at the
core's earliest deadline. What an edge does with each event, how it starts and owns tasks,
and how it applies flow control stay in the edge.

When output leaves matters as much as how (``_Writes``): at the end of the I/O callback
that produced it, for every driver of the loop, so what a client's requests made a session
send reaches the target before the loop turns to anything else; and what the callbacks a
pump set off produce (a command's answer resuming the request that answers its client)
leaves in one flush queued right behind them, in the same loop iteration. Written a loop
iteration later, as it once was, every hop through the host waited for whatever else that
iteration brought, and the processes on either side sat idle meanwhile.

The pump runs for every received segment, completed task and fired timer, and on the
target it carries every command, so it is written for speed: events are dispatched through a
class-level table keyed by the event's exact type, which costs what an ``isinstance`` chain
costs and adds no call per event; hooks run once per pump, never per event.
"""

from __future__ import annotations

import asyncio
import ctypes
import platform
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar, cast

from mypy_extensions import mypyc_attr


class SansIOCore(Protocol):
    """What a sans-IO connection core offers the edge that drives it."""

    def next_event(self) -> object | None: ...

    @property
    def has_data_to_send(self) -> bool: ...

    def data_to_send(self) -> Sequence[bytes | memoryview]: ...


class TimedCore(SansIOCore, Protocol):
    """A core that also keeps time: time enters as ``now`` (aioquic's contract)."""

    def receive_data(self, data: bytes, now: float) -> None: ...

    def connection_lost(self) -> None: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


# ``None`` stands for "no core (any more)": the target makes its core only once connected
# and drops it when the connection ends.
CoreT = TypeVar("CoreT", bound="SansIOCore | None")
TimedCoreT = TypeVar("TimedCoreT", bound="TimedCore | None")

# An event handler: (edge, event). It returns True when the connection has ended and the
# pump must stop at once (nothing left to send, no timer to arm); anything else goes on.
EventHandler = Callable[[Any, Any], bool | None]


def ignore_event(_edge: object, _event: object) -> None:
    """The handler of an event the edge has no use for."""


# A relay (the host: NBD requests in, iSCSI commands out, and the answers back) hands a
# batch on in pieces of this many: what the first requests of a segment made goes out while
# the rest are still read. Handed on whole, the reads of a queue depth move through client,
# relay and target as one convoy, each process idle while another works its batch (with
# three processes on two CPUs, 1.3 CPUs busy); in pieces of 4, 1.6 (docs/benchmarks.md,
# "Issue 15, host side"), for a few more sends.
RELAY_PIECE: Final = 4


# glibc returns a freed block above its mmap threshold (and the free top of its heap above
# its trim threshold) to the kernel at once, so the next read buffer of the same size is
# faulted in again page by page: reading 1 MiB through the host cost about 270 page faults
# (a third of the host's CPU). A process that serves I/O keeps what it freed instead.
_MMAP_THRESHOLD: Final = 4 << 20  # M_MMAP_THRESHOLD: larger blocks are still mmap'd
_TRIM_THRESHOLD: Final = 32 << 20  # M_TRIM_THRESHOLD: free heap kept for the next buffers
_allocator_tuned = False


def keep_freed_memory() -> None:
    """Tune the C allocator for I/O buffers, once per process (glibc only; elsewhere a no-op).

    Done when the first driver is made, so every daemon that moves data (target, host, NBD
    server) gets it without its own call.
    """
    global _allocator_tuned  # noqa: PLW0603 - once per process, as the allocator is
    if _allocator_tuned:
        return
    _allocator_tuned = True
    if platform.libc_ver()[0] != "glibc":
        return
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(-3, _MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        mallopt(-1, _TRIM_THRESHOLD)  # M_TRIM_THRESHOLD


# A plain Python class even when this module is compiled: the registry below holds it weakly,
# and mypyc's native classes take no weak references.
@mypyc_attr(native_class=False)
class _Writes:
    """The drivers of one event loop with output waiting, and when it is written.

    Output leaves at the end of the I/O callback that produced it (``flush``): what a
    client's requests made a session send goes to the target before the loop turns to
    anything else. Output made by callbacks (a completed command resuming a request,
    which answers it) leaves in one flush queued behind them: ``after_callbacks``,
    which a driver calls once it has resolved what those callbacks wait for, puts one
    there. Either way one ``writelines`` per driver carries all of it.
    """

    __slots__ = ("__weakref__", "_loop", "_pending", "_queued")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: the drivers keep their loop alive; the registry keeps nothing alive.
        self._loop = weakref.ref(loop)
        self._pending: list[CoreDriver[Any]] = []
        self._queued = 0  # flushes queued and not yet run

    def add(self, driver: CoreDriver[Any]) -> None:
        self._pending.append(driver)
        if not self._queued:
            self.after_callbacks()

    def after_callbacks(self) -> None:
        """Queue a flush behind every callback queued so far."""
        loop = self._loop()
        if loop is not None:
            self._queued += 1
            loop.call_soon(self._run)

    def _run(self) -> None:
        self._queued -= 1
        self.flush()

    def flush(self) -> None:
        pending = self._pending
        if pending:
            self._pending = []
            for driver in pending:
                driver._flush()


# By id(loop), held weakly both ways: the drivers of a loop keep its _Writes, nothing here
# keeps a loop or a driver alive, and an id reused by a later loop gets a new one.
_WRITES: weakref.WeakValueDictionary[int, _Writes] = weakref.WeakValueDictionary()


def _writes_of(loop: asyncio.AbstractEventLoop) -> _Writes:
    writes = _WRITES.get(id(loop))
    if writes is None or writes._loop() is not loop:
        writes = _WRITES[id(loop)] = _Writes(loop)
    return writes


# Compiled (sanstack/native.py); the target's edge, interpreted, subclasses both drivers.
@mypyc_attr(allow_interpreted_subclasses=True)
class CoreDriver(asyncio.Protocol, Generic[CoreT]):
    """Drains a core's events into the edge's handlers and batches its output.

    A subclass sets ``core`` and lists a handler for every event type its core emits in
    ``_event_handlers`` (an unknown type is a bug: the lookup raises ``KeyError``).
    """

    core: CoreT
    transport: asyncio.Transport | None
    _event_handlers: ClassVar[Mapping[type, EventHandler]]
    # Flow control: while set and False, the pump leaves further events in the core.
    _event_gate: Callable[[], bool] | None = None

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport = None
        self._flush_scheduled = False
        self._writes = _writes_of(self.loop)
        keep_freed_memory()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._pump()

    def _pump(self) -> None:
        """Hand the core's events to their handlers, then schedule the write and the hook."""
        core = self.core
        if core is None:
            return
        handlers = self._event_handlers
        gate = self._event_gate
        while (gate is None or gate()) and (event := core.next_event()) is not None:
            if handlers[type(event)](self, event):
                return
        if core.has_data_to_send:
            self._schedule_flush()
        self._after_pump()

    def _schedule_flush(self) -> None:
        """Write what the core has to send at the end of this loop iteration.

        Everything the core produces in this loop iteration (many commands complete together
        at queue depth) goes out in one writelines: one syscall, not one each.
        """
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._writes.add(self)

    def _after_pump(self) -> None:
        """What the edge does after each pump (arm a timer, adjust reading)."""

    def _flush(self) -> None:
        self._flush_scheduled = False
        core = self.core
        if core is None:
            return
        parts = core.data_to_send()
        transport = self.transport
        if parts and transport is not None and not transport.is_closing():
            transport.writelines(parts)


@mypyc_attr(allow_interpreted_subclasses=True)
class TimedCoreDriver(CoreDriver[TimedCoreT]):
    """A ``CoreDriver`` for a core that keeps time and is told when the transport is lost.

    A subclass's ``_teardown`` (called once the connection is lost, and as often as the
    edge likes before) must call this one, which stops the timer.
    """

    def __init__(self) -> None:
        super().__init__()
        self._timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        core = self.core
        if core is not None:
            core.receive_data(data, self.loop.time())
            self._pump()
            writes = self._writes
            writes.flush()
            # Answers the pump resolved resume their waiters in callbacks; what those send
            # goes out right behind them.
            writes.after_callbacks()

    def connection_lost(self, exc: Exception | None) -> None:
        core = self.core
        if core is not None:
            core.connection_lost()
            self._pump()
        self._teardown()

    def _after_pump(self) -> None:
        """Keep one timer at the core's earliest deadline.

        A deadline that moves later (the NOP idle timer, with every PDU) keeps the timer
        where it is; when it fires the core re-checks and asks again, so a busy connection
        costs no timer churn.
        """
        core = self.core
        if core is None:
            return
        when = core.get_timer()
        if when is None:
            return
        timer = self._timer
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        core = self.core
        if core is not None:
            core.handle_timer(self.loop.time())
            self._pump()

    def _teardown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
