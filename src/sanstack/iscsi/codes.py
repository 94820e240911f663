"""iSCSI codes and field helpers (RFC 7143 §11): opcodes, enums, LUN and sense encodings.

The lowest module of the iSCSI core: ``pdu.py`` (the PDU classes and encoders) and
``pdu_reader.py`` (the decoder) build on it, and every other module takes these names from
here.
"""

from __future__ import annotations

from enum import IntEnum

BHS_LENGTH = 48
RESERVED_TAG = 0xFFFFFFFF
MAX_DATA_SEGMENT_LENGTH = 0xFFFFFF  # DataSegmentLength is a 24-bit field (§11.2.1.6)
MAX_CDB_LENGTH = 260  # 16 bytes in the BHS + 244 in the Extended CDB AHS (§11.2.2.3)


class Opcode(IntEnum):
    """RFC 7143 §11.2.1.2 opcodes. Unknown opcodes are rejected, so this enum is closed."""

    NOP_OUT = 0x00
    SCSI_COMMAND = 0x01
    TASK_MANAGEMENT_REQUEST = 0x02
    LOGIN_REQUEST = 0x03
    TEXT_REQUEST = 0x04
    DATA_OUT = 0x05
    LOGOUT_REQUEST = 0x06
    SNACK_REQUEST = 0x10
    NOP_IN = 0x20
    SCSI_RESPONSE = 0x21
    TASK_MANAGEMENT_RESPONSE = 0x22
    LOGIN_RESPONSE = 0x23
    TEXT_RESPONSE = 0x24
    DATA_IN = 0x25
    LOGOUT_RESPONSE = 0x26
    R2T = 0x31
    ASYNC_MESSAGE = 0x32
    REJECT = 0x3F


