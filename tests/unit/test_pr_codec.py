"""Byte-exact vectors for the persistent reservation codecs in ``sanstack.scsi.pr_codec``,
both directions: every CDB, parameter list and PERSISTENT RESERVE IN parameter data, and the
two iSCSI TransportID formats (SPC-4 §6.15, §6.16, §7.6.4.6)."""

from __future__ import annotations

import pytest

from sanstack.scsi.codes import ASC, SenseKey
from sanstack.scsi.pr_codec import (
    ALLOW_COMMANDS_TEST_UNIT_READY,
    FullStatusDescriptor,
    PRInCdb,
    PRInServiceAction,
    PROutCdb,
    PROutParameters,
    PROutServiceAction,
    PRType,
    ReadFullStatusData,
    ReadKeysData,
    ReadReservationData,
    RegisterAndMoveParameters,
    ReportCapabilitiesData,
    TransportID,
    TransportIDFormat,
)
from sanstack.scsi.sense import CheckCondition, field_pointer

NAME_B = "iqn.2024-01.org.example:b"  # 25 characters
ISID_B = 0x23D000000001


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# TransportIDs (§7.6.4.6): byte 0 FORMAT CODE (7-6) and PROTOCOL IDENTIFIER 5h (3-0), byte 1
# reserved, bytes 2-3 ADDITIONAL LENGTH, then the NUL-terminated name padded to a multiple of
# four and at least 20 bytes.
TID_DEVICE = h("05 00 00 1c") + NAME_B.encode() + bytes(3)  # 25 + NUL -> 28
TID_PORT = h("45 00 00 2c") + f"{NAME_B},i,0x23d000000001".encode() + bytes(2)  # 42 + NUL -> 44
TID_SHORT = h("05 00 00 14") + b"iqn.x" + bytes(15)  # padded up to the 20-byte minimum

TRANSPORT_ID_VECTORS: list[tuple[bytes, TransportID]] = [
    (TID_DEVICE, TransportID(NAME_B)),
    (TID_PORT, TransportID(NAME_B, ISID_B)),
    (TID_SHORT, TransportID("iqn.x")),
]


@pytest.mark.parametrize(("wire", "value"), TRANSPORT_ID_VECTORS)
def test_transport_id_vectors(wire: bytes, value: TransportID) -> None:
    assert value.encode() == wire
    assert TransportID.decode(wire) == value
    assert len(wire) % 4 == 0


def test_transport_id_formats_and_text() -> None:
    assert TransportID(NAME_B).format_code is TransportIDFormat.INITIATOR_DEVICE
    port = TransportID(NAME_B, ISID_B)
    assert port.format_code is TransportIDFormat.INITIATOR_PORT
    assert port.text == f"{NAME_B},i,0x23d000000001"
    assert TransportID.from_text(port.text) == port
    assert TransportID.from_text(NAME_B) == TransportID(NAME_B)


def test_transport_id_decoder_is_lenient_about_case_and_padding() -> None:
    # Upper-case separator letters and ISID digits, no padding, no 20-byte minimum.
    text = f"{NAME_B},I,0X23D000000001".encode() + b"\x00"
    wire = h("45 00") + len(text).to_bytes(2, "big") + text
    assert TransportID.decode(wire) == TransportID(NAME_B, ISID_B)


@pytest.mark.parametrize(
    ("wire", "byte", "bit"),
    [
        (h("01 00 00 14") + bytes(20), 0, 3),  # Fibre Channel protocol identifier
        (h("85 00 00 14") + b"iqn.x" + bytes(15), 0, 7),  # reserved format 10b
        (h("45 00 00 14") + b"iqn.x" + bytes(15), 0, 7),  # format 01b without an ISID
        (h("05 00 00 18") + b"iqn.x,i,0x01" + bytes(12), 0, 7),  # format 00b with one
        (h("45 00 00 14") + b"iqn.x,i,0xzz" + bytes(8), 4, None),  # ISID not hex
        (h("05 00 00 04") + bytes(4), 4, None),  # empty name
    ],
)
def test_transport_id_bad_fields(wire: bytes, byte: int, bit: int | None) -> None:
    with pytest.raises(CheckCondition) as caught:
        TransportID.decode(wire)
    assert caught.value.asc is ASC.INVALID_FIELD_IN_PARAMETER_LIST
    assert caught.value.sense_key_specific == field_pointer(byte, bit, in_cdb=False)


def test_transport_id_running_past_its_list_is_a_length_error() -> None:
    with pytest.raises(CheckCondition) as caught:
        TransportID.decode(TID_DEVICE[:-4])
    assert caught.value.asc is ASC.PARAMETER_LIST_LENGTH_ERROR


