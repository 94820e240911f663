"""The simple SPC commands through ``LogicalUnit.execute``: readiness, sense, LUNs, reservations,
unit control and the MAINTENANCE IN reports, byte for byte."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from sanstack.block.device import DeviceIdentity
from sanstack.block.memory import MemoryDevice
from sanstack.scsi import spc
from sanstack.scsi.codes import ASC, MaintenanceIn, Opcode, SenseKey, Status
from sanstack.scsi.command import Command, CommandResult, CommandSpec, DataDirection, Nexus
from sanstack.scsi.logical_unit import LogicalUnit, TargetInfo
from sanstack.scsi.lun import UNSUPPORTED_LUN_FLAG, decode_lun, encode_lun, lun_field_bytes
from sanstack.scsi.opcodes_report import ReportSupportedOpcodesCdb, ReportSupportedTmfCdb
from sanstack.scsi.sense import CheckCondition, field_pointer, fixed_sense, parse_sense
from sanstack.scsi.sense_descriptor import descriptor_sense, to_descriptor_format
from sanstack.scsi.spc import (
    PreventAllowCdb,
    ReportLunsCdb,
    RequestSenseCdb,
    ReserveReleaseCdb,
    StartStopUnitCdb,
    check_ready,
    check_writable,
)

TARGET = "iqn.2024-01.org.sanstack:disk"
A = Nexus("iqn.2024-01.org.example:a", 1, TARGET, 1)
B = Nexus("iqn.2024-01.org.example:b", 2, TARGET, 1)

TUR = [Opcode.TEST_UNIT_READY, 0, 0, 0, 0, 0]
STOP = [Opcode.START_STOP_UNIT, 0, 0, 0, 0x00, 0]
START = [Opcode.START_STOP_UNIT, 0, 0, 0, 0x01, 0]
EJECT = [Opcode.START_STOP_UNIT, 0, 0, 0, 0x02, 0]
LOAD = [Opcode.START_STOP_UNIT, 0, 0, 0, 0x03, 0]
PREVENT = [Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 1, 0]
ALLOW = [Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 0, 0]
RESERVE6 = [Opcode.RESERVE_6, 0, 0, 0, 0, 0]
RELEASE6 = [Opcode.RELEASE_6, 0, 0, 0, 0, 0]
RESERVE10 = [Opcode.RESERVE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]
RELEASE10 = [Opcode.RELEASE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]
MODE_SENSE = [Opcode.MODE_SENSE_6, 0, 0x3F, 0, 255, 0]
INQUIRY = [Opcode.INQUIRY, 0, 0, 0, 255, 0]
REQUEST_SENSE = [Opcode.REQUEST_SENSE, 0, 0, 0, 252, 0]
REPORT_LUNS = [Opcode.REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]


class CountingDevice(MemoryDevice):
    def __init__(self) -> None:
        super().__init__(1000, 512, identity=DeviceIdentity.from_seed("spc-tests"))
        self.flushes = 0

    async def flush(self) -> None:
        self.flushes += 1
        await super().flush()


def make_lu(luns: Sequence[int] = (0,)) -> LogicalUnit:
    target = TargetInfo(TARGET, lambda: list(luns), lambda: [A, B])
    return LogicalUnit(0, CountingDevice(), target)


def flushes(lu: LogicalUnit) -> int:
    assert isinstance(lu.device, CountingDevice)
    return lu.device.flushes


def run(lu: LogicalUnit, cdb: Sequence[int] | bytes, nexus: Nexus = A) -> CommandResult:
    return asyncio.run(lu.execute(Command(nexus, 0, bytes(cdb), data_in_length=0xFFFF)))


def drain_unit_attentions(lu: LogicalUnit) -> None:
    for nexus in (A, B):
        while lu.pop_unit_attention(nexus) is not None:
            pass


def spc_only(lu: LogicalUnit) -> LogicalUnit:
    """Restrict the table to this module's commands so RSOC vectors do not track sbc.py."""
    lu.commands = {(s.opcode, s.service_action): s for s in spc.COMMANDS}
    return lu


def assert_check(
    result: CommandResult, key: SenseKey, asc: ASC, pointer: str | None = None
) -> None:
    assert result.status == Status.CHECK_CONDITION
    assert parse_sense(result.sense) == (key, asc.asc, asc.ascq)
    if pointer is not None:
        assert result.sense[15:18].hex() == pointer


