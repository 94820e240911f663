"""REPORT and SET TARGET PORT GROUPS through ``LogicalUnit.execute``: the command table
rows, RTPG replies and truncation, STPG state changes and the unit attentions they raise,
every refusal, and the groups the logical units of a target share."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from tests.support.alua_setup import (
    ANO,
    AO,
    GROUP_1,
    GROUP_2_ANO,
    GROUP_2_STANDBY,
    RTPG,
    RTPG_EXTENDED,
    SB,
    STPG_8,
    TABLE,
    TARGET,
    A,
    B,
    C,
    two_groups,
)
from tests.support.wire import hx

from sanstack.block.device import DeviceIdentity
from sanstack.block.memory import MemoryDevice
from sanstack.scsi.alua import (
    COMMANDS,
    ALUAGroups,
    TargetPortGroup,
    announce_state_change,
    attach_groups,
    groups_of,
    report_target_port_groups,
)
from sanstack.scsi.alua_codec import (
    ALUAStatus,
    ReportTargetPortGroupsCdb,
    SetTargetPortGroupsCdb,
    SupportedStates,
)
from sanstack.scsi.codes import ASC, MaintenanceIn, MaintenanceOut, SenseKey, Status
from sanstack.scsi.command import Command, CommandResult, DataDirection, Nexus
from sanstack.scsi.inquiry import Tpgs
from sanstack.scsi.logical_unit import LogicalUnit, TargetInfo
from sanstack.scsi.sense import parse_sense


def assert_check(
    result: CommandResult, key: SenseKey, asc: ASC, pointer: str | None = None
) -> None:
    assert result.status == Status.CHECK_CONDITION
    assert parse_sense(result.sense) == (key, asc.asc, asc.ascq)
    if pointer is not None:
        assert result.sense[15:18].hex() == pointer


def make_lu(groups: ALUAGroups | None = None) -> LogicalUnit:
    device = MemoryDevice(1000, 512, identity=DeviceIdentity.from_seed("alua-tests"))
    lu = LogicalUnit(0, device, TargetInfo(TARGET, lambda: [0], lambda: [A, B, C]))
    attach_groups(lu, groups if groups is not None else two_groups())
    return lu


def run(
    lu: LogicalUnit, cdb: str | bytes, nexus: Nexus = A, data_out: bytes = b""
) -> CommandResult:
    raw = hx(cdb) if isinstance(cdb, str) else cdb
    command = Command(nexus, 0, raw, data_out=data_out, data_in_length=0xFFFF)
    return asyncio.run(lu.execute(command))


def stpg(lu: LogicalUnit, parameters: str, nexus: Nexus = A) -> CommandResult:
    data = hx(parameters)
    return run(lu, SetTargetPortGroupsCdb(len(data)).encode(), nexus, data)


def test_commands_table_rows() -> None:
    rtpg, set_tpg = COMMANDS
    assert rtpg.usage_data == hx("a3ea 00000000 ffffffff 00 00")
    assert set_tpg.usage_data == hx("a40a 00000000 ffffffff 00 00")
    assert (rtpg.cdb_length, set_tpg.cdb_length) == (12, 12)
    assert (rtpg.direction, set_tpg.direction) == (DataDirection.IN, DataDirection.OUT)
    assert (rtpg.service_action, set_tpg.service_action) == (
        MaintenanceIn.REPORT_TARGET_PORT_GROUPS,
        MaintenanceOut.SET_TARGET_PORT_GROUPS,
    )
    assert not rtpg.allowed_with_unit_attention
    assert not set_tpg.allowed_with_unit_attention
    assert rtpg.allowed_with_scsi2_reservation
    assert not set_tpg.allowed_with_scsi2_reservation
    assert not rtpg.media_access
    assert not set_tpg.media_access
    # Served by every logical unit's command table.
    assert {(s.opcode, s.service_action) for s in COMMANDS} <= set(TABLE)


def test_rtpg_of_an_active_optimized_and_a_non_optimized_group() -> None:
    result = run(make_lu(), RTPG)
    assert result.status == Status.GOOD
    assert bytes(result.data) == hx("00000018" + GROUP_1 + GROUP_2_ANO)


def test_rtpg_extended_of_an_active_optimized_and_a_standby_group() -> None:
    groups = ALUAGroups(
        [TargetPortGroup(1, (1,)), TargetPortGroup(2, (2, 7), state=SB, preferred=True)],
        implicit_transition_time=30,
    )
    groups.group(2).status = ALUAStatus.CHANGED_BY_STPG
    result = run(make_lu(groups), RTPG_EXTENDED, C)
    expected = "00000020 10 1e 0000" + GROUP_1 + GROUP_2_STANDBY.replace(" 5a ", " 00 ")
    assert bytes(result.data) == hx(expected)


@pytest.mark.parametrize("allocation", [0, 4, 8, 12, 16, 20, 27, 28, 64])
def test_rtpg_cuts_at_any_allocation_length(allocation: int) -> None:
    full = hx("00000018" + GROUP_1 + GROUP_2_ANO)
    result = run(make_lu(), ReportTargetPortGroupsCdb(allocation).encode())
    assert result.status == Status.GOOD
    assert bytes(result.data) == full[:allocation]


def test_rtpg_with_a_reserved_data_format_is_invalid_field_in_cdb() -> None:
    result = run(make_lu(), "a36a00000000000010000000")
    assert_check(result, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_CDB, "cf0001")


def test_rtpg_reports_a_pending_unit_attention_first() -> None:
    lu = make_lu()
    lu.establish_unit_attention(ASC.ASYMMETRIC_ACCESS_STATE_CHANGED)
    assert_check(run(lu, RTPG), SenseKey.UNIT_ATTENTION, ASC.ASYMMETRIC_ACCESS_STATE_CHANGED)
    assert run(lu, RTPG).status == Status.GOOD


def test_rtpg_runs_and_stpg_conflicts_under_another_nexus_reservation() -> None:
    lu = make_lu()
    lu.scsi2_reservation = B
    assert run(lu, RTPG).status == Status.GOOD
    result = stpg(lu, "00000000 02 00 0002")
    assert result.status == Status.RESERVATION_CONFLICT
    assert groups_of(lu).group(2).state == ANO


def test_stpg_changes_state_and_tells_every_other_nexus() -> None:
    lu = make_lu()
    result = stpg(lu, "00000000 02 00 0002", C)
    assert result.status == Status.GOOD
    assert result.data_out_used == 8
    group = groups_of(lu).group(2)
    assert (group.state, group.status) == (SB, ALUAStatus.CHANGED_BY_STPG)
    assert lu.pop_unit_attention(C) is None
    # A and B are on the other port: its state did not change, they still must look again.
    for nexus in (A, B):
        assert lu.pop_unit_attention(nexus) == ASC.ASYMMETRIC_ACCESS_STATE_CHANGED
    result = run(lu, RTPG)
    assert bytes(result.data)[16:20] == hx("02 8f 0002")
    assert bytes(result.data)[21] == ALUAStatus.CHANGED_BY_STPG


def test_stpg_like_linux_scsi_dh_alua() -> None:
    lu = make_lu(two_groups(SB))
    result = run(lu, STPG_8, C, hx("00000000 00 00 0002"))
    assert result.status == Status.GOOD
    assert groups_of(lu).state_of_port(2) == AO


def test_stpg_to_the_current_state_raises_no_unit_attention() -> None:
    lu = make_lu()
    assert stpg(lu, "00000000 00 00 0001 01 00 0002").status == Status.GOOD
    assert not any(lu.has_unit_attention(n) for n in (A, B, C))
    assert groups_of(lu).group(2).status == ALUAStatus.NO_STATUS


def test_stpg_hands_the_announcement_to_on_change() -> None:
    seen: list[Nexus | None] = []
    groups = two_groups()
    groups.on_change = seen.append
    lu = make_lu(groups)
    assert stpg(lu, "00000000 03 00 0002", B).status == Status.GOOD
    assert seen == [B]
    assert not any(lu.has_unit_attention(n) for n in (A, B, C))


def test_stpg_with_zero_length_changes_nothing() -> None:
    lu = make_lu()
    result = run(lu, SetTargetPortGroupsCdb(0).encode())
    assert (result.status, result.data_out_used) == (Status.GOOD, 0)
    assert groups_of(lu).group(2).state == ANO


def test_stpg_with_less_data_than_its_length_is_a_length_error() -> None:
    result = run(make_lu(), SetTargetPortGroupsCdb(8).encode(), A, hx("00000000 0200"))
    assert_check(result, SenseKey.ILLEGAL_REQUEST, ASC.PARAMETER_LIST_LENGTH_ERROR)


def test_stpg_truncating_a_descriptor_is_a_length_error() -> None:
    result = stpg(make_lu(), "00000000 02 00 00")
    assert_check(result, SenseKey.ILLEGAL_REQUEST, ASC.PARAMETER_LIST_LENGTH_ERROR)


@pytest.mark.parametrize(
    ("parameters", "pointer"),
    [
        # Transitioning and LBD are reserved codes in STPG.
        ("00000000 0f 00 0002", "8b0004"),
        ("00000000 04 00 0002", "8b0004"),
        # Offline is valid in STPG, but sanstack keeps no secondary port state.
        ("00000000 00 00 0001 0e 00 0002", "8b0008"),
        # No group 9: the pointer is at that descriptor's TARGET PORT GROUP field.
        ("00000000 02 00 0009", "800006"),
        ("00000000 00 00 0001 02 00 0009", "80000a"),
        # Group 2 named twice with two states: an invalid combination.
        ("00000000 02 00 0002 00 00 0001 03 00 0002", "8b000c"),
    ],
)
def test_stpg_refusals_change_nothing(parameters: str, pointer: str) -> None:
    lu = make_lu()
    result = stpg(lu, parameters)
    assert_check(result, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_PARAMETER_LIST, pointer)
    assert [g.state for g in groups_of(lu).groups] == [AO, ANO]
    assert not any(lu.has_unit_attention(n) for n in (A, B, C))


def test_stpg_of_a_state_the_group_does_not_support() -> None:
    active_only = SupportedStates.AO_SUP | SupportedStates.AN_SUP
    lu = make_lu(ALUAGroups.one_per_port((1, 2), supported_states=active_only))
    result = stpg(lu, "00000000 02 00 0002")
    assert_check(result, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_PARAMETER_LIST, "8b0004")


def test_stpg_naming_a_group_twice_with_one_state_is_fine() -> None:
    lu = make_lu()
    assert stpg(lu, "00000000 02 00 0002 02 00 0002").status == Status.GOOD
    assert groups_of(lu).group(2).state == SB


def test_stpg_without_explicit_support_is_not_served() -> None:
    groups = ALUAGroups.one_per_port((1, 2), tpgs=Tpgs.IMPLICIT)
    result = stpg(make_lu(groups), "00000000 02 00 0002")
    assert_check(result, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_COMMAND_OPERATION_CODE)
    assert groups.group(2).state == AO


def test_implicit_change_announced_to_every_nexus() -> None:
    lu = make_lu()
    groups = groups_of(lu)
    assert groups.set_state(1, SB, explicit=False) == [1]
    announce_state_change([lu])
    for nexus in (A, B, C):
        assert lu.pop_unit_attention(nexus) == ASC.ASYMMETRIC_ACCESS_STATE_CHANGED
    assert groups.group(1).status == ALUAStatus.CHANGED_IMPLICITLY


def test_groups_are_shared_by_the_target_luns() -> None:
    groups = two_groups()
    first, second = make_lu(groups), make_lu(groups)
    assert groups_of(first) is groups_of(second)
    assert stpg(first, "00000000 02 00 0001", C).status == Status.GOOD
    assert bytes(run(second, RTPG, C).data)[4] == SB


def test_every_lu_has_groups_by_default() -> None:
    device = MemoryDevice(8, 512, identity=DeviceIdentity.from_seed("alua-none"))
    lu = LogicalUnit(0, device, TargetInfo(TARGET, lambda: [0], lambda: [A]))
    assert [g.group_id for g in groups_of(lu).groups] == [1]
    direct = Command(A, 0, hx(RTPG), data_in_length=0xFFFF)
    assert asyncio.run(report_target_port_groups(lu, direct)).data


def test_default_groups_leave_pref_clear_for_libiscsi() -> None:
    # libiscsi's test_rtpg_simple reads byte 0 through little-endian bitfields: with PREF set it
    # would see ALUA state 8 and fail; sanstack's default layout never sets it.
    data = ALUAGroups.one_per_port((1, 2, 3)).report().encode()
    first_bytes: Sequence[int] = [data[4 + 12 * i] for i in range(3)]
    assert all(byte >> 4 == 0 for byte in first_bytes)
