"""Byte-exact PDU vectors, both ways, built by hand from the RFC 7143 §11 layouts."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from sanstack.errors import LocalProtocolError, RemoteProtocolError
from sanstack.iscsi import pdu as pdu_module
from sanstack.iscsi.codes import (
    RESERVED_TAG,
    UNSUPPORTED_LUN_FLAG,
    AsyncEvent,
    ISCSIResponse,
    LoginStage,
    LoginStatus,
    LoginStatusClass,
    LogoutReason,
    LogoutResponseCode,
    Opcode,
    RejectReason,
    SNACKType,
    TaskAttribute,
    TaskManagementFunction,
    TaskManagementResponseCode,
    decode_lun,
    decode_sense,
    encode_lun,
    encode_sense,
)
from sanstack.iscsi.pdu import (
    PDU,
    R2T,
    AsyncMessage,
    DataDigestError,
    DataIn,
    DataOut,
    HeaderDigestError,
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    PDUFormatError,
    Reject,
    SCSICommand,
    SCSIResponse,
    SNACKRequest,
    TaskManagementRequest,
    TaskManagementResponse,
    TextRequest,
    TextResponse,
)
from sanstack.iscsi.pdu_reader import PDUReader, decode


def hx(text: str) -> bytes:
    """Hex digits with whitespace and ``#`` comments."""
    return bytes.fromhex("".join(line.split("#", 1)[0] for line in text.splitlines()))


SENSE = hx("70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 00 00 00")  # ILLEGAL REQUEST, 24h

NOP_OUT = NopOut(itt=0x11223344, lun=0x0001_0000_0000_0000, cmd_sn=5, exp_stat_sn=7, data=b"ping!")
NOP_OUT_WIRE = hx("""
    40 80 00 00              # .|I|0x00, F=1, reserved
    00 00 00 05              # TotalAHSLength 0, DataSegmentLength 5
    00 01 00 00 00 00 00 00  # LUN 1
    11 22 33 44              # Initiator Task Tag
    ff ff ff ff              # Target Transfer Tag
    00 00 00 05              # CmdSN
    00 00 00 07              # ExpStatSN
    00000000 00000000 00000000 00000000  # reserved
    70 69 6e 67 21 00 00 00  # "ping!" + 3 pad bytes
""")

READ10_CDB = hx("28 00 00 00 10 00 00 00 08 00") + bytes(6)
SCSI_COMMAND = SCSICommand(
    itt=0x10,
    cdb=READ10_CDB,
    expected_data_transfer_length=4096,
    cmd_sn=0x20,
    exp_stat_sn=0x30,
    read=True,
)
SCSI_COMMAND_WIRE = hx("""
    01 c1 00 00              # .|.|0x01, F|R|attr=SIMPLE
    00 00 00 00              # no AHS, no data
    00 00 00 00 00 00 00 00  # LUN 0
    00 00 00 10              # ITT
    00 00 10 00              # Expected Data Transfer Length 4096
    00 00 00 20              # CmdSN
    00 00 00 30              # ExpStatSN
    28 00 00 00 10 00 00 00 08 00 00 00 00 00 00 00  # READ(10) LBA 0x1000, 8 blocks
""")

CDB32 = bytes(range(0xA0, 0xC0))
SCSI_COMMAND_EXT = SCSICommand(
    itt=0x11,
    lun=0x0002_0000_0000_0000,
    cdb=CDB32,
    expected_data_transfer_length=512,
    cmd_sn=1,
    exp_stat_sn=2,
    write=True,
    attr=TaskAttribute.ORDERED,
    immediate=True,
    data=b"\x5a" * 3,
)
SCSI_COMMAND_EXT_WIRE = hx("""
    41 a2 00 00              # .|I|0x01, F|W|attr=ORDERED
    05 00 00 03              # TotalAHSLength 5 words, DataSegmentLength 3
    00 02 00 00 00 00 00 00  # LUN 2
    00 00 00 11              # ITT
    00 00 02 00              # Expected Data Transfer Length 512
    00 00 00 01              # CmdSN
    00 00 00 02              # ExpStatSN
    a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af  # CDB bytes 0-15
    00 11 01 00              # AHSLength 17 (reserved byte + 16), type 1 Extended CDB, reserved
    b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb bc bd be bf  # CDB bytes 16-31
    5a 5a 5a 00              # immediate data + 1 pad byte
""")