def assert_invalid_field(result: CommandResult, pointer: str) -> None:
    assert_check(result, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_CDB, pointer)


# -- TEST UNIT READY and readiness -----------------------------------------------------------


def test_test_unit_ready_good_stopped_and_unhealthy() -> None:
    lu = make_lu()
    assert run(lu, TUR).status == Status.GOOD
    assert run(lu, STOP).status == Status.GOOD
    not_ready = ASC.LOGICAL_UNIT_NOT_READY_INITIALIZING_COMMAND_REQUIRED
    assert_check(run(lu, TUR), SenseKey.NOT_READY, not_ready)
    assert run(lu, START).status == Status.GOOD
    assert run(lu, TUR).status == Status.GOOD
    asyncio.run(lu.device.close())
    manual = ASC.LOGICAL_UNIT_NOT_READY_MANUAL_INTERVENTION_REQUIRED
    assert_check(run(lu, TUR), SenseKey.NOT_READY, manual)


def test_check_ready_and_check_writable() -> None:
    lu = make_lu()
    check_ready(lu)
    check_writable(lu)
    lu.stopped = True
    with pytest.raises(CheckCondition) as stopped:
        check_ready(lu)
    assert stopped.value.asc == ASC.LOGICAL_UNIT_NOT_READY_INITIALIZING_COMMAND_REQUIRED
    lu.device.read_only = True
    with pytest.raises(CheckCondition) as protected:
        check_writable(lu)
    assert (protected.value.key, protected.value.asc) == (
        SenseKey.DATA_PROTECT,
        ASC.WRITE_PROTECTED,
    )


def test_unit_attention_blocks_tur_once_but_not_inquiry() -> None:
    lu = make_lu()
    lu.establish_unit_attention(ASC.POWER_ON_OCCURRED)
    assert run(lu, INQUIRY).status == Status.GOOD
    assert run(lu, REPORT_LUNS).status == Status.GOOD
    assert_check(run(lu, TUR), SenseKey.UNIT_ATTENTION, ASC.POWER_ON_OCCURRED)
    assert run(lu, TUR).status == Status.GOOD
    assert_check(run(lu, TUR, B), SenseKey.UNIT_ATTENTION, ASC.POWER_ON_OCCURRED)


# -- REQUEST SENSE -----------------------------------------------------------------------------


def test_request_sense_cdb_both_ways() -> None:
    raw = bytes.fromhex("03 01 00 00 fc 00")
    assert RequestSenseCdb.decode(raw) == RequestSenseCdb(desc=True, allocation_length=252)
    assert RequestSenseCdb(True, 252).encode() == raw


def test_request_sense_reports_and_clears_unit_attentions_in_order() -> None:
    lu = make_lu()
    lu.establish_unit_attention(ASC.POWER_ON_OCCURRED, nexuses=[A])
    lu.establish_unit_attention(ASC.MODE_PARAMETERS_CHANGED, nexuses=[A])
    first = run(lu, REQUEST_SENSE)
    assert first.status == Status.GOOD
    assert bytes(first.data) == bytes.fromhex(
        "70 00 06 00 00 00 00 0a 00 00 00 00 29 01 00 00 00 00"
    )
    second = run(lu, REQUEST_SENSE)
    assert parse_sense(bytes(second.data)) == (SenseKey.UNIT_ATTENTION, 0x2A, 0x01)
    third = run(lu, REQUEST_SENSE)
    assert bytes(third.data) == bytes.fromhex("70 00 00 00 00 00 00 0a" + "00" * 10)
    assert not lu.has_unit_attention(A)


def test_request_sense_descriptor_format_and_truncation() -> None:
    lu = make_lu()
    lu.establish_unit_attention(ASC.REPORTED_LUNS_DATA_HAS_CHANGED, nexuses=[A])
    desc = run(lu, [Opcode.REQUEST_SENSE, 1, 0, 0, 252, 0])
    assert bytes(desc.data) == bytes.fromhex("72 06 3f 0e 00 00 00 00")
    short = run(lu, [Opcode.REQUEST_SENSE, 0, 0, 0, 8, 0])
    assert bytes(short.data) == bytes.fromhex("70 00 00 00 00 00 00 0a")


