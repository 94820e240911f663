"""The cluster log (WSFC's cluster log, Pacemaker's): typed events with their reasons.

Every membership change, quorum change, arbitration step, fencing and group state change a
node sees is one ``ClusterEvent``. The node keeps the newest ``capacity`` of them in an
``EventLog`` ring, numbered by ``seq`` so ``sanstack cluster events --follow`` asks only for
what it has not seen (``since``) and can tell when the ring dropped some (``first_seq``).
The edge also appends each event as one JSON line to a file in the state directory
(``encode_line``); ``decode_line`` reads one back. No I/O here.

JSON carries a reservation key as ``format_key``'s text, not a number: a 64-bit key does not
survive a JSON reader that uses doubles (jq, JavaScript).
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from sanstack.cluster.keys import format_key, parse_key
from sanstack.errors import SanstackError

DEFAULT_CAPACITY = 10_000


class EventKind(Enum):
    # membership
    VIEW = "membership.view"  # a new view installed: epoch, members in reason
    JOINED = "membership.joined"
    LEFT = "membership.left"
    REJOINED = "membership.rejoined"  # the same node with a new incarnation (it restarted)
    PAUSED = "membership.paused"
    RESUMED = "membership.resumed"
    # quorum
    QUORUM_GAINED = "quorum.gained"
    QUORUM_LOST = "quorum.lost"
    # disk arbitration and fencing
    DISK_ARBITRATED = "disk.arbitrated"  # reserved: this node owns the disk now
    DISK_DEFENDED = "disk.defended"  # a non-member's registration removed while defending
    DISK_PREEMPTED = "disk.preempted"  # PREEMPT AND ABORT of a non-member's key
    DISK_FENCED = "disk.fenced"  # ownership unexpectedly lost (WSFC Event 1038)
    DISK_RELEASED = "disk.released"
    DISK_UNFENCED = "disk.unfenced"  # a fenced node stopped its groups and registers again
    DISK_UNREACHABLE = "disk.unreachable"  # no path from this node for storage_loss_stop
    DISK_REACHABLE = "disk.reachable"  # a path again after it was unreachable
    # groups
    GROUP_STATE = "group.state"  # offline, onlining, online, offlining, failed...
    GROUP_MOVED = "group.moved"
    GROUP_FAILED = "group.failed"  # restart threshold reached
    # snapshot volumes on the groups' disks
    VOLUME_SCANNED = "volume.scanned"  # its free-space scan ended here (KB829440's moment)


class EventLineError(SanstackError, ValueError):
    """A cluster log line that is not an event (a torn last line after a crash, say)."""


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """One entry of the cluster log. ``node`` logged it; ``peer`` is the other node it is
    about (the one that joined, the holder that was preempted), if any."""

    time: float  # seconds since the epoch, as the edge's clock gave it
    node: str
    kind: EventKind
    reason: str
    group: str | None = None
    disk: str | None = None
    key: int | None = None  # a reservation key (the one preempted, the holder found)
    peer: str | None = None
    epoch: int | None = None  # the membership view's epoch, for membership events
    seq: int = 0  # given by EventLog.append: 1, 2, 3... on this node

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "time": self.time,
            "node": self.node,
            "kind": self.kind.value,
            "reason": self.reason,
        }
        for name in ("group", "disk", "peer", "epoch"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.key is not None:
            out["key"] = format_key(self.key)
        return out

    @classmethod
    def from_dict(cls, raw: object) -> ClusterEvent:
        """The inverse of ``to_dict``; EventLineError naming what is wrong."""
        if not isinstance(raw, dict):
            raise EventLineError("an event is a JSON object")
        unknown = set(raw) - _FIELDS
        if unknown:
            raise EventLineError(f"unknown event field {sorted(unknown)[0]!r}")
        try:
            kind = EventKind(raw.get("kind"))
        except ValueError:
            raise EventLineError(f"unknown event kind {raw.get('kind')!r}") from None
        time = raw.get("time")
        if not isinstance(time, int | float) or isinstance(time, bool) or not math.isfinite(time):
            raise EventLineError(f"time {time!r} is not a number")
        key_text = raw.get("key")
        key: int | None = None
        if key_text is not None:
            try:
                key = parse_key(_text(key_text, "key"))
            except ValueError:
                raise EventLineError(f"key {key_text!r} is not a 64-bit hex key") from None
        return cls(
            time=float(time),
            node=_text(raw.get("node"), "node"),
            kind=kind,
            reason=_text(raw.get("reason"), "reason"),
            group=_optional_text(raw.get("group"), "group"),
            disk=_optional_text(raw.get("disk"), "disk"),
            key=key,
            peer=_optional_text(raw.get("peer"), "peer"),
            epoch=_optional_count(raw.get("epoch"), "epoch"),
            seq=_optional_count(raw.get("seq"), "seq") or 0,
        )


_FIELDS = {"seq", "time", "node", "kind", "reason", "group", "disk", "key", "peer", "epoch"}


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise EventLineError(f"{name} {value!r} is not a string")
    return value


def _optional_text(value: object, name: str) -> str | None:
    return None if value is None else _text(value, name)


def _optional_count(value: object, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise EventLineError(f"{name} {value!r} is not a count")
    return value


def encode_line(event: ClusterEvent) -> bytes:
    """One event as one line of JSON (newline-terminated; a reason's newlines are escaped)."""
    return json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode_line(line: bytes | str) -> ClusterEvent:
    """One line of ``encode_line`` back; EventLineError if it is not one."""
    if isinstance(line, bytes):
        try:
            line = line.decode()
        except UnicodeDecodeError:
            raise EventLineError("the line is not UTF-8") from None
    try:
        raw = json.loads(line)
    except ValueError:
        raise EventLineError("the line is not JSON") from None
    return ClusterEvent.from_dict(raw)


class EventLog:
    """The newest ``capacity`` events, oldest dropped first, numbered 1, 2, 3..."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("an event log holds at least one event")
        self.capacity = capacity
        self._events: deque[ClusterEvent] = deque(maxlen=capacity)
        self._last_seq = 0

    def __len__(self) -> int:
        return len(self._events)

    @property
    def last_seq(self) -> int:
        """The newest event's number; 0 before the first."""
        return self._last_seq

    @property
    def first_seq(self) -> int:
        """The oldest event still held; a follower that last saw less than
        ``first_seq - 1`` missed the ones in between."""
        return self._events[0].seq if self._events else self._last_seq + 1

    def append(self, event: ClusterEvent) -> ClusterEvent:
        """Number ``event`` and keep it; the numbered event is returned (and is what the
        edge writes to its file)."""
        self._last_seq += 1
        numbered = replace(event, seq=self._last_seq)
        self._events.append(numbered)
        return numbered

    def restore(self, events: Iterable[ClusterEvent]) -> None:
        """Take back events read from the file after a restart, keeping their numbers, so
        numbering continues where it stopped. Numbers must increase past ``last_seq``."""
        for event in events:
            if event.seq <= self._last_seq:
                raise ValueError(f"event {event.seq} does not follow {self._last_seq}")
            self._events.append(event)
            self._last_seq = event.seq

    def since(self, seq: int, limit: int | None = None) -> tuple[ClusterEvent, ...]:
        """The events numbered above ``seq``, oldest first (at most ``limit``)."""
        newer: list[ClusterEvent] = []
        for event in reversed(self._events):  # a follower asks for the newest few
            if event.seq <= seq:
                break
            newer.append(event)
        newer.reverse()
        return tuple(newer if limit is None else newer[:limit])

    def to_dict(self, since: int = 0, limit: int | None = None) -> dict[str, Any]:
        return {
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "capacity": self.capacity,
            "events": [event.to_dict() for event in self.since(since, limit)],
        }
