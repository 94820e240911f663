"""The asyncio edge of the NBD server: sockets, running requests, back-pressure, shutdown.

Each accepted connection gets an ``NBDServerConnection`` core (``sanstack.nbd``) and an
``asyncio.Protocol`` that feeds it bytes. Every ``Request`` runs as a coroutine against the
export's ``BlockDevice``, its first step at once (a cached read finishes there); one that
waits is stepped on by ``_Running``, the part of an asyncio Task these coroutines need
(resume on the awaited future, cancel), which the connection owns, cancels and waits for
when it ends: a request through a multipath map always waits, and a Task per request cost
as much as the request's own work. A device whose reads arrive in pieces (``read_parts``:
one per iSCSI Data-In PDU) has them written as they are, never joined. At most
``max_in_flight`` requests run per connection: beyond that the protocol stops taking events
from the core and pauses reading, as it does while the socket's write buffer is full.
Everything the core produced during one loop iteration leaves in one ``writelines`` (the
loop is ``edge/driver.py``'s, shared with the iSCSI edges).

Exports opened on demand (``OnDemandExports``: a cluster group's snapshots, which a backup
reads): listed to each connection as it starts, and opened for that one connection when
it chooses one, so the device (a snapshot's hold) lives exactly as long as the connection;
when the connection has ended and no request of it runs, the device goes back through
``release``.

Shutdown ("Terminating the transmission phase" of doc/proto.md, NetworkBlockDevice/nbd):
stop accepting, let requests in flight finish within a grace period while new ones get
``NBD_ESHUTDOWN``, then close every connection and wait for every request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Final, Protocol, cast

from sanstack.block.device import (
    BlockDevice,
    BlockDeviceError,
    DeviceNotReady,
    DeviceReadOnly,
    ProvisioningStatus,
    SpaceExhausted,
)
from sanstack.block.io_stats import IOKind, IOStats
from sanstack.edge.driver import RELAY_PIECE, CoreDriver
from sanstack.nbd import (
    Disconnect,
    ExportChosen,
    ExportInfo,
    NBDCmd,
    NBDCmdFlag,
    NBDError,
    NBDServerConnection,
    NBDState,
    ProtocolFailure,
    Request,
    RequestRejected,
)
from sanstack.nbd.read_paths import Parts, PartsReader, ReadSink, ReadStarter, ReadTicket

log = logging.getLogger(__name__)

NBD_PORT: Final = 10809  # IANA-reserved ("Newstyle negotiation")
MAX_IN_FLIGHT: Final = 64
SHUTDOWN_GRACE_SECONDS: Final = 5.0
# How long a connection may take to end after its tasks were cancelled.
CLOSE_WAIT_SECONDS: Final = 5.0
# WRITE_ZEROES with NO_HOLE writes real zeroes, this many bytes per device write.
ZERO_CHUNK_BYTES: Final = 1 << 20
# A BLOCK_STATUS answer asks the device at most this often; a shorter answer is allowed
# ("the server MAY return fewer descriptors ... so long as at least one extent is returned").
MAX_STATUS_LOOKUPS: Final = 64

_ZEROES: Final = bytes(ZERO_CHUNK_BYTES)
_STATE: Final = {
    ProvisioningStatus.MAPPED: 0,
    # A deallocated block reads as zeroes (BlockDevice.unmap's contract).
    ProvisioningStatus.DEALLOCATED: NBDState.NBD_STATE_HOLE | NBDState.NBD_STATE_ZERO,
    ProvisioningStatus.ANCHORED: NBDState.NBD_STATE_ZERO,
}


def export_info(device: BlockDevice, description: str = "") -> ExportInfo:
    """What the handshake advertises for ``device``: its block size as the minimum block
    size, since the device takes whole blocks only."""
    return ExportInfo(
        size=device.capacity_bytes,
        block_size=device.block_size,
        read_only=device.read_only,
        description=description,
    )


def nbd_errno(exc: BlockDeviceError, *, shutting_down: bool = False) -> NBDError:
    """The NBD error for a device error ("Error values")."""
    if isinstance(exc, SpaceExhausted):
        return NBDError.NBD_ENOSPC
    if isinstance(exc, DeviceReadOnly):
        return NBDError.NBD_EPERM
    if isinstance(exc, DeviceNotReady) and shutting_down:
        return NBDError.NBD_ESHUTDOWN
    return NBDError.NBD_EIO


class OnDemandExports(Protocol):
    """Exports offered besides the fixed ones, each opened for the one connection that
    chooses it."""

    def infos(self) -> Mapping[str, ExportInfo]:
        """The names offered now, and what each one's handshake says."""
        ...

    def open(self, name: str) -> BlockDevice:
        """A device of ``name`` for one connection; raises when it cannot be opened."""
        ...

    def release(self, device: BlockDevice) -> None:
        """The connection that opened ``device`` has ended and none of its requests runs:
        close it (the implementation owns that work)."""
        ...