def test_request_sense_reports_not_ready_with_good_status() -> None:
    lu = make_lu()
    lu.stopped = True
    result = run(lu, REQUEST_SENSE)
    assert result.status == Status.GOOD
    assert parse_sense(bytes(result.data)) == (SenseKey.NOT_READY, 0x04, 0x02)


def test_descriptor_sense_vectors() -> None:
    assert descriptor_sense(SenseKey.UNIT_ATTENTION, ASC.POWER_ON_OCCURRED) == bytes.fromhex(
        "72 06 29 01 00 00 00 00"
    )
    fixed = fixed_sense(
        SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_CDB, sense_key_specific=field_pointer(2)
    )
    assert to_descriptor_format(fixed) == bytes.fromhex(
        "72 05 24 00 00 00 00 08 02 06 00 00 c0 00 02 00"
    )
    miscompare = fixed_sense(
        SenseKey.MISCOMPARE, ASC.MISCOMPARE_DURING_VERIFY_OPERATION, information=5
    )
    assert to_descriptor_format(miscompare) == bytes.fromhex(
        "72 0e 1d 00 00 00 00 0c 00 0a 80 00 00 00 00 00 00 00 00 05"
    )
    deferred = fixed_sense(SenseKey.MEDIUM_ERROR, ASC.WRITE_ERROR, deferred=True)
    assert to_descriptor_format(deferred) == bytes.fromhex("73 03 0c 00 00 00 00 00")
    already = bytes.fromhex("72 06 29 01 00 00 00 00")
    assert to_descriptor_format(already) == already
    assert parse_sense(to_descriptor_format(fixed)) == parse_sense(fixed)


# -- REPORT LUNS -----------------------------------------------------------------------------


def test_report_luns_cdb_both_ways() -> None:
    raw = bytes.fromhex("a0 00 02 00 00 00 00 00 10 00 00 00")
    assert ReportLunsCdb.decode(raw) == ReportLunsCdb(select_report=2, allocation_length=0x1000)
    assert ReportLunsCdb(2, 0x1000).encode() == raw


@pytest.mark.parametrize(
    ("lun", "raw"),
    [
        (0, "0000000000000000"),
        (1, "0001000000000000"),
        (255, "00ff000000000000"),
        (256, "4100000000000000"),
        (1023, "43ff000000000000"),
        (16383, "7fff000000000000"),
    ],
)
def test_lun_encoding_both_ways(lun: int, raw: str) -> None:
    assert lun_field_bytes(lun) == bytes.fromhex(raw)
    assert decode_lun(int(raw, 16)) == lun


def test_lun_encoding_limits() -> None:
    with pytest.raises(ValueError, match="16384"):
        encode_lun(16384)
    assert decode_lun(0x8000_0000_0000_0000) >= UNSUPPORTED_LUN_FLAG  # logical unit method
    assert decode_lun(0x4005_0000_0000_0000) == 5  # flat space may code small LUNs


def test_report_luns_with_1024_luns() -> None:
    lu = make_lu(luns=range(1023, -1, -1))
    result = run(lu, [Opcode.REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 0x21, 0x00, 0, 0])
    data = bytes(result.data)
    assert data[:8] == bytes.fromhex("00 00 20 00 00 00 00 00")
    assert len(data) == 8 + 1024 * 8
    entries = [data[8 + 8 * i : 16 + 8 * i] for i in range(1024)]
    assert entries[0] == bytes(8)
    assert entries[255] == bytes.fromhex("00ff000000000000")
    assert entries[256] == bytes.fromhex("4100000000000000")
    assert entries[1023] == bytes.fromhex("43ff000000000000")
    assert [decode_lun(int.from_bytes(e, "big")) for e in entries] == list(range(1024))


def test_report_luns_truncates_but_reports_the_full_length() -> None:
    lu = make_lu(luns=range(4))
    data = bytes(run(lu, [Opcode.REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0]).data)
    assert data == bytes.fromhex("00 00 00 20 00 00 00 00 00 00 00 00 00 00 00 00")


