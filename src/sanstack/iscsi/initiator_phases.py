"""The phases of an initiator connection and the target PDUs each accepts (RFC 7143 §6.3,
§4.2.2.2), the mirror of :mod:`sanstack.iscsi.target_phases`.

A connection starts in the login phase, where only Login Responses are legal; once the
login succeeds it is in the full feature phase (logging out: the queue drains, then the
Logout Request) until it closes. :data:`ACCEPTS` is the whole table: a target PDU missing
from its phase's row fails the connection. :data:`STATUS_PDUS` are those whose StatSN is a
status's own number, so ExpStatSN moves past it; R2T, a Data-In without status and an
unsolicited NOP-In carry the current StatSN without using it up.
"""

from __future__ import annotations

from enum import Enum, auto

from sanstack.iscsi import pdu as p


class Phase(Enum):
    LOGIN = auto()
    FULL_FEATURE = auto()
    LOGGING_OUT = auto()  # no new requests; the queue drains, then the Logout Request
    CLOSED = auto()


FFP_TYPES = (
    p.SCSIResponse, p.DataIn, p.R2T, p.NopIn, p.TaskManagementResponse, p.TextResponse,
    p.AsyncMessage, p.Reject, p.LogoutResponse,
)  # fmt: skip
_FFP_PDUS: frozenset[type] = frozenset(FFP_TYPES)
ACCEPTS: dict[Phase, frozenset[type]] = {
    Phase.LOGIN: frozenset({p.LoginResponse}),
    Phase.FULL_FEATURE: _FFP_PDUS,
    Phase.LOGGING_OUT: _FFP_PDUS,
    Phase.CLOSED: frozenset(),
}

STATUS_PDUS = (
    p.SCSIResponse, p.TaskManagementResponse, p.TextResponse, p.LogoutResponse, p.AsyncMessage,
    p.Reject,
)  # fmt: skip
