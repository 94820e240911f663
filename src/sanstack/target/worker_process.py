"""A target worker process: the existing ``TargetServer`` on connections its coordinator
hands over (``target/coordinator.py``).

Started as ``python -m sanstack.target.worker_process INDEX CHANNEL_FD HANDOFF_FD`` with its
setup (the target specs, connection settings, log level) pickled on stdin. Connections
arrive on HANDOFF_FD, a SOCK_SEQPACKET socket, one ``Handoff`` datagram with the socket as
SCM_RIGHTS each; everything else is on CHANNEL_FD (``workers_channel.py``).

The data path is local. The commands of ``FORWARDED_COMMANDS`` (PR IN/OUT, SPC-2
RESERVE/RELEASE, SET TARGET PORT GROUPS) still pass this worker's own checks (unit
attention, ALUA, reservation conflict against the replica) and are then run by the
coordinator; every other command checks reservations against the replica, which the
coordinator's ``Sync`` keeps current: the worker applies a ``Sync`` (state, unit attentions)
as it reads it, carries out PREEMPT AND ABORT's aborts, and only then acks, so once a
PREEMPT completes no command of a preempted nexus gets through here. The worker ends when
told to (``Stop``) or when its coordinator is gone (the channel closes), never orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import sys
from dataclasses import replace

from sanstack.edge.tasks import wait_ended
from sanstack.iscsi.codes import TaskManagementFunction
from sanstack.iscsi.target_events import ConnectionClosed, TaskManagementRequested
from sanstack.scsi.codes import ASC, Opcode, Status
from sanstack.scsi.command import Command, CommandResult, Nexus
from sanstack.scsi.logical_unit import LogicalUnit
from sanstack.target.build import build_registry
from sanstack.target.model import Portal, Target
from sanstack.target.registry import Session, TargetRegistry
from sanstack.target.server import ConnectionHandler, TargetServer
from sanstack.target.service import TargetService
from sanstack.target.shared_files import shared_opener
from sanstack.target.workers_channel import Channel, ChannelClosed
from sanstack.target.workers_core import (
    ATOMIC_COMMANDS,
    FORWARDED_COMMANDS,
    WorkerSetup,
    apply_alua_states,
    apply_lun_state,
)
from sanstack.target.workers_protocol import (
    Ack,
    ConnectionEnded,
    DropConnections,
    Forward,
    Handoff,
    Hello,
    ListSessions,
    Message,
    Ready,
    Reinstate,
    Reply,
    Reset,
    ResetUnits,
    SessionDown,
    Sessions,
    SessionUp,
    Stop,
    Sync,
    WorkerProtocolError,
    decode,
)

log = logging.getLogger(__name__)

Fn = TaskManagementFunction
SCSI2_COMMANDS = {
    (Opcode.RESERVE_6, None),
    (Opcode.RELEASE_6, None),
    (Opcode.RESERVE_10, None),
    (Opcode.RELEASE_10, None),
}
ALL_LUNS = -1
_RESETS = {
    Fn.LOGICAL_UNIT_RESET: ASC.BUS_DEVICE_RESET_FUNCTION_OCCURRED,
    Fn.TARGET_WARM_RESET: ASC.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED,
    Fn.TARGET_COLD_RESET: ASC.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED,
}
# The coordinator answers within its own lock wait (20 s); past this it is taken as hung.
FORWARD_TIMEOUT = 30.0
DEFAULT_STOP_GRACE = 5.0
MAX_HANDOFF_DATAGRAM = 4096


class WorkerRegistry(TargetRegistry):
    """The worker's registry: logins and logouts are told to the coordinator, and TSIHs
    are this worker's own residue class, so no two workers hand out the same one."""

    def __init__(self, targets: list[Target], worker: Worker, index: int, workers: int):
        super().__init__(targets)
        self._worker = worker
        self._tsih = index + 1
        self._tsih_first = index + 1
        self._tsih_stride = workers

    def allocate_tsih(self) -> int:
        tsih = self._tsih
        following = tsih + self._tsih_stride
        self._tsih = following if following <= 0xFFFF else self._tsih_first
        return tsih

    def session_started(self, nexus: Nexus, session: Session) -> None:
        super().session_started(nexus, session)
        if isinstance(session, WorkerConnection):
            self._worker.tell(SessionUp(session.connection_id, nexus))

    def session_ended(self, nexus: Nexus, session: Session) -> None:
        super().session_ended(nexus, session)
        if isinstance(session, WorkerConnection):
            session.report_session_down(nexus)


