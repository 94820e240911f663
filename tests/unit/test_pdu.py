"""The iSCSI PDU codec (``iscsi/pdu.py``): byte-exact vectors both ways, digests, padding,
extended CDBs, sense data, LUN encoding and range checks."""

from __future__ import annotations

import ast
import dataclasses

import pytest
from tests.support.pdu_vectors import (
    DATA_IN,
    DATA_IN_WIRE,
    LOGIN_REJECT,
    LOGIN_REJECT_WIRE,
    LOGIN_REQUEST,
    LOGIN_REQUEST_WIRE,
    NOP_OUT,
    NOP_OUT_WIRE,
    READ10_CDB,
    SCSI_COMMAND,
    SCSI_COMMAND_WIRE,
    SCSI_RESPONSE,
    SCSI_RESPONSE_WIRE,
    SENSE,
    TEXT_REQUEST,
    TEXT_REQUEST_WIRE,
    TMF_REQUEST_WIRE,
    TMF_RESPONSE,
    TMF_RESPONSE_WIRE,
    VECTORS,
)
from tests.support.wire import hx

from sanstack import native
from sanstack.errors import LocalProtocolError
from sanstack.iscsi import pdu as pdu_module
from sanstack.iscsi.codes import (
    RESERVED_TAG,
    AsyncEvent,
    ISCSIResponse,
    LoginStatus,
    LoginStatusClass,
    Opcode,
    RejectReason,
    TaskAttribute,
    TaskManagementFunction,
    decode_sense,
    encode_sense,
)
from sanstack.iscsi.pdu import (
    PDU,
    DataIn,
    LoginRequest,
    LoginResponse,
    NopOut,
    SCSICommand,
    SCSIResponse,
    TaskManagementRequest,
)
from sanstack.iscsi.pdu_reader import decode
from sanstack.scsi.lun import UNSUPPORTED_LUN_FLAG, decode_lun, encode_lun


@pytest.mark.parametrize(("pdu", "wire"), VECTORS)
def test_encode_vector(pdu: PDU, wire: bytes) -> None:
    assert pdu.encode() == wire
    assert b"".join(pdu.encode_parts()) == wire


@pytest.mark.parametrize(("pdu", "wire"), VECTORS)
def test_decode_vector(pdu: PDU, wire: bytes) -> None:
    assert decode(wire) == pdu


def test_every_pdu_class_has_a_vector() -> None:
    covered = {type(p.values[0]) for p in VECTORS}
    assert len(covered) == len(PDU.__args__)


# RFC 3720 B.4 "iSCSI Read PDU" with its published header digest 56 3a 96 d9.
RFC_READ_PDU = hx("""
    01 c0 00 00 00 00 00 00  # F|R, attr UNTAGGED
    00 00 00 00 00 00 00 00
    14 00 00 00              # ITT
    00 00 04 00              # Expected Data Transfer Length 1024
    00 00 00 14 00 00 00 18  # CmdSN, ExpStatSN
    28 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00
    56 3a 96 d9              # header digest
""")


def test_rfc3720_read_pdu_header_digest() -> None:
    expected = SCSICommand(
        itt=0x14000000,
        cdb=hx("28 00 00 00 00 00 00 00 02 00") + bytes(6),
        expected_data_transfer_length=1024,
        cmd_sn=0x14,
        exp_stat_sn=0x18,
        read=True,
        attr=TaskAttribute.UNTAGGED,
    )
    assert decode(RFC_READ_PDU, header_digest=True) == expected
    assert expected.encode(header_digest=True) == RFC_READ_PDU


def test_header_and_data_digest_vector() -> None:
    wire = NOP_OUT_WIRE[:48] + hx("e9 98 29 da") + NOP_OUT_WIRE[48:] + hx("8a ed fc 72")
    assert NOP_OUT.encode(header_digest=True, data_digest=True) == wire
    assert decode(wire, header_digest=True, data_digest=True) == NOP_OUT


def test_data_digest_of_rfc_zero_vector() -> None:
    pdu = DataIn(itt=0x10, stat_sn=5, exp_cmd_sn=6, max_cmd_sn=7, final=True, data=bytes(32))
    parts = pdu.encode_parts(data_digest=True)
    assert len(parts) == 3
    assert parts[2] == hx("aa 36 91 8a")  # RFC 3720 B.4: 32 bytes of zeroes
    assert decode(b"".join(parts), data_digest=True) == pdu


