"""When a volume's schedule takes its next snapshot, and which scheduled ones it prunes.

Pure functions of the schedule, the snapshot list and ``now`` (sans-IO): the volume's
schedule task only sleeps and acts on their answers.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sanstack.snapshot.layout import SnapshotRecord
from sanstack.snapshot.model import Schedule


def scheduled_name(schedule: Schedule, now: float) -> str:
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{schedule.prefix}-{stamp}"


def _scheduled(schedule: Schedule, snapshots: list[SnapshotRecord]) -> list[SnapshotRecord]:
    prefix = schedule.prefix + "-"
    return sorted(
        (s for s in snapshots if s.scheduled and not s.deleting and s.name.startswith(prefix)),
        key=lambda s: s.epoch,
    )


def next_due(schedule: Schedule, snapshots: list[SnapshotRecord], now: float) -> float:
    """The time of the next scheduled snapshot: one interval after the newest one taken
    by the schedule (so a daemon that takes over a volume keeps its rhythm), or now."""
    taken = _scheduled(schedule, snapshots)
    if not taken:
        return now
    return max(now, taken[-1].created + schedule.interval)


def to_prune(schedule: Schedule, snapshots: list[SnapshotRecord]) -> list[SnapshotRecord]:
    """Scheduled snapshots beyond the newest ``keep``; "keep"-marked ones are never pruned."""
    taken = [s for s in _scheduled(schedule, snapshots) if not s.keep]
    excess = len(taken) - schedule.keep
    return taken[:excess] if excess > 0 else []
