"""Issue 11's fencing checks with real processes, each node in a network namespace of its own
(``tests/support/cluster_netns.py``): a sanstack target on two portals, three
``sanstack cluster node`` processes, two groups whose exports are floating addresses on the
storage network (the owner adds the address to its interface and announces it, as
Pacemaker's IPaddr2), clients in a namespace of their own, and an independent initiator
that reads the disks' reservations and blocks at the end (``cluster_probe``, judged by
``cluster_checker``).

- ``kill -STOP`` of g1's owner under write load: the others fence it (PREEMPT AND ABORT) and
  take g1 over at the same address; after ``kill -CONT`` none of its writes lands (neither
  the writer's request it held, nor a ghost client's writes sent to it while it was
  stopped), it logs that it lost the disks (``disk.fenced``, WSFC Event 1038), stops g1,
  and rejoins as a member.
- The owner loses every storage path (its storage link down): its group stops there without
  writes, fails, and moves to a node that still sees the storage, which preempts the
  reservation the old owner could not release; the old owner does not take it back while
  it has no path, and releases nothing it no longer holds when the link returns.

The tests share one cluster and run in order (each leaves it whole for the next).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.cluster_checker import Region, untouched
from tests.support.cluster_netns import CLIENT, NetCluster, net_cluster
from tests.support.cluster_nodes import (
    ClusterNodes,
    GroupDef,
    Timings,
    group_of,
    node_of,
    running_cluster,
    running_writer,
    write_config,
)
from tests.support.cluster_writer import BLOCK, BLOCKS
from tests.support.processes import free_port
from tests.support.waits import wait_until

from sanstack.cluster.keys import format_key, node_key

pytestmark = pytest.mark.interop

IQN = "iqn.2026-11.org.sanstack:fencing"
CLUSTER = "fencing-test"
NODES = ("n1", "n2", "n3")
DISKS = {"d1": 1, "d2": 2, "d3": 3, "d4": 4}
TIMINGS = Timings(storage_loss_stop=2.0)
FAILOVER_BOUND = 15.0
SETTLE = 30.0
GHOST = 7  # the ghost client's writer id
GHOST_FIRST = BLOCKS  # its blocks follow the writer's
GHOST_WRITES = 8  # 32 KiB: within the stopped owner's TCP window
CLIENT_TIMEOUT = "1.0"  # connection, handshake and each request of the clients


@dataclass
class Cluster:
    net: NetCluster
    nodes: ClusterNodes
    directory: Path
    g1: GroupDef
    g2: GroupDef


def online_on(status: Any, group: str, node: str) -> bool:
    entry = group_of(status, group)
    return bool(entry["owner"] == node and entry["state"] == "online")


def key_of(node: str) -> str:
    return format_key(node_key(CLUSTER, node))


def event_time(events: list[dict[str, Any]], after: float, **match: str) -> float | None:
    for event in events:
        if event["time"] >= after and all(
            str(event.get(k, "")).startswith(v) if k == "reason" else event.get(k) == v
            for k, v in match.items()
        ):
            return float(event["time"])
    return None


def required(events: list[dict[str, Any]], after: float, **match: str) -> float:
    """The time of the first event after ``after`` matching ``match``; the test fails
    without one."""
    when = event_time(events, after, **match)
    assert when is not None, (match, events[-30:])
    return when


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("fencing")
    with net_cluster(directory, NODES, IQN, ["memory:1M"] * 5) as net:
        g1 = GroupDef(
            "g1", ["d1", "d2"], (net.floating(1), free_port()), ["n1", "n2"], floating=True
        )
        g2 = GroupDef(
            "g2", ["d3", "d4"], (net.floating(2), free_port()), ["n3", "n2"], floating=True
        )
        config = write_config(
            directory,
            cluster=CLUSTER,
            nodes=NODES,
            portals=net.portals,
            iqn=IQN,
            disks=DISKS,
            groups=[g1, g2],
            timings=TIMINGS,
            addresses=net.addresses(NODES),
            portal_host=net.portal_host,
        )
        with running_cluster(directory, config, NODES, wrap=net.wrap) as nodes:
            nodes.settle("n2", {"g1": "n1", "g2": "n3"}, SETTLE)
            yield Cluster(net, nodes, directory, g1, g2)


def writer_options(writer: int, first: int, blocks: int, *more: str) -> list[str]:
    return [
        "--writer",
        str(writer),
        "--first-block",
        str(first),
        "--blocks",
        str(blocks),
        "--timeout",
        CLIENT_TIMEOUT,
        *more,
    ]


def test_a_stopped_owner_is_fenced_and_none_of_its_writes_lands(cluster: Cluster) -> None:
    nodes, net, g1 = cluster.nodes, cluster.net, cluster.g1
    client = net.wrap(CLIENT)
    go = cluster.directory / "ghost.go"
    ghost_options = writer_options(GHOST, GHOST_FIRST, GHOST_WRITES, "--ghost", str(GHOST_WRITES))
    with (
        running_writer(
            cluster.directory, "stop", g1.export, extra=writer_options(0, 0, BLOCKS), wrap=client
        ) as writer,
        running_writer(
            cluster.directory,
            "ghost",
            g1.export,
            extra=[*ghost_options, "--go", str(go)],
            wrap=client,
        ) as ghost,  # fmt: skip
    ):
        writer.wait_acked(100, SETTLE, "100 writes through g1's export on n1")
        wait_until(lambda: any(p[0] == "C" for p in ghost.lines()), SETTLE, "ghost connected")
        stopped_at = nodes.freeze("n1")
        go.touch()
        wait_until(lambda: any(p[0] == "S" for p in ghost.lines()), 5.0, "ghost's writes sent")
        sent_at = next(float(p[2]) for p in ghost.lines() if p[0] == "S")
        nodes.wait_status(
            "n2", lambda s: online_on(s, "g1", "n2"), FAILOVER_BOUND, "g1 online on n2"
        )
        taken = len(writer.acked())
        writer.wait_acked(taken + 2 * BLOCKS, SETTLE, "every block written again through n2")
        resumed_at = nodes.thaw("n1")
        status = nodes.wait_status(
            "n2",
            lambda s: (
                node_of(s, "n1")["member"]
                and node_of(s, "n1")["state"] == "alive"
                and "n1" not in group_of(s, "g1")["states"]
                and online_on(s, "g1", "n2")
            ),
            SETTLE,
            "n1 a member again, g1 stopped there and online on n2",
        )
        n1_events = nodes.events("n1")
        wait_until(
            lambda: event_time(nodes.events("n1"), resumed_at, kind="disk.unfenced") is not None,
            SETTLE,
            "n1 unfenced once its group stopped",
        )
        after = len(writer.acked())
        writer.wait_acked(after + 50, SETTLE, "writes go on through n2 after n1 resumed")
    n1_events = nodes.events("n1")
    n2_events = nodes.events("n2")

    # The others fenced n1: PREEMPT AND ABORT of its key on g1's disks.
    preempted = [
        e
        for e in n2_events
        if e["kind"] == "disk.preempted" and e["group"] == "g1" and e["time"] > stopped_at
    ]
    assert {e["disk"] for e in preempted} == {"d1", "d2"}, n2_events[-30:]
    assert all(e["peer"] == "n1" for e in preempted)
    taken_at = min(e["time"] for e in preempted)
    assert sent_at < taken_at, "the ghost's writes reached n1 only after it was fenced"
    # n1 learnt it lost the disks (Event 1038), stopped g1, and rejoined.
    fenced = [e for e in n1_events if e["kind"] == "disk.fenced" and e["time"] > resumed_at]
    assert fenced and fenced[0]["group"] == "g1", n1_events[-30:]
    assert "unexpectedly lost" in fenced[0]["reason"]
    assert event_time(n1_events, resumed_at, kind="group.state", group="g1", reason="stopping")
    # None of n1's writes landed: the ghost's were all refused, and the disk holds only the
    # writer's acknowledged data (the request n1 held is older than what n2 wrote since).
    ghost_lines = ghost.lines()
    assert not [p for p in ghost_lines if p[0] == "A"], ghost_lines
    data = net.read(DISKS["d1"], 0, (GHOST_FIRST + GHOST_WRITES) * BLOCK)
    region = Region(0, 0, BLOCKS, writer.path)
    problems = region.problems(data[: BLOCKS * BLOCK])
    problems += untouched(data[GHOST_FIRST * BLOCK :], "ghost")
    assert not problems, problems[:20]
    # The reservations, read by an initiator of the test's own: n2 holds g1's disks.
    reservations = net.reservations([DISKS["d1"], DISKS["d2"]])
    for lun, state in reservations.items():
        assert state["holder"] == key_of("n2"), (lun, state)
    assert online_on(status, "g1", "n2")
    ghost_errors = [p for p in ghost_lines if p[0] == "E"]
    online = required(n2_events, stopped_at, kind="group.state", group="g1", reason="onlining_e")
    print(
        f"\nkill -STOP (s from the stop): ghost's {GHOST_WRITES} writes in n1's socket "
        f"{sent_at - stopped_at:.2f}, n1 preempted {taken_at - stopped_at:.2f}, "
        f"g1 online on n2 {online - stopped_at:.2f}; "
        f"kill -CONT at {resumed_at - stopped_at:.2f}: n1 fenced after "
        f"{fenced[0]['time'] - resumed_at:.2f} ({fenced[0]['reason']}), ghost's writes "
        f"refused {len(ghost_errors)}/{GHOST_WRITES} (the others unanswered); "
        f"{len(region.acked)} writes acknowledged, {BLOCKS} blocks checked"
    )


def test_an_owner_without_storage_paths_gives_its_group_up(cluster: Cluster) -> None:
    nodes, net, g2 = cluster.nodes, cluster.net, cluster.g2
    assert online_on(nodes.status("n1"), "g2", "n3")
    client = net.wrap(CLIENT)
    with running_writer(
        cluster.directory, "paths", g2.export, extra=writer_options(0, 0, BLOCKS), wrap=client
    ) as writer:
        writer.wait_acked(100, SETTLE, "100 writes through g2's export on n3")
        cut_at = time.time()
        net.storage_link("n3", up=False)
        try:
            status = nodes.wait_status(
                "n1",
                lambda s: (
                    online_on(s, "g2", "n2") and group_of(s, "g2")["states"].get("n3") == "no_path"
                ),
                FAILOVER_BOUND,
                "g2 online on n2, n3 claiming no path for it",
            )
            # n3 takes nothing while it has no path: g1 is not placed there either.
            assert group_of(status, "g1")["states"].get("n3") == "no_path"
            taken = len(writer.acked())
            writer.wait_acked(taken + 2 * BLOCKS, SETTLE, "every block written through n2")
        finally:
            back_at = time.time()
            net.storage_link("n3", up=True)
        nodes.wait_status(
            "n1",
            lambda s: (
                "n3" not in group_of(s, "g2")["states"]
                and "n3" not in group_of(s, "g1")["states"]
                and online_on(s, "g2", "n2")
            ),
            SETTLE,
            "n3 sees the storage again and claims nothing; g2 stays on n2",
        )
        after = len(writer.acked())
        writer.wait_acked(after + 50, SETTLE, "writes go on through n2")
    n3_events = nodes.events("n3")
    n2_events = nodes.events("n2")

    unreachable = required(n3_events, cut_at, kind="disk.unreachable", group="g2")
    stopping = required(n3_events, cut_at, kind="group.state", group="g2", reason="online -> st")
    failed = required(n3_events, cut_at, kind="group.failed", group="g2")
    reachable = required(n3_events, back_at, kind="disk.reachable", group="g2")
    preempted = required(n2_events, cut_at, kind="disk.preempted", group="g2", peer="n3")
    online = required(n2_events, cut_at, kind="group.state", group="g2", reason="onlining_e")
    assert stopping <= preempted  # n2 took the disks only once n3 had stopped writing
    # n3 did not take g2 back while it had no path, nor after (it is n2's now).
    assert not [
        e
        for e in n3_events
        if e["time"] > cut_at and e.get("group") == "g2" and "-> onlining" in e["reason"]
    ], n3_events[-30:]
    # Every acknowledged write reads back; n3 wrote nothing after it stopped.
    data = net.read(DISKS["d3"], 0, BLOCKS * BLOCK)
    problems = Region(0, 0, BLOCKS, writer.path).problems(data)
    assert not problems, problems[:20]
    reservations = net.reservations([DISKS["d3"], DISKS["d4"]])
    for lun, state in reservations.items():
        assert state["holder"] == key_of("n2"), (lun, state)
    # n3 registered its key again once it saw the disks (the owner had removed it).
    nodes.wait_status(
        "n1",
        lambda s: all(
            "n3" in {k["node"] for k in d["keys"]} for d in s["disks"] if d["group"] == "g2"
        ),
        SETTLE,
        "n3's key registered on g2's disks again",
    )
    print(
        f"\nstorage link of n3 down (s from the cut): disks unreachable "
        f"{unreachable - cut_at:.2f}, g2 stopping on n3 {stopping - cut_at:.2f}, failed "
        f"{failed - cut_at:.2f}, n3 preempted by n2 {preempted - cut_at:.2f}, g2 online on n2 "
        f"{online - cut_at:.2f}; link back: reachable after {reachable - back_at:.2f}"
    )
