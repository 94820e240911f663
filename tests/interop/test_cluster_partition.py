"""Issue 11's partition checks with real processes, each node in a network namespace of its
own (``tests/support/cluster_netns.py``): the cluster network is split while every side
still reaches the storage (the target's portals and the groups' floating export addresses
are on the storage network).

- Three nodes split 2|1, the minority running a group: the majority runs every group (it
  preempts the minority's reservations and takes the group's address), the minority stops
  its group within ``quorum_loss_stop``; after the heal it rejoins.
- Two nodes and a disk witness split 1|1: exactly one side (the witness holder's) runs the
  groups; the other stops its group and never wins the witness.

Never two owners of a disk, checked two ways: by the reservations, sampled throughout by an
initiator of the test's own (``cluster_probe watch``: each disk's holder changes at most
once, from the cut-off node to the survivor, and never back), and by the data: a client on
the cut-off node itself (pinned: it reaches the group's address only while that node has
it, never on another node) has no write acknowledged after the survivor preempted the disk,
and the independent checker finds every block as the writers' acknowledgements say
(``cluster_checker``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.cluster_checker import Region
from tests.support.cluster_netns import CLIENT, NetCluster, net_cluster, samples
from tests.support.cluster_nodes import (
    ClusterNodes,
    GroupDef,
    Timings,
    WriterLog,
    group_of,
    node_of,
    running_cluster,
    running_writer,
    write_config,
)
from tests.support.cluster_writer import BLOCK, BLOCKS
from tests.support.processes import free_port

from sanstack.cluster.keys import format_key, node_key

pytestmark = pytest.mark.interop

IQN = "iqn.2026-11.org.sanstack:partition"
CLUSTER = "partition-test"
DISKS = {"d1": 1, "d2": 2, "d3": 3, "d4": 4}
TIMINGS = Timings(quorum_loss_stop=5.0)
NODE_TIMEOUT = TIMINGS.heartbeat_interval * TIMINGS.missed_heartbeats
FAILOVER_BOUND = 15.0
SETTLE = 30.0
LOCAL = 5  # the cut-off node's own client
LOCAL_FIRST, LOCAL_BLOCKS = BLOCKS, 64  # its blocks follow the remote writer's
ACK_SLACK = 0.2  # an ack of a write the target took just before the preempt, still on its way


@dataclass
class Run:
    net: NetCluster
    nodes: ClusterNodes
    directory: Path
    g1: GroupDef
    g2: GroupDef
    luns: list[int]  # every disk's LUN, the witness's included


def key_of(node: str) -> str:
    return format_key(node_key(CLUSTER, node))


def online_on(status: Any, group: str, node: str) -> bool:
    entry = group_of(status, group)
    return bool(entry["owner"] == node and entry["state"] == "online")


def runs_nothing(status: Any, node: str) -> bool:
    """``node``'s own status: no group runs (or is stopping) there."""
    return all(node not in group["states"] for group in status["groups"])


def first(events: list[dict[str, Any]], after: float, **match: str) -> dict[str, Any] | None:
    for event in events:
        if event["time"] >= after and all(
            match[k] in str(event.get(k, "")) if k == "reason" else event.get(k) == match[k]
            for k in match
        ):
            return event
    return None


@contextmanager
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    tag: str,
    names: Sequence[str],
    preferred: tuple[Sequence[str], Sequence[str]],
    **quorum: str,
) -> Iterator[Run]:
    directory = tmp_path_factory.mktemp(tag)
    with net_cluster(directory, names, IQN, ["memory:1M"] * 5) as net:
        g1 = GroupDef(
            "g1", ["d1", "d2"], (net.floating(1), free_port()), preferred[0], floating=True
        )
        g2 = GroupDef(
            "g2", ["d3", "d4"], (net.floating(2), free_port()), preferred[1], floating=True
        )
        disks = {"wit": 0, **DISKS} if quorum else DISKS
        config = write_config(
            directory,
            cluster=CLUSTER,
            nodes=names,
            portals=net.portals,
            iqn=IQN,
            disks=disks,
            groups=[g1, g2],
            timings=TIMINGS,
            addresses=net.addresses(names),
            portal_host=net.portal_host,
            **quorum,
        )
        with running_cluster(directory, config, names, wrap=net.wrap) as nodes:
            nodes.settle(names[0], {"g1": preferred[0][0], "g2": preferred[1][0]}, SETTLE)
            yield Run(net, nodes, directory, g1, g2, sorted(disks.values()))