class NBDServer:
    """Serves ``exports`` (name -> device) over NBD on ``host:port`` (port 0: any free),
    and ``on_demand``'s exports, each opened per connection.

    The server does not own the fixed devices: closing them after ``stop`` is the caller's
    job; each on-demand device goes back to ``on_demand.release`` when its connection ends.
    """

    def __init__(
        self,
        exports: Mapping[str, BlockDevice],
        host: str = "127.0.0.1",
        port: int = NBD_PORT,
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        on_demand: OnDemandExports | None = None,
    ) -> None:
        if not exports:
            raise ValueError("an NBD server needs at least one export")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.exports = dict(exports)
        self.infos = {name: export_info(dev) for name, dev in self.exports.items()}
        self.host = host
        self._port = port
        self.max_in_flight = max_in_flight
        self.on_demand = on_demand
        self.connections: set[NBDConnectionHandler] = set()
        # Per export name, as long as the name is offered (an on-demand export's while a
        # connection serves it).
        self.stats: dict[str, IOStats] = {}
        self.closing = False
        self._listener: asyncio.Server | None = None

    def add_export(self, name: str, device: BlockDevice) -> None:
        """Serve ``device`` as ``name`` too (or instead of what it was): connections made
        from now on list it and may choose it."""
        self.exports[name] = device
        self.infos[name] = export_info(device)

    def remove_export(self, name: str) -> None:
        """Stop offering ``name``. A connection already serving it keeps its device, whose
        owner decides what its I/O gets (a closed device fails it with an error)."""
        self.exports.pop(name, None)
        self.infos.pop(name, None)
        if not any(c.export_name == name for c in self.connections):
            self.stats.pop(name, None)

    def stats_for(self, name: str) -> IOStats:
        stats = self.stats.get(name)
        if stats is None:
            stats = self.stats[name] = IOStats()
        return stats

    def offered(self) -> dict[str, ExportInfo]:
        """What a connection starting now may choose (a fixed export wins a name clash)."""
        if self.on_demand is None:
            return self.infos
        return {**self.on_demand.infos(), **self.infos}

    @property
    def port(self) -> int:
        """The port listened on; after ``start`` the kernel's choice when 0 was asked."""
        return self._port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: NBDConnectionHandler(self), self.host, self._port, reuse_address=True
        )
        if self._port == 0:
            self._port = self._listener.sockets[0].getsockname()[1]
        log.info("NBD server listening on %s:%d", self.host, self._port)

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop accepting, let requests in flight finish within ``grace``, close all."""
        self.closing = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        handlers = list(self.connections)
        for handler in handlers:
            handler.begin_shutdown()
        if handlers:
            waits = [asyncio.ensure_future(h.closed.wait()) for h in handlers]
            try:
                await asyncio.wait(waits, timeout=grace)
            finally:
                for waiter in waits:
                    waiter.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
        await asyncio.gather(*(h.close() for h in handlers), return_exceptions=True)
        if listener is not None:
            # Last: from Python 3.12 on this also waits for the connections to end.
            await listener.wait_closed()


class _Running:
    """One request's coroutine, stepped by hand where an ``asyncio.Task`` would step it.

    A request through a multipath map always waits (for the iSCSI answer), so starting it
    eagerly still ends in a Task per request, and a Task costs what the request's own work
    costs: its creation, its registration in ``asyncio.all_tasks``, a wrapper to resume the
    eagerly started coroutine, and one more loop iteration for its done callbacks. This
    does what the Task did for these coroutines and no more: resume on the awaited future,
    cancel by cancelling that future (or by throwing ``CancelledError`` at the next step),
    tell the connection when the coroutine has ended. It runs outside any Task, as the first
    step of an eagerly started coroutine always did (``asyncio.current_task()`` is None).
    """

    __slots__ = ("_cancel", "_coro", "_handler", "_waiting")

    def __init__(self, handler: NBDConnectionHandler, coro: Coroutine[Any, Any, None]) -> None:
        self._handler = handler
        self._coro = coro
        self._waiting: asyncio.Future[Any] | None = None
        self._cancel = False

    def cancel(self) -> None:
        """End the coroutine with ``CancelledError`` where it waits (as ``Task.cancel``)."""
        waiting = self._waiting
        if waiting is None or not waiting.cancel():
            self._cancel = True  # its wake-up is already scheduled: throw it in then

    def step(self) -> bool:
        """Run the coroutine to its next wait; True once it has ended."""
        self._waiting = None
        coro = self._coro
        try:
            if self._cancel:
                self._cancel = False
                waiting = coro.throw(asyncio.CancelledError())
            else:
                waiting = coro.send(None)
        except (StopIteration, asyncio.CancelledError):
            return True
        if getattr(waiting, "_asyncio_future_blocking", False):
            future = cast("asyncio.Future[Any]", waiting)
            future._asyncio_future_blocking = False
            self._waiting = future
            future.add_done_callback(self._wake)
        elif waiting is None:  # a bare yield (asyncio.sleep(0)): run again soon
            self._handler.loop.call_soon(self._wake, None)
        else:
            coro.throw(RuntimeError(f"request coroutine yielded {waiting!r}"))
        return False

    def _wake(self, _done: object) -> None:
        try:
            ended = self.step()
        except BaseException:  # KeyboardInterrupt and the like: the coroutine is gone
            self._handler._request_ended(self)
            raise
        if ended:
            self._handler._request_ended(self)


class _FastRead:
    """A READ started through ``ReadStarter.start_read``: its sink, and what the
    connection holds while it is in flight (``cancel`` as a ``_Running``'s)."""

    __slots__ = ("_handler", "_request", "_started", "ticket")

    def __init__(self, handler: NBDConnectionHandler, request: Request, started: float) -> None:
        self._handler = handler
        self._request = request
        self._started = started
        self.ticket: ReadTicket | None = None

    def read_done(self, parts: Parts) -> None:
        handler = self._handler
        request = self._request
        handler.core.reply_read_parts(request.cookie, parts)
        handler._stats.record(IOKind.READ, request.length, handler._clock() - self._started)
        handler._request_ended(self)

    def read_slow(self, resume: Callable[[], Awaitable[Parts]]) -> None:
        # Stepped from the loop, never here: this runs inside a session's pump or teardown.
        handler = self._handler
        running = _Running(handler, handler._finish_read(self._request, self._started, resume))
        handler._running.discard(self)
        handler._running.add(running)
        handler.loop.call_soon(running._wake, None)

    def cancel(self) -> None:
        ticket, self.ticket = self.ticket, None
        if ticket is not None:
            ticket.cancel()
            # It ends as a cancelled coroutine would: in a callback of its own.
            self._handler.loop.call_soon(self._handler._request_ended, self)


class NBDConnectionHandler(CoreDriver[NBDServerConnection]):
    """One TCP connection: the glue between the socket, the core and the device."""

    def __init__(self, server: NBDServer) -> None:
        super().__init__()
        self.server = server
        self.core = NBDServerConnection(server.offered())
        self.device: BlockDevice | None = None
        self._read_parts: Callable[[int, int], Awaitable[Sequence[bytes | memoryview]]] | None
        self._read_parts = None
        self._start_read: Callable[[int, int, ReadSink], ReadTicket | None] | None = None
        self._block_size = 512
        self._opened: BlockDevice | None = None  # an on-demand export's, released at the end
        self.export_name: str | None = None
        self._stats = IOStats()  # the export's, once chosen
        self._clock: Callable[[], float] = lambda: 0.0
        self.peer = "?"
        self.closed = asyncio.Event()
        self._running: set[_Running | _FastRead] = set()
        self._lost = False
        self._finishing = False  # close once the requests in flight are answered
        self._write_paused = False
        self._reading = True

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._clock = asyncio.get_running_loop().time
        self.peer = str(transport.get_extra_info("peername"))
        if self.server.closing:
            self.transport.abort()
            return
        self.server.connections.add(self)
        self._pump()

    def data_received(self, data: bytes) -> None:
        self.core.receive_data(data)
        self._pump()
        self._writes.flush()  # the requests' commands go to the target now

    def eof_received(self) -> bool:
        self.core.receive_data(b"")
        self._pump()
        return True  # keep the socket open to send the replies still owed

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        for running in list(self._running):
            running.cancel()
        self.server.connections.discard(self)
        self._check_closed()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._pump()

    # -- driving the core --------------------------------------------------------------------

    def _pump(self) -> None:
        """``CoreDriver._pump`` with this edge's gate (``_has_room``) written out and a
        request started without the table lookup: it runs for every received segment."""
        core = self.core
        handlers = self._event_handlers
        limit = self.server.max_in_flight
        start = self._start
        writes = self._writes
        started = 0
        while not self._lost and core.in_flight < limit:
            event = core.next_event()
            if event is None:
                break
            if type(event) is Request:
                start(event)
                started += 1
                if started == RELAY_PIECE:  # the commands so far go to the target now
                    started = 0
                    writes.flush()
            elif handlers[type(event)](self, event):
                return
        if core.has_data_to_send:
            self._schedule_flush()
        self._after_pump()

    def _has_room(self) -> bool:
        """Whether another request may start (the pump takes events only while it may)."""
        return not self._lost and self.core.in_flight < self.server.max_in_flight

    def _after_pump(self) -> None:
        if self._finishing and not self._running and self.transport is not None:
            self._flush()
            self.transport.close()
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self._lost or transport.is_closing():
            return
        want = not self._write_paused and self._has_room()
        if want != self._reading:
            self._reading = want
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def _on_export_chosen(self, event: ExportChosen) -> bool:
        device = self.server.exports.get(event.name)
        on_demand = self.server.on_demand
        if device is None and on_demand is not None:
            try:
                device = self._opened = on_demand.open(event.name)
            except Exception as exc:  # gone since the listing (a snapshot deleted)
                log.info("%s: export %r cannot be opened: %s", self.peer, event.name, exc)
        if device is None:  # removed while this connection was in its handshake
            log.info("%s: export %r was removed; disconnecting", self.peer, event.name)
            self._abort()
            return True
        self.device = device
        self.export_name = event.name
        self._stats = self.server.stats_for(event.name)
        self._read_parts = device.read_parts if isinstance(device, PartsReader) else None
        self._start_read = device.start_read if isinstance(device, ReadStarter) else None
        self._block_size = device.block_size
        log.info(
            "%s: export %r (structured replies: %s, contexts: %s)",
            self.peer,
            event.name,
            event.structured_replies,
            ",".join(event.meta_contexts) or "none",
        )
        return False

    def _on_request_rejected(self, event: RequestRejected) -> None:
        log.debug("%s: request %#x refused: %s", self.peer, event.cookie, event.reason)

    def _on_disconnect(self, event: Disconnect) -> None:
        log.info("%s: %s", self.peer, event.reason)
        self._finishing = True

    def _on_protocol_failure(self, event: ProtocolFailure) -> bool:
        log.warning("%s: protocol failure, dropping: %s", self.peer, event.reason)
        self._abort()
        return True

    # -- requests ----------------------------------------------------------------------------

    def _start(self, request: Request) -> None:
        start_read = self._start_read
        if start_read is not None and request.command is _READ:
            fast = _FastRead(self, request, self._clock())
            bs = self._block_size
            ticket = start_read(request.offset // bs, request.length // bs, fast)
            if ticket is not None:
                fast.ticket = ticket
                self._running.add(fast)
                return
        # The first step runs now: a request that needs no wait is answered at once (the
        # pump that called this sends the answer).
        running = _Running(self, self._run(request))
        if not running.step():
            self._running.add(running)

    def _request_ended(self, running: _Running | _FastRead) -> None:
        """A request that waited has ended (``_run`` answers every request, errors too)."""
        self._running.discard(running)
        if self._lost:
            self._check_closed()
        elif self._reading and not self._finishing:
            # Reading on means the last pump took every event the core had (a pump stopped
            # by max_in_flight pauses reading): the answer's write is all there is to do.
            self._schedule_flush()
        else:
            self._pump()

    async def _run(self, request: Request) -> None:
        core = self.core
        started = self._clock()
        kind = _IO_KINDS.get(request.command, IOKind.OTHER)
        try:
            read_parts = self._read_parts
            if read_parts is not None and request.command is NBDCmd.NBD_CMD_READ:
                # The usual request, one coroutine frame less on every resume.
                bs = self._block_size
                parts = await read_parts(request.offset // bs, request.length // bs)
                core.reply_read_parts(request.cookie, parts)
            else:
                await self._execute(request)
        except BlockDeviceError as exc:
            error = nbd_errno(exc, shutting_down=self.server.closing)
            log.info("%s: %s failed: %s", self.peer, request.command.name, exc)
            core.reply_error(request.cookie, error, str(exc))
            self._stats.record(kind, 0, self._clock() - started, ok=False)
        except Exception:
            # A bug below us; the client still gets an answer rather than a hung request.
            log.exception("%s: %s failed", self.peer, request.command.name)
            core.reply_error(request.cookie, NBDError.NBD_EIO, "internal server error")
            self._stats.record(kind, 0, self._clock() - started, ok=False)
        else:
            moved = request.length if kind <= IOKind.WRITE else 0
            self._stats.record(kind, moved, self._clock() - started)

    async def _finish_read(
        self, request: Request, started: float, resume: Callable[[], Awaitable[Parts]]
    ) -> None:
        """A READ started through ``start_read`` that did not end as usual: the rest of
        it, answered as ``_run`` answers."""
        try:
            parts = await resume()
        except BlockDeviceError as exc:
            error = nbd_errno(exc, shutting_down=self.server.closing)
            log.info("%s: %s failed: %s", self.peer, request.command.name, exc)
            self.core.reply_error(request.cookie, error, str(exc))
            self._stats.record(IOKind.READ, 0, self._clock() - started, ok=False)
        except Exception:
            log.exception("%s: %s failed", self.peer, request.command.name)
            self.core.reply_error(request.cookie, NBDError.NBD_EIO, "internal server error")
            self._stats.record(IOKind.READ, 0, self._clock() - started, ok=False)
        else:
            self.core.reply_read_parts(request.cookie, parts)
            self._stats.record(IOKind.READ, request.length, self._clock() - started)

    async def _execute(self, request: Request) -> None:
        core = self.core
        device = self.device
        assert device is not None  # requests only come after ExportChosen
        bs = device.block_size
        lba, count = request.offset // bs, request.length // bs
        match request.command:
            case NBDCmd.NBD_CMD_READ:
                core.reply_read(request.cookie, await device.read(lba, count))
                return
            case NBDCmd.NBD_CMD_WRITE:
                await device.write(lba, request.data)
            case NBDCmd.NBD_CMD_FLUSH:
                await device.flush()
            case NBDCmd.NBD_CMD_TRIM:
                await device.unmap(lba, count)
            case NBDCmd.NBD_CMD_WRITE_ZEROES:
                if request.flags & NBDCmdFlag.NBD_CMD_FLAG_NO_HOLE:
                    await _write_zeroes(device, lba, count)
                else:
                    # Deallocated blocks read back as zeroes (BlockDevice.unmap's contract),
                    # which is all WRITE_ZEROES without NO_HOLE asks.
                    await device.unmap(lba, count)
            case NBDCmd.NBD_CMD_BLOCK_STATUS:
                one = bool(request.flags & NBDCmdFlag.NBD_CMD_FLAG_REQ_ONE)
                extents = await _block_status(device, lba, count, one=one)
                core.reply_block_status(request.cookie, extents)
                return
            case _:  # the core refuses every other command
                raise AssertionError(f"unexpected {request.command!r}")
        if request.fua and request.command != NBDCmd.NBD_CMD_FLUSH:
            await device.flush()
        core.reply_ok(request.cookie)

    # -- lifetime ----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def begin_shutdown(self) -> None:
        """New options and requests are refused; close once those in flight are answered."""
        self.core.shutdown()
        self._finishing = True
        self._pump()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def close(self) -> None:
        """Close now, cancelling requests still running, and wait (bounded) for the end."""
        if self.transport is not None and not self.transport.is_closing():
            self._flush()
            self.transport.close()
        for running in list(self._running):
            running.cancel()
        try:
            await asyncio.wait_for(self.closed.wait(), CLOSE_WAIT_SECONDS)
        except TimeoutError:
            log.warning("%s: connection did not end within %ss", self.peer, CLOSE_WAIT_SECONDS)
            self._abort()

    def _check_closed(self) -> None:
        if self._lost and not self._running:
            opened, self._opened = self._opened, None
            if opened is not None and self.server.on_demand is not None:
                self.server.on_demand.release(opened)
            name, self.export_name = self.export_name, None
            server = self.server
            if (
                name is not None
                and name not in server.exports
                and not any(c.export_name == name for c in server.connections if c is not self)
            ):
                server.stats.pop(name, None)
            self.closed.set()


_READ: Final = NBDCmd.NBD_CMD_READ
_IO_KINDS: Final = {
    NBDCmd.NBD_CMD_READ: IOKind.READ,
    NBDCmd.NBD_CMD_WRITE: IOKind.WRITE,
    NBDCmd.NBD_CMD_FLUSH: IOKind.FLUSH,
    NBDCmd.NBD_CMD_TRIM: IOKind.UNMAP,
    NBDCmd.NBD_CMD_WRITE_ZEROES: IOKind.UNMAP,
}


async def _write_zeroes(device: BlockDevice, lba: int, count: int) -> None:
    per_write = ZERO_CHUNK_BYTES // device.block_size
    view = memoryview(_ZEROES)
    while count > 0:
        n = min(per_write, count)
        await device.write(lba, view[: n * device.block_size])
        lba += n
        count -= n


async def _block_status(
    device: BlockDevice, lba: int, count: int, *, one: bool
) -> list[tuple[int, int]]:
    """``(bytes, NBDState flags)`` extents from ``lba``, as far as a few lookups reach."""
    extents: list[tuple[int, int]] = []
    end = lba + count
    for _ in range(MAX_STATUS_LOOKUPS):
        if lba >= end:
            break
        found = await device.get_lba_status(lba, end - lba)
        progressed = False
        for extent in found:
            if extent.lba != lba or extent.count <= 0:
                break
            extents.append((extent.count * device.block_size, int(_STATE[extent.status])))
            lba += extent.count
            progressed = True
        if one or not progressed:
            break
    if not extents:
        # "a server MAY always safely report a status of 0 for any block"
        extents.append((count * device.block_size, 0))
    return extents


# Set after the class, not in its body: compiled by mypyc (sanstack/native.py) a class body
# cannot name its own methods.
NBDConnectionHandler._event_handlers = {
    Request: NBDConnectionHandler._start,
    ExportChosen: NBDConnectionHandler._on_export_chosen,
    RequestRejected: NBDConnectionHandler._on_request_rejected,
    Disconnect: NBDConnectionHandler._on_disconnect,
    ProtocolFailure: NBDConnectionHandler._on_protocol_failure,
}
