"""What an initiator connection has asked of the target and not yet had answered (RFC 7143).

``InitiatorRequests`` is the base of :class:`~sanstack.iscsi.initiator_connection.
InitiatorConnection` (sans-IO, see that module): its phase and negotiated parameters, the
sequence numbers (CmdSN, the ExpCmdSN/MaxCmdSN window, ExpStatSN), the ITTs it hands out,
and every request outstanding: commands (queued or sent), task management, text, logout
and the NOP-Out ping. Non-immediate requests wait in a bounded queue and go out as the
window opens (§4.2.2.1); task management goes immediate. When the connection fails or logs
out, every request still outstanding ends in one ``ConnectionFailed`` naming its ITTs.
Receiving, and what each answer does to these requests, is the connection's.
"""

from __future__ import annotations

from collections import deque

from sanstack.errors import LocalProtocolError
from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import TaskManagementFunction
from sanstack.iscsi.initiator_events import (
    CommandCompleted,
    ConnectionFailed,
    Event,
    PathFailureKind,
)
from sanstack.iscsi.initiator_phases import Phase
from sanstack.iscsi.initiator_tasks import (
    RESERVED_TAG,
    CommandQueueFull,
    CommandTask,
    QueuedLogout,
    QueuedText,
)
from sanstack.iscsi.negotiation import OperationalParameters
from sanstack.iscsi.pdu_stream import PDUStream
from sanstack.iscsi.serial_number import SERIAL_MASK, sn_gt
from sanstack.scsi.codes import Status

_Queued = CommandTask | QueuedText | QueuedLogout


class InitiatorRequests(PDUStream[Event]):
    """The requests of one initiator connection and the window they go out through; see
    the module docstring."""

    def __init__(self, *, initial_cmd_sn: int, max_queued: int) -> None:
        super().__init__()
        self.phase = Phase.LOGIN
        self.parameters: OperationalParameters | None = None
        self.cmd_sn = initial_cmd_sn & SERIAL_MASK
        self.exp_cmd_sn = self.cmd_sn
        self.max_cmd_sn = self.cmd_sn
        self.exp_stat_sn = 0
        self._max_queued = max_queued
        self._next_itt = 1
        self._tasks: dict[int, CommandTask] = {}
        self._queue: deque[_Queued] = deque()
        self._tmfs: dict[int, tuple[TaskManagementFunction, int, int]] = {}
        self._texts: dict[int, bytearray] = {}
        self._logout_itt: int | None = None
        # ITTs of commands ended by task management whose late PDUs we still drop quietly.
        self._aborted: dict[int, None] = {}
        self._ping_itt: int | None = None
        self._ping_deadline: float | None = None

    @property
    def in_flight(self) -> int:
        """Commands submitted and not yet completed (queued ones included)."""
        return len(self._tasks)

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- sending -----------------------------------------------------------------------------

    def _enqueue(self, item: _Queued, *, force: bool = False) -> None:
        if not force and len(self._queue) >= self._max_queued:
            raise CommandQueueFull(f"{len(self._queue)} requests already wait for the window")
        self._queue.append(item)

    def _drain(self) -> None:
        """Send queued requests while their CmdSN lies inside the window (§4.2.2.1)."""
        params = self.parameters
        queue = self._queue
        while queue and self.phase in (Phase.FULL_FEATURE, Phase.LOGGING_OUT):
            if sn_gt(self.cmd_sn, self.max_cmd_sn):
                return
            assert params is not None
            item = queue.popleft()
            cmd_sn = self.cmd_sn
            self.cmd_sn = (cmd_sn + 1) & SERIAL_MASK
            if type(item) is CommandTask:
                if item.bare:
                    self._send_bhs(item.bare_command(cmd_sn, self.exp_stat_sn))
                    continue
                for pdu in item.command_pdus(params, cmd_sn, self.exp_stat_sn):
                    self._send(pdu)
            elif isinstance(item, QueuedText):
                self._send(
                    p.TextRequest(
                        itt=item.itt,
                        ttt=item.cont_ttt,
                        cmd_sn=cmd_sn,
                        exp_stat_sn=self.exp_stat_sn,
                        data=item.payload,
                    )
                )
            else:
                self._send(
                    p.LogoutRequest(itt=item.itt, cmd_sn=cmd_sn, exp_stat_sn=self.exp_stat_sn)
                )

    def _send_tmf(
        self,
        itt: int,
        fn: TaskManagementFunction,
        lun_field: int,
        *,
        referenced: int,
        ref_cmd_sn: int,
    ) -> None:
        self._tmfs[itt] = (fn, lun_field, referenced)
        self._send(
            p.TaskManagementRequest(
                function=fn,
                itt=itt,
                lun=lun_field,
                referenced_task_tag=referenced,
                cmd_sn=self.cmd_sn,
                exp_stat_sn=self.exp_stat_sn,
                ref_cmd_sn=ref_cmd_sn,
                immediate=True,
            )
        )

    # -- ending ------------------------------------------------------------------------------

    def _check_ffp(self, *, allow_logout: bool = False) -> None:
        if self.phase is Phase.FULL_FEATURE:
            return
        if allow_logout and self.phase is Phase.LOGGING_OUT:
            return
        raise LocalProtocolError(f"not in the full feature phase ({self.phase.name})")

    def _take_itt(self) -> int:
        # Skip the reserved tag and any tag still in use after a wrap.
        while True:
            itt = self._next_itt
            self._next_itt = (itt + 1) & SERIAL_MASK
            busy = itt in self._tasks or itt in self._tmfs or itt in self._aborted
            if itt != RESERVED_TAG and not busy:
                return itt

    def _complete_aborted(self, task: CommandTask) -> None:
        self._tasks.pop(task.itt, None)
        self._events.append(
            CommandCompleted(task.itt, Status.TASK_ABORTED, task.parts(), b"", task.expected_length)
        )

    def _fail(self, kind: PathFailureKind, reason: str) -> None:
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED
        self._fail_remaining(kind, reason)

    def _fail_remaining(self, kind: PathFailureKind, reason: str) -> None:
        itts = (*self._tasks, *self._tmfs, *self._texts)
        if self._logout_itt is not None:
            itts = (*itts, self._logout_itt)
        self._tasks.clear()
        self._tmfs.clear()
        self._texts.clear()
        self._queue.clear()
        self._logout_itt = None
        self._ping_deadline = None
        if kind is not PathFailureKind.LOGGED_OUT or itts:
            self._events.append(ConnectionFailed(kind, reason, itts))
