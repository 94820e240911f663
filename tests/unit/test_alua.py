"""The ALUA model (``scsi/alua.py``, SPC-4 §5.16): target port groups and the state
changes they allow, and the state-by-category access table that decides which commands a
port in each state serves."""

from __future__ import annotations

import itertools

import pytest
from tests.support.alua_setup import (
    ANO,
    AO,
    GROUP_1,
    GROUP_2_ANO,
    LBD,
    OFF,
    SB,
    TABLE,
    TR,
    UA,
    two_groups,
)
from tests.support.wire import hx

from sanstack.scsi import alua
from sanstack.scsi.alua import (
    ACCESS_TABLE,
    COMMANDS,
    INACCESSIBLE_ASC,
    AccessCategory,
    ALUAGroups,
    TargetPortGroup,
    TransitionRefused,
    access_check,
    command_category,
)
from sanstack.scsi.alua_codec import ALUAState, ALUAStatus, ParameterDataFormat, SupportedStates
from sanstack.scsi.codes import ASC, MaintenanceIn, Opcode, SenseKey, ServiceActionIn16
from sanstack.scsi.command import Command, CommandResult, CommandSpec
from sanstack.scsi.inquiry import Tpgs
from sanstack.scsi.logical_unit import LogicalUnit
from sanstack.scsi.sense import parse_sense

ALL_STATES = tuple(ALUAState)

# -- the target port group model -----------------------------------------------------------


def test_one_per_port_mirrors_tpgt() -> None:
    groups = ALUAGroups.one_per_port((2, 1, 5), states={5: SB}, preferred=(1,))
    assert [g.group_id for g in groups.groups] == [1, 2, 5]
    assert [g.relative_target_port_ids for g in groups.groups] == [(1,), (2,), (5,)]
    assert [g.state for g in groups.groups] == [AO, AO, SB]
    assert [g.preferred for g in groups.groups] == [True, False, False]
    assert groups.group_id_of_port(5) == 5
    assert groups.state_of_port(5) == SB
    assert groups.tpgs == Tpgs.BOTH
    assert groups.explicit_supported


def test_ports_outside_every_group_are_active_optimized() -> None:
    groups = two_groups(SB)
    assert groups.group_of_port(9) is None
    assert groups.state_of_port(9) == AO
    with pytest.raises(KeyError):
        groups.group_id_of_port(9)


