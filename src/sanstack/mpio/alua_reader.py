"""The ALUA state of a shared session's target port group, read once for every map on it.

A host with 1024 maps over two shared sessions must not send 2048 REPORT TARGET PORT GROUPS
a second: the answer is the same for every LUN behind one target port (the states belong to
the port's group; sanstack's target keeps one ``ALUAGroups`` per target, as LIO's default
group does). ``PortGroupReader`` is what a shared session (``SharedPath.read_alua``) uses to
answer every map: one RTPG at a time, its answer kept for the session it was read on, and a
caller says how old an answer it accepts (``since``, loop time): the maps' checkers accept
one read within their interval, so the whole host sends one RTPG per session per interval;
a map that saw ASYMMETRIC ACCESS STATE CHANGED or a NOT READY answer asks for a read that
started after it saw it, and every map asking meanwhile shares that read too.

Lifetime: the reader owns its one read task; ``close`` cancels and awaits it. A waiter
never waits longer than one read's bound and is never cancelled by someone else's read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sanstack.initiator.session import CommandResponse, ISCSISession, PathFailed
from sanstack.scsi.alua_codec import (
    ALUAState,
    ReportTargetPortGroupsCdb,
    ReportTargetPortGroupsData,
)
from sanstack.scsi.codes import SenseKey, Status
from sanstack.scsi.sense import parse_sense

log = logging.getLogger(__name__)

RTPG_TIMEOUT = 5.0
RTPG_ALLOCATION = 4096
UNIT_ATTENTION_RETRIES = 3
ATTEMPTS = 3  # a read in flight, then ours, then one retry if the session changed meanwhile


class PortGroupReader:
    """One shared session's view of its target port group's ALUA state."""

    def __init__(self, session_of: Callable[[], ISCSISession | None]) -> None:
        self._session_of = session_of
        self.reads = 0  # REPORT TARGET PORT GROUPS sent
        self._task: asyncio.Task[None] | None = None
        self._task_started = 0.0
        # The last answer: the session it came through, when its read started, the state
        # (None: the target has no ALUA, or does not list our port).
        self._read_session: ISCSISession | None = None
        self._read_started = 0.0
        self._state: ALUAState | None = None
        self._closed = False

    async def state(self, lun: int, since: float) -> ALUAState | None:
        """The port group's state from a read of the current session that started at loop
        time ``since`` or later (sent through ``lun`` when one is needed); a read in flight
        is always waited for. None when unknown: no session, no ALUA, or no answer."""
        for _ in range(ATTEMPTS):
            session = self._session_of()
            if self._closed or session is None or session.closed:
                return None
            task = self._task if self._task is not None and not self._task.done() else None
            if task is None:
                if self._fresh(session, since):
                    return self._state
                task = self._start(session, lun)
            await asyncio.wait({task}, timeout=RTPG_TIMEOUT + 1.0)
            if self._fresh(session, since):
                return self._state
        return None

    def _fresh(self, session: ISCSISession, since: float) -> bool:
        return self._read_session is session and self._read_started >= since

    def _start(self, session: ISCSISession, lun: int) -> asyncio.Task[None]:
        loop = asyncio.get_running_loop()
        self._task_started = loop.time()
        task = loop.create_task(self._read(session, lun, self._task_started))
        self._task = task
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None
        # Waiters only look at the answer it left, so its failure is taken here: an error
        # no read expects (a session torn down under it at shutdown) is logged, never left
        # for asyncio to report as an exception never retrieved.
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("REPORT TARGET PORT GROUPS read failed: %r", error)

    async def _read(self, session: ISCSISession, lun: int, started: float) -> None:
        self.reads += 1
        cdb = ReportTargetPortGroupsCdb(allocation_length=RTPG_ALLOCATION).encode()
        try:
            for _ in range(UNIT_ATTENTION_RETRIES + 1):
                result = await session.command(
                    lun, cdb, read_length=RTPG_ALLOCATION, timeout=RTPG_TIMEOUT
                )
                if not _unit_attention(result):  # ASYMMETRIC ACCESS STATE CHANGED, a reset
                    break
        except PathFailed:
            return  # the session's owner hears of its failure; this read tells nothing
        state = None
        if result.status == Status.GOOD:
            port = session.relative_target_port_id
            with contextlib.suppress(ValueError):  # a garbled answer tells nothing
                for group in ReportTargetPortGroupsData.decode(result.data).descriptors:
                    if port in group.relative_target_port_ids:
                        state = ALUAState(group.asymmetric_access_state)
                        break
        # A target without ALUA (tgt) answers ILLEGAL REQUEST: unknown, paths stay as they are.
        self._read_session, self._read_started, self._state = session, started, state

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _unit_attention(result: CommandResponse) -> bool:
    if result.status != Status.CHECK_CONDITION:
        return False
    try:
        key, _, _ = parse_sense(result.sense)
    except ValueError:
        return False
    return key == SenseKey.UNIT_ATTENTION