@pytest.mark.parametrize(
    "bad", [TransportID(""), TransportID("a,b"), TransportID("iqn.x", 1 << 48)]
)
def test_transport_id_encoder_refuses(bad: TransportID) -> None:
    with pytest.raises(ValueError):
        bad.encode()


# -- PERSISTENT RESERVE OUT (§6.16) --------------------------------------------------------

PR_OUT_CDB_VECTORS: list[tuple[str, PROutCdb]] = [
    # opcode 5Fh, SERVICE ACTION, SCOPE|TYPE, 2 reserved, PARAMETER LIST LENGTH, CONTROL.
    ("5f 00 00 00 00 00 00 00 18 00", PROutCdb(PROutServiceAction.REGISTER, 0, 0, 24)),
    (
        "5f 01 05 00 00 00 00 00 18 00",
        PROutCdb(PROutServiceAction.RESERVE, 0, PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, 24),
    ),
    (
        "5f 02 08 00 00 00 00 00 18 00",
        PROutCdb(PROutServiceAction.RELEASE, 0, PRType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, 24),
    ),
    ("5f 03 00 00 00 00 00 00 18 00", PROutCdb(PROutServiceAction.CLEAR, 0, 0, 24)),
    (
        "5f 04 03 00 00 00 00 00 18 00",
        PROutCdb(PROutServiceAction.PREEMPT, 0, PRType.EXCLUSIVE_ACCESS, 24),
    ),
    (
        "5f 05 01 00 00 00 00 00 18 04",
        PROutCdb(PROutServiceAction.PREEMPT_AND_ABORT, 0, 1, 24, control=4),
    ),
    (
        "5f 06 00 00 00 00 00 00 18 00",
        PROutCdb(PROutServiceAction.REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0, 24),
    ),
    (
        "5f 07 27 00 00 01 02 03 04 00",
        PROutCdb(PROutServiceAction.REGISTER_AND_MOVE, 2, 7, 0x01020304),
    ),
]


@pytest.mark.parametrize(("wire", "value"), PR_OUT_CDB_VECTORS)
def test_pr_out_cdb_vectors(wire: str, value: PROutCdb) -> None:
    assert value.encode() == h(wire)
    assert PROutCdb.decode(h(wire)) == value


def test_pr_out_cdb_unknown_service_action() -> None:
    with pytest.raises(CheckCondition) as caught:
        PROutCdb.decode(h("5f 08 00 00 00 00 00 00 18 00"))  # REPLACE LOST RESERVATION
    assert caught.value.asc is ASC.INVALID_FIELD_IN_CDB
    assert caught.value.sense_key_specific == field_pointer(1, 4)


def test_pr_out_cdb_encoder_refuses() -> None:
    with pytest.raises(ValueError):
        PROutCdb(PROutServiceAction.RESERVE, 16, 1, 24).encode()
    with pytest.raises(ValueError):
        PROutCdb(PROutServiceAction.RESERVE, 0, 1, 1 << 32).encode()


KEYS = "01 23 45 67 89 ab cd ef 11 22 33 44 55 66 77 88"

PR_OUT_PARAMETER_VECTORS: list[tuple[bytes, PROutParameters]] = [
    # RESERVATION KEY, SERVICE ACTION RESERVATION KEY, 4 obsolete, flags, 3 reserved/obsolete.
    (
        h(KEYS + "00 00 00 00 00 00 00 00"),
        PROutParameters(0x0123456789ABCDEF, 0x1122334455667788),
    ),
    (
        h(KEYS + "00 00 00 00 05 00 00 00"),
        PROutParameters(0x0123456789ABCDEF, 0x1122334455667788, all_tg_pt=True, aptpl=True),
    ),
    # SPEC_I_PT: TRANSPORTID PARAMETER DATA LENGTH at byte 24, TransportIDs from byte 28.
    (
        h("00" * 8 + "00 00 00 00 00 00 00 2a" + "00 00 00 00 08 00 00 00" + "00 00 00 50")
        + TID_DEVICE
        + TID_PORT,
        PROutParameters(
            0,
            42,
            spec_i_pt=True,
            transport_ids=(TransportID(NAME_B), TransportID(NAME_B, ISID_B)),
        ),
    ),
]


@pytest.mark.parametrize(("wire", "value"), PR_OUT_PARAMETER_VECTORS)
def test_pr_out_parameter_vectors(wire: bytes, value: PROutParameters) -> None:
    assert value.encode() == wire
    assert PROutParameters.decode(wire) == value