def test_report_luns_select_report_and_allocation_length() -> None:
    lu = make_lu(luns=[0, 3])
    everything = bytes(run(lu, [0xA0, 0, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0]).data)
    assert everything == bytes.fromhex("00 00 00 10 00 00 00 00") + bytes.fromhex(
        "0000000000000000 0003000000000000"
    )
    well_known = bytes(run(lu, [0xA0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0]).data)
    assert well_known == bytes(8)
    assert_invalid_field(run(lu, [0xA0, 0, 0x10, 0, 0, 0, 0, 0, 1, 0, 0, 0]), "c00002")
    assert_invalid_field(run(lu, [0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0]), "c00006")


def test_report_luns_clears_only_reported_luns_data_has_changed() -> None:
    lu = make_lu()
    lu.establish_unit_attention(ASC.REPORTED_LUNS_DATA_HAS_CHANGED)
    lu.establish_unit_attention(ASC.POWER_ON_OCCURRED)
    assert run(lu, REPORT_LUNS).status == Status.GOOD
    assert_check(run(lu, TUR), SenseKey.UNIT_ATTENTION, ASC.POWER_ON_OCCURRED)
    assert run(lu, TUR).status == Status.GOOD
    assert_check(run(lu, TUR, B), SenseKey.UNIT_ATTENTION, ASC.REPORTED_LUNS_DATA_HAS_CHANGED)


# -- START STOP UNIT and PREVENT ALLOW MEDIUM REMOVAL ------------------------------------------


def test_start_stop_unit_cdb_both_ways() -> None:
    raw = bytes.fromhex("1b 01 00 03 36 00")
    decoded = StartStopUnitCdb(
        immed=True,
        power_condition_modifier=3,
        power_condition=3,
        no_flush=True,
        loej=True,
        start=False,
    )
    assert StartStopUnitCdb.decode(raw) == decoded
    assert decoded.encode() == raw


def test_stop_flushes_unless_no_flush() -> None:
    lu = make_lu()
    assert run(lu, STOP).status == Status.GOOD
    assert lu.stopped
    assert flushes(lu) == 1
    assert run(lu, START).status == Status.GOOD
    assert run(lu, [Opcode.START_STOP_UNIT, 1, 0, 0, 0x04, 0]).status == Status.GOOD
    assert flushes(lu) == 1
    assert run(lu, START).status == Status.GOOD
    assert not lu.stopped


def test_power_conditions_change_nothing_and_reserved_ones_fail() -> None:
    lu = make_lu()
    for condition in (0x1, 0x2, 0x3, 0x7, 0xA, 0xB):
        cdb = [Opcode.START_STOP_UNIT, 1, 0, 0, (condition << 4) | 0x02, 0]
        assert run(lu, cdb).status == Status.GOOD
        assert not lu.stopped
    assert_invalid_field(run(lu, [Opcode.START_STOP_UNIT, 0, 0, 0, 0x40, 0]), "cf0004")


def test_prevent_allow_cdb_both_ways() -> None:
    raw = bytes.fromhex("1e 00 00 00 01 00")
    assert PreventAllowCdb.decode(raw) == PreventAllowCdb(prevent=1)
    assert PreventAllowCdb(1).encode() == raw


def test_prevented_removal_is_seen_from_every_nexus() -> None:
    lu = make_lu()
    assert run(lu, PREVENT).status == Status.GOOD
    prevented = ASC.MEDIUM_REMOVAL_PREVENTED
    assert_check(run(lu, EJECT), SenseKey.ILLEGAL_REQUEST, prevented)
    assert_check(run(lu, EJECT, B), SenseKey.ILLEGAL_REQUEST, prevented)
    assert_check(run(lu, LOAD), SenseKey.ILLEGAL_REQUEST, prevented)
    assert run(lu, TUR).status == Status.GOOD
    assert run(lu, ALLOW, B).status == Status.GOOD  # B never prevented: A's hold remains
    assert_check(run(lu, EJECT), SenseKey.ILLEGAL_REQUEST, prevented)
    assert run(lu, ALLOW).status == Status.GOOD
    assert run(lu, EJECT).status == Status.GOOD
    assert lu.stopped
    assert run(lu, LOAD).status == Status.GOOD
    assert not lu.stopped


def test_prevent_survives_until_reset_or_nexus_loss() -> None:
    lu = make_lu()
    assert run(lu, PREVENT, B).status == Status.GOOD
    lu.nexus_lost(B)
    assert run(lu, EJECT).status == Status.GOOD
    assert run(lu, PREVENT).status == Status.GOOD
    lu.logical_unit_reset(A)
    drain_unit_attentions(lu)
    assert run(lu, LOAD).status == Status.GOOD