class WorkerConnection(ConnectionHandler):
    """A handed-over connection; its end is told to the coordinator (placement counts)."""

    def __init__(self, server: TargetServer, portal: Portal, worker: Worker, connection: int):
        super().__init__(server, portal)
        self.worker = worker
        self.connection_id = connection
        self._reported = False
        self._session_down_told = False

    def report_session_down(self, nexus: Nexus) -> None:
        if not self._session_down_told:
            self._session_down_told = True
            self.worker.tell(SessionDown(self.connection_id, nexus))

    def _closed_coordinator_first(self, event: ConnectionClosed) -> bool:
        """The coordinator hears of the session's end before the initiator can (the logout
        response leaves in ``_on_closed``): a command that another worker forwards after
        the initiator saw its logout finds the nexus gone (its SPC-2 reservation too)."""
        if self.nexus is not None:
            self.report_session_down(self.nexus)
        return ConnectionHandler._on_closed(self, event)

    _event_handlers = {
        **ConnectionHandler._event_handlers,
        ConnectionClosed: _closed_coordinator_first,
    }

    def _teardown(self) -> None:
        super()._teardown()
        if not self._reported:
            self._reported = True
            self.worker.tell(ConnectionEnded(self.connection_id))

    async def _run_tmf(self, event: TaskManagementRequested) -> None:
        """A reset or CLEAR TASK SET reaches every worker (and the shared SPC-2 reservation)
        first: the task set is the logical unit's, shared by every nexus."""
        nexus, target_name, fn = self.nexus, self.target_name, event.function
        if nexus is not None and target_name is not None:
            shared: ResetUnits | None = None
            if fn == Fn.CLEAR_TASK_SET:
                shared = ResetUnits(target_name, event.lun, nexus, 0, clear=True)
            elif (asc := _RESETS.get(fn)) is not None:
                lun = event.lun if fn == Fn.LOGICAL_UNIT_RESET else ALL_LUNS
                shared = ResetUnits(target_name, lun, nexus, asc)
            if shared is not None:
                await self.worker.reset_everywhere(shared)
        await super()._run_tmf(event)


