"""Paths of one multipath device: their states, groups and the choice among them, sans-IO.

Theory of operation. A path is one iSCSI session to one target port that reaches the LUN.
Its health (``PathState``) changes only through the transition table below, on events the
edge reports: an I/O failed with a path error, a NOP ping timed out, the path checker
succeeded or failed, the path was removed. Its ALUA state (from REPORT TARGET PORT GROUPS)
orders paths into priority groups as dm-multipath's ``group_by_prio`` with the alua
prioritizer does: active/optimized first, active/non-optimized next, standby only when
nothing else is left, unavailable/offline/transitioning never (SPC-4 §5.16, ../shared
reference multipath.md §1). Within the chosen group a selector picks the path for each I/O.

Time enters as ``now`` (seconds, monotonic); nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from sanstack.errors import LocalProtocolError
from sanstack.iscsi.initiator_events import PathFailureKind
from sanstack.scsi.alua_codec import ALUAState


class PathState(Enum):
    """The health of a path, as multipathd sees it (active/failed, plus our own removal)."""

    ACTIVE = "active"
    FAILED = "failed"
    REMOVED = "removed"


class PathEvent(Enum):
    IO_PATH_ERROR = "io-path-error"  # transport error, connection lost, command timeout
    NOP_TIMEOUT = "nop-timeout"  # a silently dead path
    CHECKER_FAILED = "checker-failed"
    CHECKER_OK = "checker-ok"  # a failed path answers again: reinstate
    REMOVE = "remove"


# (state, event) -> next state. A pair missing here is a bug in the caller.
_TRANSITIONS: dict[tuple[PathState, PathEvent], PathState] = {
    (PathState.ACTIVE, PathEvent.IO_PATH_ERROR): PathState.FAILED,
    (PathState.ACTIVE, PathEvent.NOP_TIMEOUT): PathState.FAILED,
    (PathState.ACTIVE, PathEvent.CHECKER_FAILED): PathState.FAILED,
    (PathState.ACTIVE, PathEvent.CHECKER_OK): PathState.ACTIVE,
    (PathState.ACTIVE, PathEvent.REMOVE): PathState.REMOVED,
    (PathState.FAILED, PathEvent.IO_PATH_ERROR): PathState.FAILED,
    (PathState.FAILED, PathEvent.NOP_TIMEOUT): PathState.FAILED,
    (PathState.FAILED, PathEvent.CHECKER_FAILED): PathState.FAILED,
    (PathState.FAILED, PathEvent.CHECKER_OK): PathState.ACTIVE,
    (PathState.FAILED, PathEvent.REMOVE): PathState.REMOVED,
    (PathState.REMOVED, PathEvent.IO_PATH_ERROR): PathState.REMOVED,
    (PathState.REMOVED, PathEvent.NOP_TIMEOUT): PathState.REMOVED,
    (PathState.REMOVED, PathEvent.CHECKER_FAILED): PathState.REMOVED,
    (PathState.REMOVED, PathEvent.CHECKER_OK): PathState.REMOVED,
    (PathState.REMOVED, PathEvent.REMOVE): PathState.REMOVED,
}

# How each kind of session failure reaches the path's state. Every one fails the path (the
# checker reinstates it by logging in again); a silent path is told apart for the record.
FAILURE_EVENTS: dict[PathFailureKind, PathEvent] = {
    PathFailureKind.CONNECTION_LOST: PathEvent.IO_PATH_ERROR,
    PathFailureKind.NOP_TIMEOUT: PathEvent.NOP_TIMEOUT,
    PathFailureKind.LOGIN_TIMEOUT: PathEvent.IO_PATH_ERROR,
    PathFailureKind.COMMAND_TIMEOUT: PathEvent.IO_PATH_ERROR,
    PathFailureKind.PROTOCOL_ERROR: PathEvent.IO_PATH_ERROR,
    PathFailureKind.CLOSED: PathEvent.IO_PATH_ERROR,
    PathFailureKind.LOGGED_OUT: PathEvent.IO_PATH_ERROR,
}

# ALUA priority of a path group (dm-multipath's alua prioritizer: AO 50, ANO 10, standby 1).
# States absent here never carry I/O.
ALUA_PRIORITY: dict[ALUAState, int] = {
    ALUAState.ACTIVE_OPTIMIZED: 50,
    ALUAState.ACTIVE_NON_OPTIMIZED: 10,
    ALUAState.STANDBY: 1,
}


@dataclass(slots=True)
class Path:
    """What the policy knows of one path; the edge owns the session behind ``name``."""

    name: str
    alua_state: ALUAState = ALUAState.ACTIVE_OPTIMIZED
    state: PathState = PathState.ACTIVE
    weight: int = 1
    relative_throughput: int = 1
    in_flight: int = 0
    in_flight_bytes: int = 0
    failed_at: float | None = None
    reinstated_at: float | None = None
    failures: int = 0
    completed: int = 0
    history: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.state is PathState.ACTIVE and self.alua_state in ALUA_PRIORITY

    @property
    def priority(self) -> int:
        return ALUA_PRIORITY.get(self.alua_state, 0)

    def handle(self, event: PathEvent, now: float) -> PathState:
        """Apply ``event``; returns the new state. Failures and reinstatements are recorded."""
        try:
            nxt = _TRANSITIONS[(self.state, event)]
        except KeyError:
            raise LocalProtocolError(f"path {self.name}: {event} in {self.state}") from None
        if nxt is PathState.FAILED and self.state is not PathState.FAILED:
            self.failed_at = now
            self.failures += 1
        elif nxt is PathState.ACTIVE and self.state is PathState.FAILED:
            self.reinstated_at = now
        if nxt is not self.state:
            self.history.append(f"{now:.3f} {self.state.value}->{nxt.value} ({event.value})")
            del self.history[:-16]  # the last transitions are enough for status output
        self.state = nxt
        return nxt

    def started(self, size: int) -> None:
        self.in_flight += 1
        self.in_flight_bytes += size

    def finished(self, size: int) -> None:
        self.in_flight -= 1
        self.in_flight_bytes -= size
        self.completed += 1


def priority_group(paths: Iterable[Path]) -> list[Path]:
    """The usable paths of the best ALUA priority: AO, else ANO, else standby, else none."""
    usable = [p for p in paths if p.usable]
    if not usable:
        return []
    best = max(p.priority for p in usable)
    return [p for p in usable if p.priority == best]


class FailbackPolicy(Enum):
    """When a reinstated better path takes I/O back (dm-multipath ``failback``)."""

    MANUAL = "manual"  # only an operator's switch, or the current group failing, moves I/O
    IMMEDIATE = "immediate"
    DEFERRED = "deferred"  # after ``failback_delay`` seconds of the better path staying up


@dataclass(slots=True)
class GroupChooser:
    """Picks the group I/O uses, applying the failback policy on the way back.

    With ``MANUAL`` the current group is kept while it has usable paths even if a better one
    came back (dm-multipath's default, which keeps one cluster node from undoing another's
    failover); with ``DEFERRED`` a better group must have been usable for ``failback_delay``.
    """

    policy: FailbackPolicy = FailbackPolicy.IMMEDIATE
    failback_delay: float = 0.0
    current_priority: int | None = None

    def choose(self, paths: list[Path], now: float) -> list[Path]:
        best = priority_group(paths)
        if not best:
            self.current_priority = None
            return []
        best_priority = best[0].priority
        current = [p for p in paths if p.usable and p.priority == self.current_priority]
        if current and best_priority > (self.current_priority or 0):
            if self.policy is FailbackPolicy.MANUAL:
                return current
            if self.policy is FailbackPolicy.DEFERRED:
                since = min((p.reinstated_at or 0.0) for p in best)
                if now - since < self.failback_delay:
                    return current
        self.current_priority = best_priority
        return best

    def switch(self, paths: list[Path]) -> None:
        """An operator's failback: move to the best group now, whatever the policy."""
        best = priority_group(paths)
        self.current_priority = best[0].priority if best else None
