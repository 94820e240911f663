"""The messages between a target's coordinator and its worker processes, and their codec.

With ``sanstack target serve --workers N`` the started process is the coordinator: it
listens, hands each accepted connection to a worker, and keeps the state every worker must
agree on (persistent and SPC-2 reservations, ALUA states, which worker holds which I_T
nexus). The data path never crosses processes; only the commands that change shared state
do (``Forward``/``Reply``), and the coordinator pushes the new state to every worker
(``Sync``) and waits for every ``Ack`` before it answers.

A frame is a 4-byte big-endian length and a JSON object (sorted keys, no spaces, so a
message always encodes to the same bytes); ``"type"`` names the message. Bytes travel as
hex, an I_T nexus as ``[initiator, isid, target, tpgt, relative port]``. Anything else is a
``WorkerProtocolError``: a frame longer than ``MAX_FRAME``, bad JSON, an unknown type, a
missing or mistyped field.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeVar

from sanstack.errors import SanstackError
from sanstack.scsi.command import Nexus

__all__ = [
    "MAX_FRAME",
    "AbortSets",
    "Ack",
    "AluaGroupState",
    "ConnectionEnded",
    "DropConnections",
    "Forward",
    "FrameReader",
    "Handoff",
    "Hello",
    "ListSessions",
    "LunState",
    "Message",
    "PortalAddress",
    "Ready",
    "Reinstate",
    "Reply",
    "Reset",
    "ResetUnits",
    "SessionDown",
    "SessionUp",
    "Sessions",
    "Stop",
    "Sync",
    "UnitAttentionFor",
    "WorkerProtocolError",
    "decode",
    "encode",
]

_LENGTH: Final = struct.Struct(">I")
# A READ FULL STATUS of 4096 registrations is well under a megabyte of JSON.
MAX_FRAME: Final = 16 << 20


class WorkerProtocolError(SanstackError):
    """A frame between coordinator and worker that is not one of the messages here."""


# -- field codecs ------------------------------------------------------------------------------

T = TypeVar("T")


def _get(obj: dict[str, Any], name: str, kind: type[T]) -> T:
    value = obj.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise WorkerProtocolError(f"{name}: expected {kind.__name__}, got {value!r}")
    return value


def _hex(obj: dict[str, Any], name: str) -> bytes:
    try:
        return bytes.fromhex(_get(obj, name, str))
    except ValueError:
        raise WorkerProtocolError(f"{name}: not hex") from None


def _list(obj: dict[str, Any], name: str) -> list[Any]:
    return _get(obj, name, list)


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


def _nexus(obj: dict[str, Any], name: str) -> Nexus:
    return nexus_from_json(obj.get(name))


def _optional_nexus(obj: dict[str, Any], name: str) -> Nexus | None:
    return None if obj.get(name) is None else _nexus(obj, name)


def _objects(obj: dict[str, Any], name: str, build: Callable[[dict[str, Any]], T]) -> list[T]:
    items = _list(obj, name)
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
            _get(obj, "target", str),
            _get(obj, "tag", int),
            _get(obj, "index", int),
            _get(obj, "host", str),
            _get(obj, "port", int),
        )


@dataclass(frozen=True, slots=True)
class LunState:
    """One LUN's shared state: the persistent reservations document (``to_dict``) and the
    SPC-2 reservation's holder."""

    target: str
    lun: int
    pr: dict[str, Any]
    scsi2: Nexus | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "lun": self.lun,
            "pr": self.pr,
            "scsi2": None if self.scsi2 is None else nexus_to_json(self.scsi2),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LunState:
        return cls(
            _get(obj, "target", str),
            _get(obj, "lun", int),
            _get(obj, "pr", dict),
            _optional_nexus(obj, "scsi2"),
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
            _get(obj, "target", str),
            _get(obj, "group", int),
            _get(obj, "state", int),
            _get(obj, "status", int),
            _get(obj, "preferred", bool),
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
            _get(obj, "target", str),
            _get(obj, "lun", int),
            _nexus(obj, "nexus"),
            _get(obj, "asc", int),
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
            _get(obj, "target", str),
            _get(obj, "lun", int),
            tuple(nexus_from_json(n) for n in _list(obj, "nexuses")),
            _nexus(obj, "requester"),
            _get(obj, "tag", int),
        )