def options(writer: int, first_block: int, blocks: int, *more: str) -> list[str]:
    return [
        "--writer", str(writer), "--first-block", str(first_block), "--blocks", str(blocks),
        "--timeout", "1.0", *more,
    ]  # fmt: skip


@dataclass
class Split:
    """What one partition did: times from the survivor's and the cut-off node's events, the
    writers' logs and the reservation samples."""

    cut: str
    survivor: str
    cut_at: float
    preempted: dict[str, float]  # disk -> when the survivor preempted the cut-off node
    quorum_lost: float
    stopped: float  # the cut-off node's group offline (or failed) again
    remote: WriterLog  # the client's writer, through g2's address
    local: WriterLog  # the cut-off node's own client
    watch: Path  # the reservation samples


def split_and_heal(
    run: Run, sides: tuple[Sequence[str], Sequence[str]], survivor: str, cut: str
) -> Split:
    """Writers on g2 (owned by ``cut``): one from the client namespace, one on ``cut`` itself;
    the reservations watched; the cluster network split into ``sides``; g2 online on
    ``survivor`` and nothing running on ``cut`` awaited (bounded), then healed and ``cut``
    a member again."""
    nodes, net, g2 = run.nodes, run.net, run.g2
    remote_options = options(0, 0, BLOCKS)
    local_options = options(LOCAL, LOCAL_FIRST, LOCAL_BLOCKS)
    client, here = net.wrap(CLIENT), net.wrap(cut)
    with (
        net.pinned(cut, g2.export[0]),
        net.watching("pr", run.luns, 0.2) as watch,
        running_writer(
            run.directory, "remote", g2.export, extra=remote_options, wrap=client
        ) as remote,
        running_writer(run.directory, "local", g2.export, extra=local_options, wrap=here) as local,
    ):
        remote.wait_acked(100, SETTLE, "100 writes through g2's address")
        local.wait_acked(50, SETTLE, f"50 writes by {cut}'s own client")
        cut_at = time.time()
        net.top.partition(*sides)
        try:
            nodes.wait_status(
                survivor, lambda s: online_on(s, "g2", survivor), FAILOVER_BOUND, "g2 taken over"
            )
            nodes.wait_status(
                cut,
                lambda s: runs_nothing(s, cut) and not s["quorum"]["has"],
                TIMINGS.quorum_loss_stop + FAILOVER_BOUND,
                f"{cut} without quorum and running nothing",
            )
            taken = len(remote.acked())
            remote.wait_acked(taken + 2 * BLOCKS, SETTLE, "every block written again")
        finally:
            net.top.heal()
        nodes.wait_status(
            survivor,
            lambda s: node_of(s, cut)["member"] and node_of(s, cut)["state"] == "alive",
            SETTLE,
            f"{cut} a member again after the heal",
        )
    cut_events, survivor_events = nodes.events(cut), nodes.events(survivor)
    preempted = {
        e["disk"]: float(e["time"])
        for e in survivor_events
        if e["kind"] == "disk.preempted" and e["time"] > cut_at and e["peer"] == cut
    }
    lost = first(cut_events, cut_at, kind="quorum.lost")
    stopped = first(cut_events, cut_at, kind="group.state", group="g2", reason="-> offline")
    if stopped is None:
        stopped = first(cut_events, cut_at, kind="group.state", group="g2", reason="-> failed")
    assert lost is not None and stopped is not None, cut_events[-30:]
    times = (cut_at, preempted, float(lost["time"]), float(stopped["time"]))
    return Split(cut, survivor, *times, remote, local, watch)