@pytest.mark.parametrize(
    "wire",
    [
        bytes(23),  # shorter than the basic list
        h("00" * 20 + "08 00 00 00"),  # SPEC_I_PT without its 4-byte length
        h("00" * 20 + "08 00 00 00" + "00 00 00 30") + TID_DEVICE,  # length beyond the list
        h("00" * 20 + "08 00 00 00" + "00 00 00 1c") + TID_DEVICE[:-4] + bytes(4),
    ],
)
def test_pr_out_parameter_length_errors(wire: bytes) -> None:
    with pytest.raises(CheckCondition) as caught:
        PROutParameters.decode(wire)
    assert caught.value.key is SenseKey.ILLEGAL_REQUEST
    assert caught.value.asc in (
        ASC.PARAMETER_LIST_LENGTH_ERROR,
        ASC.INVALID_FIELD_IN_PARAMETER_LIST,
    )


def test_pr_out_parameter_transport_id_errors_point_into_the_list() -> None:
    wire = h("00" * 20 + "08 00 00 00" + "00 00 00 38") + TID_DEVICE + h("01 00 00 18") + bytes(24)
    with pytest.raises(CheckCondition) as caught:
        PROutParameters.decode(wire)
    assert caught.value.asc is ASC.INVALID_FIELD_IN_PARAMETER_LIST
    assert caught.value.sense_key_specific == field_pointer(28 + 32, 3, in_cdb=False)


def test_pr_out_parameter_encoder_refuses() -> None:
    with pytest.raises(ValueError):
        PROutParameters(1 << 64).encode()
    with pytest.raises(ValueError):
        PROutParameters(transport_ids=(TransportID(NAME_B),)).encode()


def test_register_and_move_vector() -> None:
    # Keys, reserved, UNREG|APTPL, RELATIVE TARGET PORT IDENTIFIER, TRANSPORTID length, ID.
    wire = h(KEYS + "00 03 00 02 00 00 00 30") + TID_PORT
    value = RegisterAndMoveParameters(
        0x0123456789ABCDEF,
        0x1122334455667788,
        2,
        TransportID(NAME_B, ISID_B),
        unreg=True,
        aptpl=True,
    )
    assert value.encode() == wire
    assert RegisterAndMoveParameters.decode(wire) == value


@pytest.mark.parametrize(
    "wire",
    [bytes(20), h(KEYS + "00 00 00 01 00 00 00 30") + TID_PORT[:-4]],
)
def test_register_and_move_length_errors(wire: bytes) -> None:
    with pytest.raises(CheckCondition) as caught:
        RegisterAndMoveParameters.decode(wire)
    assert caught.value.asc is ASC.PARAMETER_LIST_LENGTH_ERROR


# -- PERSISTENT RESERVE IN (§6.15) ---------------------------------------------------------

PR_IN_CDB_VECTORS: list[tuple[str, PRInCdb]] = [
    # opcode 5Eh, SERVICE ACTION, 5 reserved, ALLOCATION LENGTH, CONTROL.
    ("5e 00 00 00 00 00 00 40 00 00", PRInCdb(PRInServiceAction.READ_KEYS, 0x4000)),
    ("5e 01 00 00 00 00 00 00 18 00", PRInCdb(PRInServiceAction.READ_RESERVATION, 24)),
    ("5e 02 00 00 00 00 00 00 08 00", PRInCdb(PRInServiceAction.REPORT_CAPABILITIES, 8)),
    ("5e 03 00 00 00 00 00 ff ff 04", PRInCdb(PRInServiceAction.READ_FULL_STATUS, 0xFFFF, 4)),
]


@pytest.mark.parametrize(("wire", "value"), PR_IN_CDB_VECTORS)
def test_pr_in_cdb_vectors(wire: str, value: PRInCdb) -> None:
    assert value.encode() == h(wire)
    assert PRInCdb.decode(h(wire)) == value


@pytest.mark.parametrize("action", range(4, 0x20))
def test_pr_in_cdb_unknown_service_actions(action: int) -> None:
    with pytest.raises(CheckCondition) as caught:
        PRInCdb.decode(bytes([0x5E, action, 0, 0, 0, 0, 0, 0, 8, 0]))
    assert caught.value.asc is ASC.INVALID_FIELD_IN_CDB
    assert caught.value.sense_key_specific == field_pointer(1, 4)


def test_read_keys_vector() -> None:
    # PRGENERATION, ADDITIONAL LENGTH (bytes of keys), one 8-byte key per registration.
    wire = h("00 00 00 05 00 00 00 10" + "00 00 00 00 00 00 00 01" + "ff ee dd cc bb aa 99 88")
    value = ReadKeysData(5, (1, 0xFFEEDDCCBBAA9988))
    assert value.encode() == wire
    assert ReadKeysData.decode(wire) == value
    assert ReadKeysData(0).encode() == bytes(8)