@dataclass(frozen=True, slots=True)
class ResetUnits:
    """A LOGICAL UNIT RESET (``lun``) or target reset (``lun`` -1: every LUN) from
    ``nexus``, establishing ``asc``: each worker aborts its tasks there (SAM-5 §7.7)."""

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
    def from_json(cls, obj: dict[str, Any]) -> ResetUnits:
        return cls(
            _get(obj, "target", str),
            _get(obj, "lun", int),
            _nexus(obj, "nexus"),
            _get(obj, "asc", int),
        )


# -- messages ----------------------------------------------------------------------------------


class Message:
    """A message of either direction; ``kind`` is its ``"type"``."""

    __slots__ = ()
    kind: ClassVar[str]

    def fields(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Message:
        raise NotImplementedError


# Coordinator to worker.


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """The worker's first message: who it is, the bound portals and the shared state now."""

    kind: ClassVar[str] = "hello"
    index: int
    portals: tuple[PortalAddress, ...]
    luns: tuple[LunState, ...]
    alua: tuple[AluaGroupState, ...]

    def fields(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "portals": [p.to_json() for p in self.portals],
            "luns": [s.to_json() for s in self.luns],
            "alua": [a.to_json() for a in self.alua],
        }

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Hello:
        return cls(
            _get(obj, "index", int),
            tuple(_objects(obj, "portals", PortalAddress.from_json)),
            tuple(_objects(obj, "luns", LunState.from_json)),
            tuple(_objects(obj, "alua", AluaGroupState.from_json)),
        )


@dataclass(frozen=True, slots=True)
class Sync(Message):
    """New shared state and what a change established; the worker applies it, carries out
    the aborts, then acks ``seq``."""

    kind: ClassVar[str] = "sync"
    seq: int
    luns: tuple[LunState, ...] = ()
    alua: tuple[AluaGroupState, ...] = ()
    unit_attentions: tuple[UnitAttentionFor, ...] = ()
    aborts: tuple[AbortSets, ...] = ()
    resets: tuple[ResetUnits, ...] = ()

    def fields(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "luns": [s.to_json() for s in self.luns],
            "alua": [a.to_json() for a in self.alua],
            "unit_attentions": [u.to_json() for u in self.unit_attentions],
            "aborts": [a.to_json() for a in self.aborts],
            "resets": [r.to_json() for r in self.resets],
        }

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Sync:
        return cls(
            _get(obj, "seq", int),
            tuple(_objects(obj, "luns", LunState.from_json)),
            tuple(_objects(obj, "alua", AluaGroupState.from_json)),
            tuple(_objects(obj, "unit_attentions", UnitAttentionFor.from_json)),
            tuple(_objects(obj, "aborts", AbortSets.from_json)),
            tuple(_objects(obj, "resets", ResetUnits.from_json)),
        )


@dataclass(frozen=True, slots=True)
class Reply(Message):
    """The outcome of a forwarded command."""

    kind: ClassVar[str] = "reply"
    request: int
    status: int
    data: bytes = b""
    sense: bytes = b""
    data_out_used: int | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "status": self.status,
            "data": self.data.hex(),
            "sense": self.sense.hex(),
            "data_out_used": self.data_out_used,
        }

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Reply:
        used = obj.get("data_out_used")
        return cls(
            _get(obj, "request", int),
            _get(obj, "status", int),
            _hex(obj, "data"),
            _hex(obj, "sense"),
            None if used is None else _get(obj, "data_out_used", int),
        )