def check_no_two_owners(run: Run, split: Split) -> str:
    """The reservations and the data (module docstring); a line for the report."""
    cut, survivor, remote, local = split.cut, split.survivor, split.remote, split.local
    assert {"d3", "d4"} <= set(split.preempted), split
    # The cut-off node stopped its group within quorum_loss_stop of losing quorum (fenced
    # sooner, in fact, when the survivor preempted its disks under its I/O).
    assert split.stopped - split.cut_at <= NODE_TIMEOUT + TIMINGS.quorum_loss_stop + 1.0, split
    # Reservations, sampled throughout: each disk's holder changed at most once, from the
    # cut-off node to the survivor, and every holder was a node's WERO reservation.
    history: dict[int, list[str]] = {}
    for sample in samples(split.watch):
        for lun, state in sample["luns"].items():
            assert state["type"] == 5 and state["holder"] in {key_of(n) for n in run.nodes.names}
            holders = history.setdefault(int(lun), [])
            if not holders or holders[-1] != state["holder"]:
                holders.append(state["holder"])
    assert history, "no reservation sampled"
    for lun in (DISKS["d3"], DISKS["d4"]):
        assert history[lun] == [key_of(cut), key_of(survivor)], (lun, history[lun])
    # Data: the cut-off node's own client had nothing acknowledged after the preempt.
    late_after = split.preempted["d3"] + ACK_SLACK
    late = [(n, when) for n, _o, when in local.acked() if when > late_after]
    assert not late, f"{cut} acknowledged writes after it was preempted: {late[:5]}"
    data = run.net.read(DISKS["d3"], 0, (LOCAL_FIRST + LOCAL_BLOCKS) * BLOCK)
    problems = Region(0, 0, BLOCKS, remote.path).problems(data[: BLOCKS * BLOCK])
    problems += Region(LOCAL, LOCAL_FIRST, LOCAL_BLOCKS, local.path).problems(
        data[LOCAL_FIRST * BLOCK :]
    )
    assert not problems, problems[:20]
    last_local = max((when for _n, _o, when in local.acked()), default=split.cut_at)
    samples_seen = len(samples(split.watch))
    return (
        f"preempted {max(split.preempted.values()) - split.cut_at:.2f}, quorum lost on {cut} "
        f"{split.quorum_lost - split.cut_at:.2f}, g2 stopped on {cut} "
        f"{split.stopped - split.cut_at:.2f}; {cut}'s own client's last ack "
        f"{last_local - split.cut_at:.2f}; {samples_seen} reservation samples"
    )


def test_three_nodes_split_2_1_the_majority_runs_every_group(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    names = ("n1", "n2", "n3")
    with cluster(tmp_path_factory, "split21", names, (["n1", "n2"], ["n3", "n2"])) as run:
        split = split_and_heal(run, (["n1", "n2"], ["n3"]), "n2", "n3")
        report = check_no_two_owners(run, split)
        status = run.nodes.status("n1")
        assert online_on(status, "g1", "n1") and online_on(status, "g2", "n2")
        assert status["quorum"]["has"]
        n3_events = run.nodes.events("n3")
        unfenced = first(n3_events, split.cut_at, kind="disk.unfenced")
        fenced = first(n3_events, split.cut_at, kind="disk.fenced")
        how = "not fenced" if fenced is None else f"fenced {fenced['time'] - split.cut_at:.2f}"
        again = ", unfenced after the heal" if unfenced else ""
        print(f"\n2|1 split (s from the cut): {report}; n3 {how}{again}")


def test_two_nodes_and_a_witness_split_1_1_exactly_one_side_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The side of the witness's holder (whichever node took it first) survives; g2 runs on
    the other node when the network splits."""
    names = ("n1", "n2")
    with cluster(
        tmp_path_factory,
        "split11",
        names,
        (["n1", "n2"], ["n2", "n1"]),
        quorum="node-and-disk",
        witness="wit",
    ) as run:
        held = run.nodes.wait_status(
            "n1", lambda s: s["quorum"]["witness_owner"] in names, SETTLE, "the witness held"
        )
        assert held["quorum"]["votes"] == 3
        survivor = held["quorum"]["witness_owner"]
        cut = next(n for n in names if n != survivor)
        run.nodes.settle(survivor, {"g1": survivor, "g2": cut}, SETTLE)
        split = split_and_heal(run, ([survivor], [cut]), survivor, cut)
        report = check_no_two_owners(run, split)
        # The witness never left its holder: the other side's race for it lost to the
        # holder's defence (it removes the challenger's registration every interval).
        witness = {s["luns"]["0"]["holder"] for s in samples(split.watch)}
        assert witness == {key_of(survivor)}, witness
        status = run.nodes.status(survivor)
        assert online_on(status, "g1", survivor) and online_on(status, "g2", survivor)
        assert status["quorum"]["witness_owner"] == survivor
        print(f"\n1|1 split with a witness (s from the cut): {report}; witness kept by {survivor}")