SCSI_COMMAND_BIDI = SCSICommand(
    itt=0x12,
    cdb=bytes([0x53]) + bytes(15),
    expected_data_transfer_length=0x1000,
    read=True,
    write=True,
    bidi_read_expected_length=0x2000,
)
SCSI_COMMAND_BIDI_WIRE = hx("""
    01 e1 00 00              # F|R|W|SIMPLE
    02 00 00 00              # TotalAHSLength 2 words
    00 00 00 00 00 00 00 00  # LUN 0
    00 00 00 12              # ITT
    00 00 10 00              # Expected Data Transfer Length
    00 00 00 00 00 00 00 00  # CmdSN, ExpStatSN
    53 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  # XDWRITEREAD(10)
    00 05 02 00              # AHSLength 5, type 2 Bidirectional Read Expected Length
    00 00 20 00              # 0x2000
""")

SCSI_RESPONSE = SCSIResponse(
    itt=0x10,
    status=0x02,
    stat_sn=1,
    exp_cmd_sn=2,
    max_cmd_sn=3,
    exp_data_sn=4,
    residual_underflow=True,
    bidi_residual_overflow=True,
    residual_count=0x200,
    bidi_residual_count=0x100,
    snack_tag=0x77,
    sense=SENSE,
    data=encode_sense(SENSE),
)
SCSI_RESPONSE_WIRE = hx("""
    21 92 00 02              # .|.|0x21, 1|o|U, Response 0, Status CHECK CONDITION
    00 00 00 14              # DataSegmentLength 20
    00 00 00 00 00 00 00 00  # reserved
    00 00 00 10              # ITT
    00 00 00 77              # SNACK Tag
    00 00 00 01              # StatSN
    00 00 00 02              # ExpCmdSN
    00 00 00 03              # MaxCmdSN
    00 00 00 04              # ExpDataSN
    00 00 01 00              # Bidirectional Read Residual Count
    00 00 02 00              # Residual Count
    00 12                    # SenseLength 18
    70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 00 00 00
""")

TMF_REQUEST = TaskManagementRequest(
    function=TaskManagementFunction.ABORT_TASK,
    itt=0x20,
    lun=encode_lun(3),
    referenced_task_tag=0x10,
    cmd_sn=8,
    exp_stat_sn=9,
    ref_cmd_sn=7,
    exp_data_sn=6,
)
TMF_REQUEST_WIRE = hx("""
    42 81 00 00              # .|I|0x02, 1|ABORT TASK
    00 00 00 00
    00 03 00 00 00 00 00 00  # LUN 3
    00 00 00 20              # ITT
    00 00 00 10              # Referenced Task Tag
    00 00 00 08              # CmdSN
    00 00 00 09              # ExpStatSN
    00 00 00 07              # RefCmdSN
    00 00 00 06              # ExpDataSN
    00 00 00 00 00 00 00 00  # reserved
""")

TMF_RESPONSE = TaskManagementResponse(
    itt=0x20,
    response=TaskManagementResponseCode.TASK_DOES_NOT_EXIST,
    stat_sn=4,
    exp_cmd_sn=9,
    max_cmd_sn=0x28,
)
TMF_RESPONSE_WIRE = hx("""
    22 80 01 00              # .|.|0x22, 1, Response 1 (task does not exist)
    00 00 00 00
    00 00 00 00 00 00 00 00  # reserved
    00 00 00 20              # ITT
    00 00 00 00              # reserved
    00 00 00 04 00 00 00 09 00 00 00 28  # StatSN, ExpCmdSN, MaxCmdSN
    00000000 00000000 00000000           # reserved
""")