def test_obsolete_prevent_values_are_invalid() -> None:
    lu = make_lu()
    assert_invalid_field(run(lu, [Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 2, 0]), "c90004")


# -- RESERVE / RELEASE -----------------------------------------------------------------------


def test_reserve_release_cdbs_both_ways() -> None:
    for opcode, raw in (
        (Opcode.RESERVE_6, "16 00 00 00 00 00"),
        (Opcode.RELEASE_6, "17 00 00 00 00 00"),
        (Opcode.RESERVE_10, "56 00 00 00 00 00 00 00 00 00"),
        (Opcode.RELEASE_10, "57 00 00 00 00 00 00 00 00 00"),
    ):
        assert ReserveReleaseCdb.decode(bytes.fromhex(raw)) == ReserveReleaseCdb(opcode)
        assert ReserveReleaseCdb(opcode).encode() == bytes.fromhex(raw)
    assert ReserveReleaseCdb(Opcode.RESERVE_10, third_party=True).encode()[1] == 0x10


def test_reserve6_across_two_initiators() -> None:
    """libiscsi Reserve6.2Initiators, command for command."""
    lu = make_lu()
    assert run(lu, RESERVE6, A).status == Status.GOOD
    assert run(lu, RESERVE6, A).status == Status.GOOD
    assert run(lu, RESERVE6, B).status == Status.RESERVATION_CONFLICT
    assert run(lu, RELEASE6, B).status == Status.GOOD  # a no-op for a non-holder
    assert lu.scsi2_reservation == A
    assert run(lu, MODE_SENSE, A).status == Status.GOOD
    assert run(lu, MODE_SENSE, B).status == Status.RESERVATION_CONFLICT
    assert run(lu, RESERVE6, B).status == Status.RESERVATION_CONFLICT
    assert run(lu, RELEASE6, A).status == Status.GOOD
    assert run(lu, RESERVE6, B).status == Status.GOOD
    assert run(lu, RELEASE6, B).status == Status.GOOD
    assert lu.scsi2_reservation is None


def test_what_another_nexus_may_send_under_a_reservation() -> None:
    lu = make_lu()
    assert run(lu, RESERVE10, A).status == Status.GOOD
    for allowed in (INQUIRY, REPORT_LUNS, REQUEST_SENSE, RELEASE6, RELEASE10):
        assert run(lu, allowed, B).status == Status.GOOD, bytes(allowed).hex()
    rsoc = ReportSupportedOpcodesCdb(False, 0, 0, 0, 4096).encode()
    assert run(lu, rsoc, B).status == Status.GOOD
    for refused in (TUR, MODE_SENSE, RESERVE6, PREVENT, START):
        assert run(lu, refused, B).status == Status.RESERVATION_CONFLICT, bytes(refused).hex()
    assert lu.scsi2_reservation == A
    assert run(lu, RELEASE10, A).status == Status.GOOD
    assert lu.scsi2_reservation is None


def test_reservation_goes_with_reset_and_nexus_loss() -> None:
    lu = make_lu()
    assert run(lu, RESERVE6, A).status == Status.GOOD
    lu.logical_unit_reset(B)
    drain_unit_attentions(lu)
    assert run(lu, RESERVE6, B).status == Status.GOOD
    lu.nexus_lost(B)
    assert run(lu, RESERVE6, A).status == Status.GOOD


@pytest.mark.parametrize(
    ("cdb", "pointer"),
    [
        ([Opcode.RESERVE_10, 0x10, 0, 0, 0, 0, 0, 0, 0, 0], "cc0001"),  # 3rdPty
        ([Opcode.RESERVE_10, 0x02, 0, 0, 0, 0, 0, 0, 0, 0], "c90001"),  # LongID
        ([Opcode.RESERVE_6, 0x01, 0, 0, 0, 0], "c80001"),  # extent
        ([Opcode.RESERVE_6, 0x10, 0, 0, 0, 0], "cc0001"),
        ([Opcode.RELEASE_10, 0x10, 0, 0, 0, 0, 0, 0, 0, 0], "cc0001"),
    ],
)
def test_third_party_long_id_and_extents_are_refused(cdb: list[int], pointer: str) -> None:
    lu = make_lu()
    assert_invalid_field(run(lu, cdb), pointer)
    assert lu.scsi2_reservation is None


