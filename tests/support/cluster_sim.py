"""A deterministic simulation of a cluster's membership: N in-process ``Membership`` nodes,
one simulated clock, and a network that carries real heartbeat datagrams (encoded and
decoded) with per-link delay, loss and one-way cuts, all drawn from one seeded ``Random``.

Time only moves in ``run_until``: the next event is whichever comes first of a datagram's
arrival and a node's ``next_deadline`` (plus a random lateness, as a busy event loop would
add). Nodes are started, stopped (``kill -9``: no goodbye, datagrams in flight to it are
lost) and restarted with a new random incarnation. Every node's events are recorded with
the time, and every view install is checked at once: epochs strictly increase within one
process. Later tests (arbitration with membership) drive the same ``Membership`` objects
through ``sim.node(name)`` and react to events through ``listeners``.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from sanstack.cluster.membership import Membership, MembershipEvent, View, ViewInstalled
from sanstack.cluster.model import Timings

E = TypeVar("E")
Listener = Callable[[str, float, list[MembershipEvent]], None]


@dataclass(slots=True)
class SimNode:
    name: str
    membership: Membership | None = None  # None while the process is down
    incarnations: list[int] = field(default_factory=list)
    events: list[tuple[float, MembershipEvent]] = field(default_factory=list)
    installs: list[tuple[float, ViewInstalled]] = field(default_factory=list)
    last_epoch: int = 0  # of the running process: its installs must exceed it
    due: float = float("inf")


class ClusterSim:
    def __init__(
        self,
        names: Sequence[str],
        *,
        seed: int,
        timings: Timings | None = None,
        latency: tuple[float, float] = (0.0005, 0.005),
        lateness: float = 0.002,
        loss: float = 0.0,
        cluster: str = "sim",
    ) -> None:
        self.names = tuple(names)
        self.rng = random.Random(seed)
        self.timings = timings or Timings()
        self.latency = latency
        self.lateness = lateness
        self.loss = loss  # every link's datagram loss probability
        self.cluster = cluster
        self.now = 0.0
        self.nodes = {name: SimNode(name) for name in names}
        self.blocked: set[tuple[str, str]] = set()  # (sender, receiver): datagrams lost
        self.link_loss: dict[tuple[str, str], float] = {}
        self.listeners: list[Listener] = []
        self.sent = 0
        self.delivered = 0
        self._in_flight: list[tuple[float, int, str, bytes]] = []
        self._order = itertools.count()

    # -- processes ---------------------------------------------------------------------------

    def node(self, name: str) -> Membership:
        membership = self.nodes[name].membership
        assert membership is not None, f"{name} is not running"
        return membership

    def running(self) -> list[str]:
        return [name for name in self.names if self.nodes[name].membership is not None]

    def start(self, name: str) -> Membership:
        sim_node = self.nodes[name]
        assert sim_node.membership is None, f"{name} is already running"
        incarnation = self.rng.getrandbits(64)
        sim_node.membership = Membership(self.cluster, name, self.names, self.timings, incarnation)
        sim_node.incarnations.append(incarnation)
        sim_node.last_epoch = 0
        sim_node.due = self.now
        return sim_node.membership

    def stop(self, name: str) -> None:
        sim_node = self.nodes[name]
        sim_node.membership = None
        sim_node.due = float("inf")

    def restart(self, name: str) -> Membership:
        self.stop(name)
        return self.start(name)

    # -- the network -------------------------------------------------------------------------

    def cut(self, sender: str, receiver: str) -> None:
        """One way: ``receiver`` no longer hears ``sender``."""
        self.blocked.add((sender, receiver))

    def partition(self, *sides: Iterable[str]) -> None:
        """Cut every link between two sides, both ways (links within a side are untouched)."""
        groups = [set(side) for side in sides]
        for a, b in itertools.permutations(range(len(groups)), 2):
            self.blocked.update(itertools.product(groups[a], groups[b]))

    def heal(self) -> None:
        self.blocked.clear()
        self.link_loss.clear()

    def hears(self, receiver: str, sender: str) -> bool:
        return (sender, receiver) not in self.blocked

    def components(self) -> list[frozenset[str]]:
        """Running nodes grouped by two-way links (each group is a clique after a clean
        partition; with one-way cuts the groups say little)."""
        left = set(self.running())
        groups: list[frozenset[str]] = []
        while left:
            seed = min(left, key=self.names.index)
            group = {seed}
            frontier = [seed]
            while frontier:
                a = frontier.pop()
                for b in list(left - group):
                    if self.hears(a, b) and self.hears(b, a):
                        group.add(b)
                        frontier.append(b)
            left -= group
            groups.append(frozenset(group))
        return groups

    def _send(self, sender: str, receiver: str, datagram: bytes) -> None:
        self.sent += 1
        if (sender, receiver) in self.blocked:
            return
        if self.rng.random() < self.link_loss.get((sender, receiver), self.loss):
            return
        arrival = self.now + self.rng.uniform(*self.latency)
        heapq.heappush(self._in_flight, (arrival, next(self._order), receiver, datagram))

    # -- time ----------------------------------------------------------------------------------

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until(self, end: float) -> None:
        for name in self.running():
            self._reschedule(name)
        same_instant = 0
        while True:
            arrival = self._in_flight[0][0] if self._in_flight else float("inf")
            name = min(self.names, key=lambda n: self.nodes[n].due)
            timer = self.nodes[name].due
            at = min(arrival, timer)
            if at > end:
                self.now = end
                return
            same_instant = same_instant + 1 if at <= self.now else 0
            assert same_instant < 10_000, "the simulation does not advance: a timer livelock"
            self.now = max(self.now, at)
            if arrival <= timer:
                _, _, receiver, datagram = heapq.heappop(self._in_flight)
                self._deliver(receiver, datagram)
            else:
                self._tick(name)

    def _deliver(self, receiver: str, datagram: bytes) -> None:
        membership = self.nodes[receiver].membership
        if membership is None:
            return  # the process is down: the datagram is lost
        self.delivered += 1
        events = membership.receive_datagram(datagram, self.now)
        self._record(receiver, events)
        self._reschedule(receiver)

    def _tick(self, name: str) -> None:
        membership = self.node(name)
        result = membership.tick(self.now)
        deadline = membership.next_deadline(self.now)
        assert deadline > self.now, f"{name}: tick at {self.now} left its deadline at {deadline}"
        for receiver, datagram in result.datagrams():
            self._send(name, receiver, datagram)
        self._record(name, result.events)
        self._reschedule(name)

    def _reschedule(self, name: str) -> None:
        membership = self.node(name)
        self.nodes[name].due = membership.next_deadline(self.now) + self.rng.uniform(
            0, self.lateness
        )

    def _record(self, name: str, events: list[MembershipEvent]) -> None:
        sim_node = self.nodes[name]
        for event in events:
            sim_node.events.append((self.now, event))
            if isinstance(event, ViewInstalled):
                assert event.epoch > sim_node.last_epoch, (
                    f"{name}: epoch {event.epoch} after {sim_node.last_epoch}"
                )
                sim_node.last_epoch = event.epoch
                sim_node.installs.append((self.now, event))
        for listener in self.listeners:
            listener(name, self.now, events)

    # -- observations ------------------------------------------------------------------------

    def views(self) -> dict[str, View]:
        return {name: self.node(name).view() for name in self.running()}

    def converged(self) -> bool:
        """Every node of each two-way component installed the same view of exactly it."""
        views = self.views()
        for group in self.components():
            seen = {views[name] for name in group}
            if len(seen) != 1 or next(iter(seen)).members != group:
                return False
        return True

    def last_install(self) -> float:
        return max((t for n in self.nodes.values() for t, _ in n.installs), default=0.0)

    def events_of(self, name: str, kind: type[E]) -> list[tuple[float, E]]:
        return [(t, e) for t, e in self.nodes[name].events if isinstance(e, kind)]
