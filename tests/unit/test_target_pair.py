"""The target connection core through an in-memory pair: RFC 7143 sequencing rules."""

from __future__ import annotations

import os
import struct

from tests.support.pair import IQN, Pair, make_pair

from sanstack.iscsi import pdu as p
from sanstack.iscsi.codes import RejectReason, TaskManagementFunction, TaskManagementResponseCode
from sanstack.iscsi.negotiation import Digest, NegotiationPreferences
from sanstack.iscsi.target_events import ConnectionSettings
from sanstack.scsi.codes import Status

RESERVED = 0xFFFFFFFF


def read10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0).ljust(16, b"\0")


def write10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0).ljust(16, b"\0")


def scsi_read(
    pair: Pair, itt: int, cmd_sn: int, lba: int, blocks: int, *, edtl: int | None = None
) -> p.SCSICommand:
    return p.SCSICommand(
        itt=itt,
        cdb=read10(lba, blocks),
        expected_data_transfer_length=blocks * 512 if edtl is None else edtl,
        cmd_sn=cmd_sn,
        read=True,
    )


def logged_in(**prefs: object) -> Pair:
    pair = make_pair()
    pair.login(NegotiationPreferences(**prefs) if prefs else None)  # type: ignore[arg-type]
    assert pair.conn.outcome is not None and pair.closed is None
    return pair


def test_login_reaches_full_feature_phase() -> None:
    pair = logged_in()
    assert pair.conn.nexus is not None
    assert pair.conn.nexus.target_name == IQN
    assert pair.conn.exp_cmd_sn == 0


def test_large_read_is_split_at_segment_and_burst_boundaries() -> None:
    pair = logged_in(max_recv_data_segment_length=8192, max_burst_length=65536)
    data = os.urandom(256 * 1024)
    lu = pair.target.luns[0]
    lu.device._blocks = {i: data[i * 512 : (i + 1) * 512] for i in range(512)}  # type: ignore[attr-defined]
    pair.send(scsi_read(pair, 1, 0, 0, 512))
    pdus = pair.take()
    assert all(isinstance(x, p.DataIn) for x in pdus)
    data_in = [x for x in pdus if isinstance(x, p.DataIn)]
    assert len(data_in) == 32
    assert [x.data_sn for x in data_in] == list(range(32))
    assert b"".join(bytes(x.data) for x in data_in) == data
    # F at every MaxBurstLength (64 KiB = 8 PDUs of 8 KiB); status only in the last PDU.
    assert [i for i, x in enumerate(data_in) if x.final] == [7, 15, 23, 31]
    assert [x.status_present for x in data_in].count(True) == 1 and data_in[-1].status_present
    assert data_in[-1].stat_sn == pair.conn.stat_sn - 1


def test_read_underflow_and_overflow_residuals() -> None:
    pair = logged_in()
    pair.send(scsi_read(pair, 1, 0, 0, 4, edtl=8 * 512))
    (last,) = [x for x in pair.take() if isinstance(x, p.DataIn) and x.status_present]
    assert last.residual_underflow and last.residual_count == 4 * 512
    pair.send(scsi_read(pair, 2, 1, 0, 4, edtl=2 * 512))
    pdus = [x for x in pair.take() if isinstance(x, p.DataIn)]
    assert sum(len(x.data) for x in pdus) == 2 * 512
    assert pdus[-1].residual_overflow and pdus[-1].residual_count == 2 * 512


def test_write_solicited_by_r2t_when_initial_r2t_and_no_immediate_data() -> None:
    pair = logged_in(
        initial_r2t=True, immediate_data=False, max_burst_length=16384, first_burst_length=16384
    )
    data = os.urandom(64 * 512)
    pair.send(
        p.SCSICommand(
            itt=5, cdb=write10(10, 64), expected_data_transfer_length=len(data), write=True
        )
    )
    (r2t,) = pair.take()
    assert isinstance(r2t, p.R2T)
    assert (r2t.buffer_offset, r2t.desired_data_transfer_length, r2t.r2t_sn) == (0, 16384, 0)
    offset = 0
    while offset < len(data):
        sent = 0
        data_sn = 0
        while sent < r2t.desired_data_transfer_length:
            n = min(8192, r2t.desired_data_transfer_length - sent)
            pair.send(
                p.DataOut(
                    itt=5,
                    ttt=r2t.ttt,
                    data_sn=data_sn,
                    buffer_offset=offset + sent,
                    final=sent + n == r2t.desired_data_transfer_length,
                    data=data[offset + sent : offset + sent + n],
                )
            )
            sent += n
            data_sn += 1
        offset += sent
        answers = pair.take()
        if offset < len(data):
            (r2t,) = answers
            assert isinstance(r2t, p.R2T) and r2t.buffer_offset == offset
        else:
            (response,) = answers
            assert isinstance(response, p.SCSIResponse) and response.status == Status.GOOD
    assert pair.target.luns[0].device._blocks[10] == data[:512]  # type: ignore[attr-defined]