class Worker:
    """One worker: its server, its channel to the coordinator, the handed-over sockets."""

    def __init__(self, index: int, channel_sock: socket.socket, handoff: socket.socket) -> None:
        self.index = index
        self.channel = Channel(channel_sock, self._on_message, "coordinator")
        self.handoff = handoff
        self.server: TargetServer | None = None
        self.stop_requested = asyncio.Event()
        self.grace = DEFAULT_STOP_GRACE
        self._tasks: set[asyncio.Task[None]] = set()

    # -- to the coordinator ------------------------------------------------------------------

    def tell(self, message: Message) -> None:
        # A closed channel: the coordinator is gone and this worker is stopping.
        with contextlib.suppress(ChannelClosed):
            self.channel.send(message)

    def _own(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- from the coordinator ----------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        server = self.server
        if server is None:
            return
        if isinstance(message, Hello):
            self._hello(server, message)
        elif isinstance(message, Sync):
            self._apply(server.registry, message)
            self._own(asyncio.get_running_loop().create_task(self._finish_sync(server, message)))
        elif isinstance(message, Reinstate):
            session = server.registry.sessions.get(message.nexus)
            if session is not None:
                log.info("session of %s moved to another worker", message.nexus.initiator_port)
                session.reinstated()
        elif isinstance(message, DropConnections):
            self._drop(server, message)
        elif isinstance(message, ListSessions):
            rows = TargetService(server).sessions()
            for row in rows:
                row["worker"] = self.index
            self.tell(Sessions(message.request, tuple(rows)))
        elif isinstance(message, Stop):
            self.grace = message.grace
            self.stop_requested.set()

    def _hello(self, server: TargetServer, hello: Hello) -> None:
        registry = server.registry
        for address in hello.portals:
            target = registry.targets.get(address.target)
            group = target.portal_group(address.tag) if target is not None else None
            if group is not None and address.index < len(group.portals):
                group.portals[address.index] = Portal(address.host, address.port)
        self._apply(registry, Sync(0, hello.luns, hello.alua))
        for target in registry.targets.values():
            for lu in target.luns.values():
                self._forward_shared_commands(target.name, lu)
        self.tell(Ready(self.index, os.getpid()))

    def _apply(self, registry: TargetRegistry, sync: Sync) -> None:
        """The replica takes the new state and unit attentions at once, in channel order."""
        for state in sync.luns:
            lu = _unit(registry, state.target, state.lun)
            if lu is not None:
                apply_lun_state(lu, state)
        for target in registry.targets.values():
            apply_alua_states(target.alua, (a for a in sync.alua if a.target == target.name))
        for note in sync.unit_attentions:
            lu = _unit(registry, note.target, note.lun)
            if lu is not None:
                lu.establish_unit_attention(ASC(note.asc), nexuses=[note.nexus])

    async def reset_everywhere(self, reset: ResetUnits) -> None:
        try:
            await self.channel.request(lambda request: Reset(request, reset), FORWARD_TIMEOUT)
        except (ChannelClosed, TimeoutError) as exc:
            log.warning("coordinator did not carry out a reset: %s", exc)

    async def _finish_sync(self, server: TargetServer, sync: Sync) -> None:
        for reset in sync.resets:
            target = server.registry.targets.get(reset.target)
            if target is None:
                continue
            units = [u for n, u in target.luns.items() if reset.lun in (ALL_LUNS, n)]
            tasks: list[asyncio.Task[object]] = []
            for unit in units:
                if reset.clear:
                    tasks += unit.clear_task_set(reset.nexus)
                else:
                    tasks += unit.logical_unit_reset(reset.nexus, ASC(reset.asc))
            for handler in server.connections_of(target.name):
                if handler.core is not None:
                    handler.core.drop_undelivered(None if reset.lun == ALL_LUNS else reset.lun)
            await wait_ended(tasks, "tasks aborted by a reset in another worker")
        for abort in sync.aborts:
            lu = _unit(server.registry, abort.target, abort.lun)
            if lu is not None:
                tag = None if abort.requester_tag < 0 else abort.requester_tag
                await lu.abort_task_sets(
                    abort.nexuses, requester=abort.requester, requester_tag=tag
                )
        self.tell(Ack(sync.seq))

    def _drop(self, server: TargetServer, drop: DropConnections) -> None:
        for handler in list(server.connections):
            ours = handler.target_name == drop.target and handler.tpgt == drop.tag
            discovery = handler.target_name is None and str(handler.portal) in drop.portals
            if ours or discovery:
                handler.abort("portal group taken down")

    # -- forwarded commands ------------------------------------------------------------------

    def _forward_shared_commands(self, target_name: str, lu: LogicalUnit) -> None:
        async def forward(unit: LogicalUnit, cmd: Command) -> CommandResult:
            return await self._forward(target_name, unit, cmd)

        for key in FORWARDED_COMMANDS | ATOMIC_COMMANDS:
            spec = lu.commands.get(key)
            if spec is not None:
                # RESERVE and RELEASE meet the SPC-2 reservation in the coordinator, whose
                # holder is current, rather than in this replica, which learns of a nexus
                # lost in another worker a push later.
                lenient = spec.allowed_with_scsi2_reservation or key in SCSI2_COMMANDS
                lu.commands[key] = replace(
                    spec, handler=forward, allowed_with_scsi2_reservation=lenient
                )

    async def _forward(self, target_name: str, lu: LogicalUnit, cmd: Command) -> CommandResult:
        def build(request: int) -> Message:
            return Forward(
                request,
                target_name,
                lu.lun,
                cmd.nexus,
                cmd.tag,
                bytes(cmd.cdb),
                bytes(cmd.data_out),
                cmd.data_in_length,
            )

        try:
            reply = await self.channel.request(build, FORWARD_TIMEOUT)
        except (ChannelClosed, TimeoutError) as exc:
            log.warning("LUN %d: coordinator did not answer a forwarded command: %s", lu.lun, exc)
            return CommandResult(status=Status.BUSY)
        assert isinstance(reply, Reply)
        return CommandResult(
            status=Status(reply.status),
            data=reply.data,
            sense=reply.sense,
            data_out_used=reply.data_out_used,
        )

    # -- handed-over connections -------------------------------------------------------------

    def _on_handoff(self) -> None:
        try:
            data, fds, _flags, _address = socket.recv_fds(self.handoff, MAX_HANDOFF_DATAGRAM, 4)
        except BlockingIOError:
            return
        except OSError as exc:
            log.error("handoff socket failed: %s", exc)
            asyncio.get_running_loop().remove_reader(self.handoff.fileno())
            return
        if not data and not fds:
            asyncio.get_running_loop().remove_reader(self.handoff.fileno())
            return
        for extra in fds[1:]:
            os.close(extra)
        try:
            message = decode(data)
            if not isinstance(message, Handoff) or not fds:
                raise WorkerProtocolError("handoff: expected a Handoff with one socket")
        except WorkerProtocolError as exc:
            log.error("%s", exc)
            for fd in fds[:1]:
                os.close(fd)
            return
        sock = socket.socket(fileno=fds[0])
        self._own(asyncio.get_running_loop().create_task(self._adopt(sock, message)))

    async def _adopt(self, sock: socket.socket, handoff: Handoff) -> None:
        server = self.server
        if server is None or self.stop_requested.is_set():
            sock.close()
            self.tell(ConnectionEnded(handoff.connection))
            return
        portal = Portal(handoff.host, handoff.port)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: WorkerConnection(server, portal, self, handoff.connection), sock
            )
        except OSError as exc:
            log.info("handed-over connection %d is gone: %s", handoff.connection, exc)
            sock.close()
            self.tell(ConnectionEnded(handoff.connection))

    # -- lifetime ----------------------------------------------------------------------------

    async def run(self, setup: WorkerSetup) -> int:
        built = await build_registry(setup.specs, open_plain=shared_opener(setup.files))
        registry = WorkerRegistry(list(built.targets.values()), self, self.index, setup.workers)
        self.server = TargetServer(registry, setup.settings)
        await self.channel.start()
        loop = asyncio.get_running_loop()
        self.handoff.setblocking(False)
        loop.add_reader(self.handoff.fileno(), self._on_handoff)
        closed = loop.create_task(self.channel.closed.wait())
        stop = loop.create_task(self.stop_requested.wait())
        try:
            await asyncio.wait({closed, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            stop.cancel()
            loop.remove_reader(self.handoff.fileno())
            if not self.stop_requested.is_set():
                log.warning("coordinator gone; stopping")
            await self.server.stop(self.grace)
            for task in list(self._tasks):
                task.cancel()
            await wait_ended(list(self._tasks), "worker tasks")
            await self.channel.close()
            self.handoff.close()
        return 0


def _unit(registry: TargetRegistry, target_name: str, lun: int) -> LogicalUnit | None:
    target = registry.targets.get(target_name)
    return None if target is None else target.luns.get(lun)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        index, channel_fd, handoff_fd = (int(a) for a in args)
        setup = WorkerSetup.from_plain(pickle.load(sys.stdin.buffer))
    except (ValueError, EOFError, pickle.UnpicklingError) as exc:
        # Started by hand, not by a coordinator (``sanstack target serve --workers N``).
        print(f"sanstack target worker: error: {exc}", file=sys.stderr)
        return 2
    # The coordinator stops its workers; a terminal's ^C reaches the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=setup.log_level,
        format=f"%(asctime)s %(levelname)s worker{index}[%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    channel = socket.socket(fileno=channel_fd)
    handoff = socket.socket(fileno=handoff_fd)

    async def serve() -> int:
        return await Worker(index, channel, handoff).run(setup)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(serve())
    return int(uvloop.run(serve()))


if __name__ == "__main__":
    sys.exit(main())