@dataclass(frozen=True, slots=True)
class Reinstate(Message):
    """A login in another worker took over this nexus: close its session here."""

    kind: ClassVar[str] = "reinstate"
    nexus: Nexus

    def fields(self) -> dict[str, Any]:
        return {"nexus": nexus_to_json(self.nexus)}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Reinstate:
        return cls(_nexus(obj, "nexus"))


@dataclass(frozen=True, slots=True)
class DropConnections(Message):
    """A portal group went down: drop its sessions and the discovery sessions on its
    portals (``host:port`` strings)."""

    kind: ClassVar[str] = "drop"
    target: str
    tag: int
    portals: tuple[str, ...]

    def fields(self) -> dict[str, Any]:
        return {"target": self.target, "tag": self.tag, "portals": list(self.portals)}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> DropConnections:
        portals = _list(obj, "portals")
        if not all(isinstance(p, str) for p in portals):
            raise WorkerProtocolError("portals: expected strings")
        return cls(_get(obj, "target", str), _get(obj, "tag", int), tuple(portals))


@dataclass(frozen=True, slots=True)
class ListSessions(Message):
    kind: ClassVar[str] = "list-sessions"
    request: int

    def fields(self) -> dict[str, Any]:
        return {"request": self.request}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> ListSessions:
        return cls(_get(obj, "request", int))


@dataclass(frozen=True, slots=True)
class Stop(Message):
    """Shut down: let commands in flight finish within ``grace`` seconds, then exit."""

    kind: ClassVar[str] = "stop"
    grace: float

    def fields(self) -> dict[str, Any]:
        return {"grace": self.grace}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Stop:
        grace = obj.get("grace")
        if not isinstance(grace, (int, float)) or isinstance(grace, bool) or grace < 0:
            raise WorkerProtocolError(f"grace: expected seconds, got {grace!r}")
        return cls(float(grace))


@dataclass(frozen=True, slots=True)
class Handoff(Message):
    """An accepted connection (its socket rides along as SCM_RIGHTS) and its portal."""

    kind: ClassVar[str] = "handoff"
    connection: int
    host: str
    port: int

    def fields(self) -> dict[str, Any]:
        return {"connection": self.connection, "host": self.host, "port": self.port}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Handoff:
        return cls(_get(obj, "connection", int), _get(obj, "host", str), _get(obj, "port", int))


# Worker to coordinator.


@dataclass(frozen=True, slots=True)
class Ready(Message):
    kind: ClassVar[str] = "ready"
    index: int
    pid: int

    def fields(self) -> dict[str, Any]:
        return {"index": self.index, "pid": self.pid}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Ready:
        return cls(_get(obj, "index", int), _get(obj, "pid", int))


@dataclass(frozen=True, slots=True)
class Forward(Message):
    """A command that reads or changes shared state, for the coordinator to run."""

    kind: ClassVar[str] = "forward"
    request: int
    target: str
    lun: int
    nexus: Nexus
    tag: int
    cdb: bytes
    data_out: bytes = b""
    data_in_length: int = 0

    def fields(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "target": self.target,
            "lun": self.lun,
            "nexus": nexus_to_json(self.nexus),
            "tag": self.tag,
            "cdb": self.cdb.hex(),
            "data_out": self.data_out.hex(),
            "data_in_length": self.data_in_length,
        }

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Forward:
        return cls(
            _get(obj, "request", int),
            _get(obj, "target", str),
            _get(obj, "lun", int),
            _nexus(obj, "nexus"),
            _get(obj, "tag", int),
            _hex(obj, "cdb"),
            _hex(obj, "data_out"),
            _get(obj, "data_in_length", int),
        )


@dataclass(frozen=True, slots=True)
class Reset(Message):
    """A reset task management function in a worker: the coordinator resets its units
    (the SPC-2 reservation goes) and has every other worker abort its tasks, then
    ``Reply``s; the worker then carries out the function on its own tasks."""

    kind: ClassVar[str] = "reset"
    request: int
    reset: ResetUnits

    def fields(self) -> dict[str, Any]:
        return {"request": self.request, "reset": self.reset.to_json()}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Reset:
        return cls(_get(obj, "request", int), ResetUnits.from_json(_get(obj, "reset", dict)))


