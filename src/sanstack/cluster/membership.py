"""Membership: the failure detector and view agreement (docs/cluster-design.md "Membership").

Sans-IO. The edge calls ``tick(now)`` at ``next_deadline(now)`` and sends each of
``Tick.datagrams()`` to that node's cluster address; it hands every datagram it receives to
``receive_datagram(data, now)`` (or a decoded one to ``receive``), then asks
``next_deadline`` again (a heartbeat can bring it forward).

Failure detector: a peer is alive while a heartbeat of it arrived within
``timings.node_timeout`` (``heartbeat_interval * missed_heartbeats``). Peers are told apart
by incarnation, a random 64-bit value per process start: a new one is a restart (``rejoined``),
and late datagrams of an incarnation already replaced are dropped.

Views: the coordinator of a node's partition is the first node in config order among the
nodes it sees alive, itself included. Only a coordinator proposes: at a tick, when

1. the nodes it sees alive differ from its view's members, or
2. a member restarted since the view was installed, or
3. a peer that names it as coordinator carries a different view with an epoch at least its
   own (the peer followed another coordinator before; without this it would keep that view
   forever, since a node never installs a lower epoch),

it installs ``View(highest epoch seen from anyone + 1, alive nodes)`` and sends it at once.
A node installs the view its coordinator carries when that epoch is above its own, so epochs
only ever increase on a node; a view that leaves it out only once it has heard that
coordinator for ``STARTUP_GRACE`` intervals (before then the coordinator has not heard it
yet). A node proposes nothing for ``STARTUP_GRACE`` intervals after its first tick, so a
restarted node first learns the current epoch and who is alive.

Convergence: each proposal needs a change of what some node sees (a node goes down, comes
back or restarts) or a follower arriving from another coordinator, which itself needs such
a change; so once links stop changing, views stop changing within about one node timeout,
one interval and the network delay. With a one-way link (A hears B, B does not hear A) both
sides' failure detectors are stable too, so nothing flaps: A counts B alive, B counts A
down; each follows the first node it sees alive, and the two may install different views
(B's coordinator may leave A out while A's view has B). The reservations on the disks, not
the views, decide ownership, so such a disagreement delays a failover but makes no second
owner (docs/cluster-design.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from sanstack.cluster.heartbeat import (
    MAX_U64,
    Claim,
    Heartbeat,
    HeartbeatError,
    decode,
    encode,
    split,
)
from sanstack.cluster.model import Timings
from sanstack.errors import ConfigError

STARTUP_GRACE = 2.0  # heartbeat intervals before a new node may propose a view
SEND_GAP = 0.1  # heartbeat intervals: the least gap between two sends (bursts of changes)
RETIRED_INCARNATIONS = 4  # a peer's earlier incarnations whose late datagrams are dropped


@dataclass(frozen=True, slots=True)
class View:
    """An agreed membership: the members, numbered by an epoch that only increases."""

    epoch: int
    members: frozenset[str]
    coordinator: str  # the node that proposed it: the first member in config order


class PeerStatus(Enum):
    ALIVE = "alive"
    DOWN = "down"  # not heard within the node timeout, or never heard


@dataclass(frozen=True, slots=True)
class PeerState:
    """What a node knows of one node (itself included) from its heartbeats."""

    name: str
    status: PeerStatus
    incarnation: int | None  # None: never heard
    last_heard: float | None
    sequence: int | None
    view: View | None  # the view it carries
    coordinator: str | None  # the node whose views it follows
    paused: bool
    quorum: bool
    witness: str | None
    claims: Mapping[str, Claim]  # group -> its state there; absent groups are offline there
    moves: Mapping[str, str]  # group -> the node it asks to move it to

    @property
    def alive(self) -> bool:
        return self.status is PeerStatus.ALIVE


class MembershipBackend(Protocol):
    """The seam between membership and its users (quorum, arbitration, placement, the CLI).

    ``Membership`` (heartbeats between the nodes) implements it; a backend on a
    coordination engine (etcd: a lease per node, the view as a key revised in a
    transaction) can implement it later without touching arbitration or groups.
    """

    def view(self) -> View:
        """The installed view."""
        ...

    def alive(self) -> frozenset[str]:
        """The nodes seen alive now, this node included."""
        ...

    def peer(self, name: str) -> PeerState:
        """What is known of node ``name``; ``KeyError`` when it is not configured."""
        ...


# -- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeJoined:
    """A node is heard for the first time, or again with the same incarnation after it was
    down (a partition healed)."""

    node: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class NodeLeft:
    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class NodeRejoined:
    """A node is heard with a new incarnation: it restarted (and lost whatever it ran)."""

    node: str
    incarnation: int
    previous: int


@dataclass(frozen=True, slots=True)
class NodePaused:
    node: str


@dataclass(frozen=True, slots=True)
class NodeResumed:
    node: str


@dataclass(frozen=True, slots=True)
class ViewInstalled:
    epoch: int
    members: frozenset[str]
    coordinator: str
    proposed: bool  # this node proposed it (it coordinates), rather than followed it


@dataclass(frozen=True, slots=True)
class ClaimsChanged:
    """A peer's group claims or move requests changed (all parts of a heartbeat arrived)."""

    node: str


