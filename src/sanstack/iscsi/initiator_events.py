"""Events of the sans-IO initiator connection (:mod:`sanstack.iscsi.initiator_connection`).

The edge reads them with ``next_event()`` after feeding bytes, a timer or a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sanstack.iscsi.codes import (
    AsyncEvent,
    ISCSIResponse,
    LogoutResponseCode,
    TaskManagementResponseCode,
)
from sanstack.iscsi.negotiation import OperationalParameters


class PathFailureKind(Enum):
    """How a connection (a path) failed: what a multipath layer decides on, never the text."""

    CONNECTION_LOST = "connection-lost"  # the transport closed, could not be made, or was dropped
    NOP_TIMEOUT = "nop-timeout"  # our keep-alive ping went unanswered: a silent path
    LOGIN_TIMEOUT = "login-timeout"
    COMMAND_TIMEOUT = "command-timeout"  # a command, task management or text request
    PROTOCOL_ERROR = "protocol-error"  # the target broke RFC 7143 (or failed the login so)
    CLOSED = "closed"  # closed on our side
    LOGGED_OUT = "logged-out"  # the session logged out with requests still outstanding


@dataclass(frozen=True, slots=True)
class LoginCompleted:
    """The connection reached the full feature phase with these negotiated parameters."""

    parameters: OperationalParameters
    tsih: int


@dataclass(frozen=True, slots=True)
class LoginFailed:
    """The login ended without a session; the connection is closed.

    Either the target refused it: ``status`` is its §11.13.5 status (``Status-Class << 8 |
    Status-Detail``), ``target_address`` where a redirection points, and ``kind`` None (no
    path failed: the target said no); or the login broke (``kind``) and ``status`` is None.
    """

    reason: str
    kind: PathFailureKind | None
    status: int | None = None
    target_address: str | None = None


# Not frozen: one per command, and a frozen __init__ costs twice as much.
@dataclass(slots=True, init=False)
class CommandCompleted:
    """A SCSI command ended with a status (RFC 7143 §11.4, or phase-collapsed §11.7.4).

    ``parts`` is the Data-In in buffer-offset order, as it was received (a piece per
    Data-In PDU, or several for a large one), not joined (``data`` joins them).
    ``residual`` is the Residual Count; ``residual_overflow`` tells overflow (the target had
    more than the expected length) from underflow. ``response`` is the iSCSI Response
    field: anything but COMMAND_COMPLETED_AT_TARGET means the target failed the command
    itself.
    """

    itt: int
    status: int
    parts: tuple[bytes | memoryview, ...]
    sense: bytes
    residual: int = 0
    residual_overflow: bool = False
    response: int = ISCSIResponse.COMMAND_COMPLETED_AT_TARGET

    # Written out (the dataclass makes none, init=False): compiled by mypyc, a generated
    # __init__ stays interpreted Python, and this one is made for every command.
    def __init__(  # noqa: PLR0917 - the dataclass's own signature
        self,
        itt: int,
        status: int,
        parts: tuple[bytes | memoryview, ...],
        sense: bytes,
        residual: int = 0,
        residual_overflow: bool = False,
        response: int = ISCSIResponse.COMMAND_COMPLETED_AT_TARGET,
    ) -> None:
        self.itt = itt
        self.status = status
        self.parts = parts
        self.sense = sense
        self.residual = residual
        self.residual_overflow = residual_overflow
        self.response = response

    @property
    def data(self) -> bytes | memoryview:
        """The Data-In as one buffer, as long as what arrived."""
        return join_parts(self.parts)


def join_parts(parts: tuple[bytes | memoryview, ...]) -> bytes | memoryview:
    """``parts`` as one buffer: the only piece as it is, several joined (a copy)."""
    if len(parts) == 1:
        return parts[0]
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class TaskManagementCompleted:
    itt: int
    response: TaskManagementResponseCode


@dataclass(frozen=True, slots=True)
class AsyncEventReceived:
    """RFC 7143 §11.9. For LOGOUT_REQUEST the edge should log out within ``parameter3`` s."""

    event: AsyncEvent
    lun: int
    sense: bytes
    parameter1: int
    parameter2: int
    parameter3: int


@dataclass(frozen=True, slots=True)
class NopInReceived:
    """The answer to a NOP-Out we sent (our keep-alive pings included)."""

    itt: int
    data: bytes


@dataclass(frozen=True, slots=True)
class LogoutCompleted:
    """The target answered our logout; the edge closes the transport."""

    response: LogoutResponseCode
    time2wait: int
    time2retain: int


@dataclass(frozen=True, slots=True)
class DiscoveryCompleted:
    """The SendTargets answer: ``[(target_name, [target_address, ...])]``."""

    itt: int
    targets: list[tuple[str, list[str]]]


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """The connection is unusable (protocol error, NOP timeout, lost transport, local abort).

    ``itts`` names every command and task management request still in flight or queued:
    none of them will complete. The edge drops the transport. ``reason`` is for people.
    """

    kind: PathFailureKind
    reason: str
    itts: tuple[int, ...] = ()


Event = (
    LoginCompleted
    | LoginFailed
    | CommandCompleted
    | TaskManagementCompleted
    | AsyncEventReceived
    | NopInReceived
    | LogoutCompleted
    | DiscoveryCompleted
    | ConnectionFailed
)
