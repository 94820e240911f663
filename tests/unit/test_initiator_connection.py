"""The sans-IO initiator core against the sans-IO target core, in memory."""

from __future__ import annotations

import os
import struct

import pytest
from tests.support.initiator_pair import IQN, InitiatorPair, make_initiator_pair

from sanstack.block.device import DeviceNotReady, DeviceReadOnly, MediumError, SpaceExhausted
from sanstack.errors import LocalProtocolError
from sanstack.initiator.lun_device import (
    ISCSICommandError,
    ReservationConflict,
    check,
    identity_from_vpd,
    relative_target_port,
)
from sanstack.initiator.session import CommandResponse
from sanstack.iscsi import pdu as p
from sanstack.iscsi.chap import ChapCredentials
from sanstack.iscsi.codes import (
    AsyncEvent,
    LoginStatus,
    LogoutResponseCode,
    RejectReason,
    TaskAttribute,
    TaskManagementFunction,
    TaskManagementResponseCode,
)
from sanstack.iscsi.initiator_connection import CommandQueueFull, InitiatorConnection
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
from sanstack.iscsi.initiator_tasks import CommandTask
from sanstack.iscsi.negotiation import Digest, NegotiationPreferences, SessionType
from sanstack.iscsi.pdu_stream import PDUStream
from sanstack.iscsi.serial_number import sn_gt
from sanstack.iscsi.target_events import ConnectionSettings
from sanstack.scsi.codes import ASC, SenseKey, Status
from sanstack.scsi.lun import encode_lun
from sanstack.scsi.sense import fixed_sense, parse_sense

RESERVED = 0xFFFFFFFF
BS = 512