@dataclass(frozen=True, slots=True)
class HeartbeatDropped:
    node: str | None  # None: the datagram did not decode
    reason: str


MembershipEvent = (
    NodeJoined
    | NodeLeft
    | NodeRejoined
    | NodePaused
    | NodeResumed
    | ViewInstalled
    | ClaimsChanged
    | HeartbeatDropped
)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A heartbeat datagram for the edge to encode and send to ``node``'s cluster address."""

    node: str
    heartbeat: Heartbeat


@dataclass(frozen=True, slots=True)
class Tick:
    outgoing: list[Outgoing]
    events: list[MembershipEvent]

    def datagrams(self) -> list[tuple[str, bytes]]:
        """(node name, datagram) to send, each distinct heartbeat encoded once."""
        encoded: dict[int, bytes] = {}
        return [
            (out.node, encoded.setdefault(id(out.heartbeat), encode(out.heartbeat)))
            for out in self.outgoing
        ]


# -- the state of one peer ----------------------------------------------------------------


@dataclass(slots=True)
class _Peer:
    name: str
    alive: bool = False
    incarnation: int | None = None
    retired: deque[int] = field(default_factory=lambda: deque(maxlen=RETIRED_INCARNATIONS))
    last_heard: float | None = None
    alive_since: float | None = None  # heard without a gap since then
    sequence: int | None = None
    parts_seen: set[int] = field(default_factory=set)
    pending: dict[int, tuple[dict[str, Claim], dict[str, str]]] = field(default_factory=dict)
    view: View | None = None
    coordinator: str | None = None
    paused: bool = False
    quorum: bool = False
    witness: str | None = None
    claims: dict[str, Claim] = field(default_factory=dict)
    moves: dict[str, str] = field(default_factory=dict)

    def restart(self, incarnation: int) -> None:
        if self.incarnation is not None:
            self.retired.append(self.incarnation)
        self.incarnation = incarnation
        self.sequence = None
        self.parts_seen = set()
        self.pending = {}
        self.view = None
        self.coordinator = None
        self.paused = False
        self.quorum = False
        self.witness = None
        self.claims = {}
        self.moves = {}