def test_write_with_immediate_unsolicited_and_solicited_data() -> None:
    pair = logged_in(
        initial_r2t=False,
        immediate_data=True,
        first_burst_length=16384,
        max_recv_data_segment_length=8192,
    )
    data = os.urandom(48 * 1024)
    pair.send(
        p.SCSICommand(
            itt=7,
            cdb=write10(0, 96),
            expected_data_transfer_length=len(data),
            write=True,
            final=False,
            data=data[:8192],
        ),
        p.DataOut(itt=7, ttt=RESERVED, data_sn=0, buffer_offset=8192, final=True,
                  data=data[8192:16384]),
    )  # fmt: skip
    (r2t,) = pair.take()
    assert isinstance(r2t, p.R2T) and r2t.buffer_offset == 16384
    assert r2t.desired_data_transfer_length == len(data) - 16384
    chunks = range(16384, len(data), 8192)
    pair.send(
        *(
            p.DataOut(itt=7, ttt=r2t.ttt, data_sn=i, buffer_offset=off,
                      final=off + 8192 >= len(data), data=data[off : off + 8192])
            for i, off in enumerate(chunks)
        )
    )  # fmt: skip
    (response,) = pair.take()
    assert isinstance(response, p.SCSIResponse) and response.status == Status.GOOD
    pair.send(scsi_read(pair, 8, 1, 0, 96))
    got = b"".join(bytes(x.data) for x in pair.take() if isinstance(x, p.DataIn))
    assert got == data


def test_data_out_with_wrong_data_sn_is_rejected() -> None:
    pair = logged_in(initial_r2t=True, immediate_data=False)
    pair.send(
        p.SCSICommand(itt=5, cdb=write10(0, 2), expected_data_transfer_length=1024, write=True)
    )
    (r2t,) = pair.take()
    assert isinstance(r2t, p.R2T)
    pair.send(p.DataOut(itt=5, ttt=r2t.ttt, data_sn=1, buffer_offset=0, data=bytes(512)))
    (reject,) = pair.take()
    assert isinstance(reject, p.Reject) and reject.reason == RejectReason.PROTOCOL_ERROR
    assert pair.closed is None


def test_commands_run_in_cmd_sn_order_and_outside_the_window_are_dropped() -> None:
    pair = logged_in()
    pair.hold_commands = True
    pair.send(scsi_read(pair, 3, 2, 0, 1), scsi_read(pair, 2, 1, 0, 1))
    assert pair.held == []  # CmdSN 0 is missing: nothing may run yet
    pair.send(scsi_read(pair, 1, 0, 0, 1))
    assert [e.itt for e in pair.held] == [1, 2, 3]
    assert pair.conn.exp_cmd_sn == 3
    pair.send(scsi_read(pair, 9, 10_000, 0, 1))  # far beyond MaxCmdSN: silently dropped
    assert [e.itt for e in pair.held] == [1, 2, 3]
    pair.release_held()
    assert len([x for x in pair.take() if isinstance(x, p.DataIn)]) == 3


def test_max_cmd_sn_closes_the_window_while_commands_wait() -> None:
    pair = make_pair(settings=ConnectionSettings(command_window=4, nop_in_interval=None))
    pair.login()
    pair.hold_commands = True
    pair.send(*(scsi_read(pair, i + 1, i, 0, 1) for i in range(4)))
    pair.send(p.NopOut(itt=99, cmd_sn=4, immediate=True))
    (nop,) = pair.take()
    assert isinstance(nop, p.NopIn) and nop.max_cmd_sn == nop.exp_cmd_sn - 1  # window closed
    pair.release_held()
    last = [x for x in pair.take() if isinstance(x, p.DataIn)][-1]
    assert last.max_cmd_sn == last.exp_cmd_sn + 3