@dataclass(frozen=True, slots=True)
class Ack(Message):
    kind: ClassVar[str] = "ack"
    seq: int

    def fields(self) -> dict[str, Any]:
        return {"seq": self.seq}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Ack:
        return cls(_get(obj, "seq", int))


@dataclass(frozen=True, slots=True)
class SessionUp(Message):
    """A login on ``connection`` made ``nexus`` live in this worker."""

    kind: ClassVar[str] = "session-up"
    connection: int
    nexus: Nexus

    def fields(self) -> dict[str, Any]:
        return {"connection": self.connection, "nexus": nexus_to_json(self.nexus)}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> SessionUp:
        return cls(_get(obj, "connection", int), _nexus(obj, "nexus"))


@dataclass(frozen=True, slots=True)
class SessionDown(Message):
    kind: ClassVar[str] = "session-down"
    connection: int
    nexus: Nexus

    def fields(self) -> dict[str, Any]:
        return {"connection": self.connection, "nexus": nexus_to_json(self.nexus)}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> SessionDown:
        return cls(_get(obj, "connection", int), _nexus(obj, "nexus"))


@dataclass(frozen=True, slots=True)
class ConnectionEnded(Message):
    kind: ClassVar[str] = "connection-ended"
    connection: int

    def fields(self) -> dict[str, Any]:
        return {"connection": self.connection}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> ConnectionEnded:
        return cls(_get(obj, "connection", int))


@dataclass(frozen=True, slots=True)
class Sessions(Message):
    """The answer to ``ListSessions``: the control API's session rows of this worker."""

    kind: ClassVar[str] = "sessions"
    request: int
    sessions: tuple[dict[str, Any], ...] = field(default=())

    def fields(self) -> dict[str, Any]:
        return {"request": self.request, "sessions": list(self.sessions)}

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Sessions:
        rows = _list(obj, "sessions")
        if not all(isinstance(row, dict) for row in rows):
            raise WorkerProtocolError("sessions: expected objects")
        return cls(_get(obj, "request", int), tuple(rows))


_KINDS: Final[dict[str, type[Message]]] = {
    cls.kind: cls
    for cls in (
        Hello,
        Sync,
        Reply,
        Reinstate,
        DropConnections,
        ListSessions,
        Stop,
        Handoff,
        Ready,
        Forward,
        Reset,
        Ack,
        SessionUp,
        SessionDown,
        ConnectionEnded,
        Sessions,
    )
}


# -- frames ------------------------------------------------------------------------------------


def encode_body(message: Message) -> bytes:
    """The JSON of one message, without the length (a datagram's payload)."""
    document = {"type": message.kind, **message.fields()}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def encode(message: Message) -> bytes:
    """One frame: the length, then the JSON."""
    body = encode_body(message)
    if len(body) > MAX_FRAME:
        raise WorkerProtocolError(f"{message.kind}: {len(body)} bytes is over {MAX_FRAME}")
    return _LENGTH.pack(len(body)) + body


def decode(body: bytes) -> Message:
    """One message from its JSON (a frame without its length)."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise WorkerProtocolError("frame: not JSON") from None
    if not isinstance(document, dict):
        raise WorkerProtocolError("frame: not a JSON object")
    kind = _KINDS.get(document.get("type"))  # type: ignore[arg-type]
    if kind is None:
        raise WorkerProtocolError(f"type: unknown message {document.get('type')!r}")
    return kind.parse(document)


class FrameReader:
    """Bytes of a stream in, whole messages out; holds at most one frame's bytes."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length > MAX_FRAME:
                raise WorkerProtocolError(f"frame: {length} bytes is over {MAX_FRAME}")
            end = _LENGTH.size + length
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[_LENGTH.size : end])
            del self._buffer[:end]
            messages.append(decode(body))
        return messages