READ_RESERVATION_VECTORS: list[tuple[str, ReadReservationData]] = [
    ("00 00 00 07 00 00 00 00", ReadReservationData(7)),
    (
        # Key, 4 obsolete, reserved, SCOPE|TYPE, 2 obsolete.
        "00 00 00 07 00 00 00 10 00 00 00 00 00 00 0a bc 00 00 00 00 00 05 00 00",
        ReadReservationData(7, 0xABC, 0, PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY),
    ),
    (
        "ff ff ff ff 00 00 00 10 00 00 00 00 00 00 00 00 00 00 00 00 00 08 00 00",
        ReadReservationData(0xFFFFFFFF, 0, 0, PRType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS),
    ),
]


@pytest.mark.parametrize(("wire", "value"), READ_RESERVATION_VECTORS)
def test_read_reservation_vectors(wire: str, value: ReadReservationData) -> None:
    assert value.encode() == h(wire)
    assert ReadReservationData.decode(h(wire)) == value


REPORT_CAPABILITIES_VECTORS: list[tuple[str, ReportCapabilitiesData]] = [
    # LENGTH 8; CRH SIP_C ATP_C PTPL_C; TMV, ALLOW COMMANDS 001b, PTPL_A; type mask.
    (
        "00 08 1d 91 ea 01 00 00",
        ReportCapabilitiesData(
            crh=True,
            sip_c=True,
            atp_c=True,
            ptpl_c=True,
            tmv=True,
            allow_commands=ALLOW_COMMANDS_TEST_UNIT_READY,
            ptpl_a=True,
            type_mask=frozenset(PRType),
        ),
    ),
    ("00 08 00 00 00 00 00 00", ReportCapabilitiesData()),
    (
        "00 08 10 a0 02 01 00 00",
        ReportCapabilitiesData(
            crh=True,
            tmv=True,
            allow_commands=2,
            type_mask=frozenset({PRType.WRITE_EXCLUSIVE, PRType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS}),
        ),
    ),
]


@pytest.mark.parametrize(("wire", "value"), REPORT_CAPABILITIES_VECTORS)
def test_report_capabilities_vectors(wire: str, value: ReportCapabilitiesData) -> None:
    assert value.encode() == h(wire)
    assert ReportCapabilitiesData.decode(h(wire)) == value


def test_type_mask_bits_match_libiscsi() -> None:
    # libiscsi scsi-lowlevel.h enum scsi_persistent_reservation_type_mask.
    assert PRType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS.mask_bit == 1 << 0
    assert PRType.WRITE_EXCLUSIVE.mask_bit == 1 << 9
    assert PRType.EXCLUSIVE_ACCESS.mask_bit == 1 << 11
    assert PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY.mask_bit == 1 << 13
    assert PRType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY.mask_bit == 1 << 14
    assert PRType.WRITE_EXCLUSIVE_ALL_REGISTRANTS.mask_bit == 1 << 15


def test_read_full_status_vector() -> None:
    holder = (
        # RESERVATION KEY, 4 reserved, ALL_TG_PT|R_HOLDER, SCOPE|TYPE, 4 reserved, RELATIVE
        # TARGET PORT IDENTIFIER, ADDITIONAL DESCRIPTOR LENGTH, TransportID.
        h("00 00 00 00 00 00 00 01 00 00 00 00 01 05 00 00 00 00 00 02 00 00 00 30") + TID_PORT
    )
    everywhere = (
        h("00 00 00 00 00 00 00 02 00 00 00 00 02 00 00 00 00 00 00 00 00 00 00 20") + TID_DEVICE
    )
    wire = h("00 00 00 03") + (len(holder) + len(everywhere)).to_bytes(4, "big")
    wire += holder + everywhere
    value = ReadFullStatusData(
        3,
        (
            FullStatusDescriptor(
                1,
                TransportID(NAME_B, ISID_B),
                2,
                r_holder=True,
                pr_type=PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
            ),
            FullStatusDescriptor(2, TransportID(NAME_B), all_tg_pt=True),
        ),
    )
    assert value.encode() == wire
    assert ReadFullStatusData.decode(wire) == value
    assert ReadFullStatusData(9).encode() == h("00 00 00 09 00 00 00 00")


@pytest.mark.parametrize(
    ("decoder", "wire"),
    [
        (ReadKeysData.decode, h("00 00 00 00 00 00 00 04 00 00 00 00")),
        (ReadKeysData.decode, h("00 00 00 00 00 00 00 08 00")),
        (ReadReservationData.decode, h("00 00 00 00 00 00 00 08") + bytes(8)),
        (ReportCapabilitiesData.decode, h("00 09 00 00 00 00 00 00")),
        (ReadFullStatusData.decode, h("00 00 00 00 00 00 00 04 00 00 00 00")),
        (ReadFullStatusData.decode, h("00 00 00 00")),
    ],
)
def test_pr_in_data_decoders_refuse_malformed_data(decoder: object, wire: bytes) -> None:
    assert callable(decoder)
    with pytest.raises(ValueError):
        decoder(wire)