LOGIN_DATA = b"SessionType=Normal\x00"  # 19 bytes
LOGIN_REQUEST = LoginRequest(
    isid=0x00023D000001,
    itt=0x1,
    cid=0x7,
    cmd_sn=0x10,
    exp_stat_sn=0x20,
    transit=True,
    nsg=LoginStage.LOGIN_OPERATIONAL_NEGOTIATION,
    data=LOGIN_DATA,
)
LOGIN_REQUEST_WIRE = (
    hx("""
    43 81 00 00              # .|1|0x03, T|CSG 0|NSG 1, Version-max 0, Version-min 0
    00 00 00 13              # DataSegmentLength 19
    00 02 3d 00 00 01        # ISID
    00 00                    # TSIH
    00 00 00 01              # ITT
    00 07 00 00              # CID, reserved
    00 00 00 10              # CmdSN
    00 00 00 20              # ExpStatSN
    00000000 00000000 00000000 00000000  # reserved
""")
    + LOGIN_DATA
    + hx("00")  # 1 pad byte
)

LOGIN_RESPONSE = LoginResponse(
    isid=0x80123456789A,
    itt=0x1,
    tsih=0x1234,
    stat_sn=0x100,
    exp_cmd_sn=0x11,
    max_cmd_sn=0x50,
    transit=True,
    csg=LoginStage.LOGIN_OPERATIONAL_NEGOTIATION,
    nsg=LoginStage.FULL_FEATURE_PHASE,
    data=b"HeaderDigest=None\x00",  # 18 bytes
)
LOGIN_RESPONSE_WIRE = (
    hx("""
    23 87 00 00              # .|.|0x23, T|CSG 1|NSG 3, Version-max 0, Version-active 0
    00 00 00 12              # DataSegmentLength 18
    80 12 34 56 78 9a        # ISID
    12 34                    # TSIH
    00 00 00 01              # ITT
    00 00 00 00              # reserved
    00 00 01 00              # StatSN
    00 00 00 11              # ExpCmdSN
    00 00 00 50              # MaxCmdSN
    00 00                    # Status-Class 0, Status-Detail 0
    00 00 00 00 00 00 00 00 00 00  # reserved
""")
    + b"HeaderDigest=None\x00"
    + hx("00 00")
)

LOGIN_REJECT = LoginResponse(isid=0x1, itt=0x2, status_class=2, status_detail=1)
LOGIN_REJECT_WIRE = hx("""
    23 00 00 00 00 00 00 00
    00 00 00 00 00 01 00 00  # ISID 1, TSIH 0
    00 00 00 02 00 00 00 00  # ITT, reserved
    00 00 00 00 00 00 00 00 00 00 00 00  # StatSN, ExpCmdSN, MaxCmdSN
    02 01                    # initiator error: authentication failure
    00 00 00 00 00 00 00 00 00 00
""")

TEXT_REQUEST = TextRequest(itt=1, cmd_sn=1, exp_stat_sn=2, data=b"SendTargets=All\x00")
TEXT_REQUEST_WIRE = (
    hx("""
    04 80 00 00              # .|.|0x04, F
    00 00 00 10              # DataSegmentLength 16
    00 00 00 00 00 00 00 00  # LUN
    00 00 00 01              # ITT
    ff ff ff ff              # TTT
    00 00 00 01 00 00 00 02  # CmdSN, ExpStatSN
    00000000 00000000 00000000 00000000
""")
    + b"SendTargets=All\x00"
)

TEXT_RESPONSE = TextResponse(
    itt=1,
    ttt=0x55,
    stat_sn=2,
    exp_cmd_sn=2,
    max_cmd_sn=3,
    final=False,
    cont=True,
    data=b"TargetName=iqn.t\x00",
)
TEXT_RESPONSE_WIRE = (
    hx("""
    24 40 00 00              # .|.|0x24, C
    00 00 00 11              # DataSegmentLength 17
    00 00 00 00 00 00 00 00
    00 00 00 01 00 00 00 55  # ITT, TTT
    00 00 00 02 00 00 00 02 00 00 00 03  # StatSN, ExpCmdSN, MaxCmdSN
    00000000 00000000 00000000
""")
    + b"TargetName=iqn.t\x00"
    + hx("00 00 00")
)

