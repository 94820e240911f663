"""iSCSI PDU model and encoder (RFC 7143 §11), sans-IO.

Every PDU is a frozen, slotted dataclass whose field names are the RFC names in snake_case.
Sequence numbers and tags are plain 32-bit unsigned ints; ``lun`` is the raw 64-bit LUN field
(see :mod:`sanstack.scsi.lun` for the SAM addressing). The
codes the fields carry are in :mod:`sanstack.iscsi.codes`; decoding is
:mod:`sanstack.iscsi.pdu_reader`, which raises the errors defined at the end of this module.

Wire layout (§11.2): a 48-byte Basic Header Segment, Additional Header Segments (SCSI Command
only), an optional CRC32C header digest, then the data segment padded to 4 bytes and an
optional data digest (present only when the data segment is not empty).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from operator import attrgetter
from typing import ClassVar, Final, TypeAlias

from sanstack.errors import LocalProtocolError, RemoteProtocolError
from sanstack.iscsi.codes import (
    MAX_CDB_LENGTH,
    MAX_DATA_SEGMENT_LENGTH,
    RESERVED_TAG,
    AHSType,
    AsyncEvent,
    ISCSIResponse,
    LoginStage,
    LoginStatus,
    LogoutReason,
    LogoutResponseCode,
    Opcode,
    RejectReason,
    SNACKType,
    TaskAttribute,
    TaskManagementFunction,
    TaskManagementResponseCode,
    encode_sense,
)
from sanstack.iscsi.digest import crc32c, crc32c_extend

# Bytes 4-7 of every BHS are packed as one word: TotalAHSLength << 24 | DataSegmentLength.
# The attrgetters list the remaining fields in wire order; pdu_reader unpacks the same structs.
NOP_OUT_STRUCT = struct.Struct(">BB2xIQIIII16x")  # also Text Request (§11.10)
SCSI_COMMAND_STRUCT = struct.Struct(">BB2xIQIIII16s")
SCSI_RESPONSE_STRUCT = struct.Struct(">BBBBI8xIIIIIIII")
TMF_REQUEST_STRUCT = struct.Struct(">BB2xIQIIIIII8x")
TMF_RESPONSE_STRUCT = struct.Struct(">BBBxI8xI4xIII12x")
DATA_OUT_STRUCT = struct.Struct(">BB2xIQII4xI4xII4x")
DATA_IN_STRUCT = struct.Struct(">BBxBIQIIIIIIII")
R2T_STRUCT = struct.Struct(">BB2xIQIIIIIIII")
ASYNC_STRUCT = struct.Struct(">BB2xIQI4xIIIBBHHH4x")
NOP_IN_STRUCT = struct.Struct(">BB2xIQIIIII12x")  # also Text Response (§11.11)
LOGIN_REQUEST_STRUCT = struct.Struct(">BBBBIHIHIH2xII16x")
LOGIN_RESPONSE_STRUCT = struct.Struct(">BBBBIHIHI4xIIIBB10x")
LOGOUT_REQUEST_STRUCT = struct.Struct(">BB2xI8xIH2xII16x")
LOGOUT_RESPONSE_STRUCT = struct.Struct(">BBBxI8xI4xIII4xHH4x")
SNACK_STRUCT = struct.Struct(">BB2xIQII4xI8xII")
REJECT_STRUCT = struct.Struct(">BBBxI8xI4xIIII8x")
AHS_HEADER_STRUCT = struct.Struct(">HBx")
BIDI_AHS_STRUCT = struct.Struct(">HBxI")
_LE32 = struct.Struct("<I")

_NOP_OUT_FIELDS = attrgetter("lun", "itt", "ttt", "cmd_sn", "exp_stat_sn")
_SCSI_COMMAND_FIELDS = attrgetter(
    "lun", "itt", "expected_data_transfer_length", "cmd_sn", "exp_stat_sn"
)
_SCSI_RESPONSE_FIELDS = attrgetter(
    "itt", "snack_tag", "stat_sn", "exp_cmd_sn", "max_cmd_sn", "exp_data_sn",
    "bidi_residual_count", "residual_count",
)  # fmt: skip
_TMF_REQUEST_FIELDS = attrgetter(
    "lun", "itt", "referenced_task_tag", "cmd_sn", "exp_stat_sn", "ref_cmd_sn", "exp_data_sn"
)
_TARGET_SN_FIELDS = attrgetter("itt", "stat_sn", "exp_cmd_sn", "max_cmd_sn")
_NOP_IN_FIELDS = attrgetter("lun", "itt", "ttt", "stat_sn", "exp_cmd_sn", "max_cmd_sn")
_DATA_OUT_FIELDS = attrgetter("lun", "itt", "ttt", "exp_stat_sn", "data_sn", "buffer_offset")
_DATA_IN_FIELDS = attrgetter(
    "lun", "itt", "ttt", "stat_sn", "exp_cmd_sn", "max_cmd_sn", "data_sn", "buffer_offset",
    "residual_count",
)  # fmt: skip
_R2T_FIELDS = attrgetter(
    "lun", "itt", "ttt", "stat_sn", "exp_cmd_sn", "max_cmd_sn", "r2t_sn", "buffer_offset",
    "desired_data_transfer_length",
)  # fmt: skip
_ASYNC_FIELDS = attrgetter(
    "stat_sn", "exp_cmd_sn", "max_cmd_sn", "async_event", "async_vcode", "parameter1",
    "parameter2", "parameter3",
)  # fmt: skip
_LOGIN_REQUEST_FIELDS = attrgetter("tsih", "itt", "cid", "cmd_sn", "exp_stat_sn")
_LOGIN_RESPONSE_FIELDS = attrgetter(
    "tsih", "itt", "stat_sn", "exp_cmd_sn", "max_cmd_sn", "status_class", "status_detail"
)
_LOGOUT_REQUEST_FIELDS = attrgetter("itt", "cid", "cmd_sn", "exp_stat_sn")
_LOGOUT_RESPONSE_FIELDS = attrgetter(
    "itt", "stat_sn", "exp_cmd_sn", "max_cmd_sn", "time2wait", "time2retain"
)
_SNACK_FIELDS = attrgetter("lun", "itt", "ttt", "exp_stat_sn", "beg_run", "run_length")
_REJECT_FIELDS = attrgetter("stat_sn", "exp_cmd_sn", "max_cmd_sn", "data_sn_r2t_sn")

PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")  # indexed by length & 3
# Flag bits are built as ``bit * flag``: a bool multiplies as 0 or 1, without a branch.
_I = 0x40  # immediate bit of the opcode byte
_F = 0x80  # final bit of byte 1, fixed to 1 on single-PDU messages


def assemble(
    header: bytes, data: bytes | memoryview, header_digest: bool, data_digest: bool
) -> list[bytes | memoryview]:
    if header_digest:
        header += _LE32.pack(crc32c(header))
    n = len(data)
    if not n:
        return [header]
    if n > MAX_DATA_SEGMENT_LENGTH:
        raise LocalProtocolError(f"data segment of {n} bytes exceeds the 24-bit length field")
    pad = PADDING[n & 3]
    if data_digest:
        crc = crc32c(data)
        if pad:
            crc = crc32c_extend(crc, pad)
        return [header, data, pad + _LE32.pack(crc)]
    if pad:
        return [header, data, pad]
    return [header, data]


class _PDUBase:
    __slots__ = ()

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        raise NotImplementedError

    def encode_parts(
        self, header_digest: bool = False, data_digest: bool = False
    ) -> list[bytes | memoryview]:
        """Return header (+AHS, +digest), the data segment itself, then padding (+digest).

        The data segment object is passed through uncopied, for ``transport.writelines``.
        Empty parts are left out.
        """
        try:
            header, data = self._pack()
        except struct.error as exc:
            raise LocalProtocolError(f"{type(self).__name__}: field out of range: {exc}") from exc
        return assemble(header, data, header_digest, data_digest)

    def encode(self, header_digest: bool = False, data_digest: bool = False) -> bytes:
        """Return the whole PDU as bytes."""
        parts = self.encode_parts(header_digest, data_digest)
        if len(parts) == 1:
            return bytes(parts[0])
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class NopOut(_PDUBase):
    """RFC 7143 §11.18 NOP-Out."""

    itt: int = RESERVED_TAG
    ttt: int = RESERVED_TAG
    lun: int = 0
    cmd_sn: int = 0
    exp_stat_sn: int = 0
    immediate: bool = True
    data: bytes = b""

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        b0 = Opcode.NOP_OUT | _I * self.immediate
        return NOP_OUT_STRUCT.pack(b0, _F, len(self.data), *_NOP_OUT_FIELDS(self)), self.data


def _command_ahs(cdb: bytes, bidi_read_expected_length: int | None) -> bytes:
    parts: list[bytes] = []
    if len(cdb) > 16:
        if len(cdb) > MAX_CDB_LENGTH:
            raise LocalProtocolError(f"CDB of {len(cdb)} bytes exceeds {MAX_CDB_LENGTH}")
        ext = cdb[16:]
        # AHSLength counts the reserved byte but not the padding (§11.2.2.3).
        parts += (AHS_HEADER_STRUCT.pack(len(ext) + 1, AHSType.EXTENDED_CDB), ext)
        parts.append(PADDING[len(ext) & 3])
    if bidi_read_expected_length is not None:
        ahs_type = AHSType.BIDIRECTIONAL_READ_EXPECTED_DATA_TRANSFER_LENGTH
        parts.append(BIDI_AHS_STRUCT.pack(5, ahs_type, bidi_read_expected_length))
    return b"".join(parts)


# Not frozen, unlike the other PDUs: the target decodes one per command, and a frozen
# __init__ costs twice as much. Nothing changes one once made.
@dataclass(slots=True, init=False)
class SCSICommand(_PDUBase):
    """RFC 7143 §11.3 SCSI Command.

    ``cdb`` is the whole CDB; bytes past 16 travel in an Extended CDB AHS. Decoding yields the
    16-byte BHS field (zero-padded) plus any extension: the SCSI layer knows the real length.
    """

    itt: int
    lun: int = 0
    cdb: bytes = b""
    expected_data_transfer_length: int = 0
    cmd_sn: int = 0
    exp_stat_sn: int = 0
    final: bool = True
    read: bool = False
    write: bool = False
    attr: TaskAttribute = TaskAttribute.SIMPLE
    immediate: bool = False
    bidi_read_expected_length: int | None = None
    data: bytes = b""

    # Written out (the dataclass makes none, init=False): compiled by mypyc, a generated
    # __init__ stays interpreted Python, and the target decodes one for every command.
    def __init__(  # noqa: PLR0917 - the dataclass's own signature
        self,
        itt: int,
        lun: int = 0,
        cdb: bytes = b"",
        expected_data_transfer_length: int = 0,
        cmd_sn: int = 0,
        exp_stat_sn: int = 0,
        final: bool = True,
        read: bool = False,
        write: bool = False,
        attr: TaskAttribute = TaskAttribute.SIMPLE,
        immediate: bool = False,
        bidi_read_expected_length: int | None = None,
        data: bytes = b"",
    ) -> None:
        self.itt = itt
        self.lun = lun
        self.cdb = cdb
        self.expected_data_transfer_length = expected_data_transfer_length
        self.cmd_sn = cmd_sn
        self.exp_stat_sn = exp_stat_sn
        self.final = final
        self.read = read
        self.write = write
        self.attr = attr
        self.immediate = immediate
        self.bidi_read_expected_length = bidi_read_expected_length
        self.data = data

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        cdb = self.cdb
        ahs = b""
        if len(cdb) > 16 or self.bidi_read_expected_length is not None:
            ahs = _command_ahs(cdb, self.bidi_read_expected_length)
        b0 = Opcode.SCSI_COMMAND | _I * self.immediate
        flags = 0x80 * self.final | 0x40 * self.read | 0x20 * self.write | self.attr
        word = (len(ahs) << 22) | len(self.data)  # TotalAHSLength counts 4-byte words
        # "16s" keeps the first 16 CDB bytes and zero-pads shorter CDBs.
        header = SCSI_COMMAND_STRUCT.pack(b0, flags, word, *_SCSI_COMMAND_FIELDS(self), cdb)
        return header + ahs if ahs else header, self.data


@dataclass(frozen=True, slots=True)
class SCSIResponse(_PDUBase):
    """RFC 7143 §11.4 SCSI Response.

    ``data`` is the raw data segment. ``sense`` is a convenience: when ``data`` is empty,
    encoding sends SenseLength + ``sense`` (§11.4.7); decoding fills ``sense`` from the
    segment and keeps the segment in ``data``.
    """

    itt: int
    status: int = 0
    response: ISCSIResponse = ISCSIResponse.COMMAND_COMPLETED_AT_TARGET
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    exp_data_sn: int = 0
    residual_overflow: bool = False
    residual_underflow: bool = False
    bidi_residual_overflow: bool = False
    bidi_residual_underflow: bool = False
    residual_count: int = 0
    bidi_residual_count: int = 0
    snack_tag: int = 0
    sense: bytes = b""
    data: bytes = b""

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        data = self.data
        if not data and self.sense:
            data = encode_sense(self.sense)
        flags = _F | 0x10 * self.bidi_residual_overflow | 0x08 * self.bidi_residual_underflow
        flags |= 0x04 * self.residual_overflow | 0x02 * self.residual_underflow
        b0, b2, b3 = Opcode.SCSI_RESPONSE, self.response, self.status
        fields = _SCSI_RESPONSE_FIELDS(self)
        return SCSI_RESPONSE_STRUCT.pack(b0, flags, b2, b3, len(data), *fields), data


def scsi_response_header(  # noqa: PLR0917 - one positional call per write, for speed
    itt: int,
    status: int,
    stat_sn: int,
    exp_cmd_sn: int,
    max_cmd_sn: int,
    overflow: bool,
    underflow: bool,
    residual_count: int,
) -> bytes:
    """The whole SCSI Response PDU of a command completed without sense data (§11.4).

    Exactly ``SCSIResponse(itt=..., status=..., ...).encode()`` with no data segment,
    packed in one call without the object: the target answers every write with one.
    """
    flags = _F | 0x04 * overflow | 0x02 * underflow
    return SCSI_RESPONSE_STRUCT.pack(
        Opcode.SCSI_RESPONSE, flags, 0, status, 0, itt, 0, stat_sn, exp_cmd_sn, max_cmd_sn,
        0, 0, residual_count,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class TaskManagementRequest(_PDUBase):
    """RFC 7143 §11.5 Task Management Function Request."""

    function: TaskManagementFunction
    itt: int
    lun: int = 0
    referenced_task_tag: int = RESERVED_TAG
    cmd_sn: int = 0
    exp_stat_sn: int = 0
    ref_cmd_sn: int = 0
    exp_data_sn: int = 0
    immediate: bool = True

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        b0 = Opcode.TASK_MANAGEMENT_REQUEST | _I * self.immediate
        fields = _TMF_REQUEST_FIELDS(self)
        return TMF_REQUEST_STRUCT.pack(b0, _F | self.function, 0, *fields), b""


@dataclass(frozen=True, slots=True)
class TaskManagementResponse(_PDUBase):
    """RFC 7143 §11.6 Task Management Function Response."""

    itt: int
    response: TaskManagementResponseCode
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        b0 = Opcode.TASK_MANAGEMENT_RESPONSE
        fields = _TARGET_SN_FIELDS(self)
        return TMF_RESPONSE_STRUCT.pack(b0, _F, self.response, 0, *fields), b""


def _login_flags(transit: bool, cont: bool, csg: int, nsg: int) -> int:
    return 0x80 * transit | 0x40 * cont | csg << 2 | nsg


@dataclass(frozen=True, slots=True)
class LoginRequest(_PDUBase):
    """RFC 7143 §11.12 Login Request. The I bit is always set on the wire (§11.12)."""

    isid: int
    tsih: int = 0
    itt: int = 0
    cid: int = 0
    cmd_sn: int = 0
    exp_stat_sn: int = 0
    transit: bool = False
    cont: bool = False
    csg: LoginStage = LoginStage.SECURITY_NEGOTIATION
    nsg: LoginStage = LoginStage.SECURITY_NEGOTIATION
    version_max: int = 0
    version_min: int = 0
    data: bytes = b""

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        flags = _login_flags(self.transit, self.cont, self.csg, self.nsg)
        versions = (self.version_max, self.version_min)
        word_isid = (len(self.data), self.isid >> 32, self.isid & 0xFFFFFFFF)
        fields = _LOGIN_REQUEST_FIELDS(self)
        b0 = Opcode.LOGIN_REQUEST | _I
        return LOGIN_REQUEST_STRUCT.pack(b0, flags, *versions, *word_isid, *fields), self.data


@dataclass(frozen=True, slots=True)
class LoginResponse(_PDUBase):
    """RFC 7143 §11.13 Login Response."""

    isid: int
    itt: int
    tsih: int = 0
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    status_class: int = 0
    status_detail: int = 0
    transit: bool = False
    cont: bool = False
    csg: LoginStage = LoginStage.SECURITY_NEGOTIATION
    nsg: LoginStage = LoginStage.SECURITY_NEGOTIATION
    version_max: int = 0
    version_active: int = 0
    data: bytes = b""

    @property
    def status(self) -> LoginStatus:
        """Status-Class and Status-Detail together, as named in the §11.13.5 table."""
        return LoginStatus((self.status_class << 8) | self.status_detail)

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        flags = _login_flags(self.transit, self.cont, self.csg, self.nsg)
        versions = (self.version_max, self.version_active)
        word_isid = (len(self.data), self.isid >> 32, self.isid & 0xFFFFFFFF)
        fields = _LOGIN_RESPONSE_FIELDS(self)
        b0 = Opcode.LOGIN_RESPONSE
        return LOGIN_RESPONSE_STRUCT.pack(b0, flags, *versions, *word_isid, *fields), self.data


@dataclass(frozen=True, slots=True)
class TextRequest(_PDUBase):
    """RFC 7143 §11.10 Text Request."""

    itt: int
    ttt: int = RESERVED_TAG
    lun: int = 0
    cmd_sn: int = 0
    exp_stat_sn: int = 0
    final: bool = True
    cont: bool = False
    immediate: bool = False
    data: bytes = b""

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        b0 = Opcode.TEXT_REQUEST | _I * self.immediate
        flags = 0x80 * self.final | 0x40 * self.cont
        return NOP_OUT_STRUCT.pack(b0, flags, len(self.data), *_NOP_OUT_FIELDS(self)), self.data


@dataclass(frozen=True, slots=True)
class TextResponse(_PDUBase):
    """RFC 7143 §11.11 Text Response."""

    itt: int
    ttt: int = RESERVED_TAG
    lun: int = 0
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    final: bool = True
    cont: bool = False
    data: bytes = b""

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        flags = 0x80 * self.final | 0x40 * self.cont
        fields = _NOP_IN_FIELDS(self)
        return NOP_IN_STRUCT.pack(Opcode.TEXT_RESPONSE, flags, len(self.data), *fields), self.data


@dataclass(frozen=True, slots=True)
class DataOut(_PDUBase):
    """RFC 7143 §11.7 SCSI Data-Out."""

    itt: int
    ttt: int = RESERVED_TAG
    lun: int = 0
    exp_stat_sn: int = 0
    data_sn: int = 0
    buffer_offset: int = 0
    final: bool = False
    data: bytes = b""

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        flags = 0x80 * self.final
        fields = _DATA_OUT_FIELDS(self)
        return DATA_OUT_STRUCT.pack(Opcode.DATA_OUT, flags, len(self.data), *fields), self.data


@dataclass(frozen=True, slots=True)
class DataIn(_PDUBase):
    """RFC 7143 §11.7 SCSI Data-In. ``data`` may be a memoryview so reads are never copied."""

    itt: int
    ttt: int = RESERVED_TAG
    lun: int = 0
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    data_sn: int = 0
    buffer_offset: int = 0
    residual_count: int = 0
    final: bool = False
    acknowledge: bool = False
    residual_overflow: bool = False
    residual_underflow: bool = False
    status_present: bool = False
    status: int = 0
    data: bytes | memoryview = b""

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        data = self.data
        if type(data) is memoryview and data.itemsize != 1:
            data = data.cast("B")  # len() must count bytes
        flags = 0x80 * self.final | 0x40 * self.acknowledge | 0x04 * self.residual_overflow
        flags |= 0x02 * self.residual_underflow | 0x01 * self.status_present
        fields = _DATA_IN_FIELDS(self)
        return DATA_IN_STRUCT.pack(Opcode.DATA_IN, flags, self.status, len(data), *fields), data


_DATA_IN_WITH_STATUS_FLAGS: Final = 0x80 | 0x01  # F and S: the one PDU of a GOOD read


def data_in_with_status_header(  # noqa: PLR0917 - one positional call per read, for speed
    itt: int,
    length: int,
    stat_sn: int,
    exp_cmd_sn: int,
    max_cmd_sn: int,
    underflow: bool,
    residual_count: int,
) -> bytes:
    """The BHS of a read's only Data-In PDU, carrying GOOD status (§11.7, phase collapse).

    Exactly ``DataIn(itt=..., stat_sn=..., final=True, status_present=True, ...)``'s header
    (LUN 0, TTT reserved, DataSN 0, offset 0), packed in one call without the object: the
    target sends one per cached read.
    """
    flags = _DATA_IN_WITH_STATUS_FLAGS | 0x02 * underflow
    return DATA_IN_STRUCT.pack(
        Opcode.DATA_IN, flags, 0, length, 0, itt, RESERVED_TAG, stat_sn, exp_cmd_sn,
        max_cmd_sn, 0, 0, residual_count,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class LogoutRequest(_PDUBase):
    """RFC 7143 §11.14 Logout Request."""

    itt: int
    reason: LogoutReason = LogoutReason.CLOSE_SESSION
    cid: int = 0
    cmd_sn: int = 0
    exp_stat_sn: int = 0
    immediate: bool = False

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        b0 = Opcode.LOGOUT_REQUEST | _I * self.immediate
        fields = _LOGOUT_REQUEST_FIELDS(self)
        return LOGOUT_REQUEST_STRUCT.pack(b0, _F | self.reason, 0, *fields), b""


@dataclass(frozen=True, slots=True)
class LogoutResponse(_PDUBase):
    """RFC 7143 §11.15 Logout Response."""

    itt: int
    response: LogoutResponseCode = LogoutResponseCode.CONNECTION_CLOSED_SUCCESSFULLY
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    time2wait: int = 0
    time2retain: int = 0

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        b0 = Opcode.LOGOUT_RESPONSE
        fields = _LOGOUT_RESPONSE_FIELDS(self)
        return LOGOUT_RESPONSE_STRUCT.pack(b0, _F, self.response, 0, *fields), b""


@dataclass(frozen=True, slots=True)
class SNACKRequest(_PDUBase):
    """RFC 7143 §11.16 SNACK Request."""

    type: SNACKType
    itt: int
    ttt: int = RESERVED_TAG
    lun: int = 0
    exp_stat_sn: int = 0
    beg_run: int = 0
    run_length: int = 0

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        fields = _SNACK_FIELDS(self)
        return SNACK_STRUCT.pack(Opcode.SNACK_REQUEST, _F | self.type, 0, *fields), b""


@dataclass(frozen=True, slots=True)
class NopIn(_PDUBase):
    """RFC 7143 §11.19 NOP-In."""

    itt: int = RESERVED_TAG
    ttt: int = RESERVED_TAG
    lun: int = 0
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    data: bytes = b""

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        fields = _NOP_IN_FIELDS(self)
        return NOP_IN_STRUCT.pack(Opcode.NOP_IN, _F, len(self.data), *fields), self.data


@dataclass(frozen=True, slots=True)
class R2T(_PDUBase):
    """RFC 7143 §11.8 Ready To Transfer (R2T)."""

    itt: int
    ttt: int
    lun: int = 0
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    r2t_sn: int = 0
    buffer_offset: int = 0
    desired_data_transfer_length: int = 0

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        return R2T_STRUCT.pack(Opcode.R2T, _F, 0, *_R2T_FIELDS(self)), b""


@dataclass(frozen=True, slots=True)
class AsyncMessage(_PDUBase):
    """RFC 7143 §11.9 Asynchronous Message.

    For SCSI_ASYNC_EVENT the data segment is SenseLength + sense (+ iSCSI event data), the
    same layout as a SCSI Response: see :func:`encode_sense` and :func:`decode_sense`.
    """

    async_event: AsyncEvent
    lun: int = 0
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    async_vcode: int = 0
    parameter1: int = 0
    parameter2: int = 0
    parameter3: int = 0
    data: bytes = b""

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        b0 = Opcode.ASYNC_MESSAGE
        fields = _ASYNC_FIELDS(self)
        # The Initiator Task Tag field of an Async Message is always 0xffffffff (§11.9).
        header = ASYNC_STRUCT.pack(b0, _F, len(self.data), self.lun, RESERVED_TAG, *fields)
        return header, self.data


@dataclass(frozen=True, slots=True)
class Reject(_PDUBase):
    """RFC 7143 §11.17 Reject. ``data`` is the rejected PDU's 48-byte header."""

    reason: RejectReason
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    data_sn_r2t_sn: int = 0
    data: bytes = b""

    def _pack(self) -> tuple[bytes, bytes | memoryview]:
        word = len(self.data)
        fields = _REJECT_FIELDS(self)
        header = REJECT_STRUCT.pack(Opcode.REJECT, _F, self.reason, word, RESERVED_TAG, *fields)
        return header, self.data


