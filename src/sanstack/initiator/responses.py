"""What a session's callers get: a command's response, the waiter told of it directly,
and the errors of a path (``PathFailed``) and of a login (``LoginRefused``).

Kept apart from ``session.py`` (the asyncio edge) so that the edge stays readable; the
session module re-exports every name, as callers have always imported them from there.
"""

from __future__ import annotations

from sanstack.block.device import DeviceNotReady
from sanstack.errors import SanstackError
from sanstack.iscsi.codes import ISCSIResponse
from sanstack.iscsi.initiator_events import CommandCompleted, PathFailureKind, join_parts


class PathFailed(DeviceNotReady):
    """The path (this session's connection) failed as ``kind`` says; the fate of a command
    in flight on it is unknown. The message is the reason, for people."""

    def __init__(self, kind: PathFailureKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


class LoginRefused(SanstackError):
    """The target answered the login with a failure status (RFC 7143 §11.13.5)."""

    def __init__(self, status: int, reason: str, target_address: str | None) -> None:
        super().__init__(reason)
        self.status = status
        self.target_address = target_address


class CommandResponse:
    """How a SCSI command ended: SAM status, Data-In, sense and residual (RFC 7143 §11.4).

    ``parts`` is the Data-In as its PDUs brought it; ``data`` is the same as one buffer,
    joined the first time it is asked for. Whoever only passes a read on (the NBD server)
    takes ``parts`` and never pays for the join.
    """

    __slots__ = ("_data", "parts", "residual", "residual_overflow", "response", "sense", "status")

    def __init__(  # noqa: PLR0917 - positional as the fields of RFC 7143 §11.4 always were
        self,
        status: int,
        data: bytes | memoryview | None,
        sense: bytes,
        residual: int,
        residual_overflow: bool = False,
        response: int = ISCSIResponse.COMMAND_COMPLETED_AT_TARGET,
        *,
        parts: tuple[bytes | memoryview, ...] | None = None,
    ) -> None:
        self.status = status
        self.sense = sense
        self.residual = residual
        self.residual_overflow = residual_overflow
        self.response = response
        if parts is None:
            parts = (data,) if data else ()
        self.parts = parts
        self._data = data

    @property
    def data(self) -> bytes | memoryview:
        data = self._data
        if data is None:
            data = self._data = join_parts(self.parts)
        return data

    @property
    def length(self) -> int:
        """Bytes of Data-In, without joining them."""
        return sum(map(len, self.parts))


class CommandWaiter:
    """Whoever waits for a command started with ``ISCSISession.start_command``: told
    directly instead of through a future, so a caller that needs no coroutine (the host's
    read path: an NBD request through a multipath map) costs no future, no callback
    scheduled through the loop and no coroutine frames resumed per command.

    ``command_done`` runs synchronously as the answer is taken from the core (inside the
    session's pump: it must not block and should leave anything slow to a later callback);
    ``command_failed`` (the session failed, the command timed out) likewise, and
    ``PathFailed`` is what it gets, as ``command`` would raise it.
    """

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        self.deadline = 0.0  # loop time the command times out at (with a command timeout)

    def command_done(self, event: CommandCompleted) -> None:
        raise NotImplementedError

    def command_failed(self, error: PathFailed) -> None:
        raise NotImplementedError


def response_of(event: CommandCompleted) -> CommandResponse:
    """What ``command`` returns for a completed command."""
    return CommandResponse(
        event.status,
        None,
        event.sense,
        event.residual,
        event.residual_overflow,
        event.response,
        parts=event.parts,
    )


def closed_error() -> PathFailed:
    """What a request on a session that ended without a failure (logged out, or the
    transport closed after our logout) gets."""
    return PathFailed(PathFailureKind.CLOSED, "session closed")


def command_timeout_error(reason: str) -> PathFailed:
    return PathFailed(PathFailureKind.COMMAND_TIMEOUT, reason)
