"""Group placement (cluster/placement.py): a table of cases, failback modes, the restart
threshold, move requests, pause, and that the answer depends on nothing but the inputs."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from sanstack.cluster.model import FailbackMode, GroupSpec
from sanstack.cluster.placement import (
    FailureHistory,
    failed_everywhere,
    failed_on,
    place,
    recent_failures,
)

NODES = ("n1", "n2", "n3", "n4")
NOW = 10_000.0


def group(
    name: str,
    *preferred: str,
    failback: FailbackMode = FailbackMode.NEVER,
    delay: float = 0.0,
    threshold: int = 3,
    period: float = 900.0,
) -> GroupSpec:
    return GroupSpec(
        name,
        (f"{name}-disk",),
        preferred_owners=preferred,
        failback=failback,
        failback_delay=delay,
        restart_threshold=threshold,
        restart_period=period,
    )


G1 = group("g1", "n1", "n2")
G2 = group("g2", "n2")
G3 = group("g3")
G4 = group("g4")
GROUPS = (G1, G2, G3, G4)


@dataclass
class Case:
    name: str
    expected: dict[str, str | None]
    groups: tuple[GroupSpec, ...] = GROUPS
    members: tuple[str, ...] = NODES
    has_quorum: bool = True
    paused: frozenset[str] = frozenset()
    owners: dict[str, str] = field(default_factory=dict)
    failures: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    alive_since: dict[str, float] = field(default_factory=dict)
    moves: dict[str, str] = field(default_factory=dict)
    unfit: dict[str, frozenset[str]] = field(default_factory=dict)

    def run(self) -> dict[str, str | None]:
        return place(
            self.groups,
            self.members,
            has_quorum=self.has_quorum,
            now=NOW,
            paused=self.paused,
            owners=self.owners,
            failures=self.failures,
            alive_since=self.alive_since,
            moves=self.moves,
            unfit=self.unfit,
        )


THREE_FAILURES = [NOW - 800.0, NOW - 300.0, NOW - 1.0]
HOME_N1 = group("g1", "n1", "n2", failback=FailbackMode.IMMEDIATE)
LATER_HOME = group("g1", "n1", "n2", failback=FailbackMode.DELAYED, delay=60.0)
THREE_PREFERRED = group("g1", "n1", "n2", "n3", failback=FailbackMode.IMMEDIATE)

CASES = [
    Case("no quorum: nothing placed", dict.fromkeys(("g1", "g2", "g3", "g4")), has_quorum=False),
    Case(
        "no quorum wins over owners and moves",
        {"g1": None},
        groups=(G1,),
        has_quorum=False,
        owners={"g1": "n1"},
        moves={"g1": "n2"},
    ),
    Case("fresh: preferred, then least loaded", {"g1": "n1", "g2": "n2", "g3": "n3", "g4": "n4"}),
    Case("owner kept (failback never)", {"g1": "n2"}, groups=(G1,), owners={"g1": "n2"}),
    Case("owner kept though not preferred", {"g3": "n4"}, groups=(G3,), owners={"g3": "n4"}),
    Case(
        "dead owner: first preferred alive", {"g1": "n2"}, (G1,), ("n2", "n3"), owners={"g1": "n1"}
    ),
    Case(
        "no preferred owner alive: least loaded",
        {"g1": "n4", "g2": "n3"},
        (G1, G2),
        ("n3", "n4"),
        owners={"g2": "n3"},
    ),
    Case("failback immediate calls home", {"g1": "n1"}, (HOME_N1,), owners={"g1": "n2"}),
    Case("failback immediate: at home already", {"g1": "n1"}, (HOME_N1,), owners={"g1": "n1"}),
    Case(
        "failback immediate: home is the best preferred alive",
        {"g1": "n2"},
        (THREE_PREFERRED,),
        ("n2", "n3", "n4"),
        owners={"g1": "n3"},
    ),
    Case(
        "failback immediate: an owner preferred higher than home stays",
        {"g1": "n1"},
        (group("g1", "n2", "n1", failback=FailbackMode.IMMEDIATE),),
        ("n1", "n3"),
        owners={"g1": "n1"},
    ),
    Case(
        "failback immediate: an owner not preferred at all goes home",
        {"g1": "n1"},
        (HOME_N1,),
        owners={"g1": "n4"},
    ),
    Case(
        "failback delayed: home alive too briefly",
        {"g1": "n2"},
        (LATER_HOME,),
        owners={"g1": "n2"},
        alive_since={"n1": NOW - 59.0},
    ),
    Case(
        "failback delayed: home alive long enough",
        {"g1": "n1"},
        (LATER_HOME,),
        owners={"g1": "n2"},
        alive_since={"n1": NOW - 60.0},
    ),
    Case("failback delayed: unknown return", {"g1": "n2"}, (LATER_HOME,), owners={"g1": "n2"}),
    Case(
        "failback never, home back long ago",
        {"g1": "n2"},
        (G1,),
        owners={"g1": "n2"},
        alive_since={"n1": 0.0},
    ),
    Case(
        "paused owner drains to home",
        {"g1": "n1"},
        (G1,),
        paused=frozenset({"n2"}),
        owners={"g1": "n2"},
    ),
    Case(
        "paused preferred owner skipped",
        {"g1": "n2", "g2": "n3"},
        (G1, G2),
        paused=frozenset({"n1"}),
        owners={"g2": "n3"},
    ),
    Case("everyone paused", {"g1": None}, (G1,), paused=frozenset(NODES)),
    Case(
        "restart threshold reached on the owner: moves",
        {"g1": "n2"},
        (G1,),
        owners={"g1": "n1"},
        failures={"g1": {"n1": THREE_FAILURES}},
    ),
    Case(
        "restart threshold not reached: stays",
        {"g1": "n1"},
        (G1,),
        owners={"g1": "n1"},
        failures={"g1": {"n1": THREE_FAILURES[1:]}},
    ),
    Case(
        "failures older than the restart period forgotten",
        {"g1": "n1"},
        (G1,),
        owners={"g1": "n1"},
        failures={"g1": {"n1": [NOW - 901.0, NOW - 900.0, *THREE_FAILURES[1:]]}},
    ),
    Case(
        "failed at home: failback does not call it there",
        {"g1": "n2"},
        (HOME_N1,),
        owners={"g1": "n2"},
        failures={"g1": {"n1": THREE_FAILURES}},
    ),
    Case(
        "failed on preferred owners: least loaded elsewhere",
        {"g1": "n3"},
        (G1,),
        ("n1", "n2", "n3"),
        failures={"g1": {"n1": THREE_FAILURES, "n2": THREE_FAILURES}},
    ),
    Case(
        "failed on every member: not placed",
        {"g1": None, "g2": "n2"},
        (G1, G2),
        ("n1", "n2"),
        owners={"g1": "n1"},
        failures={"g1": {"n1": THREE_FAILURES, "n2": THREE_FAILURES}},
    ),
    Case(
        "threshold one: a single failure moves it",
        {"g1": "n2"},
        (group("g1", "n1", "n2", threshold=1),),
        owners={"g1": "n1"},
        failures={"g1": {"n1": [NOW - 5.0]}},
    ),
    Case(
        "move request wins over owner and failback",
        {"g1": "n3"},
        (HOME_N1,),
        owners={"g1": "n1"},
        moves={"g1": "n3"},
    ),
    Case(
        "move request wins over the failure history",
        {"g1": "n1"},
        (G1,),
        owners={"g1": "n2"},
        failures={"g1": {"n1": THREE_FAILURES}},
        moves={"g1": "n1"},
    ),
    Case(
        "move request to a paused node ignored",
        {"g1": "n2"},
        (G1,),
        paused=frozenset({"n3"}),
        owners={"g1": "n2"},
        moves={"g1": "n3"},
    ),
    Case(
        "move request to a dead node ignored",
        {"g1": "n2"},
        (G1,),
        ("n1", "n2", "n3"),
        owners={"g1": "n2"},
        moves={"g1": "n4"},
    ),
    Case(
        "least loaded counts the groups pinned anywhere first",
        {"g3": "n2", "g1": "n1", "g2": "n1", "g4": "n3"},
        (G3, G1, G2, G4),
        owners={"g2": "n1"},
    ),
    Case(
        "an owner without a path to the disks gives the group up",
        {"g1": "n2"},
        (G1,),
        owners={"g1": "n1"},
        unfit={"g1": frozenset({"n1"})},
    ),
    Case(
        "no path: not home, not least loaded, not for a move, for that group only",
        {"g1": "n3", "g2": "n2", "g3": "n4"},
        (G1, G2, G3),
        ("n1", "n2", "n3", "n4"),
        moves={"g1": "n2"},
        unfit={"g1": frozenset({"n1", "n2"}), "g3": frozenset({"n1", "n3"})},
    ),
    Case(
        "no node reaches the disks: not placed",
        {"g2": None},
        (G2,),
        ("n1", "n2"),
        unfit={"g2": frozenset({"n1", "n2"})},
    ),
    Case(
        "least loaded: ties in configuration order",
        {"g3": "n2", "g4": "n3"},
        (G3, G4),
        ("n2", "n3", "n4"),
    ),
    Case(
        "least loaded: configuration order is the members' order",
        {"g3": "n4", "g4": "n2"},
        (G3, G4),
        ("n4", "n2"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_placement(case: Case) -> None:
    assert case.run() == case.expected


def test_failure_counting() -> None:
    history: FailureHistory = {"g1": {"n1": THREE_FAILURES}}
    assert recent_failures(G1, THREE_FAILURES, NOW) == 3
    assert recent_failures(G1, THREE_FAILURES, NOW + 800.0) == 1
    assert failed_on(G1, "n1", history, NOW)
    assert not failed_on(G1, "n1", history, NOW + 100.0)
    assert not failed_on(G1, "n2", history, NOW)
    assert not failed_on(G2, "n1", history, NOW)
    # A threshold of zero is not "always failed".
    assert not failed_on(group("g1", threshold=0), "n2", history, NOW)
    assert failed_everywhere(G1, ["n1"], history, NOW)
    assert not failed_everywhere(G1, ["n1", "n2"], history, NOW)
    assert not failed_everywhere(G1, [], history, NOW)


def test_failback_delayed_moves_once_the_delay_has_passed() -> None:
    owners = {"g1": "n2"}
    alive = {"n1": NOW}
    answers = [
        place((LATER_HOME,), NODES, has_quorum=True, now=NOW + t, owners=owners, alive_since=alive)
        for t in (0.0, 30.0, 59.9, 60.0, 120.0)
    ]
    assert [a["g1"] for a in answers] == ["n2", "n2", "n2", "n1", "n1"]


def random_inputs(rng: random.Random) -> dict[str, object]:
    nodes = [n for n in NODES if rng.random() < 0.8] or ["n1"]
    modes = list(FailbackMode)
    groups = tuple(
        group(
            f"g{i}",
            *rng.sample(NODES, rng.randint(0, 3)),
            failback=rng.choice(modes),
            delay=rng.choice((0.0, 30.0)),
            threshold=rng.randint(1, 3),
        )
        for i in range(rng.randint(1, 8))
    )
    return {
        "groups": groups,
        "members": nodes,
        "paused": {n for n in nodes if rng.random() < 0.2},
        "owners": {g.name: rng.choice(NODES) for g in groups if rng.random() < 0.6},
        "failures": {
            g.name: {n: [NOW - rng.uniform(0, 1200) for _ in range(rng.randint(0, 3))]}
            for g in groups
            for n in NODES
            if rng.random() < 0.3
        },
        "alive_since": {n: NOW - rng.uniform(0, 60) for n in nodes},
        "moves": {g.name: rng.choice(NODES) for g in groups if rng.random() < 0.1},
    }


def shuffled(mapping: dict[str, object], rng: random.Random) -> dict[str, object]:
    items = list(mapping.items())
    rng.shuffle(items)
    return dict(items)


@pytest.mark.parametrize("seed", range(50))
def test_the_same_inputs_give_the_same_answer_on_every_node(seed: int) -> None:
    """Two nodes hold the same facts in different orders (dicts filled as heartbeats came,
    sets hashed differently): the answer is the same, and it is a valid placement."""
    rng = random.Random(seed)
    inputs = random_inputs(rng)
    groups = inputs["groups"]
    members = inputs["members"]
    assert isinstance(groups, tuple) and isinstance(members, list)

    def run(reorder: bool) -> dict[str, str | None]:
        def maybe(value: object) -> object:
            if reorder and isinstance(value, dict):
                return shuffled(value, rng)
            if reorder and isinstance(value, set):
                return frozenset(sorted(value, reverse=True))
            return value

        return place(
            groups,
            members,
            has_quorum=True,
            now=NOW,
            paused=maybe(inputs["paused"]),  # type: ignore[arg-type]
            owners=maybe(inputs["owners"]),  # type: ignore[arg-type]
            failures=maybe(inputs["failures"]),  # type: ignore[arg-type]
            alive_since=maybe(inputs["alive_since"]),  # type: ignore[arg-type]
            moves=maybe(inputs["moves"]),  # type: ignore[arg-type]
        )

    first = run(reorder=False)
    assert run(reorder=True) == first
    assert list(first) == [g.name for g in groups]
    paused = inputs["paused"]
    assert isinstance(paused, set)
    for chosen in first.values():
        assert chosen is None or (chosen in members and chosen not in paused)
