"""How long a group took to come online on this node, per step, from its state changes
(sans-IO; the runner passes each change with the loop's time).

Each onlining step that succeeds (the next state of the way up follows it) adds its time to
its phase's histogram: ``disks`` (arbitration of every disk: on a failover, the wait for
the incumbent to defend and the preemption), ``volumes`` (opening each snapshot volume) and
``export`` (binding the NBD export); the whole way from OFFLINE or FAILED to ONLINE goes to
``online``. A step that fails or is interrupted adds nothing. The Prometheus collector
(``cluster/metrics.py``) reads them as ``*_seconds`` histograms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from sanstack.cluster.group_state import GroupState

# Upper bounds in seconds: a quick move is well under a second, a failover after a node's
# death waits out its heartbeats and the incumbent's defence, pending_timeout ends it all.
PHASE_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
PHASES: Final = {
    (GroupState.ONLINING_DISKS, GroupState.ONLINING_VOLUMES): "disks",
    (GroupState.ONLINING_VOLUMES, GroupState.ONLINING_EXPORT): "volumes",
    (GroupState.ONLINING_EXPORT, GroupState.ONLINE): "export",
}
PHASE_NAMES: Final = tuple(PHASES.values())


@dataclass(slots=True)
class Durations:
    """A histogram: ``buckets[i]`` counts durations in (bound[i-1], bound[i]], the last
    those above every bound."""

    count: int = 0
    total: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(PHASE_BUCKETS) + 1))

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        index = next((i for i, bound in enumerate(PHASE_BUCKETS) if seconds <= bound), None)
        self.buckets[len(PHASE_BUCKETS) if index is None else index] += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(le, count) pairs as Prometheus wants them, ``+Inf`` last."""
        running = 0
        pairs = []
        for bound, count in zip((*PHASE_BUCKETS, float("inf")), self.buckets, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs


@dataclass(slots=True)
class GroupPhases:
    """One group's onlining times on this node (module docstring)."""

    phases: dict[str, Durations] = field(
        default_factory=lambda: {name: Durations() for name in PHASE_NAMES}
    )
    online: Durations = field(default_factory=Durations)
    _entered: float | None = None  # when the current state began
    _onlining_since: float | None = None

    def changed(self, old: GroupState, new: GroupState, now: float) -> None:
        phase = PHASES.get((old, new))
        if phase is not None and self._entered is not None:
            self.phases[phase].add(now - self._entered)
        if new is GroupState.ONLINING_DISKS and old in (GroupState.OFFLINE, GroupState.FAILED):
            self._onlining_since = now
        elif new is GroupState.ONLINE and self._onlining_since is not None:
            self.online.add(now - self._onlining_since)
            self._onlining_since = None
        elif not new.pending:
            self._onlining_since = None
        self._entered = now