def test_nop_out_ping_is_echoed() -> None:
    pair = logged_in()
    pair.send(p.NopOut(itt=42, cmd_sn=0, immediate=True, data=b"hello"))
    (nop,) = pair.take()
    assert isinstance(nop, p.NopIn) and nop.itt == 42 and nop.data == b"hello"


def test_nop_in_ping_and_timeout_close_a_silent_connection() -> None:
    pair = make_pair(settings=ConnectionSettings(nop_in_interval=5, nop_in_timeout=10))
    pair.login()
    pair.tick(5.1)
    (ping,) = pair.take()
    assert isinstance(ping, p.NopIn) and ping.itt == RESERVED and ping.ttt != RESERVED
    pair.send(p.NopOut(itt=RESERVED, ttt=ping.ttt, cmd_sn=0, immediate=True))
    pair.tick(4)
    assert pair.closed is None
    pair.tick(2)  # idle again: a new ping
    (ping,) = pair.take()
    pair.tick(11)
    assert pair.closed == "initiator did not answer NOP-In"


def test_logout_waits_for_outstanding_commands() -> None:
    pair = logged_in()
    pair.hold_commands = True
    pair.send(scsi_read(pair, 1, 0, 0, 1), p.LogoutRequest(itt=2, cmd_sn=1))
    assert pair.take() == [] and pair.closed is None
    pair.release_held()
    pdus = pair.take()
    assert isinstance(pdus[-1], p.LogoutResponse)
    assert pair.closed == "logout"


def test_unknown_opcode_is_rejected_and_the_connection_goes_on() -> None:
    pair = logged_in()
    bogus = bytearray(48)
    bogus[0] = 0x1C  # an opcode RFC 7143 does not assign
    pair.send_bytes(bytes(bogus))
    (reject,) = pair.take()
    assert isinstance(reject, p.Reject)
    assert reject.reason == RejectReason.COMMAND_NOT_SUPPORTED
    pair.send(p.NopOut(itt=1, cmd_sn=0, immediate=True))
    assert isinstance(pair.take()[0], p.NopIn)


def test_data_digest_error_is_rejected() -> None:
    pair = logged_in(header_digest=(Digest.CRC32C,), data_digest=(Digest.CRC32C,))
    wire = bytearray(p.NopOut(itt=1, cmd_sn=0, immediate=True, data=b"abcd").encode(True, True))
    wire[-1] ^= 0xFF  # corrupt the data digest
    pair.send_bytes(bytes(wire))
    (reject,) = pair.take()
    assert isinstance(reject, p.Reject) and reject.reason == RejectReason.DATA_DIGEST_ERROR
    pair.send(p.NopOut(itt=2, cmd_sn=0, immediate=True), header_digest=True, data_digest=True)
    assert isinstance(pair.take()[0], p.NopIn)


def test_abort_task_drops_a_write_still_waiting_for_data() -> None:
    pair = logged_in(initial_r2t=True, immediate_data=False)
    pair.send(
        p.SCSICommand(itt=5, cdb=write10(0, 2), expected_data_transfer_length=1024, write=True)
    )
    assert isinstance(pair.take()[0], p.R2T)
    pair.send(
        p.TaskManagementRequest(
            function=TaskManagementFunction.ABORT_TASK, itt=6, referenced_task_tag=5, cmd_sn=1
        )
    )
    (response,) = pair.take()
    assert isinstance(response, p.TaskManagementResponse)
    assert response.response == TaskManagementResponseCode.FUNCTION_COMPLETE
    assert pair.conn.outstanding_commands == 0


def test_send_targets_text_request_in_a_normal_session() -> None:
    pair = logged_in()
    pair.send(p.TextRequest(itt=3, cmd_sn=0, immediate=True, data=b"SendTargets=All\0"))
    (text,) = pair.take()
    assert isinstance(text, p.TextResponse) and text.final
    assert text.data == f"TargetName={IQN}\0TargetAddress=127.0.0.1:3260,1\0".encode()


def test_scsi_command_before_login_closes_the_connection() -> None:
    pair = make_pair()
    pair.send(scsi_read(pair, 1, 0, 0, 1))
    assert pair.closed is not None and pair.conn.closed
