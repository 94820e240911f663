"""The dashboard's view model, sans-IO: what the page shows, assembled from the nodes' and
the target's answers (``dashboard/sources.py`` fetches them), and the I/O rates of each
group computed from successive samples of its counters.

Each poll hands ``DashboardState.update`` the time and whatever it could get: the cluster
status from whichever node answered (None when none did), each live node's maps and new
events, each snapshot volume's info and snapshots, the target's sessions and LUNs. The
state keeps what outlives one poll: a bounded history of rates per group (the chart), the
cluster log merged from every node's own log (each node numbers its events itself), and
the last answer about each volume, so a group that is failing over still shows its
snapshots while no node can be asked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

HISTORY: Final = 120  # points per group on the chart (two minutes at one poll a second)
EVENTS_KEPT: Final = 300  # of the merged cluster log
MIB: Final = 1 << 20
KINDS: Final = ("read", "write", "flush", "unmap", "other")


@dataclass(frozen=True, slots=True)
class Sample:
    """One group's counters at one poll, as its owner reported them."""

    time: float
    owner: str | None
    io: Mapping[str, Any] | None  # IOStats.snapshot(): kind -> {ops, bytes, seconds, ...}


def _count(io: Mapping[str, Any], kind: str, what: str) -> float:
    entry = io.get(kind)
    if not isinstance(entry, Mapping):
        return 0.0
    value = entry.get(what, 0)
    return float(value) if isinstance(value, int | float) else 0.0


def rates(before: Sample, after: Sample) -> dict[str, float | None]:
    """Per second between two samples: read and write operations and MiB, and the mean
    latency in milliseconds of the operations that ended in between (None without any).

    Counters live with the owner's export: after a move or a failover the new owner counts
    from zero, so a counter that went down (or a new owner) means everything counted now
    happened since the earlier sample.
    """
    span = after.time - before.time
    empty: dict[str, float | None] = {
        "read_ops": 0.0,
        "write_ops": 0.0,
        "read_mib": 0.0,
        "write_mib": 0.0,
        "latency_ms": None,
    }
    if after.io is None or span <= 0:
        return empty
    base: Mapping[str, Any] = {} if before.io is None else before.io
    if before.owner != after.owner or any(
        _count(after.io, k, w) < _count(base, k, w) for k in KINDS for w in ("ops", "bytes")
    ):
        base = {}

    def delta(kind: str, what: str) -> float:
        assert after.io is not None
        return _count(after.io, kind, what) - _count(base, kind, what)

    ops = sum(delta(k, "ops") for k in KINDS)
    seconds = sum(delta(k, "seconds") for k in KINDS)
    return {
        "read_ops": delta("read", "ops") / span,
        "write_ops": delta("write", "ops") / span,
        "read_mib": delta("read", "bytes") / MIB / span,
        "write_mib": delta("write", "bytes") / MIB / span,
        "latency_ms": seconds / ops * 1000.0 if ops > 0 else None,
    }


@dataclass(slots=True)
class GroupHistory:
    """One group's last sample and its recent rates: [time, read ops/s, write ops/s,
    read MiB/s, write MiB/s, mean latency ms or None] per point."""

    last: Sample | None = None
    points: deque[list[float | None]] = field(default_factory=lambda: deque(maxlen=HISTORY))

    def add(self, sample: Sample) -> dict[str, float | None] | None:
        previous, self.last = self.last, sample
        if previous is None:
            return None
        r = rates(previous, sample)
        self.points.append(
            [
                sample.time,
                r["read_ops"],
                r["write_ops"],
                r["read_mib"],
                r["write_mib"],
                r["latency_ms"],
            ]
        )
        return r


def _event_key(event: Mapping[str, Any]) -> tuple[float, str, int]:
    return (float(event.get("time", 0.0)), str(event.get("node", "")), int(event.get("seq", 0)))


@dataclass(slots=True)
class MergedEvents:
    """The cluster log as the page shows it: every node's events, oldest first, bounded;
    ``since[node]`` is the last event number read from that node."""

    since: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def add(self, node: str, answer: Mapping[str, Any]) -> None:
        """One node's ``/v1/cluster/events?since=N`` answer."""
        new = [e for e in answer.get("events", []) if isinstance(e, dict)]
        last = answer.get("last_seq")
        if isinstance(last, int):
            if last < self.since.get(node, 0):  # its log began again (state directory lost)
                self.since[node] = 0
                return
            self.since[node] = last
        if new:
            self.events = sorted([*self.events, *new], key=_event_key)[-EVENTS_KEPT:]