DATA_OUT = DataOut(
    itt=0x10,
    ttt=0x55,
    lun=encode_lun(2),
    exp_stat_sn=3,
    data_sn=1,
    buffer_offset=0x2000,
    final=True,
    data=b"\xaa\xbb",
)
DATA_OUT_WIRE = hx("""
    05 80 00 00              # .|.|0x05, F
    00 00 00 02              # DataSegmentLength 2
    00 02 00 00 00 00 00 00  # LUN 2
    00 00 00 10              # ITT
    00 00 00 55              # TTT
    00 00 00 00              # reserved
    00 00 00 03              # ExpStatSN
    00 00 00 00              # reserved
    00 00 00 01              # DataSN
    00 00 20 00              # Buffer Offset
    00 00 00 00              # reserved
    aa bb 00 00              # data + 2 pad bytes
""")

DATA_IN = DataIn(
    itt=0x10,
    stat_sn=5,
    exp_cmd_sn=6,
    max_cmd_sn=7,
    data_sn=2,
    buffer_offset=0x1000,
    residual_count=0x10,
    final=True,
    residual_underflow=True,
    status_present=True,
    data=b"abc",
)
DATA_IN_WIRE = hx("""
    25 83 00 00              # .|.|0x25, F|U|S, reserved, Status GOOD
    00 00 00 03
    00 00 00 00 00 00 00 00  # LUN
    00 00 00 10 ff ff ff ff  # ITT, TTT
    00 00 00 05 00 00 00 06 00 00 00 07  # StatSN, ExpCmdSN, MaxCmdSN
    00 00 00 02              # DataSN
    00 00 10 00              # Buffer Offset
    00 00 00 10              # Residual Count
    61 62 63 00
""")

LOGOUT_REQUEST = LogoutRequest(
    itt=0x30,
    reason=LogoutReason.CLOSE_CONNECTION,
    cid=1,
    cmd_sn=10,
    exp_stat_sn=11,
    immediate=True,
)
LOGOUT_REQUEST_WIRE = hx("""
    46 81 00 00              # .|I|0x06, 1|reason 1
    00 00 00 00
    00 00 00 00 00 00 00 00
    00 00 00 30              # ITT
    00 01 00 00              # CID, reserved
    00 00 00 0a 00 00 00 0b  # CmdSN, ExpStatSN
    00000000 00000000 00000000 00000000
""")

LOGOUT_RESPONSE = LogoutResponse(
    itt=0x30,
    response=LogoutResponseCode.CID_NOT_FOUND,
    stat_sn=11,
    exp_cmd_sn=11,
    max_cmd_sn=20,
    time2wait=2,
    time2retain=20,
)
LOGOUT_RESPONSE_WIRE = hx("""
    26 80 01 00              # .|.|0x26, 1, Response 1
    00 00 00 00
    00 00 00 00 00 00 00 00
    00 00 00 30 00 00 00 00  # ITT, reserved
    00 00 00 0b 00 00 00 0b 00 00 00 14  # StatSN, ExpCmdSN, MaxCmdSN
    00 00 00 00              # reserved
    00 02 00 14              # Time2Wait, Time2Retain
    00 00 00 00
""")

SNACK = SNACKRequest(
    type=SNACKType.STATUS,
    itt=0x10,
    lun=encode_lun(1),
    exp_stat_sn=5,
    beg_run=3,
    run_length=2,
)
SNACK_WIRE = hx("""
    10 81 00 00              # .|.|0x10, 1|type 1 (Status)
    00 00 00 00
    00 01 00 00 00 00 00 00  # LUN 1
    00 00 00 10 ff ff ff ff  # ITT, TTT/SNACK Tag
    00 00 00 00 00 00 00 05  # reserved, ExpStatSN
    00 00 00 00 00 00 00 00  # reserved
    00 00 00 03 00 00 00 02  # BegRun, RunLength
""")

NOP_IN = NopIn(ttt=0x99, stat_sn=4, exp_cmd_sn=5, max_cmd_sn=6, data=b"pong")
NOP_IN_WIRE = hx("""
    20 80 00 00 00 00 00 04
    00 00 00 00 00 00 00 00
    ff ff ff ff 00 00 00 99  # ITT reserved, TTT
    00 00 00 04 00 00 00 05 00 00 00 06
    00000000 00000000 00000000
    70 6f 6e 67              # "pong", no padding
""")