def test_no_data_digest_without_data() -> None:
    assert TMF_RESPONSE.encode(data_digest=True) == TMF_RESPONSE_WIRE
    assert decode(TMF_RESPONSE_WIRE, data_digest=True) == TMF_RESPONSE


@pytest.mark.parametrize(
    ("length", "padding"),
    [(1, "000000"), (2, "0000"), (3, "00"), (4, ""), (5, "000000"), (8, "")],
)
def test_padding(length: int, padding: str) -> None:
    pdu = NopOut(itt=1, data=b"\x01" * length)
    wire = pdu.encode()
    assert wire[5:8] == length.to_bytes(3, "big")
    assert wire[48:] == b"\x01" * length + bytes.fromhex(padding)
    assert decode(wire) == pdu
    parts = pdu.encode_parts()
    assert parts[1] is pdu.data
    assert len(parts) == (3 if padding else 2)


def test_encode_parts_passes_data_through_uncopied() -> None:
    block = bytearray(b"\x11" * 4096)
    view = memoryview(block)[512:1536]
    pdu = DataIn(itt=1, data=view)
    parts = pdu.encode_parts(header_digest=True, data_digest=True)
    assert parts[1] is view
    assert len(parts[0]) == 52
    assert dataclasses.replace(pdu, data=bytes(view)) == pdu
    decoded = decode(b"".join(parts), header_digest=True, data_digest=True)
    assert decoded == pdu
    assert isinstance(decoded, DataIn)
    assert bytes(decoded.data) == bytes(view)


def test_non_byte_memoryview_counts_bytes() -> None:
    pdu = DataIn(itt=1, data=memoryview(b"\x00\x01\x02\x03" * 2).cast("I"))
    assert pdu.encode()[5:8] == b"\x00\x00\x08"


def test_short_cdb_is_padded_and_decodes_to_16_bytes() -> None:
    short = dataclasses.replace(SCSI_COMMAND, cdb=READ10_CDB[:10])
    assert short.encode() == SCSI_COMMAND_WIRE
    assert decode(SCSI_COMMAND_WIRE) == SCSI_COMMAND


@pytest.mark.parametrize("length", [17, 18, 19, 20, 21, 100, 260])
def test_extended_cdb_lengths(length: int) -> None:
    cdb = bytes(range(length)) if length < 256 else bytes(i & 0xFF for i in range(length))
    pdu = SCSICommand(itt=1, cdb=cdb, bidi_read_expected_length=7)
    wire = pdu.encode()
    ext = length - 16
    assert wire[4] * 4 == (4 + ext + 3) // 4 * 4 + 8
    assert wire[48:51] == (ext + 1).to_bytes(2, "big") + b"\x01"
    assert decode(wire) == pdu


def test_scsi_response_sense_convenience() -> None:
    assert dataclasses.replace(SCSI_RESPONSE, data=b"").encode() == SCSI_RESPONSE_WIRE
    plain = SCSIResponse(itt=1, data=b"\x00\x02\xaa\xbb\xcc")
    decoded = decode(plain.encode())
    assert isinstance(decoded, SCSIResponse)
    assert decoded.sense == b"\xaa\xbb"
    assert decoded.data == plain.data


def test_sense_helpers() -> None:
    assert encode_sense(b"") == b"\x00\x00"
    assert encode_sense(SENSE)[:2] == b"\x00\x12"
    assert decode_sense(encode_sense(SENSE) + b"response data") == SENSE
    assert decode_sense(b"") == b""
    assert decode_sense(b"\x00") == b""
    assert decode_sense(b"\x00\x05ab") == b"ab"  # overlong SenseLength is truncated


def test_login_status() -> None:
    assert LOGIN_REJECT.status is LoginStatus.AUTHENTICATION_FAILURE
    assert LoginStatus.NOT_FOUND.value == 0x0203
    assert LoginStatus.OUT_OF_RESOURCES.value == 0x0302
    decoded = decode(LOGIN_REJECT_WIRE)
    assert isinstance(decoded, LoginResponse)
    assert decoded.status_class == LoginStatusClass.INITIATOR_ERROR
    assert decoded.status is LoginStatus.AUTHENTICATION_FAILURE


