"""The fields and parts of the coordinator-worker messages (``workers_protocol.py``):
each checks its JSON and refuses anything else with a ``WorkerProtocolError``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sanstack.errors import SanstackError
from sanstack.scsi.command import Nexus


class WorkerProtocolError(SanstackError):
    """A frame between coordinator and worker that is not one of the messages here."""


# -- field codecs ------------------------------------------------------------------------------

T = TypeVar("T")


def field_of(obj: dict[str, Any], name: str, kind: type[T]) -> T:
    value = obj.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise WorkerProtocolError(f"{name}: expected {kind.__name__}, got {value!r}")
    return value


def hex_field(obj: dict[str, Any], name: str) -> bytes:
    try:
        return bytes.fromhex(field_of(obj, name, str))
    except ValueError:
        raise WorkerProtocolError(f"{name}: not hex") from None


def list_field(obj: dict[str, Any], name: str) -> list[Any]:
    return field_of(obj, name, list)


def nexus_to_json(nexus: Nexus) -> list[Any]:
    return [
        nexus.initiator_name,
        nexus.isid,
        nexus.target_name,
        nexus.tpgt,
        nexus.relative_target_port_id,
    ]


def nexus_from_json(value: object) -> Nexus:
    if (
        not isinstance(value, list)
        or len(value) != 5
        or not isinstance(value[0], str)
        or not isinstance(value[2], str)
        or not all(type(v) is int for v in (value[1], value[3], value[4]))
    ):
        raise WorkerProtocolError(f"nexus: malformed {value!r}")
    return Nexus(value[0], value[1], value[2], value[3], value[4])


def nexus_field(obj: dict[str, Any], name: str) -> Nexus:
    return nexus_from_json(obj.get(name))


def optional_nexus_field(obj: dict[str, Any], name: str) -> Nexus | None:
    return None if obj.get(name) is None else nexus_field(obj, name)


def objects_field(obj: dict[str, Any], name: str, build: Callable[[dict[str, Any]], T]) -> list[T]:
    items = list_field(obj, name)
    if not all(isinstance(item, dict) for item in items):
        raise WorkerProtocolError(f"{name}: expected objects")
    return [build(item) for item in items]


# -- parts of messages -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortalAddress:
    """A portal of a portal group as the coordinator bound it (port 0 resolved)."""

    target: str
    tag: int
    index: int
    host: str
    port: int

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "tag": self.tag,
            "index": self.index,
            "host": self.host,
            "port": self.port,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PortalAddress:
        return cls(
            field_of(obj, "target", str),
            field_of(obj, "tag", int),
            field_of(obj, "index", int),
            field_of(obj, "host", str),
            field_of(obj, "port", int),
        )


@dataclass(frozen=True, slots=True)
class LunState:
    """One LUN's shared state: the persistent reservations document (``to_dict``), the
    SPC-2 reservation's holder and the mode parameters (shared by every nexus)."""

    target: str
    lun: int
    pr: dict[str, Any]
    scsi2: Nexus | None = None
    mode: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "lun": self.lun,
            "pr": self.pr,
            "scsi2": None if self.scsi2 is None else nexus_to_json(self.scsi2),
            "mode": self.mode,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LunState:
        return cls(
            field_of(obj, "target", str),
            field_of(obj, "lun", int),
            field_of(obj, "pr", dict),
            optional_nexus_field(obj, "scsi2"),
            field_of(obj, "mode", dict),
        )


@dataclass(frozen=True, slots=True)
class AluaGroupState:
    """One target port group's ALUA state, status code and PREF bit."""

    target: str
    group_id: int
    state: int
    status: int
    preferred: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "group": self.group_id,
            "state": self.state,
            "status": self.status,
            "preferred": self.preferred,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> AluaGroupState:
        return cls(
            field_of(obj, "target", str),
            field_of(obj, "group", int),
            field_of(obj, "state", int),
            field_of(obj, "status", int),
            field_of(obj, "preferred", bool),
        )


@dataclass(frozen=True, slots=True)
class UnitAttentionFor:
    """A unit attention (ASC/ASCQ as one number) for one nexus on one LUN."""

    target: str
    lun: int
    nexus: Nexus
    asc: int

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "lun": self.lun,
            "nexus": nexus_to_json(self.nexus),
            "asc": self.asc,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> UnitAttentionFor:
        return cls(
            field_of(obj, "target", str),
            field_of(obj, "lun", int),
            nexus_field(obj, "nexus"),
            field_of(obj, "asc", int),
        )


@dataclass(frozen=True, slots=True)
class AbortSets:
    """PREEMPT AND ABORT's task sets on one LUN; the requester's own command (its tag) is
    spared, as it must complete."""

    target: str
    lun: int
    nexuses: tuple[Nexus, ...]
    requester: Nexus
    requester_tag: int

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "lun": self.lun,
            "nexuses": [nexus_to_json(n) for n in self.nexuses],
            "requester": nexus_to_json(self.requester),
            "tag": self.requester_tag,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> AbortSets:
        return cls(
            field_of(obj, "target", str),
            field_of(obj, "lun", int),
            tuple(nexus_from_json(n) for n in list_field(obj, "nexuses")),
            nexus_field(obj, "requester"),
            field_of(obj, "tag", int),
        )


@dataclass(frozen=True, slots=True)
class ResetUnits:
    """A task management function whose task set is shared by every nexus, so every
    worker carries it out: a LOGICAL UNIT RESET (``lun``) or target reset (``lun`` -1:
    every LUN) establishing ``asc`` (SAM-5 §7.7), or with ``clear`` a CLEAR TASK SET
    (SAM-5 §7.4), from ``nexus``."""

    target: str
    lun: int
    nexus: Nexus
    asc: int
    clear: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "lun": self.lun,
            "nexus": nexus_to_json(self.nexus),
            "asc": self.asc,
            "clear": self.clear,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ResetUnits:
        return cls(
            field_of(obj, "target", str),
            field_of(obj, "lun", int),
            nexus_field(obj, "nexus"),
            field_of(obj, "asc", int),
            field_of(obj, "clear", bool),
        )