R2T_PDU = R2T(
    itt=0x10,
    ttt=0x1234,
    lun=encode_lun(1),
    stat_sn=5,
    exp_cmd_sn=6,
    max_cmd_sn=7,
    r2t_sn=1,
    buffer_offset=0x10000,
    desired_data_transfer_length=0x40000,
)
R2T_WIRE = hx("""
    31 80 00 00 00 00 00 00
    00 01 00 00 00 00 00 00  # LUN 1
    00 00 00 10 00 00 12 34  # ITT, TTT
    00 00 00 05 00 00 00 06 00 00 00 07  # StatSN, ExpCmdSN, MaxCmdSN
    00 00 00 01              # R2TSN
    00 01 00 00              # Buffer Offset
    00 04 00 00              # Desired Data Transfer Length
""")

ASYNC_LOGOUT = AsyncMessage(
    async_event=AsyncEvent.LOGOUT_REQUEST,
    stat_sn=9,
    exp_cmd_sn=10,
    max_cmd_sn=11,
    parameter3=5,
)
ASYNC_LOGOUT_WIRE = hx("""
    32 80 00 00 00 00 00 00
    00 00 00 00 00 00 00 00
    ff ff ff ff 00 00 00 00  # 0xffffffff, reserved
    00 00 00 09 00 00 00 0a 00 00 00 0b
    01 00                    # AsyncEvent 1, AsyncVCode 0
    00 00 00 00 00 05        # Parameter1, Parameter2, Parameter3
    00 00 00 00
""")

ASYNC_SCSI = AsyncMessage(
    async_event=AsyncEvent.SCSI_ASYNC_EVENT,
    lun=encode_lun(4),
    async_vcode=0x7,
    parameter1=0x0102,
    parameter2=0x0304,
    data=encode_sense(b"\x72\x06\x2a"),
)
ASYNC_SCSI_WIRE = hx("""
    32 80 00 00 00 00 00 05  # DataSegmentLength 5
    00 04 00 00 00 00 00 00  # LUN 4
    ff ff ff ff 00 00 00 00
    00 00 00 00 00 00 00 00 00 00 00 00
    00 07 01 02 03 04 00 00
    00 00 00 00
    00 03 72 06 2a 00 00 00  # SenseLength 3, sense, 3 pad bytes
""")

REJECT = Reject(
    reason=RejectReason.DATA_DIGEST_ERROR,
    stat_sn=3,
    exp_cmd_sn=4,
    max_cmd_sn=5,
    data=DATA_OUT_WIRE[:48],
)
REJECT_WIRE = (
    hx("""
    3f 80 02 00              # .|.|0x3f, 1, Reason 2 (data digest error)
    00 00 00 30              # DataSegmentLength 48
    00 00 00 00 00 00 00 00
    ff ff ff ff 00 00 00 00
    00 00 00 03 00 00 00 04 00 00 00 05
    00 00 00 00              # DataSN/R2TSN
    00 00 00 00 00 00 00 00
""")
    + DATA_OUT_WIRE[:48]
)

