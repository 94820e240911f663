"""The coordinator of ``sanstack target serve --workers N``: one portal, N worker processes.

The coordinator owns the listening sockets, the control socket, the APTPL state files and
the authoritative shared state: persistent and SPC-2 reservations, ALUA states, and which
worker holds which I_T nexus (``workers_core.CoordinatorBook``). It accepts each connection
and hands the socket to the live worker with the fewest connections over a SOCK_SEQPACKET
socketpair (SCM_RIGHTS). A dispatcher rather than SO_REUSEPORT: the kernel's hash would
place sessions at random, while here placement is deterministic (tests put two sessions on
two workers), a portal group taken down closes one listener, and port 0 is bound once.

A worker runs the data path itself and forwards only the commands of shared state
(``FORWARDED_COMMANDS``). The coordinator runs those one at a time on its own logical units
(the same PR, SPC-2 and STPG code as one process), then pushes the new state, the unit
attentions (each to the worker holding its nexus) and PREEMPT AND ABORT's task sets to
every worker and waits for every ack before it answers. A worker that does not ack in time
is killed, so no worker keeps admitting commands against a stale reservation. A worker that
dies is restarted; its sessions are ended (their nexuses, as a lost connection ends them).
Stopping the coordinator stops every worker (``Stop``, bounded, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sanstack.errors import ConfigError, SanstackError
from sanstack.scsi.alua_codec import ALUAState
from sanstack.scsi.codes import ASC, Opcode, SenseKey, Status
from sanstack.scsi.command import Command, CommandResult, Nexus
from sanstack.scsi.sense import check_condition
from sanstack.target.build import build_registry
from sanstack.target.config import TargetSpec
from sanstack.target.model import Portal, PortalGroup, Target
from sanstack.target.registry import TargetRegistry
from sanstack.target.server import LISTEN_BACKLOG, SHUTDOWN_GRACE_SECONDS, ConnectionHandler
from sanstack.target.shared_files import SharedFds, close_files, lock_files, shared_opener
from sanstack.target.workers_channel import Channel, ChannelClosed
from sanstack.target.workers_core import (
    CoordinatorBook,
    CoordinatorUnit,
    Effects,
    WorkerSetup,
    alua_states,
    lun_state,
)
from sanstack.target.workers_protocol import (
    AluaGroupState,
    ConnectionEnded,
    DropConnections,
    Forward,
    Handoff,
    Hello,
    ListSessions,
    LunState,
    Message,
    PortalAddress,
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
    encode_body,
)

log = logging.getLogger(__name__)

WORKER_START_TIMEOUT = 60.0
# Below the worker's FORWARD_TIMEOUT, so a forwarded command is answered BUSY by the
# coordinator (and never run later) rather than timed out by the worker.
STATE_LOCK_WAIT = 20.0
# Above the 10 s a worker waits for aborted tasks (edge/tasks.py).
ACK_TIMEOUT = 15.0
LIST_TIMEOUT = 5.0
RESTART_DELAY = 1.0
STOP_EXTRA = 10.0


class WorkerStartFailed(SanstackError):
    """A worker process did not come up."""


async def build_coordinator_registry(
    specs: list[TargetSpec], state_dir: Path | None, effects: Effects
) -> tuple[TargetRegistry, SharedFds]:
    """The registry of ``build_registry`` with ``CoordinatorUnit`` LUNs (same devices and
    reservation files), whose unit attentions and aborts go to ``effects``, and the locked
    descriptors of its files, which the workers inherit.

    File LUNs only: every worker serves the same files, while a memory LUN or a snapshot
    volume lives in one process."""
    for spec in specs:
        for lun in spec.luns:
            if lun.backstore != "file":
                raise ConfigError(
                    "--workers",
                    f"LUN {lun.number} of {spec.name} is a {lun.backstore} LUN; "
                    "--workers above 1 serves file LUNs only",
                )
    fds = lock_files(specs)
    try:
        registry = await build_registry(specs, state_dir, open_plain=shared_opener(fds))
    except BaseException:
        close_files(fds)
        raise
    for target in registry.targets.values():
        for number, lu in list(target.luns.items()):
            target.luns[number] = CoordinatorUnit(
                number, lu.device, target.info, effects, lu.reservation_store
            )
    return registry, fds


@dataclass(slots=True)
class WorkerSlot:
    index: int
    process: asyncio.subprocess.Process | None = None
    channel: Channel | None = None
    handoff: socket.socket | None = None
    ready: asyncio.Future[Ready] | None = None
    # Sent Hello: this worker gets every Sync from now on.
    synced: bool = False
    restarts: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Coordinator:
    """Listeners, worker processes and the shared state of ``--workers N``."""

    def __init__(
        self,
        registry: TargetRegistry,
        effects: Effects,
        setup: WorkerSetup,
    ) -> None:
        self.registry = registry
        self.connections: set[ConnectionHandler] = set()  # in the workers, not here
        self.effects = effects
        self.setup = setup
        self.book = CoordinatorBook(setup.workers)
        self.slots = [WorkerSlot(i) for i in range(setup.workers)]
        self._listeners: dict[Portal, tuple[socket.socket, asyncio.Task[None]]] = {}
        self._state_lock = asyncio.Lock()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._supervisors: list[asyncio.Task[None]] = []

    def _own(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- listeners (ServedTargets) ------------------------------------------------------------

    @property
    def portals(self) -> list[tuple[str, int, int]]:
        return [
            (portal.host, portal.port, group.tag)
            for target in self.registry.targets.values()
            for group in target.portal_groups
            for portal in group.portals
            if portal in self._listeners
        ]

    async def _listen_all(self, group: PortalGroup) -> None:
        for index, portal in enumerate(group.portals):
            if portal not in self._listeners:
                group.portals[index] = self._listen(portal)

    def _listen(self, portal: Portal) -> Portal:
        family = socket.AF_INET6 if ":" in portal.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((portal.host, portal.port))
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        bound = Portal(portal.host, sock.getsockname()[1])
        task = asyncio.get_running_loop().create_task(self._accept(sock, bound))
        self._listeners[bound] = (sock, task)
        return bound

    async def _accept(self, sock: socket.socket, portal: Portal) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, _address = await loop.sock_accept(sock)
            except OSError as exc:
                log.warning("accept on %s failed: %s", portal, exc)
                await asyncio.sleep(0.1)  # EMFILE and the like: do not spin
                continue
            with connection:
                self._hand_off(connection, portal)

    def _hand_off(self, connection: socket.socket, portal: Portal) -> None:
        index = self.book.place()
        handoff = self.slots[index].handoff if index is not None else None
        if index is None or handoff is None:
            log.warning("no worker is up: connection to %s refused", portal)
            return
        connection_id = self.book.next_connection_id()
        payload = encode_body(Handoff(connection_id, portal.host, portal.port))
        try:
            socket.send_fds(handoff, [payload], [connection.fileno()])
        except OSError as exc:  # BlockingIOError too: the worker is not taking connections
            log.warning("worker %d did not take a connection to %s: %s", index, portal, exc)
            return
        self.book.connection_placed(index, connection_id)
        log.debug("connection %d to %s handed to worker %d", connection_id, portal, index)

    async def _close_listener(self, portal: Portal) -> None:
        sock, task = self._listeners.pop(portal)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sock.close()

    async def disable_portal_group(self, target: Target, group: PortalGroup) -> None:
        group.enabled = False
        still_served = {
            portal
            for other in self.registry.targets.values()
            for g in other.portal_groups
            if g.enabled
            for portal in g.portals
        }
        for portal in group.portals:
            if portal in self._listeners and portal not in still_served:
                await self._close_listener(portal)
        drop = DropConnections(target.name, group.tag, tuple(str(p) for p in group.portals))
        for slot in self.slots:
            self._tell(slot, drop)

    async def enable_portal_group(self, target: Target, group: PortalGroup) -> None:
        group.enabled = True
        await self._listen_all(group)

    # -- workers --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on every portal, start every worker, then take connections."""
        for target in self.registry.targets.values():
            for group in target.portal_groups:
                if group.enabled:
                    await self._listen_all(group)
        try:
            await asyncio.gather(*(self._spawn(slot) for slot in self.slots))
        except BaseException:
            await self.stop(grace=0)
            raise
        for slot in self.slots:
            self._supervisors.append(asyncio.get_running_loop().create_task(self._supervise(slot)))

    async def _spawn(self, slot: WorkerSlot) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        handoff, child_handoff = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sanstack.target.worker_process",
                str(slot.index),
                str(child.fileno()),
                str(child_handoff.fileno()),
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(child.fileno(), child_handoff.fileno(), *self.setup.files.values()),
            )
        except BaseException:
            for sock in (parent, child, handoff, child_handoff):
                sock.close()
            raise
        finally:
            child.close()
            child_handoff.close()
        slot.process = process
        assert process.stdin is not None
        process.stdin.write(pickle.dumps(self.setup.to_plain()))
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(process.stdin.drain(), WORKER_START_TIMEOUT)
        process.stdin.close()
        handoff.setblocking(False)
        slot.handoff = handoff
        slot.ready = asyncio.get_running_loop().create_future()
        slot.channel = Channel(parent, lambda m: self._on_message(slot, m), f"worker {slot.index}")
        await slot.channel.start()
        # Hello and joining the Sync set in one step: no state change can fall between.
        slot.channel.send(self._hello(slot.index))
        slot.synced = True
        ready = slot.ready
        done = asyncio.get_running_loop().create_task(process.wait())
        waiters: set[asyncio.Future[Any]] = {ready, done}
        try:
            await asyncio.wait(
                waiters, timeout=WORKER_START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            done.cancel()
        if not ready.done():
            raise WorkerStartFailed(f"worker {slot.index} did not start")
        self.book.worker_up(slot.index, process.pid)
        log.info("worker %d started (pid %d)", slot.index, process.pid)

    def _hello(self, index: int) -> Hello:
        portals = [
            PortalAddress(target.name, group.tag, i, portal.host, portal.port)
            for target in self.registry.targets.values()
            for group in target.portal_groups
            for i, portal in enumerate(group.portals)
        ]
        return Hello(index, tuple(portals), tuple(self._lun_states()), tuple(self._alua()))

    def _lun_states(self) -> list[LunState]:
        return [
            lun_state(target.name, lu)
            for target in self.registry.targets.values()
            for lu in target.luns.values()
        ]

    def _alua(self) -> list[AluaGroupState]:
        return [s for t in self.registry.targets.values() for s in alua_states(t.name, t.alua)]

    async def _supervise(self, slot: WorkerSlot) -> None:
        """Restart the worker whenever it exits, until the coordinator stops."""
        while True:
            process = slot.process
            assert process is not None
            status = await process.wait()
            if self._stopping:
                return
            await self._worker_gone(slot, f"exited with status {status}")
            await asyncio.sleep(RESTART_DELAY)
            slot.restarts += 1
            try:
                await self._spawn(slot)
            except (WorkerStartFailed, OSError) as exc:
                log.error("worker %d: restart failed: %s", slot.index, exc)

    async def _worker_gone(self, slot: WorkerSlot, why: str) -> None:
        slot.synced = False
        channel, slot.channel = slot.channel, None
        if slot.handoff is not None:
            slot.handoff.close()
            slot.handoff = None
        if channel is not None:
            await channel.close()
        ended = self.book.worker_down(slot.index)
        log.warning(
            "worker %d %s; its %d sessions ended; restarting it", slot.index, why, len(ended)
        )
        for nexus in ended:
            log.info("session of %s ended with worker %d", nexus.initiator_port, slot.index)
            self._nexus_down(nexus)

    def _tell(self, slot: WorkerSlot, message: Message) -> None:
        if slot.channel is not None and slot.synced:
            with contextlib.suppress(ChannelClosed):
                slot.channel.send(message)

    # -- messages from workers ----------------------------------------------------------------

    def _on_message(self, slot: WorkerSlot, message: Message) -> None:
        index = slot.index
        if isinstance(message, Ready):
            if slot.ready is not None and not slot.ready.done():
                slot.ready.set_result(message)
        elif isinstance(message, Forward):
            task = self._forwarded(slot.channel, message)
            self._own(asyncio.get_running_loop().create_task(task))
        elif isinstance(message, SessionUp):
            other = self.book.session_up(index, message.connection, message.nexus)
            if other is not None:
                log.info(
                    "session of %s reinstated in worker %d (was in worker %d)",
                    message.nexus.initiator_port,
                    index,
                    other,
                )
                self._tell(self.slots[other], Reinstate(message.nexus))
            target = self.registry.targets.get(message.nexus.target_name)
            if target is not None:
                target.nexus_up(message.nexus)
        elif isinstance(message, SessionDown):
            nexus = self.book.session_down(index, message.connection)
            if nexus is not None:
                self._nexus_down(nexus)
        elif isinstance(message, ConnectionEnded):
            self.book.connection_ended(index, message.connection)
        elif isinstance(message, Reset):
            task = self._reset(slot, slot.channel, message)
            self._own(asyncio.get_running_loop().create_task(task))

    async def _reset(self, slot: WorkerSlot, channel: Channel | None, message: Reset) -> None:
        """A reset (or CLEAR TASK SET) in one worker: the units here (SPC-2 reservation,
        unit attentions to every nexus) and the other workers' tasks, before that worker
        answers it."""
        reset = message.reset
        target = self.registry.targets.get(reset.target)
        if target is not None:
            async with self._state_lock:
                before = self._lun_states()
                for number, lu in target.luns.items():
                    if reset.lun in (-1, number) and not reset.clear:
                        lu.logical_unit_reset(reset.nexus, ASC(reset.asc))
                changed = [s for s in self._lun_states() if s not in before]
                effects = self.effects.take()
                await self._publish(changed, effects, alua=False, reset=(reset, slot.index))
        _answer(channel, Reply(message.request, int(Status.GOOD)))

    def _nexus_down(self, nexus: Nexus) -> None:
        """A session ended: the nexus's SPC-2 reservation goes (``nexus_lost``) at once, as
        the message is read, so a command forwarded later by another worker finds it gone;
        the workers learn of it through a push of the state as it is then."""
        target = self.registry.targets.get(nexus.target_name)
        if target is None:
            return
        before = self._lun_states()
        target.nexus_down(nexus)
        changed = {(s.target, s.lun) for s in self._lun_states() if s not in before}
        if changed:
            self._own(asyncio.get_running_loop().create_task(self._publish_current(changed)))

    async def _publish_current(self, keys: set[tuple[str, int]]) -> None:
        async with self._state_lock:
            states = [s for s in self._lun_states() if (s.target, s.lun) in keys]
            await self._publish(states, Effects(), alua=False)

    async def _forwarded(self, channel: Channel | None, forward: Forward) -> None:
        if forward.cdb[:1] == bytes([Opcode.COMPARE_AND_WRITE]):
            # Atomic against every other worker's COMPARE AND WRITE through this LU's range
            # lock; it changes no shared state, so it does not wait for the state lock.
            result = await self._execute(forward, publish=False)
            _answer(channel, _reply(forward, result))
            return
        try:
            await asyncio.wait_for(self._state_lock.acquire(), STATE_LOCK_WAIT)
        except TimeoutError:
            log.warning("a forwarded command waited %ss for the shared state", STATE_LOCK_WAIT)
            result = CommandResult(status=Status.BUSY)
        else:
            try:
                result = await self._execute(forward)
            finally:
                self._state_lock.release()
        _answer(channel, _reply(forward, result))

    async def _execute(self, forward: Forward, *, publish: bool = True) -> CommandResult:
        target = self.registry.targets.get(forward.target)
        lu = target.luns.get(forward.lun) if target is not None else None
        if target is None or lu is None:
            return check_condition(SenseKey.ILLEGAL_REQUEST, ASC.LOGICAL_UNIT_NOT_SUPPORTED)
        before, alua_before = self._lun_states(), self._alua()
        command = Command(
            forward.nexus,
            forward.lun,
            forward.cdb,
            forward.tag,
            data_out=forward.data_out,
            data_in_length=forward.data_in_length,
        )
        if not publish:
            return await lu.execute(command)
        try:
            result = await lu.execute(command)
        finally:
            effects = self.effects.take()
            changed = [s for s in self._lun_states() if s not in before]
            alua_changed = self._alua() != alua_before
            if changed or alua_changed or effects:
                await self._publish(changed, effects, alua=alua_changed)
        return result

    async def set_alua_state(self, target: Target, tag: int, state: ALUAState) -> None:
        """An operator's ALUA change, pushed to every worker before it returns."""
        async with self._state_lock:
            target.set_alua_state(tag, state)
            effects = self.effects.take()
            await self._publish([], effects, alua=True)

    async def _publish(
        self,
        luns: list[LunState],
        effects: Effects,
        *,
        alua: bool,
        reset: tuple[ResetUnits, int] | None = None,
    ) -> None:
        """Every synced worker applies the change and acks; one that cannot is killed.
        ``reset`` goes to every worker but the one it came from, which carries it out."""
        routed = self.book.route(effects.unit_attentions)
        alua_now = tuple(self._alua()) if alua else ()
        slots = [s for s in self.slots if s.synced and s.channel is not None]

        async def one(slot: WorkerSlot, channel: Channel) -> None:
            def build(seq: int) -> Message:
                notes = tuple(routed.get(slot.index, ()))
                resets = () if reset is None or reset[1] == slot.index else (reset[0],)
                return Sync(seq, tuple(luns), alua_now, notes, tuple(effects.aborts), resets)

            try:
                await channel.request(build, ACK_TIMEOUT)
            except (ChannelClosed, TimeoutError) as exc:
                if slot.channel is channel:
                    log.error(
                        "worker %d did not apply shared state (%r): killing it", slot.index, exc
                    )
                    slot.synced = False
                    if slot.process is not None and slot.process.returncode is None:
                        slot.process.kill()

        await asyncio.gather(*(one(s, s.channel) for s in slots if s.channel is not None))

    async def all_sessions(self) -> list[dict[str, object]]:
        """Every worker's session rows, each with its worker's index."""

        async def one(slot: WorkerSlot) -> list[dict[str, object]]:
            channel = slot.channel
            if channel is None or not slot.synced:
                return []
            try:
                answer = await channel.request(ListSessions, LIST_TIMEOUT)
            except (ChannelClosed, TimeoutError):
                log.warning("worker %d did not list its sessions", slot.index)
                return []
            assert isinstance(answer, Sessions)
            return list(answer.sessions)

        rows = await asyncio.gather(*(one(slot) for slot in self.slots))
        return [row for part in rows for row in part]

    # -- stop -----------------------------------------------------------------------------------

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop listening, stop every worker (bounded; SIGKILL after), close the devices."""
        self._stopping = True
        for portal in list(self._listeners):
            await self._close_listener(portal)
        # No restart from now on; a worker caught half started is in its slot, stopped below.
        for supervisor in self._supervisors:
            supervisor.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)
        for slot in self.slots:
            self._tell(slot, Stop(grace))
        processes = [s.process for s in self.slots if s.process is not None]
        waits = [asyncio.wait_for(p.wait(), grace + STOP_EXTRA) for p in processes]
        for process, outcome in zip(
            processes, await asyncio.gather(*waits, return_exceptions=True), strict=True
        ):
            if isinstance(outcome, BaseException):
                log.warning("worker pid %d did not stop; killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for slot in self.slots:
            if slot.channel is not None:
                await slot.channel.close()
            if slot.handoff is not None:
                slot.handoff.close()
        await self.registry.close()
        close_files(self.setup.files)

    def status(self) -> list[dict[str, object]]:
        return [
            {
                "index": w.index,
                "pid": w.pid,
                "alive": w.alive,
                "connections": len(w.connections),
                "sessions": sum(1 for key in self.book.sessions if key[0] == w.index),
                "restarts": self.slots[w.index].restarts,
            }
            for w in self.book.workers
        ]


def _answer(channel: Channel | None, reply: Reply) -> None:
    """Answer on the channel the request came in on: a restarted worker has a new channel,
    whose request numbers start again, and must never get its predecessor's answers."""
    if channel is not None:
        with contextlib.suppress(ChannelClosed):
            channel.send(reply)


def _reply(forward: Forward, result: CommandResult) -> Reply:
    return Reply(
        forward.request,
        int(result.status),
        bytes(result.data),
        result.sense,
        result.data_out_used,
    )