@dataclass(frozen=True, slots=True)
class Poll:
    """What one poll got (None or an error text where it got nothing)."""

    time: float
    source: str | None  # the node that answered the status
    status: Mapping[str, Any] | None
    status_error: str | None = None
    maps: Mapping[str, Any] = field(default_factory=dict)  # node -> its maps answer or error
    volumes: Mapping[str, Any] = field(default_factory=dict)  # "G/D" -> {info, snapshots} | str
    target: Mapping[str, Any] | None = None  # {targets, luns, sessions} or {error}


@dataclass(slots=True)
class DashboardState:
    """Everything the page shows, updated by each poll (module docstring)."""

    cluster: str
    controls: Mapping[str, str]  # node -> its control socket, from the config
    devices: Mapping[str, str]  # disk -> its device (WWID or IQN/LUN), to name each map
    volume_names: Sequence[str]  # every "G/D" of the config
    has_target: bool = False
    history: dict[str, GroupHistory] = field(default_factory=dict)
    events: MergedEvents = field(default_factory=MergedEvents)
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: Mapping[str, Any] | None = None
    version: int = 0

    def update(self, poll: Poll) -> dict[str, Any]:
        """The view after ``poll``, as JSON for the page."""
        self.version += 1
        if poll.status is not None:
            self.status = poll.status
        group_rates: dict[str, dict[str, float | None] | None] = {}
        for group in (poll.status or {}).get("groups", []):
            history = self.history.setdefault(group["name"], GroupHistory())
            sample = Sample(poll.time, group.get("owner"), group.get("io"))
            group_rates[group["name"]] = history.add(sample)
        for name, answer in poll.volumes.items():
            if isinstance(answer, str):
                kept = self.volumes.get(name, {"info": None, "snapshots": []})
                self.volumes[name] = {**kept, "error": answer}
            else:
                self.volumes[name] = {**answer, "error": None}
        return self.view(poll, group_rates)

    def view(
        self, poll: Poll, group_rates: Mapping[str, dict[str, float | None] | None]
    ) -> dict[str, Any]:
        status = self.status or {}
        return {
            "version": self.version,
            "time": poll.time,
            "cluster": self.cluster,
            "source": poll.source,
            "stale": poll.status is None,
            "error": poll.status_error,
            "view": status.get("view"),
            "quorum": status.get("quorum"),
            "fenced": status.get("fenced"),
            "nodes": [self._node(n, status) for n in status.get("nodes", [])],
            "groups": [
                {
                    **_without(g, "io"),
                    "display": display_state(
                        g, status.get("nodes", []), bool((status.get("quorum") or {}).get("has"))
                    ),
                    "rates": group_rates.get(g["name"]),
                }
                for g in status.get("groups", [])
            ],
            "disks": status.get("disks", []),
            "paths": {node: self._maps(answer) for node, answer in poll.maps.items()},
            "volumes": [
                {"volume": name, **self.volumes.get(name, {"info": None, "snapshots": []})}
                for name in self.volume_names
            ],
            "target": poll.target if self.has_target else None,
            "chart": {name: list(h.points) for name, h in self.history.items()},
            "events": list(reversed(self.events.events[-100:])),
        }

    def _node(self, node: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
        owned = [g["name"] for g in status.get("groups", []) if g.get("owner") == node["name"]]
        return {**node, "control": self.controls.get(node["name"]), "groups": owned}

    def _maps(self, answer: Any) -> dict[str, Any]:
        if isinstance(answer, str):
            return {"error": answer, "maps": []}
        disk_of = {device.lower(): disk for disk, device in self.devices.items()}
        rows = []
        for entry in answer.get("maps", []):
            disk = disk_of.get(str(entry.get("wwid", "")).lower()) or disk_of.get(
                str(entry.get("alias", "")).lower()
            )
            rows.append({**entry, "disk": disk})
        rows.sort(key=lambda r: (r["disk"] is None, r["disk"] or "", r.get("alias") or ""))
        return {"error": None, "maps": rows}


def display_state(
    group: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], has_quorum: bool
) -> str:
    """What the page calls a group's state, as Failover Cluster Manager does: ``online``,
    ``pending`` (coming online or going offline anywhere, or failing over: its owner is
    gone, or the cluster waits for quorum to place it), ``failed``, or ``offline`` (the
    cluster has quorum and places it nowhere: every node is paused, say). Every group is
    wanted online; nothing takes one offline on purpose."""
    state = group.get("state")
    down = {n["name"] for n in nodes if n.get("state") == "down"}
    if state == "failed":
        return "failed"
    if state == "online":
        return "pending" if group.get("owner") in down else "online"
    if state == "offline" and has_quorum and group.get("placed") is None and not group.get("move"):
        return "offline"
    return "pending"


def _without(row: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != key}


def volume_names(groups: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """Every clustered volume ``GROUP/DISK`` of the config's (group, volumes) pairs."""
    return [f"{group}/{disk}" for group, volumes in groups for disk in volumes]