VECTORS = [
    pytest.param(NOP_OUT, NOP_OUT_WIRE, id="nop-out"),
    pytest.param(SCSI_COMMAND, SCSI_COMMAND_WIRE, id="scsi-command"),
    pytest.param(SCSI_COMMAND_EXT, SCSI_COMMAND_EXT_WIRE, id="scsi-command-32-byte-cdb"),
    pytest.param(SCSI_COMMAND_BIDI, SCSI_COMMAND_BIDI_WIRE, id="scsi-command-bidi"),
    pytest.param(SCSI_RESPONSE, SCSI_RESPONSE_WIRE, id="scsi-response"),
    pytest.param(TMF_REQUEST, TMF_REQUEST_WIRE, id="tmf-request"),
    pytest.param(TMF_RESPONSE, TMF_RESPONSE_WIRE, id="tmf-response"),
    pytest.param(LOGIN_REQUEST, LOGIN_REQUEST_WIRE, id="login-request"),
    pytest.param(LOGIN_RESPONSE, LOGIN_RESPONSE_WIRE, id="login-response"),
    pytest.param(LOGIN_REJECT, LOGIN_REJECT_WIRE, id="login-response-failure"),
    pytest.param(TEXT_REQUEST, TEXT_REQUEST_WIRE, id="text-request"),
    pytest.param(TEXT_RESPONSE, TEXT_RESPONSE_WIRE, id="text-response"),
    pytest.param(DATA_OUT, DATA_OUT_WIRE, id="data-out"),
    pytest.param(DATA_IN, DATA_IN_WIRE, id="data-in"),
    pytest.param(LOGOUT_REQUEST, LOGOUT_REQUEST_WIRE, id="logout-request"),
    pytest.param(LOGOUT_RESPONSE, LOGOUT_RESPONSE_WIRE, id="logout-response"),
    pytest.param(SNACK, SNACK_WIRE, id="snack"),
    pytest.param(NOP_IN, NOP_IN_WIRE, id="nop-in"),
    pytest.param(R2T_PDU, R2T_WIRE, id="r2t"),
    pytest.param(ASYNC_LOGOUT, ASYNC_LOGOUT_WIRE, id="async-logout"),
    pytest.param(ASYNC_SCSI, ASYNC_SCSI_WIRE, id="async-scsi-event"),
    pytest.param(REJECT, REJECT_WIRE, id="reject"),
]


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
    assert decoded.status_class is LoginStatusClass.INITIATOR_ERROR


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
    for node in ast.walk(ast.parse(Path(pdu_module.__file__).read_text())):
        if isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update(alias.name for alias in node.names)
    assert not [name for name in names if "pdu_reader" in name]
    assert not hasattr(pdu_module, "__getattr__")
    with pytest.raises(AttributeError):
        _ = pdu_module.PDUReader  # type: ignore[attr-defined]


# --- PDUReader behaviour -------------------------------------------------------------------


def drain(reader: PDUReader) -> list[PDU]:
    out = []
    while (pdu := reader.next_pdu()) is not None:
        out.append(pdu)
    return out


def test_reader_byte_at_a_time() -> None:
    stream = b"".join(wire for _, wire in (p.values for p in VECTORS))  # type: ignore[misc]
    reader = PDUReader(max_data_segment_length=65536)
    got: list[PDU] = []
    for i in range(len(stream)):
        reader.feed(stream[i : i + 1])
        got += drain(reader)
    assert got == [p.values[0] for p in VECTORS]
    assert reader.buffered == 0


def test_reader_accepts_buffer_types_and_keeps_partial_pdus() -> None:
    reader = PDUReader()
    reader.feed(bytearray(DATA_OUT_WIRE[:50]))
    assert reader.next_pdu() is None
    assert reader.buffered == 50
    reader.feed(memoryview(DATA_OUT_WIRE)[50:])
    assert reader.next_pdu() == DATA_OUT
    assert reader.next_pdu() is None
    reader.feed(b"")
    assert reader.buffered == 0


def test_reader_hands_out_exact_fed_segment_without_copy() -> None:
    reader = PDUReader(max_data_segment_length=1 << 20)
    payload = bytes(range(256)) * 16
    pdu = DataOut(itt=1, data=payload)
    header, segment = pdu.encode_parts()
    reader.feed(header)
    reader.feed(segment)
    decoded = reader.next_pdu()
    assert decoded == pdu
    assert isinstance(decoded, DataOut)
    assert decoded.data is segment


def test_reader_unknown_opcode_is_skipped() -> None:
    bogus = bytearray(NOP_OUT_WIRE)
    bogus[0] = 0x1C  # a vendor-specific initiator opcode
    reader = PDUReader()
    reader.feed(bytes(bogus) + TEXT_REQUEST_WIRE)
    with pytest.raises(PDUFormatError) as info:
        reader.next_pdu()
    assert info.value.reject_reason is RejectReason.COMMAND_NOT_SUPPORTED
    assert info.value.header == bytes(bogus[:48])
    assert not info.value.fatal
    assert isinstance(info.value, RemoteProtocolError)
    assert reader.next_pdu() == TEXT_REQUEST


