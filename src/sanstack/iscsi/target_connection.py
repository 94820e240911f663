"""The target side of one iSCSI connection, sans-IO (RFC 7143).

Theory of operation. The edge feeds received bytes to ``receive_data(data, now)``, then
sends ``data_to_send()`` to the socket and acts on ``next_event()``: ``LoginSucceeded``
(register the session), ``CommandReady`` (run the ``Command`` on its logical unit and
call ``complete_command``), ``TaskManagementRequested`` (act on the logical units and call
``complete_task_management``) and ``ConnectionClosed`` (flush, then close the socket). Time
enters as ``now``; ``get_timer()`` says when ``handle_timer(now)`` is due (aioquic's contract).

The core owns every iSCSI rule: the phase table (``target_phases``: which PDU is legal
when), the CmdSN window (§4.2.2.1, ordered delivery, flow control through MaxCmdSN), R2T
and Data-Out sequencing (``target_tasks``), Data-In segmentation with phase-collapsed
status, residuals (§11.4.5), NOP-In pings (§11.18, §11.19), task management of the tasks
it still holds (``target_task_management``, §11.5), text requests (``target_text``,
§11.10), logout (§11.14, §11.9.1) and rejects (§11.17). sanstack runs ErrorRecoveryLevel 0
with one connection per session, so session state lives here too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sanstack.errors import RemoteProtocolError
from sanstack.iscsi import codes as iscsi_codes
from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import (
    RESERVED_TAG,
    AsyncEvent,
    LogoutReason,
    LogoutResponseCode,
    RejectReason,
    TaskManagementResponseCode,
)
from sanstack.iscsi.pdu_reader import PDUReader
from sanstack.iscsi.pdu_stream import PDUStream
from sanstack.iscsi.serial_number import sn_gt
from sanstack.iscsi.target_events import (
    CommandReady,
    ConnectionClosed,
    ConnectionSettings,
    Event,
    LoginDriver,
    LoginOutcome,
    TaskManagementRequested,
)
from sanstack.iscsi.target_phases import ACCEPTS, ORDERED_PDUS, Phase, login_succeeded
from sanstack.iscsi.target_task_management import drop_writes, settle_at_connection
from sanstack.iscsi.target_tasks import DataOutError, WriteTask, data_in_pdus
from sanstack.iscsi.target_text import TextExchange
from sanstack.scsi.codes import Status, TaskAttribute
from sanstack.scsi.command import Command, CommandResult, Nexus
from sanstack.scsi.lun import decode_target_lun

log = logging.getLogger(__name__)


@dataclass(slots=True, init=False)
class _Outstanding:
    """A command delivered to the SCSI layer and not yet answered."""

    lun_field: int
    read: bool
    write: bool
    expected_length: int

    # Written out (the dataclass makes none, init=False): compiled by mypyc, a generated
    # __init__ stays interpreted Python, and this one is made for every command.
    def __init__(self, lun_field: int, read: bool, write: bool, expected_length: int) -> None:
        self.lun_field = lun_field
        self.read = read
        self.write = write
        self.expected_length = expected_length


class TargetConnection(PDUStream[Event]):
    """Sans-IO target connection; see the module docstring for the contract."""

    def __init__(
        self,
        login: LoginDriver,
        settings: ConnectionSettings,
        now: float,
        *,
        send_targets: Callable[[str, str], bytes] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.phase = Phase.LOGIN
        self._login = login
        self._reader = PDUReader(max_data_segment_length=8192)
        self.outcome: LoginOutcome | None = None
        self.nexus: Nexus | None = None
        self.stat_sn = 0
        self.exp_cmd_sn = 0
        self.max_cmd_sn = 0
        self._pending_by_sn: dict[int, p.PDU] = {}
        self._writes: dict[int, WriteTask] = {}
        self._outstanding: dict[int, _Outstanding] = {}
        self._next_ttt = 1
        self._text = TextExchange(send_targets)
        self._logout_itt: int | None = None
        self._login_deadline: float | None = now + settings.login_timeout
        self._last_activity = now
        self._ping_deadline: float | None = None
        self._ping_ttt = 0
        self._single_data_in = 0  # set at login

    # -- public API ------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        if self.phase is Phase.CLOSED:
            return
        self._last_activity = now
        self._ping_deadline = None
        self._reader.feed(data)
        while not self.closed:
            try:
                pdu = self._reader.next_pdu()
            except p.DataDigestError as digest_error:  # compiled, each name has one type
                self._reject(RejectReason.DATA_DIGEST_ERROR, digest_error.header)
                continue
            except p.PDUFormatError as exc:
                if exc.reject_reason == RejectReason.COMMAND_NOT_SUPPORTED and (
                    self.phase is Phase.FULL_FEATURE
                ):
                    self._reject(exc.reject_reason, exc.header)
                    continue
                self._close(f"malformed PDU: {exc}")
                return
            except RemoteProtocolError as exc:
                self._close(f"protocol error: {exc}")
                return
            if pdu is None:
                return
            if (
                type(pdu) is p.SCSICommand
                and pdu.cmd_sn == self.exp_cmd_sn
                and not pdu.immediate
                and not self._pending_by_sn
                and self.phase is Phase.FULL_FEATURE
            ):
                # The next command in CmdSN order, as nearly every command is: what
                # ``_dispatch`` and ``_order`` would do for it, without the detours.
                self.exp_cmd_sn = (self.exp_cmd_sn + 1) & 0xFFFFFFFF
                self._on_scsi_command(pdu)
                continue
            self._dispatch(pdu, now)

    def connection_lost(self) -> None:
        """The transport went away: nothing more will be sent or received."""
        if self.phase is not Phase.CLOSED:
            self.phase = Phase.CLOSED
            self._events.append(ConnectionClosed("connection lost"))

    def get_timer(self) -> float | None:
        if self.phase is Phase.LOGIN:
            return self._login_deadline
        if self.phase is not Phase.FULL_FEATURE:
            return None
        if self._ping_deadline is not None:
            return self._ping_deadline
        if self.settings.nop_in_interval is None:
            return None
        return self._last_activity + self.settings.nop_in_interval

    def handle_timer(self, now: float) -> None:
        if self.phase is Phase.LOGIN:
            if self._login_deadline is not None and now >= self._login_deadline:
                self._close("login timed out")
            return
        if self.phase is not Phase.FULL_FEATURE:
            return
        if self._ping_deadline is not None:
            if now >= self._ping_deadline:
                self._close("initiator did not answer NOP-In")
            return
        interval = self.settings.nop_in_interval
        if interval is not None and now >= self._last_activity + interval:
            self._ping_ttt = self._take_ttt()
            self._send(
                p.NopIn(
                    itt=RESERVED_TAG,
                    ttt=self._ping_ttt,
                    stat_sn=self.stat_sn,
                    exp_cmd_sn=self.exp_cmd_sn,
                    max_cmd_sn=self._window_end(),
                )
            )
            self._ping_deadline = now + self.settings.nop_in_timeout

    def complete_command(self, itt: int, result: CommandResult) -> None:
        """Send the Data-In and status of a command that ``CommandReady`` delivered."""
        task = self._outstanding.pop(itt, None)
        if task is None or self.phase is not Phase.FULL_FEATURE:
            return
        data = result.data if task.read else b""
        length = len(data)
        if (
            0 < length <= task.expected_length
            and length <= self._single_data_in
            and result.status == Status.GOOD
            and not result.sense
            and (type(data) is bytes or memoryview(data).itemsize == 1)
        ):
            # The common read: one Data-In PDU with the status in it, packed in one call.
            residual = task.expected_length - length
            header = p.data_in_with_status_header(
                itt,
                length,
                self._take_stat_sn(),
                self.exp_cmd_sn,
                self._window_end(),
                residual > 0,
                residual,
            )
            self._send_packed(header, data)
            if self._logout_itt is not None:
                self._maybe_finish_logout()
            return
        overflow = underflow = False
        residual = 0
        used = result.data_out_used if task.write and result.data_out_used is not None else length
        if task.read or task.write or used:
            if used > task.expected_length:
                overflow, residual = True, used - task.expected_length
            elif used < task.expected_length:
                underflow, residual = True, task.expected_length - used
        if length > task.expected_length:
            data = memoryview(data)[: task.expected_length]
        good = result.status == Status.GOOD and not result.sense
        if not data and not result.sense:
            # A write's answer (or any without data and sense): one header, packed at once.
            self._send_packed(
                p.scsi_response_header(
                    itt,
                    int(result.status),
                    self._take_stat_sn(),
                    self.exp_cmd_sn,
                    self._window_end(),
                    overflow,
                    underflow,
                    residual,
                ),
                b"",
            )
            if self._logout_itt is not None:
                self._maybe_finish_logout()
            return
        if data:
            self._send_data_in(
                itt=itt,
                lun_field=task.lun_field,
                data=data,
                result=result,
                overflow=overflow,
                underflow=underflow,
                residual=residual,
            )
            if good:
                self._maybe_finish_logout()
                return
        self._send(
            p.SCSIResponse(
                itt=itt,
                status=int(result.status),
                stat_sn=self._take_stat_sn(),
                exp_cmd_sn=self.exp_cmd_sn,
                max_cmd_sn=self._window_end(),
                residual_overflow=overflow,
                residual_underflow=underflow,
                residual_count=residual,
                sense=result.sense,
            )
        )
        self._maybe_finish_logout()

    def abort_command(self, itt: int, *, report_status: bool) -> None:
        """A delivered command was aborted by task management (SAM-5 §5.6, TAS)."""
        if itt not in self._outstanding:
            return
        if report_status:
            self.complete_command(itt, CommandResult(status=Status.TASK_ABORTED))
        else:
            del self._outstanding[itt]
            self._maybe_finish_logout()

    def drop_undelivered(self, lun: int | None) -> None:
        """Forget write tasks still collecting data (a LUN or target reset aborted them)."""
        drop_writes(self._writes, lun)

    def complete_task_management(self, itt: int, response: TaskManagementResponseCode) -> None:
        self._send(
            p.TaskManagementResponse(
                itt=itt,
                response=response,
                stat_sn=self._take_stat_sn(),
                exp_cmd_sn=self.exp_cmd_sn,
                max_cmd_sn=self._window_end(),
            )
        )

    def request_logout(self, seconds: int) -> None:
        """Ask the initiator to log out within ``seconds`` (RFC 7143 §11.9.1, AsyncEvent 1)."""
        if self.phase is Phase.FULL_FEATURE:
            self._send(
                p.AsyncMessage(
                    async_event=AsyncEvent.LOGOUT_REQUEST,
                    lun=0,
                    stat_sn=self._take_stat_sn(),
                    exp_cmd_sn=self.exp_cmd_sn,
                    max_cmd_sn=self._window_end(),
                    parameter3=seconds,
                )
            )

    def close(self, reason: str) -> None:
        """Close from the target side (shutdown, portal down, session reinstated)."""
        self._close(reason)

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    @property
    def outstanding_commands(self) -> int:
        return len(self._outstanding) + len(self._writes)

    # -- dispatch ------------------------------------------------------------------------------

    def _dispatch(self, pdu: p.PDU, now: float) -> None:
        if type(pdu) not in ACCEPTS[self.phase]:
            if self.phase is Phase.LOGIN:
                self._close(f"{type(pdu).__name__} during login")
            else:
                self._reject(RejectReason.PROTOCOL_ERROR, pdu.encode()[:48])
            return
        if isinstance(pdu, p.LoginRequest):
            self._on_login(pdu)
        elif isinstance(pdu, p.DataOut):
            self._on_data_out(pdu)
        elif isinstance(pdu, ORDERED_PDUS):
            self._order(pdu, pdu.immediate, pdu.cmd_sn)

    def _order(self, pdu: p.PDU, immediate: bool, cmd_sn: int) -> None:
        """Deliver in CmdSN order; hold early ones inside the window; drop the rest (§4.2.2.1)."""
        if immediate:
            self._process(pdu)
            return
        if cmd_sn != self.exp_cmd_sn:
            if sn_gt(cmd_sn, self.exp_cmd_sn) and not sn_gt(cmd_sn, self.max_cmd_sn):
                self._pending_by_sn.setdefault(cmd_sn, pdu)
            else:
                log.debug("dropping PDU with CmdSN %d outside the window", cmd_sn)
            return
        self.exp_cmd_sn = (self.exp_cmd_sn + 1) & 0xFFFFFFFF
        self._process(pdu)
        while self.exp_cmd_sn in self._pending_by_sn and self.phase is Phase.FULL_FEATURE:
            nxt = self._pending_by_sn.pop(self.exp_cmd_sn)
            self.exp_cmd_sn = (self.exp_cmd_sn + 1) & 0xFFFFFFFF
            self._process(nxt)

    def _process(self, pdu: p.PDU) -> None:
        if isinstance(pdu, p.SCSICommand):
            self._on_scsi_command(pdu)
        elif isinstance(pdu, p.NopOut):
            self._on_nop_out(pdu)
        elif isinstance(pdu, p.TaskManagementRequest):
            self._on_task_management(pdu)
        elif isinstance(pdu, p.TextRequest):
            self._on_text(pdu)
        elif isinstance(pdu, p.LogoutRequest):
            self._on_logout(pdu)

    # -- login -----------------------------------------------------------------------------

    def _on_login(self, request: p.LoginRequest) -> None:
        response = self._login.handle(request)
        outcome = self._login.outcome
        if outcome is not None:
            self.stat_sn = response.stat_sn
            self.exp_cmd_sn = request.cmd_sn
        self._send(response)
        if self._login.failed:
            self._close("login failed")
            return
        if outcome is None:
            return
        self.outcome = outcome
        self.phase = Phase.FULL_FEATURE
        self._login_deadline = None
        self.stat_sn = (response.stat_sn + 1) & 0xFFFFFFFF
        self.max_cmd_sn = response.max_cmd_sn
        # Digests and segment limits change only after the final login response (§13.12).
        self._header_digest = outcome.header_digest
        self._data_digest = outcome.data_digest
        self._reader.set_digests(outcome.header_digest, outcome.data_digest)
        self._reader.set_max_data_segment_length(outcome.max_recv_data_segment_length)
        # A read up to this long is answered with one Data-In PDU (§11.7, §13.14).
        self._single_data_in = min(outcome.max_xmit_data_segment_length, outcome.max_burst_length)
        event = login_succeeded(outcome)
        self.nexus = event.nexus
        self._events.append(event)

    # -- SCSI commands and Data-Out --------------------------------------------------------

    def _on_scsi_command(self, cmd: p.SCSICommand) -> None:
        outcome = self.outcome
        assert outcome is not None
        if self.nexus is None:
            self._reject(RejectReason.PROTOCOL_ERROR, cmd.encode()[:48])
            return
        if cmd.itt in self._outstanding or cmd.itt in self._writes:
            self._reject(RejectReason.TASK_IN_PROGRESS, cmd.encode()[:48])
            return
        if cmd.bidi_read_expected_length is not None or (cmd.read and cmd.write):
            self._reject(RejectReason.COMMAND_NOT_SUPPORTED, cmd.encode()[:48])
            return
        edtl = cmd.expected_data_transfer_length
        attribute = _TASK_ATTRIBUTES.get(cmd.attr, TaskAttribute.SIMPLE)
        if cmd.write and cmd.final and 0 < edtl == len(cmd.data) and outcome.immediate_data:
            # All of the data came with the command (a small write): what a ``WriteTask``
            # would collect and hand over, without the task.
            data_out: bytes | memoryview = cmd.data
        elif cmd.write and edtl > 0:
            if cmd.data and not outcome.immediate_data:
                self._reject(RejectReason.PROTOCOL_ERROR, cmd.encode()[:48])
                return
            unsolicited = len(cmd.data)
            if not outcome.initial_r2t and not cmd.final:
                unsolicited = min(outcome.first_burst_length, edtl)
            task = WriteTask(
                itt=cmd.itt,
                lun=cmd.lun,
                cdb=cmd.cdb,
                cmd_sn=cmd.cmd_sn,
                attribute=attribute,
                expected_length=edtl,
                unsolicited_limit=unsolicited,
            )
            try:
                task.add_immediate(cmd.data)
            except DataOutError:
                self._reject(RejectReason.PROTOCOL_ERROR, cmd.encode()[:48])
                return
            if not task.complete:
                self._writes[cmd.itt] = task
                self._solicit(task)
                return
            data_out = task.buffer()
        else:
            data_out = b""
        self._deliver(
            itt=cmd.itt,
            lun_field=cmd.lun,
            cdb=cmd.cdb,
            attribute=attribute,
            read=cmd.read,
            write=cmd.write,
            edtl=edtl,
            data_out=data_out,
        )

    def _deliver(
        self,
        *,
        itt: int,
        lun_field: int,
        cdb: bytes,
        attribute: TaskAttribute,
        read: bool,
        write: bool,
        edtl: int,
        data_out: bytes | memoryview,
    ) -> None:
        assert self.nexus is not None
        self._outstanding[itt] = _Outstanding(lun_field, read, write, edtl)
        command = Command(
            nexus=self.nexus,
            lun=decode_target_lun(lun_field),
            cdb=cdb,
            tag=itt,
            attribute=attribute,
            data_out=data_out,
            data_in_length=edtl if read else 0,
        )
        self._events.append(CommandReady(itt, command))

    def _solicit(self, task: WriteTask) -> None:
        outcome = self.outcome
        assert outcome is not None
        for r2t in task.next_r2ts(
            outcome.max_burst_length, outcome.max_outstanding_r2t, self._next_ttt
        ):
            self._next_ttt = (r2t.ttt + 1) & 0x7FFFFFFF or 1
            self._send(
                p.R2T(
                    itt=task.itt,
                    ttt=r2t.ttt,
                    lun=task.lun,
                    stat_sn=self.stat_sn,
                    exp_cmd_sn=self.exp_cmd_sn,
                    max_cmd_sn=self._window_end(),
                    r2t_sn=r2t.r2t_sn,
                    buffer_offset=r2t.buffer_offset,
                    desired_data_transfer_length=r2t.length,
                )
            )

    def _on_data_out(self, pdu: p.DataOut) -> None:
        task = self._writes.get(pdu.itt)
        if task is None:
            self._reject(RejectReason.INVALID_PDU_FIELD, pdu.encode()[:48])
            return
        try:
            task.add_data_out(pdu.ttt, pdu.data_sn, pdu.buffer_offset, pdu.data)
        except DataOutError as exc:
            log.info("ITT %#x: %s", pdu.itt, exc)
            self._reject(RejectReason.PROTOCOL_ERROR, pdu.encode()[:48])
            return
        if task.complete:
            del self._writes[pdu.itt]
            self._deliver(
                itt=task.itt,
                lun_field=task.lun,
                cdb=task.cdb,
                attribute=task.attribute,
                read=False,
                write=True,
                edtl=task.expected_length,
                data_out=task.buffer(),
            )
        elif pdu.final and pdu.ttt != RESERVED_TAG:
            self._solicit(task)

    def _send_data_in(
        self,
        *,
        itt: int,
        lun_field: int,
        data: bytes | memoryview,
        result: CommandResult,
        overflow: bool,
        underflow: bool,
        residual: int,
    ) -> None:
        outcome = self.outcome
        assert outcome is not None
        collapse = result.status == Status.GOOD and not result.sense
        for pdu in data_in_pdus(
            itt=itt,
            lun_field=lun_field,
            data=data,
            max_segment=outcome.max_xmit_data_segment_length,
            max_burst=outcome.max_burst_length,
            status_stat_sn=self._take_stat_sn() if collapse else None,
            exp_cmd_sn=self.exp_cmd_sn,
            max_cmd_sn=self._window_end(),
            overflow=overflow,
            underflow=underflow,
            residual=residual,
        ):
            self._send(pdu)

    # -- other PDUs --------------------------------------------------------------------------

    def _on_nop_out(self, pdu: p.NopOut) -> None:
        if pdu.itt == RESERVED_TAG:
            if pdu.ttt == self._ping_ttt:
                self._ping_deadline = None
            return
        self._send(
            p.NopIn(
                itt=pdu.itt,
                ttt=RESERVED_TAG,
                lun=pdu.lun,
                stat_sn=self._take_stat_sn(),
                exp_cmd_sn=self.exp_cmd_sn,
                max_cmd_sn=self._window_end(),
                data=pdu.data,
            )
        )

    def _on_task_management(self, pdu: p.TaskManagementRequest) -> None:
        if self.nexus is None:
            self.complete_task_management(pdu.itt, TaskManagementResponseCode.FUNCTION_REJECTED)
            return
        response = settle_at_connection(
            pdu,
            writes=self._writes,
            delivered=self._outstanding,
            pending_by_sn=self._pending_by_sn,
            exp_cmd_sn=self.exp_cmd_sn,
        )
        if response is not None:
            self.complete_task_management(pdu.itt, response)
            return
        self._events.append(
            TaskManagementRequested(
                pdu.itt, pdu.function, decode_target_lun(pdu.lun), pdu.referenced_task_tag
            )
        )

    def _on_text(self, pdu: p.TextRequest) -> None:
        outcome = self.outcome
        assert outcome is not None
        reply = self._text.receive(
            pdu,
            initiator_name=outcome.initiator_name,
            max_segment=outcome.max_xmit_data_segment_length,
            take_ttt=self._take_ttt,
        )
        if isinstance(reply, RejectReason):
            self._reject(reply, pdu.encode()[:48])
            return
        self._send(
            p.TextResponse(
                itt=pdu.itt,
                ttt=reply.ttt,
                stat_sn=self._take_stat_sn(),
                exp_cmd_sn=self.exp_cmd_sn,
                max_cmd_sn=self._window_end(),
                final=reply.final,
                cont=reply.cont,
                data=reply.data,
            )
        )

    def _on_logout(self, pdu: p.LogoutRequest) -> None:
        if pdu.reason == LogoutReason.REMOVE_CONNECTION_FOR_RECOVERY:
            self._send(
                p.LogoutResponse(
                    itt=pdu.itt,
                    response=LogoutResponseCode.RECOVERY_NOT_SUPPORTED,
                    stat_sn=self._take_stat_sn(),
                    exp_cmd_sn=self.exp_cmd_sn,
                    max_cmd_sn=self._window_end(),
                )
            )
            return
        self._logout_itt = pdu.itt
        self._writes.clear()
        self._maybe_finish_logout()

    def _maybe_finish_logout(self) -> None:
        """Answer a pending logout once no delivered command is left to answer."""
        if self._logout_itt is None or self._outstanding:
            return
        self._send(
            p.LogoutResponse(
                itt=self._logout_itt,
                stat_sn=self._take_stat_sn(),
                exp_cmd_sn=self.exp_cmd_sn,
                max_cmd_sn=self._window_end(),
            )
        )
        self._logout_itt = None
        self._close("logout")

    # -- helpers ---------------------------------------------------------------------------

    def _reject(self, reason: RejectReason, header: bytes) -> None:
        self._send(
            p.Reject(
                reason=reason,
                stat_sn=self._take_stat_sn(),
                exp_cmd_sn=self.exp_cmd_sn,
                max_cmd_sn=self._window_end(),
                data_sn_r2t_sn=0,
                data=header[:48],
            )
        )

    def _take_stat_sn(self) -> int:
        sn = self.stat_sn
        self.stat_sn = (sn + 1) & 0xFFFFFFFF
        return sn

    def _take_ttt(self) -> int:
        ttt = self._next_ttt
        self._next_ttt = (ttt + 1) & 0x7FFFFFFF or 1
        return ttt

    def _window_end(self) -> int:
        """MaxCmdSN: the window closes as commands wait, and never moves back (§4.2.2.1)."""
        busy = len(self._outstanding) + len(self._writes) + len(self._pending_by_sn)
        free = max(self.settings.command_window - busy, 0)
        candidate = (self.exp_cmd_sn + free - 1) & 0xFFFFFFFF
        if sn_gt(candidate, self.max_cmd_sn):
            self.max_cmd_sn = candidate
        return self.max_cmd_sn

    def _close(self, reason: str) -> None:
        if self.phase is Phase.CLOSED:
            return
        log.debug("closing connection: %s", reason)
        self.phase = Phase.CLOSED
        self._events.append(ConnectionClosed(reason))


_TASK_ATTRIBUTES: dict[int, TaskAttribute] = {
    iscsi_codes.TaskAttribute.UNTAGGED: TaskAttribute.SIMPLE,
    iscsi_codes.TaskAttribute.SIMPLE: TaskAttribute.SIMPLE,
    iscsi_codes.TaskAttribute.ORDERED: TaskAttribute.ORDERED,
    iscsi_codes.TaskAttribute.HEAD_OF_QUEUE: TaskAttribute.HEAD_OF_QUEUE,
    iscsi_codes.TaskAttribute.ACA: TaskAttribute.ACA,
}
