"""The phases of a target connection and the step from login into the full feature phase
(RFC 7143 §6.3, §4.2.2.1).

A connection starts in the login phase, where only Login Requests are legal (§6.3); once
the login succeeds it is in the full feature phase until it closes. :data:`ACCEPTS` is the
whole table: an initiator PDU missing from its phase's row is a protocol error.
:data:`ORDERED_PDUS` are the requests that carry a CmdSN and so go through the command
window (§4.2.2.1); Data-Out PDUs belong to a command already in it.

:func:`login_succeeded` is what a successful login hands to the edge: the I_T nexus of a
Normal session (SAM-5 §4.7, RFC 7143 §4.4.2) and who logged in to what.
"""

from __future__ import annotations

from enum import Enum, auto

from sanstack.iscsi import pdu as p
from sanstack.iscsi.target_events import LoginOutcome, LoginSucceeded
from sanstack.scsi.command import Nexus


class Phase(Enum):
    LOGIN = auto()
    FULL_FEATURE = auto()
    CLOSED = auto()


ORDERED_PDUS = (p.SCSICommand, p.NopOut, p.TaskManagementRequest, p.TextRequest, p.LogoutRequest)

ACCEPTS: dict[Phase, frozenset[type]] = {
    Phase.LOGIN: frozenset({p.LoginRequest}),
    Phase.FULL_FEATURE: frozenset(
        {
            p.SCSICommand,
            p.DataOut,
            p.NopOut,
            p.TaskManagementRequest,
            p.TextRequest,
            p.LogoutRequest,
        }
    ),
    Phase.CLOSED: frozenset(),
}


def login_succeeded(outcome: LoginOutcome) -> LoginSucceeded:
    """The event of a completed login; a Discovery session has no nexus."""
    nexus = None
    if not outcome.discovery:
        nexus = Nexus(
            outcome.initiator_name,
            outcome.isid,
            outcome.target_name,
            outcome.tpgt,
            # sanstack numbers its target ports by portal group tag (ARCHITECTURE.md).
            outcome.tpgt,
        )
    return LoginSucceeded(
        outcome.initiator_name,
        outcome.isid,
        outcome.tsih,
        outcome.target_name,
        outcome.discovery,
        nexus,
    )
