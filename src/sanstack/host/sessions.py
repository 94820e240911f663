"""The host's sessions: one iSCSI session per (target, portal), shared by every LUN.

Theory of operation. open-iscsi logs in once per (target, portal) and the kernel reaches
every LUN of that target through that one I_T nexus; dm-multipath then builds one map per
LUN over those shared paths. ``SessionPool`` is the first half: it holds one
``SharedSession`` per (target, portal), each with the ISID ``host/isids.py`` keeps for it,
so every re-login (after a reset, or after the host restarts) is the same I_T nexus and
keeps its persistent reservation registrations.

Each ``SharedSession`` owns one supervisor task: log in (bounded by the login timeout),
tell every listener the path is up, watch the session, and when its transport fails
(connection lost, NOP timeout, a protocol error, a logout the target asked for) tell every
listener the path is down, at once and in the order they subscribed, then log in again with
the same ISID after a bounded backoff (the first retry at once, then doubling from
``reconnect_min`` to ``reconnect_max``). The down notice comes from the session's own
``on_closed`` hook, synchronously, so every map has failed the path before any of its I/O
sees the ``PathFailed`` and is re-driven. Nothing a single LUN does ends the session: a
CHECK CONDITION, a RESERVATION CONFLICT or one command's timeout is that LUN's caller's.

Listeners (the multipath maps, ``mpio/shared_path.py``'s ``PathListener``; a
``SharedSession`` is the ``SharedPath`` they see) are told ``path_down(shared, failure)`` and
``path_up(shared)``, strictly alternating, up first; one that subscribes while the session
is up reads ``shared.session`` instead of waiting for a notice. A listener that raises is
logged and the others are still told.

LUN changes. The session's ``on_unit_attention`` hook is set at every login: a UNIT
ATTENTION of REPORTED LUNS DATA HAS CHANGED (3Fh/0Eh) on any command through the session, or
in a SCSI asynchronous event, calls ``on_luns_changed(shared, reason)``, which the host turns
into a rescan of the target; so does every login after the first (LUNs may have come and
gone while the session was down).

Lifetime. ``close`` tells the listeners the path is down, cancels and awaits the supervisor
(``edge.tasks.wait_ended``), and logs out (bounded; the connection is dropped if the logout
does not complete): commands in flight end with their answer or with ``PathFailed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sanstack.edge.tasks import wait_ended
from sanstack.host.isids import IsidStore
from sanstack.initiator.session import ISCSISession, LoginRefused, PathFailed
from sanstack.iscsi.chap import ChapCredentials
from sanstack.iscsi.initiator_events import PathFailureKind
from sanstack.mpio.alua_reader import PortGroupReader
from sanstack.mpio.path_slot import PathAddress
from sanstack.mpio.shared_path import PathListener
from sanstack.scsi.alua_codec import ALUAState
from sanstack.scsi.codes import ASC

log = logging.getLogger(__name__)

WATCH_INTERVAL = 1.0  # how often the supervisor looks at a session it was not told about
LOGOUT_TIMEOUT = 3.0


class SessionState(Enum):
    LOGGING_IN = "logging-in"
    UP = "up"
    DOWN = "down"  # failed; the supervisor is logging in again
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SessionOptions:
    nop_interval: float | None = 1.0
    nop_timeout: float = 2.0
    login_timeout: float = 5.0
    command_timeout: float | None = 60.0
    max_outstanding: int = 128
    reconnect_min: float = 0.1
    reconnect_max: float = 2.0
    chap: ChapCredentials | None = None


def reconnect_delay(failed_logins: int, options: SessionOptions) -> float:
    """How long to wait before the next login after ``failed_logins`` failed in a row: the
    first at once (a reset path usually answers again), then doubling up to the cap."""
    if failed_logins <= 0:
        return 0.0
    return float(min(options.reconnect_max, options.reconnect_min * 2 ** (failed_logins - 1)))


# Told that a shared session's target may have other LUNs now (and why).
LunsChanged = Callable[["SharedSession", str], None]

# Logs in once for a SharedSession; ISCSISession.connect with its fields by default.
Connector = Callable[["SharedSession"], Awaitable[ISCSISession]]


async def connect(shared: SharedSession) -> ISCSISession:
    options = shared.options
    return await ISCSISession.connect(
        shared.portal.host,
        shared.portal.port,
        shared.target,
        initiator_name=shared.initiator_name,
        isid=shared.isid,
        chap=options.chap,
        nop_interval=options.nop_interval,
        nop_timeout=options.nop_timeout,
        login_timeout=options.login_timeout,
        command_timeout=options.command_timeout,
        max_outstanding=options.max_outstanding,
    )


class SharedSession:
    """One (target, portal): its session when logged in, its listeners, its supervisor."""

    def __init__(
        self,
        target: str,
        portal: PathAddress,
        *,
        initiator_name: str,
        isid: int,
        options: SessionOptions,
        connector: Connector = connect,
        on_luns_changed: LunsChanged | None = None,
    ) -> None:
        self.target = target
        self.portal = portal
        self.initiator_name = initiator_name
        self.isid = isid
        self.options = options
        self.state = SessionState.LOGGING_IN
        self.session: ISCSISession | None = None  # set only while UP
        self.tsih = 0
        self.logins = 0
        self.failures = 0
        self.last_failure: str | None = None
        self.last_failure_kind: PathFailureKind | None = None
        self.login_refused: LoginRefused | None = None  # the target's last refusal, if any
        self._connector = connector
        self.on_luns_changed = on_luns_changed
        self._listeners: list[PathListener] = []
        self._ended = asyncio.Event()
        self._up = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._alua = PortGroupReader(lambda: self.session)

    @property
    def name(self) -> str:
        return f"{self.target}@{self.portal}"

    def __repr__(self) -> str:
        return f"<SharedSession {self.name} isid=0x{self.isid:012x} {self.state.value}>"

    # -- listeners ---------------------------------------------------------------------------

    def add_listener(self, listener: PathListener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove_listener(self, listener: PathListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    async def read_alua(self, lun: int, since: float) -> ALUAState | None:
        """This portal's ALUA state, one REPORT TARGET PORT GROUPS for every map that asks
        (``mpio.shared_path.SharedPath``)."""
        return await self._alua.state(lun, since)

    def _tell(self, what: str, call: Callable[[PathListener], None]) -> None:
        for listener in list(self._listeners):
            try:
                call(listener)
            except Exception:  # one listener's bug must not keep the others uninformed
                log.exception("%s: a listener failed on %s", self.name, what)

    # -- lifetime ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def wait_up(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bounded wait
        """True once logged in; False if not within ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), timeout)
        return self._up.is_set()

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        failed_logins = 0
        while not self._closing:
            delay = reconnect_delay(failed_logins, self.options)
            if delay:
                await asyncio.sleep(delay)
            self.state = SessionState.LOGGING_IN
            try:
                session = await asyncio.wait_for(
                    self._connector(self), self.options.login_timeout + 1.0
                )
            except (PathFailed, LoginRefused, TimeoutError, OSError) as exc:
                failed_logins += 1
                self.state = SessionState.DOWN
                self.last_failure = f"login: {exc or 'timed out'}"
                self.login_refused = exc if isinstance(exc, LoginRefused) else None
                level = logging.WARNING if failed_logins == 1 else logging.DEBUG
                log.log(level, "%s: %s (attempt %d)", self.name, self.last_failure, failed_logins)
                continue
            up_at = loop.time()
            self._ended.clear()
            session.on_closed = lambda failure, s=session: self._closed(s, failure)
            if _ended(session):  # died between its login and here: no notice came
                session.on_closed = None
                failed_logins += 1
                continue
            self.session = session
            self.login_refused = None
            session.on_unit_attention = self._unit_attention
            self.tsih = session.tsih
            self.logins += 1
            self.state = SessionState.UP
            self._up.set()
            log.info("%s: logged in (isid 0x%012x, tsih %d)", self.name, self.isid, self.tsih)
            self._tell("up", lambda listener: listener.path_up(self))
            if self.logins > 1:
                self._luns_changed("logged in again")
            while not self._ended.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ended.wait(), WATCH_INTERVAL)
                if _ended(session) and self.session is session:  # never told: a backstop
                    self._closed(session, session.failure or _closed("session closed"))
            # A session that fails soon after its login backs off like a failed login.
            lasted = loop.time() - up_at
            failed_logins = 0 if lasted >= self.options.reconnect_max else failed_logins + 1

    def _unit_attention(self, code: int) -> None:
        if code == ASC.REPORTED_LUNS_DATA_HAS_CHANGED:
            self._luns_changed("REPORTED LUNS DATA HAS CHANGED")

    def _luns_changed(self, reason: str) -> None:
        if self.on_luns_changed is not None and not self._closing:
            try:
                self.on_luns_changed(self, reason)
            except Exception:  # the host's bug must not end the session's supervisor
                log.exception("%s: the LUN change hook failed", self.name)

    def _closed(self, session: ISCSISession, failure: PathFailed) -> None:
        """``session`` ended (its on_closed hook, or ``close``): every listener hears now."""
        if session is not self.session:
            return
        self.session = None
        self._up.clear()
        self.state = SessionState.CLOSED if self._closing else SessionState.DOWN
        if not self._closing:
            self.failures += 1
            self.last_failure = str(failure)
            self.last_failure_kind = failure.kind
            log.warning("%s: session failed (%s): %s", self.name, failure.kind.value, failure)
        self._tell("down", lambda listener: listener.path_down(self, failure))
        self._ended.set()

    async def close(self) -> None:
        """Down for every listener, the supervisor ended, the session logged out; bounded."""
        if self._closing:
            return
        self._closing = True
        session = self.session
        if session is not None:
            self._closed(session, _closed("host closing the session"))
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await wait_ended([task], "session supervisors")
        await self._alua.close()
        self.state = SessionState.CLOSED
        if session is not None:
            session.on_closed = None
            try:
                await asyncio.wait_for(session.logout(), LOGOUT_TIMEOUT)
            except TimeoutError:  # logout bounds itself and never raises PathFailed
                session.abort("logout timed out")

    def status(self) -> dict[str, Any]:
        session = self.session
        parameters = session.parameters if session is not None else None
        return {
            "target": self.target,
            "portal": str(self.portal),
            "isid": f"0x{self.isid:012x}",
            "tsih": self.tsih,
            "state": self.state.value,
            "header_digest": bool(parameters and parameters.header_digest),
            "data_digest": bool(parameters and parameters.data_digest),
            "logins": self.logins,
            "failures": self.failures,
            "last_failure": self.last_failure,
            "listeners": len(self._listeners),
            "alua_reads": self._alua.reads,
        }