# -- REPORT SUPPORTED OPERATION CODES ----------------------------------------------------------


def rsoc(
    lu: LogicalUnit, options: int, opcode: int = 0, sa: int = 0, *, rctd: bool = False
) -> CommandResult:
    return run(lu, ReportSupportedOpcodesCdb(rctd, options, opcode, sa, 0xFFFF).encode())


def test_rsoc_cdb_both_ways() -> None:
    raw = bytes.fromhex("a3 0c 82 a3 00 0c 00 00 10 00 00 00")
    decoded = ReportSupportedOpcodesCdb(True, 2, 0xA3, 0x0C, 0x1000)
    assert ReportSupportedOpcodesCdb.decode(raw) == decoded
    assert decoded.encode() == raw


def descriptor(opcode: int, cdb_length: int, sa: int | None = None) -> str:
    flags = "00" if sa is None else "01"
    return f"{opcode:02x} 00 {sa or 0:04x} 00 {flags} {cdb_length:04x}"


SPC_DESCRIPTORS = [
    descriptor(0x00, 6),
    descriptor(0x03, 6),
    descriptor(0x12, 6),
    descriptor(0x15, 6),
    descriptor(0x16, 6),
    descriptor(0x17, 6),
    descriptor(0x1A, 6),
    descriptor(0x1B, 6),
    descriptor(0x1E, 6),
    descriptor(0x55, 10),
    descriptor(0x56, 10),
    descriptor(0x57, 10),
    descriptor(0x5A, 10),
    descriptor(0xA0, 12),
    descriptor(0xA3, 12, 0x0C),
    descriptor(0xA3, 12, 0x0D),
]


def test_rsoc_all_commands_vector() -> None:
    data = bytes(rsoc(spc_only(make_lu()), 0).data)
    assert data == bytes.fromhex("00 00 00 80" + "".join(SPC_DESCRIPTORS))


def test_rsoc_all_commands_with_timeouts_vector() -> None:
    data = bytes(rsoc(spc_only(make_lu()), 0, rctd=True).data)
    timeouts = "00 0a 00 00 00 00 00 00 00 00 00 00"
    with_ctdp = [d[:-7] + f"{int(d[-7:-5], 16) | 0x02:02x}" + d[-5:] for d in SPC_DESCRIPTORS]
    assert data == bytes.fromhex("00 00 01 40" + "".join(d + timeouts for d in with_ctdp))


def test_rsoc_all_commands_truncates_to_allocation_length() -> None:
    lu = spc_only(make_lu())
    data = bytes(run(lu, ReportSupportedOpcodesCdb(False, 0, 0, 0, 20).encode()).data)
    assert data == bytes.fromhex("00 00 00 80" + "".join(SPC_DESCRIPTORS[:2]))


def test_rsoc_one_command_vectors() -> None:
    lu = spc_only(make_lu())
    assert bytes(rsoc(lu, 1, 0x12).data) == bytes.fromhex("00 03 00 06 12 03 ff ff ff 00")
    assert bytes(rsoc(lu, 1, 0x12, rctd=True).data) == bytes.fromhex(
        "00 83 00 06 12 03 ff ff ff 00 00 0a 00 00 00 00 00 00 00 00 00 00"
    )
    assert bytes(rsoc(lu, 2, 0xA3, 0x0C).data) == bytes.fromhex(
        "00 03 00 0c a3 0c 87 ff ff ff ff ff ff ff 00 00"
    )
    assert bytes(rsoc(lu, 3, 0xA3, 0x0D).data) == bytes.fromhex(
        "00 03 00 0c a3 0d 80 00 00 00 ff ff ff ff 00 00"
    )
    assert bytes(rsoc(lu, 3, 0x1B, 0x55).data) == bytes.fromhex("00 03 00 06 1b 01 00 00 f7 00")
    assert bytes(rsoc(lu, 1, 0xC0).data) == bytes.fromhex("00 01 00 00")
    assert bytes(rsoc(lu, 2, 0xA3, 0x1F).data) == bytes.fromhex("00 01 00 00")


