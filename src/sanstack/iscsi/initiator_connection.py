"""The initiator side of one iSCSI connection, sans-IO (RFC 7143).

Theory of operation, the mirror of :mod:`sanstack.iscsi.target_connection`. Construction
queues the first Login Request; the edge sends ``data_to_send()``, feeds what arrives to
``receive_data(data, now)`` and acts on ``next_event()`` (:mod:`initiator_events`). Time
enters as ``now``; ``get_timer()`` says when ``handle_timer(now)`` is due.

After ``LoginCompleted`` the caller ``submit``s SCSI commands. Each non-immediate request
(commands, text, logout) takes the next CmdSN and waits in a bounded queue while it lies
beyond MaxCmdSN (§4.2.2.1); ExpCmdSN and MaxCmdSN come with every target PDU and only ever
move forward in serial-number arithmetic. Task management and NOP-Out go immediate.
A silent connection is pinged with NOP-Out after ``nop_interval`` seconds; no answer within
``nop_timeout`` fails the connection with ``PathFailureKind.NOP_TIMEOUT``: a blackholed path
shows itself that way, since TCP alone may not notice for many minutes. Every failure event
names its ``PathFailureKind``; the reason text is only for people. The bookkeeping of the
requests (ITTs, the queue and the window it drains into, what is outstanding and how it all
ends on a failure) is the base class, :mod:`sanstack.iscsi.initiator_requests`.

sanstack's initiator runs ErrorRecoveryLevel 0 with one connection per session: any
sequencing error, digest error or Reject fails the connection and every task on it; the
multipath layer above logs in again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, Final, cast

from sanstack.errors import LocalProtocolError, RemoteProtocolError
from sanstack.iscsi import pdu as p
from sanstack.iscsi.chap import ChapCredentials, RandomBytes
from sanstack.iscsi.codes import (
    BHS_LENGTH,
    MAX_CDB_LENGTH,
    AsyncEvent,
    Opcode,
    TaskAttribute,
    TaskManagementFunction,
    TaskManagementResponseCode,
    decode_sense,
)
from sanstack.iscsi.discovery import DiscoveryError, parse_send_targets, send_targets_request
from sanstack.iscsi.initiator_events import (
    AsyncEventReceived,
    CommandCompleted,
    DiscoveryCompleted,
    LoginCompleted,
    LoginFailed,
    LogoutCompleted,
    NopInReceived,
    PathFailureKind,
    TaskManagementCompleted,
)
from sanstack.iscsi.initiator_framing import DataInFramer
from sanstack.iscsi.initiator_login import InitiatorLogin, LoginRejected
from sanstack.iscsi.initiator_phases import ACCEPTS, FFP_TYPES, STATUS_PDUS, Phase
from sanstack.iscsi.initiator_requests import InitiatorRequests
from sanstack.iscsi.initiator_tasks import (
    RESERVED_TAG,
    CommandQueueFull,
    CommandTask,
    QueuedLogout,
    QueuedText,
    TaskProtocolError,
)
from sanstack.iscsi.login import LOGIN_MAX_DATA_SEGMENT_LENGTH
from sanstack.iscsi.login_pdus import request_pdu, response_fields
from sanstack.iscsi.negotiation import NegotiationPreferences, SessionType
from sanstack.iscsi.pdu_reader import GATHER_FROM, PDUReader, Pieces, decode_frame
from sanstack.iscsi.serial_number import SERIAL_MASK
from sanstack.iscsi.text import TextFormatError
from sanstack.scsi.lun import decode_lun, encode_lun

__all__ = ["CommandQueueFull", "InitiatorConnection", "Phase"]

log = logging.getLogger(__name__)

MAX_TEXT_RESPONSE = 1 << 20
_MAX_ABORTED = 4096
_HALF = 1 << 31  # serial number arithmetic (RFC 1982): a is after b if a - b is below it
_NO_DATA = memoryview(b"")  # the data out of every command without any
_BHS_CDB = 16  # a longer CDB continues in an AHS (CommandTask.bare)

# Plain values for the tests made per PDU (an Enum member is an attribute lookup away).
_DATA_IN: Final = int(Opcode.DATA_IN)
_SCSI_COMMAND: Final = int(Opcode.SCSI_COMMAND)
_FINAL: Final = 0x80  # the SCSI Command PDU's F flag, with R for a read (§11.3.1)
_FINAL_READ: Final = 0x80 | 0x40
_CLOSED: Final = Phase.CLOSED
_FULL_FEATURE: Final = Phase.FULL_FEATURE
_LOGGING_OUT: Final = Phase.LOGGING_OUT


class InitiatorConnection(InitiatorRequests):
    """Sans-IO initiator connection; see the module docstring for the contract."""

    def __init__(
        self,
        initiator_name: str,
        target_name: str | None,
        *,
        isid: int,
        now: float,
        session_type: SessionType = SessionType.NORMAL,
        chap: ChapCredentials | None = None,
        preferences: NegotiationPreferences | None = None,
        nop_interval: float | None = 2.0,
        nop_timeout: float = 3.0,
        login_timeout: float = 10.0,
        max_queued: int = 1024,
        initial_cmd_sn: int = 1,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        super().__init__(initial_cmd_sn=initial_cmd_sn, max_queued=max_queued)
        self.session_type = session_type
        self._discovery = session_type is SessionType.DISCOVERY
        self.tsih = 0
        self.nop_interval = nop_interval
        self.nop_timeout = nop_timeout
        self._reader = PDUReader(max_data_segment_length=LOGIN_MAX_DATA_SEGMENT_LENGTH)
        self._framer = DataInFramer()  # on once logged in without digests
        self._last_activity = now
        self._login_deadline: float | None = now + login_timeout
        self._login_itt = self._take_itt()
        self._first_login_response = True
        self._login = InitiatorLogin(
            initiator_name,
            target_name,
            isid=isid,
            itt=self._login_itt,
            cmd_sn=self.cmd_sn,
            session_type=session_type,
            chap=chap,
            preferences=preferences,
            random_bytes=random_bytes,
        )
        first = self._login.start()
        self._send(request_pdu(first, cmd_sn=self.cmd_sn, exp_stat_sn=self.exp_stat_sn))

    # -- the edge's side -------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        if self.closed:
            return
        # Anything from the target proves the path alive: no ping is needed or awaited.
        self._last_activity = now
        self._ping_deadline = None
        reader = self._reader
        framer = self._framer
        if framer.max_segment and not reader.buffered:
            # Runs of Data-In (the answers to reads) are framed where they lie.
            try:
                data = framer.frame(data if type(data) is bytes else bytes(data), self._data_in)
            except RemoteProtocolError as exc:
                self._protocol_error(str(exc))
                return
            if not data:
                if self._queue:
                    self._drain()
                return
        reader.feed(data)
        next_frame = reader.next_frame_gathered
        while self.phase is not _CLOSED:
            try:
                frame = next_frame()
                if frame is None:
                    break
                bhs = frame[0]
                # A Data-In (one per read) is unpacked here, without a DataIn object, and
                # a large one's data stays in the received buffers (never copied).
                data_in = bhs[0] & 0x3F == _DATA_IN
                pdu = None if data_in else decode_frame(bhs, frame[1], cast(bytes, frame[2]))
            except RemoteProtocolError as exc:
                self._protocol_error(f"malformed PDU from the target: {exc}")
                return
            try:
                if pdu is None:
                    self._on_data_in(bhs, frame[2])
                else:
                    self._dispatch(pdu)
            except RemoteProtocolError as exc:
                self._protocol_error(str(exc))
                return
        if self._queue:
            self._drain()

    def connection_lost(self) -> None:
        """The transport went away."""
        lost = PathFailureKind.CONNECTION_LOST
        if self.phase is Phase.LOGIN:
            self._fail_login(LoginFailed("connection lost during login", lost))
        else:
            self._fail(lost, "connection lost")

    def close(self, reason: str = "closed locally") -> None:
        """Give the connection up at once (the edge aborts the transport)."""
        if self.phase is Phase.LOGIN:
            self._fail_login(LoginFailed(reason, PathFailureKind.CLOSED))
        else:
            self._fail(PathFailureKind.CLOSED, reason)

    def get_timer(self) -> float | None:
        if self.phase is Phase.LOGIN:
            return self._login_deadline
        if self.phase is Phase.CLOSED:
            return None
        if self._ping_deadline is not None:
            return self._ping_deadline
        if self.nop_interval is None:
            return None
        return self._last_activity + self.nop_interval

    def handle_timer(self, now: float) -> None:
        if self.phase is Phase.LOGIN:
            if self._login_deadline is not None and now >= self._login_deadline:
                self._fail_login(LoginFailed("login timed out", PathFailureKind.LOGIN_TIMEOUT))
            return
        if self.phase is Phase.CLOSED:
            return
        if self._ping_deadline is not None:
            if now >= self._ping_deadline:
                self._fail(PathFailureKind.NOP_TIMEOUT, "nop timeout")
            return
        if self.nop_interval is not None and now >= self._last_activity + self.nop_interval:
            self._ping_itt = self._take_itt()
            self._send(
                p.NopOut(
                    itt=self._ping_itt,
                    ttt=RESERVED_TAG,
                    cmd_sn=self.cmd_sn,
                    exp_stat_sn=self.exp_stat_sn,
                    immediate=True,
                )
            )
            self._ping_deadline = now + self.nop_timeout

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    # -- requests ----------------------------------------------------------------------------

    def submit(
        self,
        lun: int,
        cdb: bytes,
        *,
        data_out: bytes | bytearray | memoryview = b"",
        read_length: int = 0,
        attribute: TaskAttribute = TaskAttribute.SIMPLE,
    ) -> int:
        """Queue a SCSI command; returns its ITT. It goes out as soon as the window allows."""
        if self.phase is not _FULL_FEATURE:
            self._check_ffp()
        if self._discovery:
            raise LocalProtocolError("a discovery session carries no SCSI commands")
        if data_out:
            if read_length:
                raise LocalProtocolError("bidirectional commands are not supported")
            if len(data_out) > SERIAL_MASK:
                raise LocalProtocolError("transfer length does not fit 32 bits")
            view = memoryview(data_out).cast("B")
        else:
            view = _NO_DATA
        cdb_length = len(cdb)
        if not 1 <= cdb_length <= MAX_CDB_LENGTH:
            raise LocalProtocolError(f"CDB of {cdb_length} bytes")
        if not 0 <= read_length <= SERIAL_MASK:
            raise LocalProtocolError("transfer length does not fit 32 bits")
        # _take_itt's usual answer first: the next tag, free and not the reserved one.
        itt = self._next_itt
        tasks = self._tasks
        if itt == RESERVED_TAG or itt in tasks or itt in self._tmfs or itt in self._aborted:
            itt = self._take_itt()
        else:
            self._next_itt = (itt + 1) & SERIAL_MASK
        lun_field = lun << 48 if 0 <= lun < 256 else encode_lun(lun)  # the usual LUN inline
        task = CommandTask(itt, lun_field, bytes(cdb), attribute, view, read_length)
        cmd_sn = self.cmd_sn
        if (
            not data_out
            and not self._queue
            and cdb_length <= _BHS_CDB
            and (cmd_sn == self.max_cmd_sn or (cmd_sn - self.max_cmd_sn) & SERIAL_MASK >= _HALF)
        ):
            # Nothing waits and the window is open: out at once, as _drain would send it
            # (CommandTask.bare_command's BHS, packed here: it runs for every read).
            self.cmd_sn = (cmd_sn + 1) & SERIAL_MASK
            task.cmd_sn = cmd_sn
            task.sent = True
            flags = _FINAL_READ | attribute if read_length else _FINAL | attribute
            header = p.SCSI_COMMAND_STRUCT.pack(
                _SCSI_COMMAND, flags, 0, lun_field, itt, read_length, cmd_sn,
                self.exp_stat_sn, task.cdb,
            )  # fmt: skip
            if self._header_digest:
                self._send_bhs(header)
            else:
                self._out.append(header)
            tasks[itt] = task
            return itt
        self._enqueue(task)
        self._tasks[itt] = task
        self._drain()
        return itt

    def send_targets(self, value: str = "All") -> int:
        """Ask SendTargets (§7, Appendix C); the answer comes as ``DiscoveryCompleted``."""
        self._check_ffp()
        itt = self._take_itt()
        self._texts[itt] = bytearray()
        self._enqueue(QueuedText(itt, send_targets_request(value)))
        self._drain()
        return itt

    def abort_task(self, itt: int) -> int:
        """ABORT TASK for a command (§11.5.1); returns the task management request's ITT.

        A command still waiting for the window never reached the target: it ends here at once
        with TASK ABORTED, and the request is answered locally with FUNCTION COMPLETE.
        """
        self._check_ffp(allow_logout=True)
        task = self._tasks.get(itt)
        tmf_itt = self._take_itt()
        if task is not None and not task.sent:
            self._queue.remove(task)
            self._complete_aborted(task)
            self._events.append(
                TaskManagementCompleted(tmf_itt, TaskManagementResponseCode.FUNCTION_COMPLETE)
            )
            return tmf_itt
        lun_field = task.lun_field if task is not None else 0
        ref_cmd_sn = task.cmd_sn if task is not None else self.cmd_sn
        fn = TaskManagementFunction.ABORT_TASK
        self._send_tmf(tmf_itt, fn, lun_field, referenced=itt, ref_cmd_sn=ref_cmd_sn)
        return tmf_itt

    def lun_reset(self, lun: int) -> int:
        """LOGICAL UNIT RESET (§11.5.1); commands of the LUN end with TASK ABORTED."""
        self._check_ffp(allow_logout=True)
        tmf_itt = self._take_itt()
        fn = TaskManagementFunction.LOGICAL_UNIT_RESET
        self._send_tmf(tmf_itt, fn, encode_lun(lun), referenced=RESERVED_TAG, ref_cmd_sn=0)
        return tmf_itt

    def ping(self, data: bytes = b"") -> int:
        """Send a NOP-Out ping now; the answer comes as ``NopInReceived``."""
        self._check_ffp(allow_logout=True)
        itt = self._take_itt()
        self._send(
            p.NopOut(
                itt=itt, cmd_sn=self.cmd_sn, exp_stat_sn=self.exp_stat_sn, immediate=True, data=data
            )
        )
        return itt

    def logout(self) -> int:
        """Close the session (§11.14) after every queued request has gone out."""
        self._check_ffp()
        self.phase = Phase.LOGGING_OUT
        itt = self._take_itt()
        self._logout_itt = itt
        self._queue.append(QueuedLogout(itt))  # never refused: it is how the queue ends
        self._drain()
        return itt

    # -- receiving ---------------------------------------------------------------------------

    def _dispatch(self, pdu: p.PDU) -> None:
        kind = type(pdu)
        if kind not in ACCEPTS[self.phase]:
            raise RemoteProtocolError(f"unexpected {kind.__name__} in {self.phase.name}")
        if kind is p.LoginResponse:
            self._on_login_response(cast(p.LoginResponse, pdu))
            return
        assert isinstance(pdu, FFP_TYPES)
        if kind in STATUS_PDUS or (isinstance(pdu, p.NopIn) and pdu.itt != RESERVED_TAG):
            self._advance_stat_sn(pdu.stat_sn)
        self._update_window(pdu.exp_cmd_sn, pdu.max_cmd_sn)
        _RECEIVERS[kind](self, pdu)

    def _advance_stat_sn(self, stat_sn: int) -> None:
        nxt = (stat_sn + 1) & SERIAL_MASK  # sn_gt written out, as in _update_window
        if nxt != self.exp_stat_sn and (nxt - self.exp_stat_sn) & SERIAL_MASK < _HALF:
            self.exp_stat_sn = nxt

    def _update_window(self, exp_cmd_sn: int, max_cmd_sn: int) -> None:
        # Every target PDU: sn_gt(a, b) written out, a != b and (a - b) & MASK < 2**31.
        # §4.2.2.1: a MaxCmdSN below ExpCmdSN - 1 is invalid, and both are ignored then.
        floor = (exp_cmd_sn - 1) & SERIAL_MASK
        if floor != max_cmd_sn and (floor - max_cmd_sn) & SERIAL_MASK < _HALF:
            return
        if exp_cmd_sn != self.exp_cmd_sn and (exp_cmd_sn - self.exp_cmd_sn) & SERIAL_MASK < _HALF:
            self.exp_cmd_sn = exp_cmd_sn
        if max_cmd_sn != self.max_cmd_sn and (max_cmd_sn - self.max_cmd_sn) & SERIAL_MASK < _HALF:
            self.max_cmd_sn = max_cmd_sn

    def _on_login_response(self, pdu: p.LoginResponse) -> None:
        if pdu.itt != self._login_itt:
            raise RemoteProtocolError(f"Login Response for ITT {pdu.itt:#x}")
        if self._first_login_response:
            # Our first ExpStatSN was a guess; the target's first StatSN sets it (§4.2.2.2).
            self._first_login_response = False
            self.exp_stat_sn = (pdu.stat_sn + 1) & SERIAL_MASK
        else:
            self._advance_stat_sn(pdu.stat_sn)
        try:
            request = self._login.receive(response_fields(pdu))
        except LoginRejected as exc:
            self._fail_login(LoginFailed(str(exc), None, exc.status, exc.target_address))
            return
        except (RemoteProtocolError, TextFormatError) as exc:
            self._protocol_error(f"login failed: {exc}")
            return
        if request is not None:
            self._send(request_pdu(request, cmd_sn=self.cmd_sn, exp_stat_sn=self.exp_stat_sn))
            return
        params = self._login.result.parameters
        self.parameters = params
        self.tsih = pdu.tsih
        self.exp_cmd_sn = pdu.exp_cmd_sn
        self.max_cmd_sn = pdu.max_cmd_sn
        self.phase = Phase.FULL_FEATURE
        self._login_deadline = None
        # Digests and segment limits apply from the first PDU after the final login
        # response (§13.12), in both directions.
        self._header_digest = params.header_digest
        self._data_digest = params.data_digest
        self._reader.set_digests(params.header_digest, params.data_digest)
        self._reader.set_max_data_segment_length(params.max_recv_data_segment_length)
        if not params.header_digest and not params.data_digest:
            # Larger segments go to the reader, which leaves them where they were received.
            limit = min(params.max_recv_data_segment_length, GATHER_FROM - 1)
            self._framer.max_segment = limit
        self._events.append(LoginCompleted(params, pdu.tsih))

    def _task_for(self, itt: int, what: str) -> CommandTask:
        task = self._tasks.get(itt)
        if task is None or not task.sent:
            raise RemoteProtocolError(f"{what} for unknown ITT {itt:#x}")
        return task

    def _on_data_in(self, bhs: memoryview, data: bytes | Pieces) -> None:
        self._data_in(p.DATA_IN_STRUCT.unpack_from(bhs), data)

    def _data_in(self, fields: tuple[int, ...], data: bytes | Pieces) -> None:
        """A Data-In (§11.7), from its BHS's fields: a Data-In carrying status uses up its
        StatSN."""
        phase = self.phase
        if phase is not _FULL_FEATURE and phase is not _LOGGING_OUT:
            raise RemoteProtocolError(f"unexpected DataIn in {phase.name}")  # ACCEPTS's rows
        (_, flags, status, _, _, itt, _, stat_sn, exp_cmd_sn, max_cmd_sn, data_sn, offset,
         residual) = fields  # fmt: skip
        status_present = flags & 0x01
        if status_present:
            # _advance_stat_sn and _update_window written out: they run for every read.
            nxt = (stat_sn + 1) & SERIAL_MASK
            if nxt != self.exp_stat_sn and (nxt - self.exp_stat_sn) & SERIAL_MASK < _HALF:
                self.exp_stat_sn = nxt
        floor = (exp_cmd_sn - 1) & SERIAL_MASK
        if floor == max_cmd_sn or (floor - max_cmd_sn) & SERIAL_MASK >= _HALF:
            if (
                exp_cmd_sn != self.exp_cmd_sn
                and (exp_cmd_sn - self.exp_cmd_sn) & SERIAL_MASK < _HALF
            ):
                self.exp_cmd_sn = exp_cmd_sn
            if (
                max_cmd_sn != self.max_cmd_sn
                and (max_cmd_sn - self.max_cmd_sn) & SERIAL_MASK < _HALF
            ):
                self.max_cmd_sn = max_cmd_sn
        task = self._tasks.get(itt)
        if task is None or not task.sent:
            if task is None and itt in self._aborted:
                if status_present:
                    del self._aborted[itt]
                return  # the tail of a command task management ended
            task = self._task_for(itt, "Data-In")  # raises
        if (
            status_present
            and not data_sn
            and not offset
            and type(data) is bytes
            and task.first_data_in(data)
        ):
            # The whole read in one Data-In with its status (the usual 4 KiB answer).
            parts: tuple[bytes | memoryview, ...] = (data,) if data else ()
        else:
            try:
                task.add_data_in(data_sn, offset, data)
            except TaskProtocolError as exc:
                raise RemoteProtocolError(str(exc)) from None
            if not status_present:
                return
            parts = task.parts()
        del self._tasks[itt]
        # O is 0x04, U 0x02: a residual only with either.
        self._events.append(
            CommandCompleted(
                itt, status, parts, b"", residual if flags & 0x06 else 0, bool(flags & 0x04)
            )
        )

    def _on_scsi_response(self, pdu: p.SCSIResponse) -> None:
        if pdu.itt not in self._tasks and pdu.itt in self._aborted:
            del self._aborted[pdu.itt]
            return
        task = self._task_for(pdu.itt, "SCSI Response")
        del self._tasks[pdu.itt]
        residual = pdu.residual_count if pdu.residual_overflow or pdu.residual_underflow else 0
        self._events.append(
            CommandCompleted(
                pdu.itt,
                pdu.status,
                task.parts(),
                pdu.sense,
                residual,
                pdu.residual_overflow,
                int(pdu.response),
            )
        )

    def _on_r2t(self, pdu: p.R2T) -> None:
        if pdu.itt not in self._tasks and pdu.itt in self._aborted:
            return
        task = self._task_for(pdu.itt, "R2T")
        assert self.parameters is not None
        try:
            pdus = task.answer_r2t(pdu, self.parameters, self.exp_stat_sn)
        except TaskProtocolError as exc:
            raise RemoteProtocolError(str(exc)) from None
        for data_out in pdus:
            self._send(data_out)

    def _on_nop_in(self, pdu: p.NopIn) -> None:
        if pdu.ttt != RESERVED_TAG:
            # The target's ping: answer it, immediate, echoing its TTT and LUN (§11.18).
            self._send(
                p.NopOut(
                    itt=RESERVED_TAG,
                    ttt=pdu.ttt,
                    lun=pdu.lun,
                    cmd_sn=self.cmd_sn,
                    exp_stat_sn=self.exp_stat_sn,
                    immediate=True,
                )
            )
            return
        if pdu.itt == RESERVED_TAG:
            return  # neither an answer nor a ping: nothing to do
        if pdu.itt == self._ping_itt:
            self._ping_itt = None
        self._events.append(NopInReceived(pdu.itt, pdu.data))

    def _on_tmf_response(self, pdu: p.TaskManagementResponse) -> None:
        entry = self._tmfs.pop(pdu.itt, None)
        if entry is None:
            raise RemoteProtocolError(f"Task Management Response for unknown ITT {pdu.itt:#x}")
        fn, lun_field, referenced = entry
        if pdu.response == TaskManagementResponseCode.FUNCTION_COMPLETE:
            # At ErrorRecoveryLevel 0 an aborted task gets no further answer (TAS=0), or a
            # TASK ABORTED status we then ignore: end it here so no caller waits forever.
            if fn == TaskManagementFunction.ABORT_TASK:
                victims = [self._tasks[referenced]] if referenced in self._tasks else []
            else:
                victims = [t for t in self._tasks.values() if t.sent and t.lun_field == lun_field]
            for task in victims:
                self._aborted[task.itt] = None
                if len(self._aborted) > _MAX_ABORTED:
                    del self._aborted[next(iter(self._aborted))]
                self._complete_aborted(task)
        self._events.append(TaskManagementCompleted(pdu.itt, pdu.response))

    def _on_text_response(self, pdu: p.TextResponse) -> None:
        buffer = self._texts.get(pdu.itt)
        if buffer is None:
            raise RemoteProtocolError(f"Text Response for unknown ITT {pdu.itt:#x}")
        buffer += pdu.data
        if len(buffer) > MAX_TEXT_RESPONSE:
            raise RemoteProtocolError("Text Response longer than we accept")
        if not pdu.final:
            if pdu.ttt == RESERVED_TAG:
                raise RemoteProtocolError("continued Text Response without a TTT")
            # §11.10: an empty request with the target's TTT fetches the next part.
            self._enqueue(QueuedText(pdu.itt, b"", pdu.ttt), force=True)
            return
        del self._texts[pdu.itt]
        try:
            targets = parse_send_targets(bytes(buffer))
        except (DiscoveryError, TextFormatError) as exc:
            raise RemoteProtocolError(f"bad SendTargets answer: {exc}") from None
        self._events.append(DiscoveryCompleted(pdu.itt, targets))

    def _on_async(self, pdu: p.AsyncMessage) -> None:
        sense = decode_sense(pdu.data) if pdu.async_event == AsyncEvent.SCSI_ASYNC_EVENT else b""
        lun = decode_lun(pdu.lun)
        self._events.append(
            AsyncEventReceived(
                pdu.async_event, lun, sense, pdu.parameter1, pdu.parameter2, pdu.parameter3
            )
        )
        if pdu.async_event in (AsyncEvent.CONNECTION_DROP, AsyncEvent.SESSION_DROP):
            reason = f"target dropped the connection ({pdu.async_event.name})"
            self._fail(PathFailureKind.CONNECTION_LOST, reason)

    def _on_reject(self, pdu: p.Reject) -> None:
        header = pdu.data
        if len(header) >= BHS_LENGTH and header[0] & 0x3F == Opcode.NOP_OUT:
            log.info("target rejected a NOP-Out (%s)", pdu.reason.name)
            return
        # ErrorRecoveryLevel 0 has no way to recover the rejected PDU's task (§7.2).
        raise RemoteProtocolError(f"target rejected a PDU: {pdu.reason.name}")

    def _on_logout_response(self, pdu: p.LogoutResponse) -> None:
        if pdu.itt != self._logout_itt:
            raise RemoteProtocolError(f"Logout Response for ITT {pdu.itt:#x}")
        self._logout_itt = None
        self.phase = Phase.CLOSED
        self._events.append(LogoutCompleted(pdu.response, pdu.time2wait, pdu.time2retain))
        self._fail_remaining(PathFailureKind.LOGGED_OUT, "session logged out")

    # -- helpers -------------------------------------------------------------------------------

    def _protocol_error(self, reason: str) -> None:
        log.info("initiator connection: %s", reason)
        if self.phase is Phase.LOGIN:
            self._fail_login(LoginFailed(reason, PathFailureKind.PROTOCOL_ERROR))
        else:
            self._fail(PathFailureKind.PROTOCOL_ERROR, reason)

    def _fail_login(self, event: LoginFailed) -> None:
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED
        self._events.append(event)


# What each target PDU of the full feature phase goes to, after its sequence numbers.
_RECEIVERS: dict[type, Callable[[InitiatorConnection, Any], None]] = {
    p.SCSIResponse: InitiatorConnection._on_scsi_response,
    p.R2T: InitiatorConnection._on_r2t,
    p.NopIn: InitiatorConnection._on_nop_in,
    p.TaskManagementResponse: InitiatorConnection._on_tmf_response,
    p.TextResponse: InitiatorConnection._on_text_response,
    p.AsyncMessage: InitiatorConnection._on_async,
    p.Reject: InitiatorConnection._on_reject,
    p.LogoutResponse: InitiatorConnection._on_logout_response,
}