class SessionPool:
    """Every shared session of one host (one initiator name), by (target, portal)."""

    def __init__(
        self,
        initiator_name: str,
        isids: IsidStore,
        options: SessionOptions | None = None,
        *,
        connector: Connector = connect,
        on_luns_changed: LunsChanged | None = None,
    ) -> None:
        self.initiator_name = initiator_name
        self.isids = isids
        self.on_luns_changed = on_luns_changed
        self.options = options or SessionOptions()
        self.sessions: dict[tuple[str, PathAddress], SharedSession] = {}
        self._connector = connector
        self._closed = False

    def session(self, target: str, portal: PathAddress) -> SharedSession:
        """The shared session of (target, portal), created and started on first use."""
        if self._closed:
            raise RuntimeError("session pool is closed")
        key = (target, portal)
        shared = self.sessions.get(key)
        if shared is None:
            isid = self.isids.isid(self.initiator_name, target, str(portal))
            shared = SharedSession(
                target,
                portal,
                initiator_name=self.initiator_name,
                isid=isid,
                options=self.options,
                connector=self._connector,
                on_luns_changed=self.on_luns_changed,
            )
            self.sessions[key] = shared
            shared.start()
        return shared

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*(s.close() for s in self.sessions.values()))

    def status(self) -> list[dict[str, Any]]:
        return [s.status() for s in self.sessions.values()]


def _ended(session: ISCSISession) -> bool:
    return session.closed


def _closed(reason: str) -> PathFailed:
    return PathFailed(PathFailureKind.CLOSED, reason)