def test_reader_data_digest_error_consumes_pdu() -> None:
    good = DATA_OUT.encode(header_digest=True, data_digest=True)
    bad = bytearray(good)
    bad[52] ^= 0xFF  # first data byte
    reader = PDUReader(header_digest=True, data_digest=True)
    reader.feed(bytes(bad) + good)
    with pytest.raises(DataDigestError) as info:
        reader.next_pdu()
    assert info.value.header == good[:48]
    assert info.value.pdu == dataclasses.replace(DATA_OUT, data=b"")
    assert info.value.reject_reason is RejectReason.DATA_DIGEST_ERROR
    assert reader.next_pdu() == DATA_OUT
    reject = Reject(reason=info.value.reject_reason, data=info.value.header)
    assert decode(reject.encode()) == reject


def test_reader_header_digest_error_is_fatal() -> None:
    wire = bytearray(NOP_OUT.encode(header_digest=True))
    wire[20] ^= 1
    reader = PDUReader(header_digest=True)
    reader.feed(bytes(wire))
    with pytest.raises(HeaderDigestError) as info:
        reader.next_pdu()
    assert info.value.fatal
    with pytest.raises(HeaderDigestError):
        reader.next_pdu()
    reader.feed(NOP_OUT_WIRE)
    assert reader.buffered == 0


def test_reader_oversized_segment_is_fatal_before_data_arrives() -> None:
    reader = PDUReader(max_data_segment_length=16)
    reader.feed(DataOut(itt=1, data=bytes(17)).encode()[:48])
    with pytest.raises(PDUFormatError) as info:
        reader.next_pdu()
    assert info.value.fatal
    assert info.value.reject_reason is RejectReason.PROTOCOL_ERROR
    with pytest.raises(PDUFormatError):
        reader.next_pdu()


def test_reader_settings_apply_to_buffered_bytes() -> None:
    reader = PDUReader(max_data_segment_length=1)
    reader.feed(NOP_OUT.encode(header_digest=True, data_digest=True))
    reader.set_max_data_segment_length(8192)
    reader.set_digests(header=True, data=True)
    assert reader.next_pdu() == NOP_OUT
    with pytest.raises(ValueError):
        reader.set_max_data_segment_length(1 << 24)


@pytest.mark.parametrize(
    "ahs",
    [
        hx("00 09 01 00 00 00 00 00"),  # AHSLength past TotalAHSLength
        hx("00 01 01 00"),  # Extended CDB AHS without CDB bytes
        hx("00 04 02 00 00 00 00 00"),  # bidirectional AHS of the wrong length
        hx("00 05 02 00 00 00 00 01 00 05 02 00 00 00 00 02"),  # two bidirectional AHS
        hx("00 02 01 00 aa 00 00 00 00 02 01 00 bb 00 00 00"),  # two Extended CDB AHS
        hx("00 f6 01 00") + bytes(248),  # 245 extended CDB bytes: CDB over 260
    ],
    ids=["overrun", "empty-extended-cdb", "bidi-length", "two-bidi", "two-ext-cdb", "cdb-261"],
)
def test_reader_bad_ahs(ahs: bytes) -> None:
    wire = bytearray(SCSI_COMMAND_WIRE)
    wire[4] = len(ahs) // 4
    reader = PDUReader()
    reader.feed(bytes(wire) + ahs + NOP_OUT_WIRE)
    with pytest.raises(PDUFormatError) as info:
        reader.next_pdu()
    assert info.value.reject_reason is RejectReason.INVALID_PDU_FIELD
    assert info.value.header == bytes(wire[:48])
    assert not info.value.fatal
    assert reader.next_pdu() == NOP_OUT


def test_reader_skips_unknown_ahs_type() -> None:
    wire = bytearray(SCSI_COMMAND_WIRE)
    wire[4] = 2
    decoded = decode(bytes(wire) + hx("00 05 3c 00 01 02 03 04"))
    assert decoded == SCSI_COMMAND


def test_decode_rejects_truncated_and_trailing() -> None:
    with pytest.raises(PDUFormatError):
        decode(NOP_OUT_WIRE[:-1])
    with pytest.raises(PDUFormatError):
        decode(NOP_OUT_WIRE[:20])
    with pytest.raises(PDUFormatError):
        decode(NOP_OUT_WIRE + b"\x00")


def test_reserved_tag_default() -> None:
    assert NopOut().itt == RESERVED_TAG
    assert NopOut().encode()[16:24] == b"\xff" * 8
