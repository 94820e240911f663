"""The asyncio edge of sanstack's iSCSI initiator: one session over one TCP connection.

``ISCSISession`` is the ``asyncio.Protocol`` of its connection and drives an
``InitiatorConnection`` core: bytes in, events out, everything the core produced during
one loop iteration written with one ``writelines`` (``edge/driver.py``, the loop the
target's edge runs too). It owns no
reader task; the only tasks it starts are the logout a target may ask for, kept in a set
and ended by ``abort``.

Errors. Every awaiting caller gets an answer: when the connection dies (transport error,
NOP timeout, protocol error, ``abort``) every command, task management request and text
exchange in flight or queued fails with ``PathFailed``, whose ``kind`` (a
``PathFailureKind``: connection lost, NOP timeout, command timeout, ...) is what callers
decide on. ``PathFailed`` is a ``DeviceNotReady``, so a block layer above sees a dead path
as a device that is not ready. A target that refuses the login raises ``LoginRefused`` (not
a path failure: another path will refuse as well).
Logging in again after a failure is the caller's (the multipath layer's) job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from sanstack.edge.driver import RELAY_PIECE, TimedCoreDriver, ignore_event
from sanstack.errors import LocalProtocolError, SanstackError
from sanstack.initiator.responses import (
    CommandResponse,
    CommandWaiter,
    LoginRefused,
    PathFailed,
    closed_error,
    command_timeout_error,
    response_of,
)
from sanstack.iscsi.chap import ChapCredentials
from sanstack.iscsi.codes import (
    AsyncEvent,
    TaskAttribute,
    TaskManagementResponseCode,
)
from sanstack.iscsi.initiator_connection import InitiatorConnection
from sanstack.iscsi.initiator_events import (
    AsyncEventReceived,
    CommandCompleted,
    ConnectionFailed,
    DiscoveryCompleted,
    LoginCompleted,
    LoginFailed,
    LogoutCompleted,
    NopInReceived,
    PathFailureKind,
    TaskManagementCompleted,
)
from sanstack.iscsi.negotiation import NegotiationPreferences, OperationalParameters, SessionType
from sanstack.scsi.codes import SenseKey, Status
from sanstack.scsi.sense import parse_sense

log = logging.getLogger(__name__)

DEFAULT_ISID = 0x80_0000_0001  # type 10b (random), as the RFC 7143 §11.12.5 layout allows
TMF_TIMEOUT = 10.0
LOGOUT_TIMEOUT = 5.0
MAX_OUTSTANDING = 128
_CHECK_CONDITION = int(Status.CHECK_CONDITION)  # compared for every command's answer
_T = TypeVar("_T")


class ISCSISession(TimedCoreDriver[InitiatorConnection]):
    """One logged-in iSCSI session (ErrorRecoveryLevel 0, one connection)."""

    def __init__(
        self,
        core: InitiatorConnection,
        *,
        max_outstanding: int = MAX_OUTSTANDING,
        command_timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.core = core
        self.parameters: OperationalParameters | None = None
        self.tsih = 0
        self.failure: PathFailed | None = None
        self.async_events: deque[AsyncEventReceived] = deque(maxlen=64)
        # The RELATIVE TARGET PORT IDENTIFIER (VPD 83h) of the port this session reaches,
        # filled in when an ISCSIDevice opens over it; None until then or if not reported.
        self.relative_target_port_id: int | None = None
        self.command_timeout = command_timeout
        self.tmf_timeout = TMF_TIMEOUT
        self.logout_timeout = LOGOUT_TIMEOUT
        self._login: asyncio.Future[LoginCompleted] = self.loop.create_future()
        self._commands: dict[int, asyncio.Future[CommandResponse]] = {}
        # Commands started by ``start_command``: their waiters are told directly; each
        # carries its own deadline (the sweep looks at these few, no entry per command).
        self._waiters: dict[int, CommandWaiter] = {}
        # (deadline, timeout) of each command that has one; one timer sweeps them.
        self._deadlines: dict[int, tuple[float, float | None]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = 0.0  # when the sweep is due, while there is one
        self._tmfs: dict[int, asyncio.Future[TaskManagementResponseCode]] = {}
        self._texts: dict[int, asyncio.Future[list[tuple[str, list[str]]]]] = {}
        self._logout: asyncio.Future[LogoutCompleted] | None = None
        # Command slots (asyncio.Semaphore's locked() walks its waiters on every call).
        self._free_slots = max_outstanding
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = asyncio.Event()
        # The two events' states as plain flags, read per command (Event.is_set is a call).
        self._write_paused = False
        self._ended = False
        self._background: set[asyncio.Task[None]] = set()
        # Called once, synchronously, when the session ends after its login (a transport
        # failure, a logout, ``abort``), with the failure its waiters get: whoever shares
        # the session hears of it before any caller's command sees its PathFailed.
        self.on_closed: Callable[[PathFailed], None] | None = None
        # Called with ASC << 8 | ASCQ whenever a command ends in UNIT ATTENTION or the target
        # sends a SCSI asynchronous event, whichever LUN it is about and whoever sent the
        # command: whoever shares the session learns of REPORTED LUNS DATA HAS CHANGED even
        # when the command that saw it was another layer's (an RTPG, say).
        self.on_unit_attention: Callable[[int], None] | None = None

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        target_name: str,
        *,
        initiator_name: str,
        isid: int = DEFAULT_ISID,
        chap: ChapCredentials | None = None,
        preferences: NegotiationPreferences | None = None,
        nop_interval: float | None = 2.0,
        nop_timeout: float = 3.0,
        login_timeout: float = 10.0,
        command_timeout: float | None = 60.0,
        max_outstanding: int = MAX_OUTSTANDING,
    ) -> ISCSISession:
        """Connect and log in to a Normal session; raises PathFailed or LoginRefused."""
        return await cls._open(
            host,
            port,
            target_name,
            SessionType.NORMAL,
            initiator_name=initiator_name,
            isid=isid,
            chap=chap,
            preferences=preferences,
            nop_interval=nop_interval,
            nop_timeout=nop_timeout,
            login_timeout=login_timeout,
            command_timeout=command_timeout,
            max_outstanding=max_outstanding,
        )

    @classmethod
    async def _open(
        cls,
        host: str,
        port: int,
        target_name: str | None,
        session_type: SessionType,
        *,
        initiator_name: str,
        isid: int,
        chap: ChapCredentials | None,
        preferences: NegotiationPreferences | None,
        nop_interval: float | None,
        nop_timeout: float,
        login_timeout: float,
        command_timeout: float | None,
        max_outstanding: int,
    ) -> ISCSISession:
        loop = asyncio.get_running_loop()
        core = InitiatorConnection(
            initiator_name,
            target_name,
            isid=isid,
            now=loop.time(),
            session_type=session_type,
            chap=chap,
            preferences=preferences,
            nop_interval=nop_interval,
            nop_timeout=nop_timeout,
            login_timeout=login_timeout,
            max_queued=max_outstanding,
        )
        session = cls(core, max_outstanding=max_outstanding, command_timeout=command_timeout)
        try:
            async with asyncio.timeout(login_timeout):
                await loop.create_connection(lambda: session, host, port)
                await session._login
        except TimeoutError:
            session.abort("login timed out")
            raise PathFailed(
                PathFailureKind.LOGIN_TIMEOUT, f"login to {host}:{port} timed out"
            ) from None
        except OSError as exc:
            session.abort("cannot connect")
            raise PathFailed(
                PathFailureKind.CONNECTION_LOST, f"cannot connect to {host}:{port}: {exc}"
            ) from None
        except BaseException:
            session.abort("login failed")
            raise
        finally:
            _retrieved(session._login)
        return session

    # -- asyncio.Protocol: the rest is TimedCoreDriver's ----------------------------------

    def pause_writing(self) -> None:
        # New commands wait while the target does not read what we already sent.
        self._writable.clear()
        self._write_paused = True

    def resume_writing(self) -> None:
        self._writable.set()
        self._write_paused = False

    # -- core events: dispatched through _event_handlers -----------------------------------

    def _pump(self) -> None:
        """``CoreDriver._pump``, a completed command handled without the table lookup: it
        runs for every segment the target sends."""
        core = self.core
        handlers = self._event_handlers
        completed = self._on_command_completed
        writes = self._writes
        done = 0
        while (event := core.next_event()) is not None:
            if type(event) is CommandCompleted:
                completed(event)
                done += 1
                if done == RELAY_PIECE:  # the answers so far leave now (to NBD, say)
                    done = 0
                    writes.flush()
            elif handlers[type(event)](self, event):
                return
        if core.has_data_to_send:
            self._schedule_flush()
        self._after_pump()

    def _on_command_completed(self, event: CommandCompleted) -> None:
        if event.status == _CHECK_CONDITION and self.on_unit_attention is not None:
            self._unit_attention(event.sense)
        waiter = self._waiters.pop(event.itt, None)
        if waiter is not None:
            if self._slot_waiters:
                self._release_slot()
            else:
                self._free_slots += 1
            waiter.command_done(event)
            return
        fut = self._commands.pop(event.itt, None)
        if fut is not None and not fut.done():
            fut.set_result(response_of(event))

    def _unit_attention(self, sense: bytes) -> None:
        assert self.on_unit_attention is not None
        try:
            key, asc, ascq = parse_sense(sense)
        except ValueError:
            return
        if key == SenseKey.UNIT_ATTENTION:
            self.on_unit_attention(asc << 8 | ascq)

    def _on_task_management_completed(self, event: TaskManagementCompleted) -> None:
        _resolve(self._tmfs.pop(event.itt, None), event.response)

    def _on_discovery_completed(self, event: DiscoveryCompleted) -> None:
        _resolve(self._texts.pop(event.itt, None), event.targets)

    def _on_logout_completed(self, event: LogoutCompleted) -> None:
        _resolve(self._logout, event)
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def _on_login_completed(self, event: LoginCompleted) -> None:
        self.parameters = event.parameters
        self.tsih = event.tsih
        _resolve(self._login, event)

    def _on_async_event(self, event: AsyncEventReceived) -> None:
        self.async_events.append(event)
        if event.event == AsyncEvent.SCSI_ASYNC_EVENT and self.on_unit_attention is not None:
            self._unit_attention(event.sense)
        if event.event == AsyncEvent.LOGOUT_REQUEST:
            log.info("target asks us to log out within %ds", event.parameter3)
            task = self.loop.create_task(self.logout())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _on_login_failed(self, event: LoginFailed) -> None:
        error: SanstackError
        if event.kind is None:
            assert event.status is not None
            error = LoginRefused(event.status, event.reason, event.target_address)
        else:
            error = PathFailed(event.kind, event.reason)
        if not self._login.done():
            self._login.set_exception(error)
        self._drop()

    def _on_failure(self, event: ConnectionFailed) -> None:
        error = PathFailed(event.kind, event.reason)
        if self.failure is None:
            self.failure = error
            log.info("session failed (%s): %s", event.kind.value, event.reason)
        self._fail_waiters(error)
        self._drop()

    def _fail_waiters(self, error: PathFailed) -> None:
        waiters: list[asyncio.Future[Any]] = [
            *self._commands.values(),
            *self._tmfs.values(),
            *self._texts.values(),
        ]
        if self._logout is not None:
            waiters.append(self._logout)
        self._commands.clear()
        self._tmfs.clear()
        self._texts.clear()
        direct = list(self._waiters.values())
        self._waiters.clear()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(error)
        for waiter in direct:
            self._release_slot()
            waiter.command_failed(error)

    def _drop(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._teardown()

    def _teardown(self) -> None:
        super()._teardown()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._fail_waiters(self.failure or closed_error())
        if not self._login.done():
            self._login.set_exception(
                PathFailed(PathFailureKind.CONNECTION_LOST, "connection closed during login")
            )
        self._writable.set()  # wake writers: they will find the session closed
        self._write_paused = False
        self._closed.set()
        self._ended = True
        callback, self.on_closed = self.on_closed, None
        if callback is not None:
            callback(self.failure or closed_error())

    # -- public API --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.core.closed or self._closed.is_set()

    def _check_open(self) -> None:
        if self.closed:
            raise self.failure or closed_error()

    async def command(
        self,
        lun: int,
        cdb: bytes,
        *,
        data_out: bytes | bytearray | memoryview = b"",
        read_length: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 - bounds the command, then aborts it
        attribute: TaskAttribute = TaskAttribute.SIMPLE,
    ) -> CommandResponse:
        """Run one SCSI command; its status (CHECK CONDITION included) is the result.

        ``timeout`` (default: the session's ``command_timeout``) bounds the whole command;
        on expiry the task is aborted at the target and PathFailed (COMMAND_TIMEOUT) raised.
        """
        if self._ended or self.core.closed:
            raise self.failure or closed_error()
        limit = self.command_timeout if timeout is None else timeout
        deadline = None if limit is None else self.loop.time() + limit
        # No asyncio.timeout here: servers start commands eagerly, outside any Task. The
        # deadline is swept by one timer per session (``_expire_overdue``), not one each.
        waited = not self._free_slots or bool(self._slot_waiters)
        if waited:
            await self._take_slot(deadline, limit)
        else:
            self._free_slots -= 1
        itt: int | None = None
        try:
            if self._write_paused:
                waited = True
                await self._wait_until(self._writable.wait(), deadline, limit)
            if waited:  # the session may have ended meanwhile
                self._check_open()
            itt = self.core.submit(
                lun, cdb, data_out=data_out, read_length=read_length, attribute=attribute
            )
            fut: asyncio.Future[CommandResponse] = self.loop.create_future()
            self._commands[itt] = fut
            # A submit queues PDUs and never an event or a new deadline of the core: the
            # write is all there is to schedule (the commands of one iteration share it).
            self._schedule_flush()
            if deadline is not None:
                self._deadlines[itt] = (deadline, limit)
                if self._sweep is None or deadline < self._sweep_at:
                    self._arm_sweep(deadline)
            return await fut
        except asyncio.CancelledError:
            self._forget(itt)
            raise
        finally:
            if itt is not None:
                self._deadlines.pop(itt, None)
            self._release_slot()

    def start_command(
        self, lun: int, cdb: bytes, read_length: int, waiter: CommandWaiter
    ) -> int | None:
        """``command`` for a command without data out, answered to ``waiter`` instead of
        returned (see ``CommandWaiter``); its ITT, for ``cancel_command``. None, and nothing
        sent, when it would have to wait (no free slot, writing paused) or the session has
        ended: the caller then uses ``command``, which waits or raises as it should."""
        if self._ended or self._write_paused or not self._free_slots or self._slot_waiters:
            return None
        try:
            itt = self.core.submit(lun, cdb, read_length=read_length)
        except LocalProtocolError:  # closed, logging out, a full queue: ``command`` says so
            return None
        self._free_slots -= 1
        self._waiters[itt] = waiter
        self._schedule_flush()
        limit = self.command_timeout
        if limit is not None:
            waiter.deadline = deadline = self.loop.time() + limit
            if self._sweep is None or deadline < self._sweep_at:
                self._arm_sweep(deadline)
        return itt

    def cancel_command(self, itt: int) -> None:
        """The waiter of a ``start_command`` gave up: it is told nothing more, and the task
        is aborted at the target (as a cancelled ``command``)."""
        if self._waiters.pop(itt, None) is None:
            return
        self._release_slot()
        self._abort_forgotten(itt)

    async def _take_slot(self, deadline: float | None, limit: float | None) -> None:
        """Wait for one of the ``max_outstanding`` command slots, first come first served."""
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._slot_waiters.append(waiter)
        try:
            await self._wait_until(waiter, deadline, limit)
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # handed a slot as it gave up: pass it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._slot_waiters.remove(waiter)
            raise

    def _release_slot(self) -> None:
        waiters = self._slot_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes to it directly
                return
        self._free_slots += 1

    async def _wait_until(
        self, waiting: Awaitable[Any], deadline: float | None, limit: float | None
    ) -> None:
        """Await ``waiting`` until ``deadline``; PathFailed (COMMAND_TIMEOUT) past it."""
        if deadline is None:
            await waiting
            return
        try:
            await asyncio.wait_for(waiting, max(deadline - self.loop.time(), 0))
        except TimeoutError:
            raise command_timeout_error(f"command did not complete within {limit}s") from None

    def _arm_sweep(self, when: float) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep = self.loop.call_at(when, self._expire_overdue)
        self._sweep_at = when

    def _expire_overdue(self) -> None:
        """Fail every command past its deadline (and abort it at the target); the timer
        then waits for the earliest deadline left. Under steady load it fires about once
        per command timeout: the command it was set for has long completed by then."""
        self._sweep = None
        now = self.loop.time()
        earliest: float | None = None
        for itt, (deadline, limit) in list(self._deadlines.items()):
            if deadline > now:
                earliest = deadline if earliest is None else min(earliest, deadline)
                continue
            del self._deadlines[itt]
            fut = self._commands.get(itt)
            if fut is not None and not fut.done():
                fut.set_exception(
                    command_timeout_error(f"command did not complete within {limit}s")
                )
                self._forget(itt)
        overdue = []
        for itt, waiter in self._waiters.items():
            if waiter.deadline > now:
                deadline = waiter.deadline
                earliest = deadline if earliest is None else min(earliest, deadline)
            else:
                overdue.append((itt, waiter))
        for itt, waiter in overdue:
            if self._waiters.pop(itt, None) is not waiter:
                continue  # answered while an earlier one failed
            self._release_slot()
            waiter.command_failed(
                command_timeout_error(f"command did not complete within {self.command_timeout}s")
            )
            self._abort_forgotten(itt)
        if earliest is not None:
            self._arm_sweep(earliest)

    def _forget(self, itt: int | None) -> None:
        """A caller gave up on a command: abort it at the target so it stops there too."""
        if itt is None or self._commands.pop(itt, None) is None:
            return
        self._abort_forgotten(itt)

    def _abort_forgotten(self, itt: int) -> None:
        if self.closed:
            return
        with contextlib.suppress(LocalProtocolError):
            self.core.abort_task(itt)  # its answer has no waiter and is dropped
            self._pump()

    async def abort_task(self, itt: int) -> TaskManagementResponseCode:
        """ABORT TASK for the command with ``itt``; the response code (``tmf_timeout``)."""
        self._check_open()
        return await self._task_management(self.core.abort_task(itt))

    async def lun_reset(self, lun: int) -> TaskManagementResponseCode:
        """LOGICAL UNIT RESET; commands in flight on ``lun`` end with TASK ABORTED status."""
        self._check_open()
        return await self._task_management(self.core.lun_reset(lun))

    async def _task_management(self, itt: int) -> TaskManagementResponseCode:
        fut: asyncio.Future[TaskManagementResponseCode] = self.loop.create_future()
        self._tmfs[itt] = fut
        self._pump()
        return await self._bounded(fut, self.tmf_timeout, "task management")

    async def send_targets(self, value: str = "All") -> list[tuple[str, list[str]]]:
        """A SendTargets text exchange (§7): ``[(target_name, [target_address, ...])]``."""
        self._check_open()
        itt = self.core.send_targets(value)
        fut: asyncio.Future[list[tuple[str, list[str]]]] = self.loop.create_future()
        self._texts[itt] = fut
        self._pump()
        return await self._bounded(fut, self.tmf_timeout, "SendTargets")

    async def _bounded(self, fut: asyncio.Future[_T], seconds: float, what: str) -> _T:
        try:
            async with asyncio.timeout(seconds):
                return await fut
        except TimeoutError:
            raise command_timeout_error(f"{what} not answered within {seconds}s") from None

    async def logout(self) -> None:
        """Log out (after every queued command has gone out) and close; bounded: on expiry
        or any failure the connection is dropped instead. Never raises PathFailed."""
        if self.closed:
            return
        try:
            if self._logout is None:
                self._logout = self.loop.create_future()
                self.core.logout()
                self._pump()
            async with asyncio.timeout(self.logout_timeout):
                await asyncio.shield(self._logout)
                await self._closed.wait()
        except (TimeoutError, PathFailed, LocalProtocolError) as exc:
            log.info("logout did not complete (%s); dropping the connection", str(exc) or "timeout")
        finally:
            if not self._closed.is_set():
                self.abort("logout")
            _retrieved(self._logout)

    def abort(self, reason: str = "aborted") -> None:
        """Drop the connection at once (RST, no logout); everything waiting fails."""
        self.core.close(reason)
        self._pump()
        self._drop()
        current = asyncio.current_task()
        for task in self._background:
            if task is not current:
                task.cancel()

    async def wait_closed(self) -> None:
        """Wait (``logout_timeout`` at most) until the connection and our tasks are gone."""
        tasks = [t for t in self._background if t is not asyncio.current_task()]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.logout_timeout):
                await self._closed.wait()
                if tasks:
                    await asyncio.wait(tasks)


async def discover(
    host: str,
    port: int,
    *,
    initiator_name: str,
    isid: int = DEFAULT_ISID,
    chap: ChapCredentials | None = None,
    login_timeout: float = 10.0,
) -> list[tuple[str, list[str]]]:
    """A discovery session: SendTargets=All, then logout. ``[(name, [address, ...])]``."""
    session = await ISCSISession._open(
        host,
        port,
        None,
        SessionType.DISCOVERY,
        initiator_name=initiator_name,
        isid=isid,
        chap=chap,
        preferences=None,
        nop_interval=None,
        nop_timeout=login_timeout,
        login_timeout=login_timeout,
        command_timeout=login_timeout,
        max_outstanding=4,
    )
    session.tmf_timeout = login_timeout
    try:
        return await session.send_targets("All")
    finally:
        await session.logout()


def _retrieved(fut: asyncio.Future[_T] | None) -> None:
    """Mark a failed future's exception as seen: its failure was reported another way."""
    if fut is not None and fut.done() and not fut.cancelled():
        fut.exception()


def _resolve(fut: asyncio.Future[_T] | None, value: _T) -> None:
    if fut is not None and not fut.done():
        fut.set_result(value)


__all__: Sequence[str] = (
    "CommandResponse",
    "CommandWaiter",
    "ISCSISession",
    "LoginRefused",
    "PathFailed",
    "discover",
    "response_of",
)


# Set after the class, not in its body: compiled by mypyc (sanstack/native.py) a class body
# cannot name its own methods.
ISCSISession._event_handlers = {
    CommandCompleted: ISCSISession._on_command_completed,
    TaskManagementCompleted: ISCSISession._on_task_management_completed,
    DiscoveryCompleted: ISCSISession._on_discovery_completed,
    AsyncEventReceived: ISCSISession._on_async_event,
    LogoutCompleted: ISCSISession._on_logout_completed,
    ConnectionFailed: ISCSISession._on_failure,
    LoginCompleted: ISCSISession._on_login_completed,
    LoginFailed: ISCSISession._on_login_failed,
    NopInReceived: ignore_event,
}