def read16(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBQIBB", 0x88, 0, lba, blocks, 0, 0)


def write16(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBQIBB", 0x8A, 0, lba, blocks, 0, 0)


def completed(pair: InitiatorPair) -> dict[int, CommandCompleted]:
    return {e.itt: e for e in pair.take() if isinstance(e, CommandCompleted)}


def write(pair: InitiatorPair, lba: int, data: bytes) -> CommandCompleted:
    itt = pair.initiator.submit(0, write16(lba, len(data) // BS), data_out=data)
    pair.pump()
    return completed(pair)[itt]


def read(pair: InitiatorPair, lba: int, blocks: int) -> CommandCompleted:
    itt = pair.initiator.submit(0, read16(lba, blocks), read_length=blocks * BS)
    pair.pump()
    return completed(pair)[itt]


def logged_in(**kwargs: object) -> InitiatorPair:
    pair = make_initiator_pair(**kwargs)  # type: ignore[arg-type]
    events = pair.take()
    assert any(isinstance(e, LoginCompleted) for e in events), events
    assert not pair.initiator.closed
    return pair


# -- login -------------------------------------------------------------------------------------


def test_login_without_digests_reaches_full_feature_phase() -> None:
    pair = make_initiator_pair()
    (event,) = pair.take()
    assert isinstance(event, LoginCompleted)
    assert not event.parameters.header_digest and not event.parameters.data_digest
    assert event.tsih != 0
    assert pair.target_conn.nexus is not None and pair.target_conn.nexus.target_name == IQN
    assert all(isinstance(x, p.LoginRequest) for x in pair.sent)


def test_login_with_digests_then_io_works_with_crc32c_on_the_wire() -> None:
    both = (Digest.CRC32C,)
    pair = logged_in(preferences=NegotiationPreferences(header_digest=both, data_digest=both))
    params = pair.initiator.parameters
    assert params is not None and params.header_digest and params.data_digest
    data = os.urandom(64 * 1024)
    assert write(pair, 10, data).status == 0
    answer = read(pair, 10, len(data) // BS)
    assert answer.status == 0 and bytes(answer.data) == data


def test_chap_login_and_wrong_secret() -> None:
    creds = ChapCredentials("alice", "a-secret-of-16b!")
    pair = logged_in(target_chap=creds, chap=creds)
    assert read(pair, 0, 1).status == 0
    bad = make_initiator_pair(target_chap=creds, chap=ChapCredentials("alice", "not-the-secret!!"))
    (event,) = bad.take()
    assert isinstance(event, LoginFailed) and event.kind is None
    assert event.status == LoginStatus.AUTHENTICATION_FAILURE
    assert bad.initiator.closed


def test_mutual_chap() -> None:
    creds = ChapCredentials("alice", "a-secret-of-16b!", "tgt", "another-secret-16")
    pair = logged_in(target_chap=creds, chap=creds)
    assert read(pair, 0, 1).status == 0


def test_login_timeout_and_commands_before_login_are_refused() -> None:
    pair = make_initiator_pair(login=False)
    pair.blackhole = True
    with pytest.raises(LocalProtocolError):
        pair.initiator.submit(0, read16(0, 1), read_length=BS)
    pair.tick(11.0)
    (event,) = pair.take()
    assert isinstance(event, LoginFailed) and event.status is None
    assert event.kind is PathFailureKind.LOGIN_TIMEOUT


# -- reads and writes --------------------------------------------------------------------------


def test_read_is_reassembled_from_many_data_in_pdus() -> None:
    pair = logged_in(
        preferences=NegotiationPreferences(max_recv_data_segment_length=4096),
        target_preferences=NegotiationPreferences(max_burst_length=16384, first_burst_length=8192),
    )
    data = os.urandom(256 * 1024)
    pair.device._blocks = {i: data[i * BS : (i + 1) * BS] for i in range(len(data) // BS)}
    answer = read(pair, 0, len(data) // BS)
    assert answer.status == 0 and answer.residual == 0
    assert bytes(answer.data) == data
    # One piece per Data-In PDU, unjoined, for whoever only passes the data on.
    assert [len(part) for part in answer.parts] == [4096] * 64
    assert b"".join(answer.parts) == data


def test_read_underflow_reports_the_residual() -> None:
    pair = logged_in()
    # READ of 2 blocks with room for 4: the target sends 2 and reports 2 blocks of residual.
    itt = pair.initiator.submit(0, read16(0, 2), read_length=4 * BS)
    pair.pump()
    answer = completed(pair)[itt]
    assert answer.status == 0 and len(answer.data) == 2 * BS
    assert answer.residual == 2 * BS and not answer.residual_overflow


def test_check_condition_carries_sense() -> None:
    pair = logged_in(blocks=64)
    answer = read(pair, 1000, 1)
    assert answer.status == 2
    key, asc, _ = parse_sense(answer.sense)
    assert key == 0x5 and asc == 0x21  # ILLEGAL REQUEST, LBA OUT OF RANGE


@pytest.mark.parametrize(
    ("immediate_data", "initial_r2t", "kinds"),
    [
        (True, False, {"immediate", "unsolicited", "r2t"}),
        (False, False, {"unsolicited", "r2t"}),
        (True, True, {"immediate", "r2t"}),
        (False, True, {"r2t"}),
    ],
)
def test_write_data_out_follows_negotiated_parameters(
    immediate_data: bool, initial_r2t: bool, kinds: set[str]
) -> None:
    pair = logged_in(
        preferences=NegotiationPreferences(
            immediate_data=immediate_data,
            initial_r2t=initial_r2t,
            first_burst_length=16384,
            max_burst_length=32768,
        ),
        target_preferences=NegotiationPreferences(max_recv_data_segment_length=4096),
    )
    params = pair.initiator.parameters
    assert params is not None
    assert params.immediate_data is immediate_data and params.initial_r2t is initial_r2t
    data = os.urandom(200 * 1024)
    assert write(pair, 7, data).status == 0
    (command,) = pair.sent_of(p.SCSICommand)
    assert isinstance(command, p.SCSICommand)
    outs = [x for x in pair.sent_of(p.DataOut) if isinstance(x, p.DataOut)]
    seen: set[str] = set()
    if command.data:
        seen.add("immediate")
        assert len(command.data) == 4096  # min(FirstBurstLength, MaxXmitDataSegmentLength)
    if any(x.ttt == RESERVED for x in outs):
        seen.add("unsolicited")
        unsolicited = [x for x in outs if x.ttt == RESERVED]
        assert sum(len(x.data) for x in unsolicited) + len(command.data) == 16384
        assert [x.data_sn for x in unsolicited] == list(range(len(unsolicited)))
        assert unsolicited[-1].final and not command.final
    if any(x.ttt != RESERVED for x in outs):
        seen.add("r2t")
    assert seen == kinds
    assert all(len(x.data) <= 4096 for x in outs)
    for ttt in {x.ttt for x in outs if x.ttt != RESERVED}:
        burst = [x for x in outs if x.ttt == ttt]
        assert sum(len(x.data) for x in burst) <= 32768
        assert [x.data_sn for x in burst] == list(range(len(burst)))
    stored = b"".join(pair.device._blocks[7 + i] for i in range(len(data) // BS))
    assert stored == data


def test_many_commands_at_queue_depth_complete_independently() -> None:
    pair = logged_in()
    pair.hold_commands = True
    blobs = {lba: os.urandom(4 * BS) for lba in range(0, 64, 4)}
    itts = {
        pair.initiator.submit(0, write16(lba, 4), data_out=blob): lba for lba, blob in blobs.items()
    }
    pair.pump()
    assert len(pair.held) == len(itts)
    pair.held.reverse()  # complete out of order
    pair.release_held()
    done = completed(pair)
    assert set(done) == set(itts) and all(e.status == 0 for e in done.values())
    pair.hold_commands = False
    for lba, blob in blobs.items():
        assert bytes(read(pair, lba, 4).data) == blob


@pytest.mark.parametrize("digest", [False, True], ids=["plain", "crc32c"])
@pytest.mark.parametrize("cdb", [read16(9, 8), bytes([0x00] * 6)], ids=["read16", "tur"])
@pytest.mark.parametrize("attribute", list(TaskAttribute))
def test_commands_without_data_out_are_packed_as_the_codec_encodes_them(
    digest: bool, cdb: bytes, attribute: TaskAttribute
) -> None:
    """A command without data out leaves as a BHS packed at once (every READ of the host
    does): byte for byte what ``SCSICommand`` encodes, header digest included."""
    length = 4096 if cdb[0] == 0x88 else 0
    task = CommandTask(0x1234, encode_lun(300), cdb, attribute, memoryview(b""), length)
    assert task.bare
    stream: PDUStream[object] = PDUStream()
    stream._header_digest = digest
    stream._send_bhs(task.bare_command(77, 88))
    expected = p.SCSICommand(
        itt=0x1234, lun=encode_lun(300), cdb=cdb, expected_data_transfer_length=length,
        cmd_sn=77, exp_stat_sn=88, read=length > 0, attr=attribute,
    ).encode(header_digest=digest, data_digest=digest)  # fmt: skip
    assert b"".join(stream.data_to_send()) == expected
    assert task.sent and task.cmd_sn == 77
    assert not CommandTask(1, 0, cdb, attribute, memoryview(b"x"), 0).bare
    assert not CommandTask(1, 0, bytes(32), attribute, memoryview(b""), 0).bare


# -- CmdSN window ------------------------------------------------------------------------------


def test_commands_beyond_max_cmd_sn_wait_until_the_window_opens() -> None:
    pair = logged_in(settings=ConnectionSettings(command_window=2, nop_in_interval=None))
    pair.hold_commands = True
    itts = [pair.initiator.submit(0, read16(i, 1), read_length=BS) for i in range(6)]
    pair.pump()
    assert len(pair.sent_of(p.SCSICommand)) == 2
    assert pair.initiator.queued == 4
    for _ in range(3):
        pair.release_held()
    assert len(pair.sent_of(p.SCSICommand)) == 6
    assert set(completed(pair)) == set(itts)
    cmd_sns = [x.cmd_sn for x in pair.sent_of(p.SCSICommand) if isinstance(x, p.SCSICommand)]
    assert cmd_sns == [(cmd_sns[0] + i) & RESERVED for i in range(6)]


def test_cmd_sn_wraps_with_serial_number_arithmetic() -> None:
    pair = logged_in(initial_cmd_sn=0xFFFFFFFD)
    for i in range(6):
        assert read(pair, i, 1).status == 0
    sns = [x.cmd_sn for x in pair.sent_of(p.SCSICommand) if isinstance(x, p.SCSICommand)]
    assert sns == [0xFFFFFFFD, 0xFFFFFFFE, 0xFFFFFFFF, 0, 1, 2]
    assert sn_gt(0, 0xFFFFFFFF) and not sn_gt(0xFFFFFFFF, 0)


def test_bogus_max_cmd_sn_is_ignored() -> None:
    pair = logged_in()
    before = pair.initiator.max_cmd_sn
    # §4.2.2.1: MaxCmdSN < ExpCmdSN - 1 is invalid; the window must not move.
    nop = p.NopIn(itt=RESERVED, ttt=RESERVED, exp_cmd_sn=before + 100, max_cmd_sn=before + 5)
    pair.initiator.receive_data(nop.encode(), 0.0)
    assert pair.initiator.max_cmd_sn == before and not pair.initiator.closed


def test_queue_is_bounded() -> None:
    pair = logged_in(settings=ConnectionSettings(command_window=1, nop_in_interval=None))
    pair.hold_commands = True
    conn = pair.initiator
    conn._max_queued = 3
    for i in range(4):
        conn.submit(0, read16(i, 1), read_length=BS)
    with pytest.raises(CommandQueueFull):
        conn.submit(0, read16(9, 1), read_length=BS)


# -- NOP-Out / NOP-In -----------------------------------------------------------------------------


def test_idle_connection_is_pinged_and_the_answer_keeps_it_up() -> None:
    pair = logged_in(nop_interval=2.0, nop_timeout=3.0)
    assert pair.initiator.get_timer() == pytest.approx(2.0)
    pair.tick(2.5)
    (ping,) = pair.sent_of(p.NopOut)
    assert isinstance(ping, p.NopOut) and ping.itt != RESERVED and ping.immediate
    events = pair.take()
    assert [type(e) for e in events] == [NopInReceived]
    for _ in range(5):
        pair.tick(2.5)
    assert not pair.initiator.closed


def test_silent_path_fails_with_nop_timeout() -> None:
    pair = logged_in(nop_interval=2.0, nop_timeout=3.0)
    pair.hold_commands = True
    itt = pair.initiator.submit(0, read16(0, 1), read_length=BS)
    pair.pump()
    pair.blackhole = True
    pair.tick(2.0)  # ping goes out (into the void)
    assert pair.initiator.get_timer() == pytest.approx(5.0)
    pair.tick(2.9)
    assert pair.take() == []  # not yet
    pair.tick(0.2)
    (event,) = pair.take()
    assert isinstance(event, ConnectionFailed) and event.kind is PathFailureKind.NOP_TIMEOUT
    assert itt in event.itts
    assert pair.initiator.closed and pair.initiator.get_timer() is None


def test_target_nop_in_ping_is_answered() -> None:
    settings = ConnectionSettings(nop_in_interval=1.0, nop_in_timeout=2.0)
    pair = logged_in(settings=settings)
    for _ in range(6):
        pair.tick(1.5)
    answers = [x for x in pair.sent_of(p.NopOut) if isinstance(x, p.NopOut)]
    assert answers and all(x.itt == RESERVED and x.ttt != RESERVED for x in answers)
    assert pair.target_closed is None and not pair.initiator.closed


def test_explicit_ping() -> None:
    pair = logged_in()
    itt = pair.initiator.ping(b"hello")
    pair.pump()
    assert pair.take() == [NopInReceived(itt, b"hello")]


# -- task management ------------------------------------------------------------------------


def test_abort_task_ends_the_command_and_drops_its_late_answer() -> None:
    pair = logged_in()
    pair.hold_commands = True
    itt = pair.initiator.submit(0, read16(0, 1), read_length=BS)
    pair.pump()
    tmf = pair.initiator.abort_task(itt)
    pair.pump()
    events = pair.take()
    assert TaskManagementCompleted(tmf, TaskManagementResponseCode.FUNCTION_COMPLETE) in events
    (done,) = [e for e in events if isinstance(e, CommandCompleted)]
    assert done.itt == itt and done.status == Status.TASK_ABORTED
    request = pair.sent_of(p.TaskManagementRequest)[-1]
    assert isinstance(request, p.TaskManagementRequest)
    assert request.referenced_task_tag == itt and request.immediate
    pair.release_held()  # the target still answers the held command: ignored
    assert pair.take() == [] and not pair.initiator.closed


def test_abort_of_a_queued_command_never_reaches_the_target() -> None:
    pair = logged_in(settings=ConnectionSettings(command_window=1, nop_in_interval=None))
    pair.hold_commands = True
    first = pair.initiator.submit(0, read16(0, 1), read_length=BS)
    second = pair.initiator.submit(0, read16(1, 1), read_length=BS)
    pair.pump()
    pair.initiator.abort_task(second)
    pair.pump()
    events = pair.take()
    assert [e.itt for e in events if isinstance(e, CommandCompleted)] == [second]
    pair.release_held()
    assert set(completed(pair)) == {first}
    assert len(pair.sent_of(p.SCSICommand)) == 1


def test_lun_reset_ends_the_lun_s_commands() -> None:
    pair = logged_in()
    pair.hold_commands = True
    itts = {pair.initiator.submit(0, read16(i, 1), read_length=BS) for i in range(3)}
    pair.pump()
    tmf = pair.initiator.lun_reset(0)
    pair.pump()
    events = pair.take()
    assert TaskManagementCompleted(tmf, TaskManagementResponseCode.FUNCTION_COMPLETE) in events
    assert {e.itt for e in events if isinstance(e, CommandCompleted)} == itts
    assert pair.tmf_seen[-1].function == TaskManagementFunction.LOGICAL_UNIT_RESET


# -- logout, discovery, async events, failures ------------------------------------------


def test_logout_waits_for_queued_commands_then_closes() -> None:
    pair = logged_in()
    itt = pair.initiator.submit(0, read16(0, 1), read_length=BS)
    pair.initiator.logout()
    with pytest.raises(LocalProtocolError):
        pair.initiator.submit(0, read16(0, 1), read_length=BS)
    pair.pump()
    events = pair.take()
    assert isinstance(events[0], CommandCompleted) and events[0].itt == itt
    assert isinstance(events[1], LogoutCompleted)
    assert events[1].response == LogoutResponseCode.CONNECTION_CLOSED_SUCCESSFULLY
    assert pair.initiator.closed and pair.target_closed == "logout"
    assert len(events) == 2


def test_discovery_session_send_targets() -> None:
    pair = logged_in(session_type=SessionType.DISCOVERY)
    with pytest.raises(LocalProtocolError):
        pair.initiator.submit(0, read16(0, 1), read_length=BS)
    itt = pair.initiator.send_targets()
    pair.pump()
    (event,) = pair.take()
    assert event == DiscoveryCompleted(itt, [(IQN, ["127.0.0.1:3260,1"])])


def test_target_logout_request_is_reported() -> None:
    pair = logged_in()
    pair.target_conn.request_logout(3)
    pair.pump()
    (event,) = pair.take()
    assert isinstance(event, AsyncEventReceived)
    assert event.event == AsyncEvent.LOGOUT_REQUEST and event.parameter3 == 3


def test_target_side_close_fails_everything_in_flight() -> None:
    pair = logged_in()
    pair.hold_commands = True
    itts = {pair.initiator.submit(0, read16(i, 1), read_length=BS) for i in range(3)}
    pair.pump()
    pair.target_conn.close("portal group taken down")
    pair.pump()
    (event,) = pair.take()
    assert isinstance(event, ConnectionFailed)
    assert event.kind is PathFailureKind.CONNECTION_LOST
    assert set(event.itts) == itts
    with pytest.raises(LocalProtocolError):
        pair.initiator.submit(0, read16(0, 1), read_length=BS)


@pytest.mark.parametrize(
    "bogus",
    [
        p.DataIn(itt=0x7777, data_sn=0, data=b"x" * 4, final=True, status_present=True),
        p.SCSIResponse(itt=0x7777),
        p.R2T(itt=0x7777, ttt=1, desired_data_transfer_length=512),
        p.LoginResponse(isid=0, itt=0),
        p.Reject(reason=RejectReason.PROTOCOL_ERROR, data=b"\x01" + bytes(47)),
    ],
    ids=lambda x: type(x).__name__,
)
def test_protocol_errors_fail_the_connection(bogus: p.PDU) -> None:
    pair = logged_in()
    pair.hold_commands = True
    itt = pair.initiator.submit(0, read16(0, 1), read_length=BS)
    pair.pump()
    pair.initiator.receive_data(bogus.encode(), 0.0)
    pair.pump()
    (event,) = pair.take()
    assert isinstance(event, ConnectionFailed) and itt in event.itts
    assert event.kind is PathFailureKind.PROTOCOL_ERROR


def test_data_sn_gap_fails_the_connection() -> None:
    pair = logged_in()
    pair.hold_commands = True
    itt = pair.initiator.submit(0, read16(0, 2), read_length=2 * BS)
    pair.pump()
    pair.initiator.receive_data(p.DataIn(itt=itt, data_sn=1, data=bytes(BS)).encode(), 0.0)
    pair.pump()
    (event,) = [e for e in pair.take() if isinstance(e, ConnectionFailed)]
    assert event.kind is PathFailureKind.PROTOCOL_ERROR and "DataSN" in event.reason


def test_local_close_and_bidirectional_refusal() -> None:
    conn = InitiatorConnection("iqn.2026-11.x:i", IQN, isid=1, now=0.0)
    assert conn.data_to_send()  # the first Login Request is ready at once
    conn.close("bored")
    event = conn.next_event()
    assert isinstance(event, LoginFailed) and event.kind is PathFailureKind.CLOSED and conn.closed
    pair = logged_in()
    with pytest.raises(LocalProtocolError):
        pair.initiator.submit(0, write16(0, 1), data_out=bytes(BS), read_length=BS)


# -- ISCSIDevice's pure parts: status and sense to block errors, identity ---------------------


@pytest.mark.parametrize(
    ("status", "key", "asc", "error"),
    [
        (0x02, SenseKey.MEDIUM_ERROR, ASC.UNRECOVERED_READ_ERROR, MediumError),
        (0x02, SenseKey.NOT_READY, ASC.LOGICAL_UNIT_NOT_READY_OFFLINE, DeviceNotReady),
        (0x02, SenseKey.DATA_PROTECT, ASC.WRITE_PROTECTED, DeviceReadOnly),
        (0x02, SenseKey.DATA_PROTECT, ASC.SPACE_ALLOCATION_FAILED_WRITE_PROTECT, SpaceExhausted),
        (0x02, SenseKey.UNIT_ATTENTION, ASC.POWER_ON_OCCURRED, DeviceNotReady),
        (0x02, SenseKey.ILLEGAL_REQUEST, ASC.LBA_OUT_OF_RANGE, ISCSICommandError),
        (0x18, None, None, ReservationConflict),
        (0x08, None, None, DeviceNotReady),
        (0x40, None, None, DeviceNotReady),
    ],
)
def test_device_maps_status_and_sense_to_block_errors(
    status: int, key: SenseKey | None, asc: ASC | None, error: type[Exception]
) -> None:
    sense = fixed_sense(key, asc) if key is not None and asc is not None else b""
    with pytest.raises(error):
        check(CommandResponse(status, b"", sense, 0), write=True)
    check(CommandResponse(0, b"", b"", 0), write=False)


def test_device_identity_from_vpd_pages() -> None:
    naa3 = bytes.fromhex("3123456789abcdef")
    naa6 = bytes.fromhex("6001405" + "0" * 25)
    port = bytes([0x61, 0x94, 0, 4, 0, 0, 0, 2])  # target port association, relative port 2

    def page83(*descriptors: bytes) -> bytes:
        body = b"".join(descriptors)
        return bytes([0, 0x83]) + len(body).to_bytes(2, "big") + body

    def naa(value: bytes) -> bytes:
        return bytes([0x01, 0x03, 0, len(value)]) + value

    page80 = bytes([0, 0x80, 0, 6]) + b"SER123"
    same = identity_from_vpd(page83(naa(naa3), port), page80, "x")
    assert same.naa == naa3 and same.unit_serial == "SER123"
    assert relative_target_port(page83(naa(naa3), port)) == 2
    other = identity_from_vpd(page83(naa(naa6)), None, "x")
    assert other == identity_from_vpd(page83(naa(naa6)), None, "y")  # stable across paths
    assert other.naa[0] >> 4 == 3
    assert identity_from_vpd(None, page80, "x") == identity_from_vpd(None, page80, "y")


def test_device_identity_falls_back_to_the_serial_when_page_83h_uses_reserved_codes() -> None:
    reserved_type = bytes([0x01, 0x0F, 0, 8]) + bytes.fromhex("3123456789abcdef")
    page83 = bytes([0, 0x83, 0, len(reserved_type)]) + reserved_type
    page80 = bytes([0, 0x80, 0, 6]) + b"SER123"
    assert identity_from_vpd(page83, page80, "x") == identity_from_vpd(None, page80, "y")
    assert relative_target_port(page83) is None
