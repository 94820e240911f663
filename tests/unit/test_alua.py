"""ALUA (SPC-4 §5.16): RTPG/STPG codecs byte for byte, the target port group model, the
state-by-category access table, and both commands through ``LogicalUnit.execute``."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sanstack.block.device import DeviceIdentity
from sanstack.block.memory import MemoryDevice
from sanstack.scsi import alua
from sanstack.scsi.alua import (
    ACCESS_TABLE,
    COMMANDS,
    DEFAULT_SUPPORTED_STATES,
    INACCESSIBLE_ASC,
    AccessCategory,
    ALUAGroups,
    TargetPortGroup,
    TransitionRefused,
    access_check,
    announce_state_change,
    attach_groups,
    command_category,
    groups_of,
    report_target_port_groups,
)
from sanstack.scsi.alua_codec import (
    ALUAState,
    ALUAStatus,
    ParameterDataFormat,
    ReportTargetPortGroupsCdb,
    ReportTargetPortGroupsData,
    SetTargetPortGroupDescriptor,
    SetTargetPortGroupsCdb,
    SetTargetPortGroupsParameters,
    SupportedStates,
    TargetPortGroupDescriptor,
)
from sanstack.scsi.codes import (
    ASC,
    MaintenanceIn,
    MaintenanceOut,
    Opcode,
    SenseKey,
    ServiceActionIn16,
    Status,
)
from sanstack.scsi.command import Command, CommandResult, CommandSpec, DataDirection, Nexus
from sanstack.scsi.command_table import command_table
from sanstack.scsi.inquiry import Tpgs
from sanstack.scsi.logical_unit import LogicalUnit, TargetInfo
from sanstack.scsi.sense import CheckCondition, parse_sense

TARGET = "iqn.2024-01.org.sanstack:alua"
# A and B log in through portal group 1, C through portal group 2.
A = Nexus("iqn.2024-01.org.example:a", 1, TARGET, 1, 1)
B = Nexus("iqn.2024-01.org.example:b", 2, TARGET, 1, 1)
C = Nexus("iqn.2024-01.org.example:a", 3, TARGET, 2, 2)
AO, ANO, SB = ALUAState.ACTIVE_OPTIMIZED, ALUAState.ACTIVE_NON_OPTIMIZED, ALUAState.STANDBY
UA, LBD = ALUAState.UNAVAILABLE, ALUAState.LOGICAL_BLOCK_DEPENDENT
OFF, TR = ALUAState.OFFLINE, ALUAState.TRANSITIONING
ALL_STATES = tuple(ALUAState)

RTPG = "a30a00000000000010000000"
RTPG_EXTENDED = "a32a00000000000010000000"
# STPG with an 8-byte parameter list: what Linux scsi_dh_alua's submit_stpg sends.
STPG_8 = "a40a00000000000000080000"


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def assert_check(
    result: CommandResult, key: SenseKey, asc: ASC, pointer: str | None = None
) -> None:
    assert result.status == Status.CHECK_CONDITION
    assert parse_sense(result.sense) == (key, asc.asc, asc.ascq)
    if pointer is not None:
        assert result.sense[15:18].hex() == pointer


def assert_condition(cc: CheckCondition, key: SenseKey, asc: ASC, pointer: str) -> None:
    assert (cc.key, cc.asc) == (key, asc)
    assert cc.sense[15:18].hex() == pointer


# -- REPORT TARGET PORT GROUPS CDB (SPC-4 §6.37) -------------------------------------------


def test_rtpg_cdb_vectors_both_ways() -> None:
    assert ReportTargetPortGroupsCdb(0x1000).encode() == h(RTPG)
    assert ReportTargetPortGroupsCdb.decode(h(RTPG)) == ReportTargetPortGroupsCdb(0x1000)
    extended = ReportTargetPortGroupsCdb(0x1000, ParameterDataFormat.EXTENDED)
    assert extended.encode() == h(RTPG_EXTENDED)
    assert ReportTargetPortGroupsCdb.decode(h(RTPG_EXTENDED)) == extended
    big = ReportTargetPortGroupsCdb(0x01020304, control=0x04)
    assert big.encode() == h("a30a 00000000 01020304 00 04")
    assert ReportTargetPortGroupsCdb.decode(big.encode()) == big


def test_rtpg_cdb_reserved_data_format_points_at_byte_1_bit_7() -> None:
    with pytest.raises(CheckCondition) as caught:
        ReportTargetPortGroupsCdb.decode(h("a34a00000000000010000000"))
    assert_condition(caught.value, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_CDB, "cf0001")


@pytest.mark.parametrize(
    "cdb", ["a40a00000000000010000000", "a30c00000000000010000000", "a30a0000"]
)
def test_rtpg_cdb_rejects_other_commands(cdb: str) -> None:
    with pytest.raises(ValueError, match="not a"):
        ReportTargetPortGroupsCdb.decode(h(cdb))


def test_rtpg_cdb_encode_checks_ranges() -> None:
    with pytest.raises(ValueError, match="ALLOCATION LENGTH"):
        ReportTargetPortGroupsCdb(1 << 32).encode()


# -- target port group descriptors and parameter data --------------------------------------

# Group 1: active/optimized, supports T|U|S|AN|AO (8Fh), no status, one port (1).
GROUP_1 = "00 8f 0001 00 00 00 01  0000 0001"
# Group 2: active/non-optimized, otherwise alike, port 2.
GROUP_2_ANO = "01 8f 0002 00 00 00 01  0000 0002"
# Group 2: preferred standby set by STPG, vendor byte 5Ah, ports 2 and 7.
GROUP_2_STANDBY = "82 8f 0002 00 01 5a 02  0000 0002 0000 0007"


def test_descriptor_vector_both_ways() -> None:
    descriptor = TargetPortGroupDescriptor(
        target_port_group=2,
        asymmetric_access_state=SB,
        supported_states=DEFAULT_SUPPORTED_STATES,
        relative_target_port_ids=(2, 7),
        preferred=True,
        status_code=ALUAStatus.CHANGED_BY_STPG,
        vendor_specific=0x5A,
    )
    assert descriptor.encode() == h(GROUP_2_STANDBY)
    assert TargetPortGroupDescriptor.decode_from(h(GROUP_2_STANDBY), 0) == descriptor
    assert descriptor.length == 16


def test_descriptor_support_bits_are_spc4_positions() -> None:
    every = TargetPortGroupDescriptor(0xABCD, TR, SupportedStates(0xDF), (0xFFFF,))
    assert every.encode() == h("0f df abcd 00 00 00 01 0000 ffff")
    decoded = TargetPortGroupDescriptor.decode_from(h("0e ff abcd 00 02 00 00"), 0)
    # Bit 5 of byte 1 is reserved: it is dropped, the named bits are kept.
    assert decoded.supported_states == SupportedStates(0xDF)
    assert decoded.asymmetric_access_state == OFF
    assert decoded.status_code == ALUAStatus.CHANGED_IMPLICITLY


def test_descriptor_limits() -> None:
    with pytest.raises(ValueError, match="TARGET PORT COUNT"):
        TargetPortGroupDescriptor(1, AO, DEFAULT_SUPPORTED_STATES, tuple(range(1, 257))).encode()
    with pytest.raises(ValueError, match="truncated"):
        TargetPortGroupDescriptor.decode_from(h("00 8f 0001 00 00 00 02 0000 0001"), 0)
    with pytest.raises(ValueError, match="truncated"):
        TargetPortGroupDescriptor.decode_from(h("00 8f 0001 00 00 00"), 0)


def test_rtpg_length_only_data_both_ways() -> None:
    data = ReportTargetPortGroupsData(
        (
            TargetPortGroupDescriptor(1, AO, DEFAULT_SUPPORTED_STATES, (1,)),
            TargetPortGroupDescriptor(2, ANO, DEFAULT_SUPPORTED_STATES, (2,)),
        )
    )
    wire = h("00000018" + GROUP_1 + GROUP_2_ANO)
    assert data.encode() == wire
    assert ReportTargetPortGroupsData.decode(wire) == data


def test_rtpg_extended_data_counts_its_header_in_return_data_length() -> None:
    data = ReportTargetPortGroupsData(
        (TargetPortGroupDescriptor(1, AO, DEFAULT_SUPPORTED_STATES, (1,)),),
        ParameterDataFormat.EXTENDED,
        implicit_transition_time=30,
    )
    wire = h("00000010 10 1e 0000" + GROUP_1)
    assert data.encode() == wire
    assert ReportTargetPortGroupsData.decode(wire) == data


def test_rtpg_data_without_groups() -> None:
    assert ReportTargetPortGroupsData(()).encode() == h("00000000")
    assert ReportTargetPortGroupsData.decode(h("00000000")) == ReportTargetPortGroupsData(())
    extended = ReportTargetPortGroupsData((), ParameterDataFormat.EXTENDED, 5)
    assert extended.encode() == h("00000004 10 05 0000")
    assert ReportTargetPortGroupsData.decode(extended.encode()) == extended


@pytest.mark.parametrize(
    "wire",
    [
        "000000",
        "00000010" + GROUP_1[:8],
        "00000002 1005",
        "0000000c 00 8f 0001 00 00 00 02 00000001",
    ],
)
def test_rtpg_data_decode_refuses_truncated_data(wire: str) -> None:
    with pytest.raises(ValueError, match=r"truncated|shorter"):
        ReportTargetPortGroupsData.decode(h(wire))


# -- SET TARGET PORT GROUPS CDB and parameter list (SPC-4 §6.45) ---------------------------


def test_stpg_cdb_vectors_both_ways() -> None:
    assert SetTargetPortGroupsCdb(8).encode() == h(STPG_8)
    assert SetTargetPortGroupsCdb.decode(h(STPG_8)) == SetTargetPortGroupsCdb(8)
    big = SetTargetPortGroupsCdb(0xA0B0C0D0, control=0x04)
    assert big.encode() == h("a40a 00000000 a0b0c0d0 00 04")
    assert SetTargetPortGroupsCdb.decode(big.encode()) == big
    with pytest.raises(ValueError, match="not a"):
        SetTargetPortGroupsCdb.decode(h("a40b00000000000000080000"))
    with pytest.raises(ValueError, match="not a"):
        SetTargetPortGroupsCdb.decode(h(RTPG))


def test_stpg_parameter_list_vector_both_ways() -> None:
    parameters = SetTargetPortGroupsParameters(
        (
            SetTargetPortGroupDescriptor(AO, 2),
            SetTargetPortGroupDescriptor(SB, 0x0102),
            SetTargetPortGroupDescriptor(OFF, 9),
        )
    )
    wire = h("00000000 00 00 0002 02 00 0102 0e 00 0009")
    assert parameters.encode() == wire
    assert SetTargetPortGroupsParameters.decode(wire) == parameters
    # Reserved bits around the state nibble are not examined.
    assert SetTargetPortGroupsParameters.decode(h("ffffffff f1 ff 0003")) == (
        SetTargetPortGroupsParameters((SetTargetPortGroupDescriptor(ANO, 3),))
    )


@pytest.mark.parametrize("wire", ["000000", "00000000 0000", "00000000 00000001 00"])
def test_stpg_parameter_list_truncating_a_descriptor_is_a_length_error(wire: str) -> None:
    with pytest.raises(CheckCondition) as caught:
        SetTargetPortGroupsParameters.decode(h(wire))
    assert (caught.value.key, caught.value.asc) == (
        SenseKey.ILLEGAL_REQUEST,
        ASC.PARAMETER_LIST_LENGTH_ERROR,
    )


@pytest.mark.parametrize("code", [0x4, 0x5, 0x9, 0xD, 0xF])
def test_stpg_reserved_state_codes_point_at_the_state_field(code: int) -> None:
    with pytest.raises(CheckCondition) as caught:
        SetTargetPortGroupsParameters.decode(h(f"00000000 00000001 0{code:x}000002"))
    # Second descriptor: byte 8, bit 3 (the top of the 4-bit field); C/D=0 for a parameter list.
    assert_condition(
        caught.value, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_PARAMETER_LIST, "8b0008"
    )


# -- round trips (ARCHITECTURE.md rule 4) --------------------------------------------------

_ids = st.integers(0, 0xFFFF)
_descriptors = st.builds(
    TargetPortGroupDescriptor,
    target_port_group=_ids,
    asymmetric_access_state=st.sampled_from(ALUAState),
    supported_states=st.integers(0, 0xFF).map(lambda b: SupportedStates(b & 0xDF)),
    relative_target_port_ids=st.lists(_ids, max_size=6).map(tuple),
    preferred=st.booleans(),
    status_code=st.sampled_from(ALUAStatus),
    vendor_specific=st.integers(0, 0xFF),
)


@given(
    st.lists(_descriptors, max_size=4).map(tuple),
    st.sampled_from(ParameterDataFormat),
    st.integers(0, 0xFF),
)
def test_rtpg_data_round_trip(
    descriptors: tuple[TargetPortGroupDescriptor, ...],
    data_format: ParameterDataFormat,
    transition_time: int,
) -> None:
    if data_format == ParameterDataFormat.LENGTH_ONLY:
        transition_time = 0
    data = ReportTargetPortGroupsData(descriptors, data_format, transition_time)
    assert ReportTargetPortGroupsData.decode(data.encode()) == data


@given(
    st.lists(
        st.builds(
            SetTargetPortGroupDescriptor,
            st.sampled_from([AO, ANO, SB, UA, OFF]),
            _ids,
        ),
        max_size=8,
    ).map(tuple)
)
def test_stpg_parameters_round_trip(
    descriptors: tuple[SetTargetPortGroupDescriptor, ...],
) -> None:
    parameters = SetTargetPortGroupsParameters(descriptors)
    assert SetTargetPortGroupsParameters.decode(parameters.encode()) == parameters


@given(st.integers(0, 0xFFFFFFFF), st.sampled_from(ParameterDataFormat), st.integers(0, 0xFF))
def test_cdbs_round_trip(length: int, data_format: ParameterDataFormat, control: int) -> None:
    rtpg = ReportTargetPortGroupsCdb(length, data_format, control)
    assert ReportTargetPortGroupsCdb.decode(rtpg.encode()) == rtpg
    stpg = SetTargetPortGroupsCdb(length, control)
    assert SetTargetPortGroupsCdb.decode(stpg.encode()) == stpg


# -- the target port group model -----------------------------------------------------------


def two_groups(second: ALUAState = ANO) -> ALUAGroups:
    return ALUAGroups.one_per_port((1, 2), states={2: second})


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
    assert groups.report().encode() == h("00000018" + GROUP_1 + GROUP_2_ANO)
    groups.implicit_transition_time = 10
    extended = groups.report(ParameterDataFormat.EXTENDED).encode()
    assert extended == h("0000001c 10 0a 0000" + GROUP_1 + GROUP_2_ANO)


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


TABLE = command_table()


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
        (spec(Opcode.READ_BUFFER), h("3c0a"), AccessCategory.ECHO_BUFFER),
        (spec(Opcode.READ_BUFFER), h("3c0b"), AccessCategory.ECHO_BUFFER),
        (spec(Opcode.READ_BUFFER), h("3c02"), AccessCategory.OTHER),
        (spec(Opcode.WRITE_BUFFER), h("3bea"), AccessCategory.ECHO_BUFFER),
        (spec(Opcode.WRITE_BUFFER), h("3b0b"), AccessCategory.OTHER),
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
    assert access_check(AO, read, h("28")) is None
    assert access_check(ANO, read, h("28")) is None
    refused = access_check(SB, read, h("28"))
    assert refused is not None
    assert parse_sense(refused.sense) == (SenseKey.NOT_READY, 0x04, 0x0B)
    tur = TABLE[(Opcode.TEST_UNIT_READY, None)]
    transitioning = access_check(TR, tur, h("00"))
    assert transitioning is not None
    assert parse_sense(transitioning.sense) == (SenseKey.NOT_READY, 0x04, 0x0A)
    offline = access_check(OFF, TABLE[(Opcode.INQUIRY, None)], h("12"))
    assert offline is not None
    assert parse_sense(offline.sense) == (SenseKey.NOT_READY, 0x04, 0x12)


def test_groups_access_check_uses_the_port_state() -> None:
    groups = two_groups(SB)
    read = TABLE[(Opcode.READ_10, None)]
    assert groups.access_check(1, read, h("28")) is None
    refused = groups.access_check(2, read, h("28"))
    assert refused is not None
    assert refused.asc == ASC.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE
    assert groups.access_check(3, read, h("28")) is None


# -- the commands through LogicalUnit.execute ----------------------------------------------


def make_lu(groups: ALUAGroups | None = None) -> LogicalUnit:
    device = MemoryDevice(1000, 512, identity=DeviceIdentity.from_seed("alua-tests"))
    lu = LogicalUnit(0, device, TargetInfo(TARGET, lambda: [0], lambda: [A, B, C]))
    attach_groups(lu, groups if groups is not None else two_groups())
    return lu


def run(
    lu: LogicalUnit, cdb: str | bytes, nexus: Nexus = A, data_out: bytes = b""
) -> CommandResult:
    raw = h(cdb) if isinstance(cdb, str) else cdb
    command = Command(nexus, 0, raw, data_out=data_out, data_in_length=0xFFFF)
    return asyncio.run(lu.execute(command))


def stpg(lu: LogicalUnit, parameters: str, nexus: Nexus = A) -> CommandResult:
    data = h(parameters)
    return run(lu, SetTargetPortGroupsCdb(len(data)).encode(), nexus, data)


def drain(lu: LogicalUnit) -> None:
    for nexus in (A, B, C):
        while lu.pop_unit_attention(nexus) is not None:
            pass


def test_commands_table_rows() -> None:
    rtpg, set_tpg = COMMANDS
    assert rtpg.usage_data == h("a3ea 00000000 ffffffff 00 00")
    assert set_tpg.usage_data == h("a40a 00000000 ffffffff 00 00")
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
    assert bytes(result.data) == h("00000018" + GROUP_1 + GROUP_2_ANO)


def test_rtpg_extended_of_an_active_optimized_and_a_standby_group() -> None:
    groups = ALUAGroups(
        [TargetPortGroup(1, (1,)), TargetPortGroup(2, (2, 7), state=SB, preferred=True)],
        implicit_transition_time=30,
    )
    groups.group(2).status = ALUAStatus.CHANGED_BY_STPG
    result = run(make_lu(groups), RTPG_EXTENDED, C)
    expected = "00000020 10 1e 0000" + GROUP_1 + GROUP_2_STANDBY.replace(" 5a ", " 00 ")
    assert bytes(result.data) == h(expected)


@pytest.mark.parametrize("allocation", [0, 4, 8, 12, 16, 20, 27, 28, 64])
def test_rtpg_cuts_at_any_allocation_length(allocation: int) -> None:
    full = h("00000018" + GROUP_1 + GROUP_2_ANO)
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
    assert bytes(result.data)[16:20] == h("02 8f 0002")
    assert bytes(result.data)[21] == ALUAStatus.CHANGED_BY_STPG


def test_stpg_like_linux_scsi_dh_alua() -> None:
    lu = make_lu(two_groups(SB))
    result = run(lu, STPG_8, C, h("00000000 00 00 0002"))
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
    result = run(make_lu(), SetTargetPortGroupsCdb(8).encode(), A, h("00000000 0200"))
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
    direct = Command(A, 0, h(RTPG), data_in_length=0xFFFF)
    assert asyncio.run(report_target_port_groups(lu, direct)).data


def test_default_groups_leave_pref_clear_for_libiscsi() -> None:
    # libiscsi's test_rtpg_simple reads byte 0 through little-endian bitfields: with PREF set it
    # would see ALUA state 8 and fail; sanstack's default layout never sets it.
    data = ALUAGroups.one_per_port((1, 2, 3)).report().encode()
    first_bytes: Sequence[int] = [data[4 + 12 * i] for i in range(3)]
    assert all(byte >> 4 == 0 for byte in first_bytes)


def test_module_exports() -> None:
    for name in alua.__all__:
        assert hasattr(alua, name), name
