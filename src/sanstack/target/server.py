"""The asyncio edge of the iSCSI target: sockets, command tasks, timers, shutdown.

Each accepted connection gets a ``TargetConnection`` core and an ``asyncio.Protocol`` that
feeds it bytes and writes what it returns with one ``writelines`` per batch (the loop is
``edge/driver.py``'s, shared with the initiator and NBD edges). Each delivered
SCSI command runs as one task owned by its connection; the connection cancels and awaits
its tasks when it ends, so no task outlives its owner. Output is bounded by the CmdSN window
(the core closes it while commands are outstanding), and reading pauses while the socket's
write buffer is above its high-water mark.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from sanstack.edge.driver import TimedCoreDriver
from sanstack.edge.tasks import TASK_END_WAIT_SECONDS, start_eagerly, wait_ended
from sanstack.iscsi.target_connection import TargetConnection
from sanstack.iscsi.target_events import (
    CommandReady,
    ConnectionClosed,
    ConnectionSettings,
    LoginSucceeded,
    TaskManagementRequested,
)
from sanstack.scsi.codes import ASC, SenseKey
from sanstack.scsi.command import Command, CommandResult, Nexus
from sanstack.scsi.logical_unit import LogicalUnit, TaskAborted
from sanstack.scsi.sense import check_condition
from sanstack.scsi.unknown_lun import execute_without_lun
from sanstack.target.login_policy import TargetLoginDriver
from sanstack.target.model import Portal, PortalGroup, Target
from sanstack.target.registry import TargetRegistry
from sanstack.target.task_management import run_task_management

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024
SHUTDOWN_GRACE_SECONDS = 5.0


class TargetServer:
    """Serves every target of a ``TargetRegistry`` on their portals.

    One listening socket per address: several targets (or portal groups) may list the same
    HOST:PORT, and the target an initiator names at login decides its portal group.
    """

    def __init__(self, registry: TargetRegistry, settings: ConnectionSettings | None = None):
        self.registry = registry
        self.settings = settings or ConnectionSettings()
        self._listeners: dict[Portal, asyncio.Server] = {}
        self.connections: set[ConnectionHandler] = set()
        self._closing = False
        self._background: set[asyncio.Task[None]] = set()

    def keep(self, task: asyncio.Task[None]) -> None:
        """Own a background task until it ends; ``stop`` awaits whatever is left."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def connections_of(self, target_name: str) -> list[ConnectionHandler]:
        return [h for h in self.connections if h.target_name == target_name]

    def close_sessions_later(self, target_name: str) -> None:
        """Close every session of a target once the current callbacks have run."""
        for handler in self.connections_of(target_name):
            self.keep(asyncio.get_running_loop().create_task(handler.close("target reset")))

    @property
    def portals(self) -> list[tuple[str, int, int]]:
        """(host, port, portal group tag) of every portal with a listening socket."""
        return [
            (portal.host, portal.port, group.tag)
            for target in self.registry.targets.values()
            for group in target.portal_groups
            for portal in group.portals
            if portal in self._listeners
        ]

    async def start(self) -> None:
        """Listen on every portal; a port of 0 is replaced by the port the kernel chose."""
        for target in self.registry.targets.values():
            for group in target.portal_groups:
                if group.enabled:
                    await self._listen_all(group)

    async def _listen_all(self, group: PortalGroup) -> None:
        for index, portal in enumerate(group.portals):
            if portal in self._listeners:
                continue
            bound = await self._listen(portal)
            group.portals[index] = bound

    async def _listen(self, portal: Portal) -> Portal:
        loop = asyncio.get_running_loop()
        holder: list[Portal] = [portal]
        server = await loop.create_server(
            lambda: ConnectionHandler(self, holder[0]),
            portal.host,
            portal.port,
            reuse_address=True,
            # A cluster node logs in to every path of every LUN at boot, all at once.
            backlog=LISTEN_BACKLOG,
        )
        if portal.port == 0:
            holder[0] = Portal(portal.host, server.sockets[0].getsockname()[1])
        self._listeners[holder[0]] = server
        return holder[0]

    async def disable_portal_group(self, target: Target, group: PortalGroup) -> None:
        """Portal group down: stop listening where no other group needs the address, and
        drop the group's connections at once, as a pulled cable would end them."""
        group.enabled = False
        still_served = {
            portal
            for other in self.registry.targets.values()
            for g in other.portal_groups
            if g.enabled
            for portal in g.portals
        }
        for portal in group.portals:
            server = self._listeners.get(portal)
            if server is not None and portal not in still_served:
                del self._listeners[portal]
                server.close()
                await server.wait_closed()
        for handler in list(self.connections):
            ours = handler.target_name == target.name and handler.tpgt == group.tag
            discovery = handler.target_name is None and handler.portal in group.portals
            if ours or discovery:
                handler.abort("portal group taken down")

    async def enable_portal_group(self, target: Target, group: PortalGroup) -> None:
        group.enabled = True
        await self._listen_all(group)

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop listening, let in-flight commands finish within ``grace``, then close all."""
        self._closing = True
        servers = list(self._listeners.values())
        self._listeners.clear()
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()
        for handler in list(self.connections):
            handler.request_logout(int(grace))
        deadline = asyncio.get_running_loop().time() + grace
        while any(h.busy for h in self.connections):
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.05)
        await asyncio.gather(
            *(h.close("target shutting down") for h in list(self.connections)),
            return_exceptions=True,
        )
        await wait_ended(list(self._background), "background tasks")
        await self.registry.close()


class ConnectionHandler(TimedCoreDriver[TargetConnection | None]):
    """One TCP connection: the glue between the socket and a ``TargetConnection`` core.

    The core exists from ``connection_made`` until the connection ends (then None).
    """

    def __init__(self, server: TargetServer, portal: Portal) -> None:
        super().__init__()
        self.server = server
        self.portal = portal
        self.tpgt: int | None = None
        self.core = None
        self.peer = "?"
        self.target_name: str | None = None
        self.nexus: Nexus | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._luns: dict[int, LogicalUnit] = {}  # the logged-in target's LUNs
        self._closed = asyncio.Event()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = str(transport.get_extra_info("peername"))
        if self.server._closing:
            self.transport.abort()
            return
        self.server.connections.add(self)
        settings = self.server.settings
        login = TargetLoginDriver(
            self.server.registry, self.portal, command_window=settings.command_window
        )
        self.core = TargetConnection(
            login,
            ConnectionSettings(
                command_window=settings.command_window,
                login_timeout=settings.login_timeout,
                nop_in_interval=settings.nop_in_interval,
                nop_in_timeout=settings.nop_in_timeout,
            ),
            self.loop.time(),
            send_targets=lambda value, initiator: self.server.registry.send_targets(
                value, initiator, self.target_name
            ),
        )
        self._pump()

    def pause_writing(self) -> None:
        # Stop taking new commands while the peer is not reading what we send.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- core events -------------------------------------------------------------------------

    def _on_closed(self, event: ConnectionClosed) -> bool:
        log.info("%s: connection closed: %s", self.peer, event.reason)
        self._flush()
        if self.transport is not None:
            self.transport.close()
        self._teardown()
        return True

    def _on_login(self, event: LoginSucceeded) -> None:
        self.target_name = event.target_name if not event.discovery else None
        self.nexus = event.nexus
        self.tpgt = event.nexus.tpgt if event.nexus is not None else None
        if event.nexus is not None:
            self.server.registry.session_started(event.nexus, self)
        target = self.server.registry.targets.get(self.target_name or "")
        # The target's own dict: LUNs added or removed later are seen here too.
        self._luns = target.luns if target is not None else {}

    # -- commands --------------------------------------------------------------------------

    def _start_command(self, event: CommandReady) -> None:
        """Run a command: a cached read is answered at once (``execute_now``); another that
        finishes without waiting needs no Task either (``start_eagerly``)."""
        itt = event.itt
        command = event.command
        lu = self._luns.get(command.lun)
        if lu is not None:
            result = lu.execute_now(command)
            if result is not None:
                # Answered within this callback: a few microseconds, no time on the loop's
                # clock (uvloop's ticks in milliseconds), so no clock is read for it.
                lu.stats.record(command, result, 0.0)
                if self.core is not None:
                    self.core.complete_command(itt, result)
                return
        task = start_eagerly(self.loop, self._run_command(itt, lu, command))
        if task is None:
            return  # answered already; the caller's _pump sends it with the rest
        self._tasks[itt] = task
        if lu is not None:
            lu.attach_task(command.nexus, command.tag, task)
        task.add_done_callback(lambda _t, itt=itt: self._command_done(itt))  # type: ignore[misc]

    def _command_done(self, itt: int) -> None:
        self._tasks.pop(itt, None)
        self._pump()

    async def _run_command(self, itt: int, lu: LogicalUnit | None, command: Command) -> None:
        started = self.loop.time()
        try:
            if lu is None:
                target = self.server.registry.targets.get(self.target_name or "")
                result: CommandResult = await execute_without_lun(target, command)
            else:
                result = await lu.execute(command)
        except TaskAborted as aborted:
            if lu is not None:
                lu.stats.record(command, None, self.loop.time() - started)
            if self.core is not None:
                self.core.abort_command(itt, report_status=aborted.report_status)
            return
        except Exception:
            # LogicalUnit maps every device and handler error to sense; reaching here is a
            # bug, and the initiator still gets an answer instead of a hung command.
            log.exception("%s: command %#x failed", self.peer, itt)
            result = check_condition(SenseKey.HARDWARE_ERROR, ASC.INTERNAL_TARGET_FAILURE)
        if lu is not None:
            lu.stats.record(command, result, self.loop.time() - started)
        if self.core is not None:
            self.core.complete_command(itt, result)

    # -- task management -------------------------------------------------------------------

    def _spawn_tmf(self, event: TaskManagementRequested) -> None:
        task = self.loop.create_task(self._run_tmf(event))
        # Task management has its own ITT, distinct from every command's.
        self._tasks[event.itt | 0x1_0000_0000] = task
        task.add_done_callback(lambda t: self._tasks.pop(event.itt | 0x1_0000_0000, None))

    async def _run_tmf(self, event: TaskManagementRequested) -> None:
        response = await run_task_management(self.server, self, event)
        if self.core is not None:
            self.core.complete_task_management(event.itt, response)
            self._pump()

    _event_handlers = {
        CommandReady: _start_command,
        TaskManagementRequested: _spawn_tmf,
        LoginSucceeded: _on_login,
        ConnectionClosed: _on_closed,
    }

    # -- lifetime ----------------------------------------------------------------------------

    def abort(self, reason: str) -> None:
        """Drop the connection at once (RST), without a logout: a path failure."""
        log.info("%s: connection dropped: %s", self.peer, reason)
        if self.transport is not None:
            self.transport.abort()
        if self.core is not None:
            self.core.connection_lost()
        self._teardown()

    def reinstated(self) -> None:
        """A new login took over this session's I_T nexus (RFC 7143 §6.3.5)."""
        self.server.keep(self.loop.create_task(self.close("session reinstated")))

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def request_logout(self, seconds: int) -> None:
        if self.core is not None:
            self.core.request_logout(seconds)
            self._pump()

    async def close(self, reason: str) -> None:
        """Close from our side and wait (bounded) until every task of this connection ended."""
        if self.core is not None:
            self.core.close(reason)
            self._pump()
        if self.transport is not None:
            self.transport.close()
        self._teardown()
        try:
            await asyncio.wait_for(self._closed.wait(), TASK_END_WAIT_SECONDS)
        except TimeoutError:
            log.warning("%s: tasks did not end within %ss", self.peer, TASK_END_WAIT_SECONDS)

    def _teardown(self) -> None:
        super()._teardown()
        if self.core is None and self._closed.is_set():
            return
        self.core = None
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if self.nexus is not None:
            self.server.registry.session_ended(self.nexus, self)
            self.nexus = None
        self.server.connections.discard(self)
        if not tasks:
            self._closed.set()
            return
        waiter = self.loop.create_task(_await_all(tasks))
        waiter.add_done_callback(lambda _t: self._closed.set())
        self.server.keep(waiter)


async def _await_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in await wait_ended(tasks, "cancelled command tasks"):
        if not task.cancelled() and task.exception() is not None:
            log.error("command task failed", exc_info=task.exception())
