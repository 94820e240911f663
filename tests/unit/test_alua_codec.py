"""ALUA codecs (``scsi/alua_codec.py``, SPC-4 §6.37, §6.45): the REPORT and SET TARGET
PORT GROUPS CDBs, port group descriptors, RTPG parameter data and the STPG parameter
list, byte for byte both ways, what each decoder refuses, and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.support.alua_setup import (
    ANO,
    AO,
    GROUP_1,
    GROUP_2_ANO,
    GROUP_2_STANDBY,
    OFF,
    RTPG,
    RTPG_EXTENDED,
    SB,
    STPG_8,
    TR,
    UA,
)
from tests.support.wire import hx

from sanstack.scsi.alua import DEFAULT_SUPPORTED_STATES
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
from sanstack.scsi.codes import ASC, SenseKey
from sanstack.scsi.sense import CheckCondition


def assert_condition(cc: CheckCondition, key: SenseKey, asc: ASC, pointer: str) -> None:
    assert (cc.key, cc.asc) == (key, asc)
    assert cc.sense[15:18].hex() == pointer


# -- REPORT TARGET PORT GROUPS CDB (SPC-4 §6.37) -------------------------------------------


def test_rtpg_cdb_vectors_both_ways() -> None:
    assert ReportTargetPortGroupsCdb(0x1000).encode() == hx(RTPG)
    assert ReportTargetPortGroupsCdb.decode(hx(RTPG)) == ReportTargetPortGroupsCdb(0x1000)
    extended = ReportTargetPortGroupsCdb(0x1000, ParameterDataFormat.EXTENDED)
    assert extended.encode() == hx(RTPG_EXTENDED)
    assert ReportTargetPortGroupsCdb.decode(hx(RTPG_EXTENDED)) == extended
    big = ReportTargetPortGroupsCdb(0x01020304, control=0x04)
    assert big.encode() == hx("a30a 00000000 01020304 00 04")
    assert ReportTargetPortGroupsCdb.decode(big.encode()) == big


def test_rtpg_cdb_reserved_data_format_points_at_byte_1_bit_7() -> None:
    with pytest.raises(CheckCondition) as caught:
        ReportTargetPortGroupsCdb.decode(hx("a34a00000000000010000000"))
    assert_condition(caught.value, SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_CDB, "cf0001")


@pytest.mark.parametrize(
    "cdb", ["a40a00000000000010000000", "a30c00000000000010000000", "a30a0000"]
)
def test_rtpg_cdb_rejects_other_commands(cdb: str) -> None:
    with pytest.raises(ValueError, match="not a"):
        ReportTargetPortGroupsCdb.decode(hx(cdb))


def test_rtpg_cdb_encode_checks_ranges() -> None:
    with pytest.raises(ValueError, match="ALLOCATION LENGTH"):
        ReportTargetPortGroupsCdb(1 << 32).encode()


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
    assert descriptor.encode() == hx(GROUP_2_STANDBY)
    assert TargetPortGroupDescriptor.decode_from(hx(GROUP_2_STANDBY), 0) == descriptor
    assert descriptor.length == 16


def test_descriptor_support_bits_are_spc4_positions() -> None:
    every = TargetPortGroupDescriptor(0xABCD, TR, SupportedStates(0xDF), (0xFFFF,))
    assert every.encode() == hx("0f df abcd 00 00 00 01 0000 ffff")
    decoded = TargetPortGroupDescriptor.decode_from(hx("0e ff abcd 00 02 00 00"), 0)
    # Bit 5 of byte 1 is reserved: it is dropped, the named bits are kept.
    assert decoded.supported_states == SupportedStates(0xDF)
    assert decoded.asymmetric_access_state == OFF
    assert decoded.status_code == ALUAStatus.CHANGED_IMPLICITLY


def test_descriptor_limits() -> None:
    with pytest.raises(ValueError, match="TARGET PORT COUNT"):
        TargetPortGroupDescriptor(1, AO, DEFAULT_SUPPORTED_STATES, tuple(range(1, 257))).encode()
    with pytest.raises(ValueError, match="truncated"):
        TargetPortGroupDescriptor.decode_from(hx("00 8f 0001 00 00 00 02 0000 0001"), 0)
    with pytest.raises(ValueError, match="truncated"):
        TargetPortGroupDescriptor.decode_from(hx("00 8f 0001 00 00 00"), 0)


def test_rtpg_length_only_data_both_ways() -> None:
    data = ReportTargetPortGroupsData(
        (
            TargetPortGroupDescriptor(1, AO, DEFAULT_SUPPORTED_STATES, (1,)),
            TargetPortGroupDescriptor(2, ANO, DEFAULT_SUPPORTED_STATES, (2,)),
        )
    )
    wire = hx("00000018" + GROUP_1 + GROUP_2_ANO)
    assert data.encode() == wire
    assert ReportTargetPortGroupsData.decode(wire) == data


def test_rtpg_extended_data_counts_its_header_in_return_data_length() -> None:
    data = ReportTargetPortGroupsData(
        (TargetPortGroupDescriptor(1, AO, DEFAULT_SUPPORTED_STATES, (1,)),),
        ParameterDataFormat.EXTENDED,
        implicit_transition_time=30,
    )
    wire = hx("00000010 10 1e 0000" + GROUP_1)
    assert data.encode() == wire
    assert ReportTargetPortGroupsData.decode(wire) == data


def test_rtpg_data_without_groups() -> None:
    assert ReportTargetPortGroupsData(()).encode() == hx("00000000")
    assert ReportTargetPortGroupsData.decode(hx("00000000")) == ReportTargetPortGroupsData(())
    extended = ReportTargetPortGroupsData((), ParameterDataFormat.EXTENDED, 5)
    assert extended.encode() == hx("00000004 10 05 0000")
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
        ReportTargetPortGroupsData.decode(hx(wire))


# -- SET TARGET PORT GROUPS CDB and parameter list (SPC-4 §6.45) ---------------------------


def test_stpg_cdb_vectors_both_ways() -> None:
    assert SetTargetPortGroupsCdb(8).encode() == hx(STPG_8)
    assert SetTargetPortGroupsCdb.decode(hx(STPG_8)) == SetTargetPortGroupsCdb(8)
    big = SetTargetPortGroupsCdb(0xA0B0C0D0, control=0x04)
    assert big.encode() == hx("a40a 00000000 a0b0c0d0 00 04")
    assert SetTargetPortGroupsCdb.decode(big.encode()) == big
    with pytest.raises(ValueError, match="not a"):
        SetTargetPortGroupsCdb.decode(hx("a40b00000000000000080000"))
    with pytest.raises(ValueError, match="not a"):
        SetTargetPortGroupsCdb.decode(hx(RTPG))


def test_stpg_parameter_list_vector_both_ways() -> None:
    parameters = SetTargetPortGroupsParameters(
        (
            SetTargetPortGroupDescriptor(AO, 2),
            SetTargetPortGroupDescriptor(SB, 0x0102),
            SetTargetPortGroupDescriptor(OFF, 9),
        )
    )
    wire = hx("00000000 00 00 0002 02 00 0102 0e 00 0009")
    assert parameters.encode() == wire
    assert SetTargetPortGroupsParameters.decode(wire) == parameters
    # Reserved bits around the state nibble are not examined.
    assert SetTargetPortGroupsParameters.decode(hx("ffffffff f1 ff 0003")) == (
        SetTargetPortGroupsParameters((SetTargetPortGroupDescriptor(ANO, 3),))
    )


@pytest.mark.parametrize("wire", ["000000", "00000000 0000", "00000000 00000001 00"])
def test_stpg_parameter_list_truncating_a_descriptor_is_a_length_error(wire: str) -> None:
    with pytest.raises(CheckCondition) as caught:
        SetTargetPortGroupsParameters.decode(hx(wire))
    assert (caught.value.key, caught.value.asc) == (
        SenseKey.ILLEGAL_REQUEST,
        ASC.PARAMETER_LIST_LENGTH_ERROR,
    )


@pytest.mark.parametrize("code", [0x4, 0x5, 0x9, 0xD, 0xF])
def test_stpg_reserved_state_codes_point_at_the_state_field(code: int) -> None:
    with pytest.raises(CheckCondition) as caught:
        SetTargetPortGroupsParameters.decode(hx(f"00000000 00000001 0{code:x}000002"))
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