class Membership:
    """One node's membership over heartbeats; implements ``MembershipBackend``."""

    def __init__(
        self,
        cluster: str,
        me: str,
        node_names: Sequence[str],
        timings: Timings,
        incarnation: int,
    ) -> None:
        if len(set(node_names)) != len(node_names):
            raise ConfigError("nodes", "a node name appears twice")
        if me not in node_names:
            raise ConfigError("name", f"{me!r} is not a node of cluster {cluster!r}")
        if not 0 <= incarnation <= MAX_U64:
            raise ConfigError("incarnation", "must be an unsigned 64-bit value")
        self.cluster = cluster
        self.me = me
        self.node_names = tuple(node_names)
        self.timings = timings
        self.incarnation = incarnation
        self._order = {name: index for index, name in enumerate(node_names)}
        self._peers = {name: _Peer(name) for name in node_names if name != me}
        self._view = View(0, frozenset({me}), me)
        self._view_incarnations: dict[str, int] = {}
        self._highest_epoch = 0
        self._started: float | None = None
        self._sequence = 0
        self._next_send = 0.0
        self._last_send: float | None = None
        self._send_soon = False
        self._paused = False
        self._quorum = False
        self._witness: str | None = None
        self._claims: dict[str, Claim] = {}
        self._moves: dict[str, str] = {}

    # -- MembershipBackend ------------------------------------------------------------------

    def view(self) -> View:
        return self._view

    def alive(self) -> frozenset[str]:
        return frozenset([self.me, *(p.name for p in self._peers.values() if p.alive)])

    def peer(self, name: str) -> PeerState:
        if name == self.me:
            return PeerState(
                name=name,
                status=PeerStatus.ALIVE,
                incarnation=self.incarnation,
                last_heard=None,
                sequence=self._sequence,
                view=self._view,
                coordinator=self.coordinator(),
                paused=self._paused,
                quorum=self._quorum,
                witness=self._witness,
                claims=dict(self._claims),
                moves=dict(self._moves),
            )
        peer = self._peers[name]
        return PeerState(
            name=name,
            status=PeerStatus.ALIVE if peer.alive else PeerStatus.DOWN,
            incarnation=peer.incarnation,
            last_heard=peer.last_heard,
            sequence=peer.sequence,
            view=peer.view,
            coordinator=peer.coordinator,
            paused=peer.paused,
            quorum=peer.quorum,
            witness=peer.witness,
            claims=dict(peer.claims),
            moves=dict(peer.moves),
        )

    # -- what this node says about itself -------------------------------------------------

    def coordinator(self) -> str:
        """The first node in config order among the nodes seen alive, this one included."""
        return min(self.alive(), key=self._order.__getitem__)

    def set_paused(self, paused: bool) -> None:
        if paused != self._paused:
            self._paused = paused
            self._send_soon = True

    def set_quorum(self, quorum: bool, witness: str | None = None) -> None:
        if witness is not None and witness not in self._order:
            raise ConfigError("witness", f"{witness!r} is not a node of cluster {self.cluster!r}")
        if (quorum, witness) != (self._quorum, self._witness):
            self._quorum, self._witness = quorum, witness
            self._send_soon = True

    def set_claims(self, claims: Mapping[str, Claim]) -> None:
        """This node's claims: every group that is not offline here (``heartbeat`` module)."""
        claims = dict(sorted(claims.items()))
        if claims != self._claims:
            split(self._heartbeat(claims=claims))  # refuses a bad name or state here
            self._claims = claims
            self._send_soon = True

    def set_moves(self, moves: Mapping[str, str]) -> None:
        """Pending move requests: group -> the node it should move to."""
        moves = dict(sorted(moves.items()))
        for group, target in moves.items():
            if target not in self._order:
                raise ConfigError(f"moves.{group}", f"{target!r} is not a node")
        if moves != self._moves:
            split(self._heartbeat(moves=moves))
            self._moves = moves
            self._send_soon = True

    # -- time ---------------------------------------------------------------------------------

    def next_deadline(self, now: float) -> float:
        """When ``tick`` must run next (``now`` when it is due already)."""
        if self._started is None:
            return now
        times = [self._next_send]
        if self._send_soon and self._last_send is not None:
            times.append(self._last_send + SEND_GAP * self.timings.heartbeat_interval)
        times.extend(
            peer.last_heard + self.timings.node_timeout
            for peer in self._peers.values()
            if peer.alive and peer.last_heard is not None
        )
        if self.coordinator() == self.me and self._needs_view():
            times.append(self._started + STARTUP_GRACE * self.timings.heartbeat_interval)
        follow_at = self._follow_at()
        if follow_at is not None:
            times.append(follow_at)
        return max(now, min(times))

    def tick(self, now: float) -> Tick:
        """Expire silent peers, propose or follow a view, and send heartbeats when due."""
        if self._started is None:
            self._started = now
            self._next_send = now
        events: list[MembershipEvent] = []
        for peer in self._peers.values():
            if peer.alive and peer.last_heard is not None:
                silent = now - peer.last_heard
                if silent >= self.timings.node_timeout:
                    peer.alive = False
                    events.append(
                        NodeLeft(peer.name, f"no heartbeat for {silent:.2f}s (node timeout)")
                    )
        events.extend(self._follow(now))
        grace_over = now >= self._started + STARTUP_GRACE * self.timings.heartbeat_interval
        if self.coordinator() == self.me and grace_over and self._needs_view():
            proposal = View(self._highest_epoch + 1, self.alive(), self.me)
            events.append(self._install(proposal, proposed=True))
        outgoing: list[Outgoing] = []
        if self._send_due(now):
            outgoing = self._send(now)
        return Tick(outgoing, events)

    def receive_datagram(self, data: bytes, now: float) -> list[MembershipEvent]:
        """``receive`` for the bytes of one datagram; one that does not decode is dropped."""
        try:
            hb = decode(data)
        except HeartbeatError as exc:
            return [HeartbeatDropped(None, f"not a heartbeat: {exc}")]
        return self.receive(hb, now)

    def receive(self, hb: Heartbeat, now: float) -> list[MembershipEvent]:
        """Take one decoded heartbeat datagram; a datagram it cannot use is dropped with a
        reason (``HeartbeatDropped``), never raised."""
        reason = self._refusal(hb)
        if reason is not None:
            return [HeartbeatDropped(hb.node, reason)]
        peer = self._peers[hb.node]
        events: list[MembershipEvent] = []
        if peer.incarnation is None:
            peer.restart(hb.incarnation)
            events.append(NodeJoined(hb.node, hb.incarnation))
        elif hb.incarnation != peer.incarnation:
            if hb.incarnation in peer.retired:
                return [HeartbeatDropped(hb.node, "from an incarnation it has since replaced")]
            had_claims = bool(peer.claims or peer.moves)
            previous = peer.incarnation
            peer.restart(hb.incarnation)
            peer.alive_since = now  # the new process has not heard this node yet
            events.append(NodeRejoined(hb.node, hb.incarnation, previous))
            if had_claims:
                events.append(ClaimsChanged(hb.node))
        else:
            assert peer.sequence is not None  # set by every heartbeat accepted before
            if hb.sequence < peer.sequence or (
                hb.sequence == peer.sequence and hb.part in peer.parts_seen
            ):
                return [
                    HeartbeatDropped(
                        hb.node,
                        f"sequence {hb.sequence} part {hb.part} is late or a duplicate "
                        f"(sequence {peer.sequence} was heard)",
                    )
                ]
            if not peer.alive:
                events.append(NodeJoined(hb.node, hb.incarnation))
        if not peer.alive:
            peer.alive_since = now
        peer.alive = True
        peer.last_heard = now
        if hb.sequence != peer.sequence:
            peer.sequence = hb.sequence
            peer.parts_seen = set()
            peer.pending = {}
        peer.parts_seen.add(hb.part)
        self._highest_epoch = max(self._highest_epoch, hb.epoch)
        peer.view = View(hb.epoch, frozenset(hb.members), self._first(hb.members))
        peer.coordinator = hb.coordinator
        peer.quorum = hb.quorum
        peer.witness = hb.witness
        if hb.paused != peer.paused:
            peer.paused = hb.paused
            events.append(NodePaused(hb.node) if hb.paused else NodeResumed(hb.node))
        if self._assemble(peer, hb):
            events.append(ClaimsChanged(hb.node))
        events.extend(self._follow(now))
        return events

    # -- inside -------------------------------------------------------------------------------

    def _first(self, names: Sequence[str] | frozenset[str]) -> str:
        return min(names, key=self._order.__getitem__)

    def _refusal(self, hb: Heartbeat) -> str | None:
        if hb.cluster != self.cluster:
            return f"from cluster {hb.cluster!r}, this is cluster {self.cluster!r}"
        if hb.node == self.me:
            if hb.incarnation == self.incarnation:
                return "our own heartbeat came back"
            return f"another process calls itself {self.me!r}"
        if hb.node not in self._order:
            return f"{hb.node!r} is not a node of this cluster"
        if not hb.members:
            return "its view has no members"
        for what, name in [("coordinator", hb.coordinator), ("witness", hb.witness)] + [
            ("member", member) for member in hb.members
        ]:
            if name is not None and name not in self._order:
                return f"{what} {name!r} is not a node of this cluster"
        if hb.epoch >= MAX_U64:
            return f"epoch {hb.epoch} leaves no room for a next one"
        return None

    def _assemble(self, peer: _Peer, hb: Heartbeat) -> bool:
        """Take the claims once every part of one sequence arrived; True when they changed."""
        if hb.parts == 1:
            claims, moves = dict(hb.claims), dict(hb.moves)
        else:
            peer.pending[hb.part] = (dict(hb.claims), dict(hb.moves))
            if len(peer.pending) < hb.parts:
                return False
            claims, moves = {}, {}
            for part in sorted(peer.pending):
                claims.update(peer.pending[part][0])
                moves.update(peer.pending[part][1])
            peer.pending = {}
        if (claims, moves) == (peer.claims, peer.moves):
            return False
        peer.claims, peer.moves = claims, moves
        return True

    def _follow_at(self) -> float | None:
        """When to install the view this node's coordinator carries; None: nothing to do.

        A view that leaves this node out waits until the coordinator has been heard for
        ``STARTUP_GRACE`` intervals: when it was only just heard (it restarted, a link came
        back) its next view will have this node, and installing the one it carries would
        only put this node out of its own view for a moment. A coordinator that still
        leaves this node out after that does not hear it (a one-way link), and then being
        outside the view is the truth.
        """
        coordinator = self.coordinator()
        if coordinator == self.me:
            return None
        peer = self._peers[coordinator]
        carried = peer.view
        if carried is None or carried.epoch <= self._view.epoch:
            return None
        if self.me in carried.members or peer.alive_since is None:
            return 0.0
        return peer.alive_since + STARTUP_GRACE * self.timings.heartbeat_interval

    def _follow(self, now: float) -> list[MembershipEvent]:
        at = self._follow_at()
        if at is None or now < at:
            return []
        carried = self._peers[self.coordinator()].view
        assert carried is not None  # _follow_at saw it
        return [self._install(carried, proposed=False)]

    def _needs_view(self) -> bool:
        view = self._view
        if self.alive() != view.members:
            return True
        for name in view.members - {self.me}:
            known = self._view_incarnations.get(name)
            if known is not None and self._peers[name].incarnation != known:
                return True  # a member restarted since the view
        for peer in self._peers.values():
            carried = peer.view
            if (
                peer.alive
                and peer.coordinator == self.me
                and carried is not None
                and carried.epoch >= view.epoch
                and (carried.epoch, carried.members) != (view.epoch, view.members)
            ):
                return True  # a follower arrived with another coordinator's newer view
        return False

    def _install(self, view: View, *, proposed: bool) -> ViewInstalled:
        if view.epoch <= self._view.epoch:
            raise AssertionError(f"epoch {view.epoch} after {self._view.epoch}: epochs only grow")
        self._view = view
        self._highest_epoch = max(self._highest_epoch, view.epoch)
        self._view_incarnations = {
            name: incarnation
            for name in view.members
            if name != self.me and (incarnation := self._peers[name].incarnation) is not None
        }
        self._send_soon = True
        return ViewInstalled(view.epoch, view.members, view.coordinator, proposed)

    def _send_due(self, now: float) -> bool:
        if now >= self._next_send:
            return True
        if not self._send_soon or self._last_send is None:
            return False
        return now >= self._last_send + SEND_GAP * self.timings.heartbeat_interval

    def _heartbeat(
        self, claims: dict[str, Claim] | None = None, moves: dict[str, str] | None = None
    ) -> Heartbeat:
        return Heartbeat(
            cluster=self.cluster,
            node=self.me,
            incarnation=self.incarnation,
            sequence=self._sequence,
            epoch=self._view.epoch,
            members=tuple(sorted(self._view.members, key=self._order.__getitem__)),
            coordinator=self.coordinator(),
            paused=self._paused,
            quorum=self._quorum,
            witness=self._witness,
            claims=self._claims if claims is None else claims,
            moves=self._moves if moves is None else moves,
        )

    def _send(self, now: float) -> list[Outgoing]:
        self._sequence += 1
        self._last_send = now
        self._next_send = now + self.timings.heartbeat_interval
        self._send_soon = False
        try:
            parts = split(self._heartbeat())
        except HeartbeatError as exc:  # set_claims checked; only a huge view gets here
            raise ConfigError("nodes", f"the view does not fit a heartbeat: {exc}") from exc
        return [Outgoing(name, part) for name in self._peers for part in parts]