class _CodeEnum(IntEnum):
    """An IntEnum that also represents unassigned wire values.

    A codec must hand reserved or vendor-specific codes to the layer that knows the right
    answer (a Reject, a "function not supported" TMF response, a login status) instead of
    failing, so ``Enum(value)`` makes a pseudo-member for any unassigned value (0-0xFFFF).
    """

    @classmethod
    def _missing_(cls, value: object) -> _CodeEnum | None:
        if type(value) is not int or not 0 <= value <= 0xFFFF:
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNASSIGNED_{value:#04x}"
        member._value_ = value
        return member


class AHSType(_CodeEnum):
    """RFC 7143 §11.2.2.1 AHSType."""

    EXTENDED_CDB = 1
    BIDIRECTIONAL_READ_EXPECTED_DATA_TRANSFER_LENGTH = 2


class TaskAttribute(_CodeEnum):
    """RFC 7143 §11.3.1 task attributes (ATTR)."""

    UNTAGGED = 0
    SIMPLE = 1
    ORDERED = 2
    HEAD_OF_QUEUE = 3
    ACA = 4


class ISCSIResponse(_CodeEnum):
    """RFC 7143 §11.4.3 the SCSI Response PDU's Response field (0x80-0xff vendor-specific)."""

    COMMAND_COMPLETED_AT_TARGET = 0x00
    TARGET_FAILURE = 0x01


class TaskManagementFunction(_CodeEnum):
    """RFC 7143 §11.5.1 task management function codes."""

    ABORT_TASK = 1
    ABORT_TASK_SET = 2
    CLEAR_ACA = 3
    CLEAR_TASK_SET = 4
    LOGICAL_UNIT_RESET = 5
    TARGET_WARM_RESET = 6
    TARGET_COLD_RESET = 7
    TASK_REASSIGN = 8


class TaskManagementResponseCode(_CodeEnum):
    """RFC 7143 §11.6.1 task management function response codes."""

    FUNCTION_COMPLETE = 0
    TASK_DOES_NOT_EXIST = 1
    LUN_DOES_NOT_EXIST = 2
    TASK_STILL_ALLEGIANT = 3
    TASK_ALLEGIANCE_REASSIGNMENT_NOT_SUPPORTED = 4
    FUNCTION_NOT_SUPPORTED = 5
    FUNCTION_AUTHORIZATION_FAILED = 6
    FUNCTION_REJECTED = 255


class AsyncEvent(_CodeEnum):
    """RFC 7143 §11.9.1 AsyncEvent codes."""

    SCSI_ASYNC_EVENT = 0
    LOGOUT_REQUEST = 1
    CONNECTION_DROP = 2
    SESSION_DROP = 3
    NEGOTIATION_REQUEST = 4
    TASK_TERMINATION = 5
    VENDOR_SPECIFIC = 255


class LoginStage(_CodeEnum):
    """RFC 7143 §11.12.3 CSG/NSG stage codes (2 is reserved)."""

    SECURITY_NEGOTIATION = 0
    LOGIN_OPERATIONAL_NEGOTIATION = 1
    FULL_FEATURE_PHASE = 3


class LoginStatusClass(_CodeEnum):
    """RFC 7143 §11.13.5 Status-Class."""

    SUCCESS = 0
    REDIRECTION = 1
    INITIATOR_ERROR = 2
    TARGET_ERROR = 3


class LoginStatus(_CodeEnum):
    """RFC 7143 §11.13.5 status codes as ``Status-Class << 8 | Status-Detail``."""

    SUCCESS = 0x0000
    TARGET_MOVED_TEMPORARILY = 0x0101
    TARGET_MOVED_PERMANENTLY = 0x0102
    INITIATOR_ERROR = 0x0200
    AUTHENTICATION_FAILURE = 0x0201
    AUTHORIZATION_FAILURE = 0x0202
    NOT_FOUND = 0x0203
    TARGET_REMOVED = 0x0204
    UNSUPPORTED_VERSION = 0x0205
    TOO_MANY_CONNECTIONS = 0x0206
    MISSING_PARAMETER = 0x0207
    CANT_INCLUDE_IN_SESSION = 0x0208
    SESSION_TYPE_NOT_SUPPORTED = 0x0209
    SESSION_DOES_NOT_EXIST = 0x020A
    INVALID_DURING_LOGIN = 0x020B
    TARGET_ERROR = 0x0300
    SERVICE_UNAVAILABLE = 0x0301
    OUT_OF_RESOURCES = 0x0302

    @property
    def status_class(self) -> int:
        return self >> 8

    @property
    def status_detail(self) -> int:
        return self & 0xFF


class LogoutReason(_CodeEnum):
    """RFC 7143 §11.14.1 logout reason codes."""

    CLOSE_SESSION = 0
    CLOSE_CONNECTION = 1
    REMOVE_CONNECTION_FOR_RECOVERY = 2


class LogoutResponseCode(_CodeEnum):
    """RFC 7143 §11.15.1 logout response codes."""

    CONNECTION_CLOSED_SUCCESSFULLY = 0
    CID_NOT_FOUND = 1
    RECOVERY_NOT_SUPPORTED = 2
    CLEANUP_FAILED = 3


class SNACKType(_CodeEnum):
    """RFC 7143 §11.16.1 SNACK types."""

    DATA_R2T = 0
    STATUS = 1
    DATA_ACK = 2
    R_DATA = 3


class RejectReason(_CodeEnum):
    """RFC 7143 §11.17.1 reject reasons."""

    DATA_DIGEST_ERROR = 0x02
    SNACK_REJECT = 0x03
    PROTOCOL_ERROR = 0x04
    COMMAND_NOT_SUPPORTED = 0x05
    IMMEDIATE_COMMAND_REJECT = 0x06
    TASK_IN_PROGRESS = 0x07
    INVALID_DATA_ACK = 0x08
    INVALID_PDU_FIELD = 0x09
    LONG_OPERATION_REJECT = 0x0A
    DEPRECATED = 0x0B
    WAITING_FOR_LOGOUT = 0x0C


def encode_sense(sense: bytes) -> bytes:
    """Return the data segment carrying ``sense``: SenseLength then the bytes (§11.4.7)."""
    return len(sense).to_bytes(2, "big") + sense


def decode_sense(segment: bytes) -> bytes:
    """Return the sense data of a SCSI Response or Async Message data segment (§11.4.7).

    A SenseLength larger than the segment is truncated rather than rejected: the raw segment
    stays available to whoever needs to tell.
    """
    if len(segment) < 2:
        return b""
    return segment[2 : 2 + int.from_bytes(segment[:2], "big")]