def test_unassigned_codes_decode_to_pseudo_members() -> None:
    wire = bytearray(TMF_REQUEST_WIRE)
    wire[1] = 0x80 | 0x55
    decoded = decode(bytes(wire))
    assert isinstance(decoded, TaskManagementRequest)
    assert decoded.function == 0x55
    assert isinstance(decoded.function, TaskManagementFunction)
    assert decoded.function not in set(TaskManagementFunction)
    assert decoded.encode() == bytes(wire)
    assert ISCSIResponse(0x80) == 0x80
    assert TaskAttribute(5).name == "UNASSIGNED_0x05"
    with pytest.raises(ValueError):
        TaskAttribute(-1)


def test_opcode_values() -> None:
    assert Opcode.REJECT.value == 0x3F
    assert Opcode.ASYNC_MESSAGE.value == 0x32
    assert RejectReason.WAITING_FOR_LOGOUT.value == 0x0C
    assert AsyncEvent.VENDOR_SPECIFIC.value == 255


def test_immediate_and_retry_bits_are_lenient() -> None:
    # Bit 7 of byte 0 is reserved and ignored; bit 6 is I on initiator PDUs, ignored on others.
    wire = bytearray(DATA_IN_WIRE)
    wire[0] |= 0xC0
    assert decode(bytes(wire)) == DATA_IN
    wire = bytearray(TEXT_REQUEST_WIRE)
    wire[0] |= 0x40
    assert decode(bytes(wire)) == dataclasses.replace(TEXT_REQUEST, immediate=True)


def test_login_request_always_sets_i_bit() -> None:
    assert LOGIN_REQUEST.encode()[0] == 0x43
    wire = bytearray(LOGIN_REQUEST_WIRE)
    wire[0] = 0x03
    assert decode(bytes(wire)) == LOGIN_REQUEST


@pytest.mark.parametrize(
    ("lun", "raw"),
    [
        (0, 0x0000_0000_0000_0000),
        (1, 0x0001_0000_0000_0000),
        (255, 0x00FF_0000_0000_0000),
        (256, 0x4100_0000_0000_0000),
        (0x1234, 0x5234_0000_0000_0000),
        (16383, 0x7FFF_0000_0000_0000),
    ],
)
def test_lun_encoding(lun: int, raw: int) -> None:
    assert encode_lun(lun) == raw
    assert decode_lun(raw) == lun


def test_lun_decoding_edge_cases() -> None:
    assert decode_lun(0x4005_0000_0000_0000) == 5  # flat space addressing of a small LUN
    for raw in (
        0x0101_0000_0000_0000,  # peripheral addressing, bus 1
        0x8001_0000_0000_0000,  # logical unit addressing
        0xC101_0000_0000_0000,  # extended addressing (REPORT LUNS well-known LU)
        0x0001_0002_0000_0000,  # second level
        0x0000_0000_0000_0005,
    ):
        lun = decode_lun(raw)
        assert lun >= UNSUPPORTED_LUN_FLAG
        assert encode_lun(lun) == raw
    for bad in (-1, 1 << 64):
        with pytest.raises(ValueError):
            decode_lun(bad)
    for bad in (-1, 16384, 1 << 63, 1 << 66):
        with pytest.raises(ValueError):
            encode_lun(bad)


@pytest.mark.parametrize(
    "pdu",
    [
        NopOut(itt=1 << 32),
        SCSICommand(itt=1, cmd_sn=-1),
        LoginRequest(isid=1 << 48),
        SCSICommand(itt=1, cdb=bytes(261)),
        NopOut(data=bytes(1 << 24)),
    ],
    ids=["itt", "negative", "isid", "cdb", "data-length"],
)
def test_encode_rejects_out_of_range(pdu: PDU) -> None:
    with pytest.raises(LocalProtocolError):
        pdu.encode()


def test_the_model_does_not_import_its_reader() -> None:
    # The reader imports the model; the other way round would be an import cycle.
    names: set[str] = set()
    # Its source, also where the module is compiled (its __file__ is then the extension).
    for node in ast.walk(ast.parse(native.source_path(pdu_module.__name__).read_text())):
        if isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update(alias.name for alias in node.names)
    assert not [name for name in names if "pdu_reader" in name]
    assert not hasattr(pdu_module, "__getattr__")
    with pytest.raises(AttributeError):
        _ = pdu_module.PDUReader  # type: ignore[attr-defined]


def test_reserved_tag_default() -> None:
    assert NopOut().itt == RESERVED_TAG
    assert NopOut().encode()[16:24] == b"\xff" * 8