def test_rsoc_service_action_mismatches_are_invalid_field_in_cdb() -> None:
    lu = spc_only(make_lu())
    assert_invalid_field(rsoc(lu, 1, 0xA3, 0x0C), "c00003")  # has SAs: option 1 refused
    assert_invalid_field(rsoc(lu, 2, 0x12, 0), "c00003")  # has none: option 2 refused
    assert_invalid_field(rsoc(lu, 4), "ca0002")  # reserved reporting option


def test_rsoc_one_command_agrees_with_the_whole_table() -> None:
    """libiscsi ReportSupportedOpcodes.OneCommand and .SERVACTV over the real (SPC+SBC) table."""
    lu = make_lu()
    data = bytes(rsoc(lu, 0).data)
    length = int.from_bytes(data[:4], "big")
    assert length == len(data) - 4
    for offset in range(4, len(data), 8):
        opcode, sa, flags = (
            data[offset],
            int.from_bytes(data[offset + 2 : offset + 4]),
            data[offset + 5],
        )
        cdb_length = int.from_bytes(data[offset + 6 : offset + 8], "big")
        servactv = bool(flags & 0x01)
        assert servactv or sa == 0
        assert_invalid_field(rsoc(lu, 1 if servactv else 2, opcode, sa), "c00003")
        one = bytes(rsoc(lu, 2 if servactv else 1, opcode, sa).data)
        assert one[1] & 0x07 == 0b011
        assert int.from_bytes(one[2:4], "big") == cdb_length == len(one) - 4
        assert one[4] == opcode
        if servactv:
            assert one[5] & 0x1F == sa


def test_every_usage_bitmap_starts_with_its_opcode() -> None:
    for (opcode, sa), spec in make_lu().commands.items():
        assert spec.usage_data[0] == opcode, spec.name
        assert spec.cdb_length in (6, 10, 12, 16), spec.name
        if sa is not None:
            assert spec.usage_data[1] & 0x1F == sa, spec.name


def test_spc_table_flags() -> None:
    by_name = {spec.name: spec for spec in spc.COMMANDS}
    with_ua = {name for name, spec in by_name.items() if spec.allowed_with_unit_attention}
    assert with_ua == {"INQUIRY", "REPORT LUNS", "REQUEST SENSE"}
    assert not any(spec.media_access for spec in spc.COMMANDS)
    assert by_name["MODE SELECT(6)"].direction == DataDirection.OUT
    assert by_name["TEST UNIT READY"].direction == DataDirection.NONE
    assert not by_name["RESERVE(6)"].allowed_with_scsi2_reservation
    assert by_name["RELEASE(10)"].allowed_with_scsi2_reservation


# -- REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS ------------------------------------------------


def test_rstmf_cdb_both_ways() -> None:
    raw = bytes.fromhex("a3 0d 80 00 00 00 00 00 00 10 00 00")
    assert ReportSupportedTmfCdb.decode(raw) == ReportSupportedTmfCdb(
        repd=True, allocation_length=16
    )
    assert ReportSupportedTmfCdb(True, 16).encode() == raw


def test_rstmf_vectors() -> None:
    lu = make_lu()
    basic = run(lu, ReportSupportedTmfCdb(False, 4).encode())
    # ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET, TARGET RESET.
    assert bytes(basic.data) == bytes.fromhex("da 00 00 00")
    extended = run(lu, ReportSupportedTmfCdb(True, 255).encode())
    assert bytes(extended.data) == bytes.fromhex("da 00 00 0c") + bytes(12)
    assert bytes(run(lu, ReportSupportedTmfCdb(True, 2).encode()).data) == bytes.fromhex("da 00")


def test_unknown_maintenance_in_service_action_points_at_it() -> None:
    lu = make_lu()
    result = run(lu, [Opcode.MAINTENANCE_IN, 0x1E, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
    assert_invalid_field(result, "cc0001")


def test_commands_spec_table_has_no_duplicates_with_sbc() -> None:
    table: dict[tuple[int, int | None], CommandSpec] = make_lu().commands
    keys = [(s.opcode, s.service_action) for s in spc.COMMANDS]
    assert len(set(keys)) == len(keys)
    assert all(table[key] in spc.COMMANDS for key in keys)
    assert (Opcode.MAINTENANCE_IN, MaintenanceIn.REPORT_SUPPORTED_OPERATION_CODES) in table