def test_a_group_spanning_ports_and_membership_changes() -> None:
    groups = ALUAGroups([TargetPortGroup(10, (1, 3), state=SB)])
    assert groups.state_of_port(3) == SB
    assert groups.group_id_of_port(1) == 10
    groups.add_group(TargetPortGroup(20, (2,)))
    assert groups.set_state(10, AO, explicit=False) == [1, 3]
    removed = groups.remove_group(10)
    assert removed.group_id == 10
    assert groups.group_of_port(1) is None
    assert [g.group_id for g in groups.groups] == [20]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TargetPortGroup(0x10000, (1,)), "outside"),
        (lambda: TargetPortGroup(1, (0,)), "1..65535"),
        (lambda: TargetPortGroup(1, (1, 1)), "twice"),
        (lambda: TargetPortGroup(1, tuple(range(1, 257))), "255"),
        (
            lambda: TargetPortGroup(1, (1,), supported_states=SupportedStates(0x9F)),
            "LBA map",
        ),
        (lambda: TargetPortGroup(1, (1,), state=OFF), "does not support"),
        (lambda: ALUAGroups([TargetPortGroup(1, (1,)), TargetPortGroup(1, (2,))]), "twice"),
        (lambda: ALUAGroups([TargetPortGroup(1, (1,)), TargetPortGroup(2, (1,))]), "already"),
        (lambda: ALUAGroups([], tpgs=Tpgs.NOT_SUPPORTED), "TPGS"),
        (lambda: ALUAGroups([], implicit_transition_time=256), "one byte"),
    ],
)
def test_invalid_groups_are_refused(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises(ValueError, match=message):
        build()


def test_set_state_returns_affected_ports_and_sets_status() -> None:
    groups = two_groups()
    assert groups.set_state(2, SB, explicit=False) == [2]
    assert groups.group(2).status == ALUAStatus.CHANGED_IMPLICITLY
    assert groups.set_state(2, AO, explicit=True) == [2]
    assert groups.group(2).status == ALUAStatus.CHANGED_BY_STPG
    assert groups.group(1).status == ALUAStatus.NO_STATUS


def test_set_state_to_the_current_state_changes_nothing() -> None:
    groups = two_groups()
    groups.set_state(2, SB, explicit=True)
    assert groups.set_state(2, SB, explicit=False) == []
    assert groups.group(2).status == ALUAStatus.CHANGED_BY_STPG


@pytest.mark.parametrize("state", [TR, OFF, LBD])
def test_stpg_may_not_request_device_server_states(state: ALUAState) -> None:
    groups = ALUAGroups.one_per_port((1,), supported_states=SupportedStates(0xCF))
    with pytest.raises(TransitionRefused) as refused:
        groups.set_state(1, state, explicit=True)
    assert not refused.value.unknown_group
    assert groups.group(1).state == AO


def test_implicit_transitions_follow_the_supported_states() -> None:
    groups = ALUAGroups.one_per_port((1,))
    assert groups.set_state(1, TR, explicit=False) == [1]
    with pytest.raises(TransitionRefused, match="OFFLINE"):
        groups.set_state(1, OFF, explicit=False)
    with pytest.raises(TransitionRefused, match="LOGICAL_BLOCK_DEPENDENT"):
        groups.set_state(1, LBD, explicit=False)
    with_offline = ALUAGroups.one_per_port((1,), supported_states=SupportedStates(0xCF))
    assert with_offline.set_state(1, OFF, explicit=False) == [1]


def test_a_state_the_group_does_not_advertise_is_refused() -> None:
    active_only = SupportedStates.AO_SUP | SupportedStates.AN_SUP
    groups = ALUAGroups.one_per_port((1,), supported_states=active_only)
    for explicit in (False, True):
        with pytest.raises(TransitionRefused, match="STANDBY"):
            groups.set_state(1, SB, explicit=explicit)
    assert groups.set_state(1, ANO, explicit=True) == [1]


def test_unknown_group_is_refused_as_such() -> None:
    with pytest.raises(TransitionRefused) as refused:
        two_groups().set_state(7, SB, explicit=True)
    assert refused.value.unknown_group


def test_set_preferred() -> None:
    groups = two_groups()
    assert groups.set_preferred(2, True) == [2]
    assert groups.set_preferred(2, True) == []
    assert groups.group(2).preferred
    with pytest.raises(KeyError):
        groups.set_preferred(3, True)


def test_report_matches_hand_written_vectors() -> None:
    groups = two_groups()
    assert groups.report().encode() == hx("00000018" + GROUP_1 + GROUP_2_ANO)
    groups.implicit_transition_time = 10
    extended = groups.report(ParameterDataFormat.EXTENDED).encode()
    assert extended == hx("0000001c 10 0a 0000" + GROUP_1 + GROUP_2_ANO)


# -- the access table (SPC-4 §5.16.2.4, §5.16.2.5) ------------------------------------------

# Written out again, independently of the module's grid, as the sets each state serves.
_EVERYTHING = frozenset(AccessCategory)
_STANDBY_SERVES = frozenset(
    {
        AccessCategory.INQUIRY_AND_REPORT_LUNS,
        AccessCategory.REQUEST_SENSE,
        AccessCategory.REPORT_TARGET_PORT_GROUPS,
        AccessCategory.SET_TARGET_PORT_GROUPS,
        AccessCategory.ECHO_BUFFER,
        AccessCategory.SUPPORT_REPORTS,
        AccessCategory.MODE_AND_LOG,
        AccessCategory.DIAGNOSTICS,
        AccessCategory.PERSISTENT_RESERVATIONS,
        AccessCategory.RESERVE_RELEASE,
        AccessCategory.READ_CAPACITY,
    }
)
_UNAVAILABLE_SERVES = frozenset(
    {
        AccessCategory.INQUIRY_AND_REPORT_LUNS,
        AccessCategory.REQUEST_SENSE,
        AccessCategory.REPORT_TARGET_PORT_GROUPS,
        AccessCategory.SET_TARGET_PORT_GROUPS,
        AccessCategory.ECHO_BUFFER,
        AccessCategory.SUPPORT_REPORTS,
    }
)
_TRANSITIONING_SERVES = frozenset(
    {
        AccessCategory.INQUIRY_AND_REPORT_LUNS,
        AccessCategory.REQUEST_SENSE,
        AccessCategory.REPORT_TARGET_PORT_GROUPS,
        AccessCategory.ECHO_BUFFER,
    }
)
SERVES: dict[ALUAState, tuple[frozenset[AccessCategory], ASC | None]] = {
    AO: (_EVERYTHING, None),
    ANO: (_EVERYTHING, None),
    SB: (_STANDBY_SERVES, ASC.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE),
    UA: (_UNAVAILABLE_SERVES, ASC.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_UNAVAILABLE_STATE),
    LBD: (
        _EVERYTHING - {AccessCategory.MEDIA_ACCESS},
        ASC.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_UNAVAILABLE_STATE,
    ),
    OFF: (frozenset(), ASC.LOGICAL_UNIT_NOT_READY_OFFLINE),
    TR: (_TRANSITIONING_SERVES, ASC.LOGICAL_UNIT_NOT_ACCESSIBLE_ASYMMETRIC_ACCESS_STATE_TRANSITION),
}


@pytest.mark.parametrize(
    ("state", "category"),
    list(itertools.product(ALL_STATES, AccessCategory)),
    ids=lambda v: v.name,
)
def test_access_table_cell(state: ALUAState, category: AccessCategory) -> None:
    serves, asc = SERVES[state]
    expected = None if category in serves else asc
    assert ACCESS_TABLE[(state, category)] == expected


def test_access_table_is_total() -> None:
    assert len(ACCESS_TABLE) == len(ALL_STATES) * len(AccessCategory)
    assert set(INACCESSIBLE_ASC) == set(ALL_STATES) - {AO, ANO}


def spec(opcode: int, service_action: int | None = None, *, media: bool = False) -> CommandSpec:
    async def handler(lu: LogicalUnit, cmd: Command) -> CommandResult:
        return CommandResult()

    return CommandSpec(
        opcode, "synthetic", handler, bytes(10), service_action=service_action, media_access=media
    )


@pytest.mark.parametrize(
    ("command", "cdb", "category"),
    [
        (TABLE[(Opcode.INQUIRY, None)], b"", AccessCategory.INQUIRY_AND_REPORT_LUNS),
        (TABLE[(Opcode.REPORT_LUNS, None)], b"", AccessCategory.INQUIRY_AND_REPORT_LUNS),
        (TABLE[(Opcode.REQUEST_SENSE, None)], b"", AccessCategory.REQUEST_SENSE),
        (COMMANDS[0], b"", AccessCategory.REPORT_TARGET_PORT_GROUPS),
        (COMMANDS[1], b"", AccessCategory.SET_TARGET_PORT_GROUPS),
        (
            TABLE[(Opcode.MAINTENANCE_IN, MaintenanceIn.REPORT_SUPPORTED_OPERATION_CODES)],
            b"",
            AccessCategory.SUPPORT_REPORTS,
        ),
        (
            TABLE[
                (Opcode.MAINTENANCE_IN, MaintenanceIn.REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS)
            ],
            b"",
            AccessCategory.SUPPORT_REPORTS,
        ),
        (TABLE[(Opcode.MODE_SENSE_10, None)], b"", AccessCategory.MODE_AND_LOG),
        (TABLE[(Opcode.MODE_SELECT_6, None)], b"", AccessCategory.MODE_AND_LOG),
        (spec(Opcode.LOG_SENSE), b"", AccessCategory.MODE_AND_LOG),
        (spec(Opcode.SEND_DIAGNOSTIC), b"", AccessCategory.DIAGNOSTICS),
        (spec(0x1C), b"", AccessCategory.DIAGNOSTICS),
        (spec(Opcode.PERSISTENT_RESERVE_IN, 0x00), b"", AccessCategory.PERSISTENT_RESERVATIONS),
        (spec(Opcode.PERSISTENT_RESERVE_OUT, 0x01), b"", AccessCategory.PERSISTENT_RESERVATIONS),
        (TABLE[(Opcode.RESERVE_6, None)], b"", AccessCategory.RESERVE_RELEASE),
        (TABLE[(Opcode.RELEASE_10, None)], b"", AccessCategory.RESERVE_RELEASE),
        (TABLE[(Opcode.READ_CAPACITY_10, None)], b"", AccessCategory.READ_CAPACITY),
        (
            TABLE[(Opcode.SERVICE_ACTION_IN_16, ServiceActionIn16.READ_CAPACITY_16)],
            b"",
            AccessCategory.READ_CAPACITY,
        ),
        (
            TABLE[(Opcode.SERVICE_ACTION_IN_16, ServiceActionIn16.GET_LBA_STATUS)],
            b"",
            AccessCategory.MEDIA_ACCESS,
        ),
        (TABLE[(Opcode.READ_10, None)], b"", AccessCategory.MEDIA_ACCESS),
        (TABLE[(Opcode.WRITE_16, None)], b"", AccessCategory.MEDIA_ACCESS),
        (TABLE[(Opcode.SYNCHRONIZE_CACHE_10, None)], b"", AccessCategory.MEDIA_ACCESS),
        (TABLE[(Opcode.UNMAP, None)], b"", AccessCategory.MEDIA_ACCESS),
        (TABLE[(Opcode.TEST_UNIT_READY, None)], b"", AccessCategory.OTHER),
        (TABLE[(Opcode.START_STOP_UNIT, None)], b"", AccessCategory.OTHER),
        (TABLE[(Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL, None)], b"", AccessCategory.OTHER),
        (spec(Opcode.READ_BUFFER), hx("3c0a"), AccessCategory.ECHO_BUFFER),
        (spec(Opcode.READ_BUFFER), hx("3c0b"), AccessCategory.ECHO_BUFFER),
        (spec(Opcode.READ_BUFFER), hx("3c02"), AccessCategory.OTHER),
        (spec(Opcode.WRITE_BUFFER), hx("3bea"), AccessCategory.ECHO_BUFFER),
        (spec(Opcode.WRITE_BUFFER), hx("3b0b"), AccessCategory.OTHER),
        (spec(Opcode.MAINTENANCE_IN, 0x05), b"", AccessCategory.OTHER),
    ],
    ids=lambda v: v.name if isinstance(v, (CommandSpec, AccessCategory)) else None,
)
def test_command_category(command: CommandSpec, cdb: bytes, category: AccessCategory) -> None:
    assert command_category(command, cdb) == category


def test_every_served_command_has_a_category_standby_decides_on() -> None:
    for command in (*TABLE.values(), *COMMANDS):
        category = command_category(command, bytes(command.usage_data[:2]))
        if command.media_access:
            assert category == AccessCategory.MEDIA_ACCESS


def test_access_check_answers_not_ready_with_the_state_asc() -> None:
    read = TABLE[(Opcode.READ_10, None)]
    assert access_check(AO, read, hx("28")) is None
    assert access_check(ANO, read, hx("28")) is None
    refused = access_check(SB, read, hx("28"))
    assert refused is not None
    assert parse_sense(refused.sense) == (SenseKey.NOT_READY, 0x04, 0x0B)
    tur = TABLE[(Opcode.TEST_UNIT_READY, None)]
    transitioning = access_check(TR, tur, hx("00"))
    assert transitioning is not None
    assert parse_sense(transitioning.sense) == (SenseKey.NOT_READY, 0x04, 0x0A)
    offline = access_check(OFF, TABLE[(Opcode.INQUIRY, None)], hx("12"))
    assert offline is not None
    assert parse_sense(offline.sense) == (SenseKey.NOT_READY, 0x04, 0x12)


def test_groups_access_check_uses_the_port_state() -> None:
    groups = two_groups(SB)
    read = TABLE[(Opcode.READ_10, None)]
    assert groups.access_check(1, read, hx("28")) is None
    refused = groups.access_check(2, read, hx("28"))
    assert refused is not None
    assert refused.asc == ASC.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE
    assert groups.access_check(3, read, hx("28")) is None


def test_module_exports() -> None:
    for name in alua.__all__:
        assert hasattr(alua, name), name
