"""Issue 11 item 6 with real processes: many disks per node. A sanstack target with 256 LUNs
on two portals, three ``sanstack cluster node`` processes started at once, four groups of
64 disks (preferring n1, n2, n3, n1). Who owns each disk is asked of the target itself (its
PR state through its control socket) and cross-checked with ``cluster status``
(tests/support/cluster_ownership.py).

- Start: every disk owned by exactly one node, the group's preferred owner, within a bound;
  every node's key registered on every disk (registration everywhere).
- ``kill -9`` of a node: its 128 disks are preempted and owned by the next preferred node
  within a bound, the dead node's key gone from them (PREEMPT AND ABORT) and, after the
  owners' next defence, from every disk.
- ``cluster move`` of 64 disks: owned by the target node, released by the old one.

The tests share one cluster and run in order. ``bench/cluster_failover.py`` is the long
version (up to 1000 disks, default timings).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support.cluster_nodes import ClusterNodes, GroupDef, write_config
from tests.support.cluster_ownership import (
    Layout,
    poll,
    target_reservations,
    wait_owned,
    wait_status_agrees,
)
from tests.support.processes import Daemon, free_port, running_target

from sanstack.cluster.keys import node_key

pytestmark = pytest.mark.interop

IQN = "iqn.2026-11.org.sanstack:cluster-scale"
CLUSTER = "scale-test"
NODES = ("n1", "n2", "n3")
DISKS = 256
GROUP_SIZE = 64
START_BOUND = 45.0  # three nodes building 256 maps each at once, then arbitrating
FAILOVER_BOUND = 15.0
MOVE_BOUND = 30.0
SETTLE = 10.0  # for every node's status to show what the target shows


@dataclass
class Scale:
    nodes: ClusterNodes
    target: Daemon
    layout: Layout
    directory: Path


@pytest.fixture(scope="module")
def scale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scale]:
    directory = tmp_path_factory.mktemp("scale")
    portals = [free_port(), free_port()]
    disks = {f"d{i}": i for i in range(DISKS)}
    names = list(disks)
    groups = [
        GroupDef(
            f"g{i + 1}",
            names[i * GROUP_SIZE : (i + 1) * GROUP_SIZE],
            (f"127.0.74.{i + 1}", free_port()),
            [*NODES[i % 3 :], *NODES[: i % 3]],
        )
        for i in range(DISKS // GROUP_SIZE)
    ]
    layout = Layout(
        IQN,
        disks,
        {g.name: list(g.disks) for g in groups},
        {n: node_key(CLUSTER, n) for n in NODES},
    )
    with running_target(directory, IQN, portals, ["memory:1M"] * DISKS) as target:
        config = write_config(
            directory,
            cluster=CLUSTER,
            nodes=NODES,
            portals=portals,
            iqn=IQN,
            disks=disks,
            groups=groups,
        )
        nodes = ClusterNodes(directory, config, NODES)
        try:
            yield Scale(nodes, target, layout, directory)
        finally:
            nodes.close()


def test_256_disks_started_at_once_are_each_owned_by_exactly_one_node(scale: Scale) -> None:
    spawned = time.monotonic()
    scale.nodes.start()
    ready = time.monotonic() - spawned
    owners, state = wait_owned(
        scale.target.control,
        scale.layout,
        NODES,
        START_BOUND,
        expect={"g1": "n1", "g2": "n2", "g3": "n3", "g4": "n1"},
    )
    owned = time.monotonic() - spawned
    # Every node registered its key on every disk (not only the owner).
    every_key = frozenset(scale.layout.keys.values())
    unregistered = [lun for lun, r in state.items() if r.keys != every_key]
    assert not unregistered, f"LUNs without every node's key: {unregistered[:10]}"
    wait_status_agrees(lambda: scale.nodes.status("n2"), owners, scale.layout, SETTLE)
    print(f"\n{DISKS} disks, 3 nodes at once: ready {ready:.2f} s, all owned {owned:.2f} s")


def test_kill_9_hands_its_128_disks_to_the_next_preferred_node(scale: Scale) -> None:
    nodes, layout = scale.nodes, scale.layout
    killed_at = time.monotonic()
    nodes.kill("n1")
    owners, state = wait_owned(
        scale.target.control,
        layout,
        ("n2", "n3"),
        FAILOVER_BOUND,
        expect={"g1": "n2", "g2": "n2", "g3": "n3", "g4": "n2"},
    )
    failed_over = time.monotonic() - killed_at
    dead = layout.keys["n1"]
    taken = [layout.disks[d] for g in ("g1", "g4") for d in layout.groups[g]]
    assert all(dead not in state[lun].keys for lun in taken), "n1's key left on a preempted disk"
    wait_status_agrees(lambda: nodes.status("n3"), owners, layout, SETTLE)
    # The owners' defence removes the dead node's key from every other disk too.
    luns = list(layout.disks.values())
    poll(
        lambda: all(
            dead not in r.keys
            for r in target_reservations(scale.target.control, IQN, luns).values()
        ),
        FAILOVER_BOUND,
        lambda: "n1's key removed from every disk",
    )
    print(f"\nkill -9 of n1: its {len(taken)} disks owned by n2 {failed_over:.2f} s after")


def test_a_move_of_64_disks_hands_each_to_the_target_node(scale: Scale) -> None:
    nodes, layout = scale.nodes, scale.layout
    asked = time.monotonic()
    answer = nodes.cli("n3", "move", "g1", "n3", "--wait", str(MOVE_BOUND))
    assert answer["state"] == "online" and answer["from"] == "n2", answer
    moved = time.monotonic() - asked
    owners, _state = wait_owned(
        scale.target.control,
        layout,
        ("n2", "n3"),
        MOVE_BOUND,
        expect={"g1": "n3", "g2": "n2", "g3": "n3", "g4": "n2"},
    )
    wait_status_agrees(lambda: nodes.status("n2"), owners, layout, SETTLE)
    released = [e for e in nodes.events("n2") if e["kind"] == "disk.released"]
    assert {e["disk"] for e in released} >= set(layout.groups["g1"])
    print(f"\nmove of g1 ({GROUP_SIZE} disks) n2 -> n3: online in {moved:.2f} s")
