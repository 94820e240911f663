"""Byte-exact iSCSI PDU vectors, built by hand from the RFC 7143 §11 layouts: one PDU of
every kind with its wire bytes, for the codec tests both ways and the reader tests."""

from __future__ import annotations

import pytest
from tests.support.wire import hx

from sanstack.iscsi.codes import (
    AsyncEvent,
    LoginStage,
    LogoutReason,
    LogoutResponseCode,
    RejectReason,
    SNACKType,
    TaskAttribute,
    TaskManagementFunction,
    TaskManagementResponseCode,
    encode_sense,
)
from sanstack.iscsi.pdu import (
    R2T,
    AsyncMessage,
    DataIn,
    DataOut,
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    Reject,
    SCSICommand,
    SCSIResponse,
    SNACKRequest,
    TaskManagementRequest,
    TaskManagementResponse,
    TextRequest,
    TextResponse,
)
from sanstack.scsi.lun import encode_lun

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