PDU: TypeAlias = (
    NopOut
    | SCSICommand
    | TaskManagementRequest
    | LoginRequest
    | TextRequest
    | DataOut
    | LogoutRequest
    | SNACKRequest
    | NopIn
    | SCSIResponse
    | TaskManagementResponse
    | LoginResponse
    | TextResponse
    | DataIn
    | LogoutResponse
    | R2T
    | AsyncMessage
    | Reject
)


class PDUFormatError(RemoteProtocolError):
    """A received PDU breaks the wire format.

    ``header`` is the offending 48-byte BHS when known (a Reject carries it back, §11.17) and
    ``reject_reason`` the reason to reject with. ``fatal`` is True when the stream can no
    longer be framed (oversized DataSegmentLength): the connection must then be dropped and
    the reader is unusable. Otherwise the whole PDU has been consumed and reading may go on.
    """

    def __init__(
        self,
        message: str,
        reject_reason: RejectReason = RejectReason.PROTOCOL_ERROR,
        header: bytes = b"",
        *,
        fatal: bool = False,
    ) -> None:
        super().__init__(message)
        self.reject_reason = reject_reason
        self.header = header
        self.fatal = fatal


class HeaderDigestError(RemoteProtocolError):
    """The header digest does not match (§7.8): the framing is lost, drop the connection."""

    # ClassVars: compiled (mypyc), an unannotated class attribute is an instance attribute
    # that this exception's instances would never get.
    fatal: ClassVar[bool] = True

    def __init__(self, message: str, header: bytes = b"") -> None:
        super().__init__(message)
        self.header = header


class DataDigestError(RemoteProtocolError):
    """The data digest does not match (§7.8).

    The whole PDU was consumed. ``header`` is the BHS to return in a Reject with reason
    DATA_DIGEST_ERROR; ``pdu`` is that header decoded with an empty data segment (None if the
    header itself is malformed), so recovery can find the task and DataSN.
    """

    fatal: ClassVar[bool] = False
    reject_reason: ClassVar[RejectReason] = RejectReason.DATA_DIGEST_ERROR

    def __init__(self, message: str, header: bytes, pdu: PDU | None) -> None:
        super().__init__(message)
        self.header = header
        self.pdu = pdu
