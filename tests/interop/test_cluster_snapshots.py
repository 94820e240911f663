"""Issue 11 item 7 with real processes on loopback: a snapshot volume on a cluster disk,
three ``sanstack cluster node`` processes, a group of two disks (one with the volume)
exported on its own 127.74.x address.

- ``sanstack snapshot|volume ... --cluster-control SOCKET GROUP/DISK`` works through any
  node: the node forwards to the group's owner, which acts on its open volume; what cannot
  be done is refused in one line (no volume on that disk, no such group, a bad name, a
  group online nowhere).
- A schedule lives in the volume: after ``kill -9`` of the owner the new owner's open
  volume runs it, and new scheduled snapshots appear there.
- A backup reading a snapshot through the group's export (``DISK@SNAP``) while the owner is
  killed reconnects and completes after the failover, with the snapshot's content; qemu-img
  convert with ``reconnect-delay`` does the same.

The tests share one cluster and run in order (each leaves it whole for the next).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.cluster_nodes import (
    ClusterNodes,
    GroupDef,
    group_of,
    node_of,
    running_cluster,
    write_config,
)
from tests.support.cluster_volumes import (
    digest,
    known_pattern,
    running_reader,
    scheduled_after,
    volume_cli,
    volume_cli_refusal,
    write_range,
)
from tests.support.processes import free_port, run_tool, running_target, sanstack_command
from tests.support.waits import wait_until

pytestmark = pytest.mark.interop

IQN = "iqn.2026-11.org.sanstack:clustersnap"
CLUSTER = "snapshot-test"
NODES = ("n1", "n2", "n3")
DISKS = {"d1": 1, "d2": 2}
FAILOVER_BOUND = 15.0
SETTLE = 30.0
REGION = (1 << 20, 4 << 20)  # (offset, length) of the known pattern the backup reads


@dataclass
class Cluster:
    nodes: ClusterNodes
    directory: Path
    g1: GroupDef


def online_on(status: Any, group: str, node: str) -> bool:
    entry = group_of(status, group)
    return bool(entry["owner"] == node and entry["state"] == "online")


def owner_of(nodes: ClusterNodes, via: str) -> str:
    status = nodes.wait_status(
        via, lambda s: group_of(s, "g1")["state"] == "online", SETTLE, "g1 online"
    )
    owner: str = group_of(status, "g1")["owner"]
    return owner


def others(owner: str) -> list[str]:
    return [n for n in NODES if n != owner]


def rejoin(nodes: ClusterNodes, name: str) -> None:
    nodes.start(name)
    nodes.wait_status(
        name,
        lambda s: all(node_of(s, n)["state"] == "alive" and node_of(s, n)["member"] for n in NODES),
        SETTLE,
        f"{name} a member again",
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster-snap")
    portals = [free_port(), free_port()]
    volume = directory / "d1.img"
    run_tool([*sanstack_command(), "volume", "format", str(volume), "--size", "64M"])
    luns = ["memory:1M", f"{volume}:64M", "memory:1M"]
    with running_target(directory, IQN, portals, luns):
        g1 = GroupDef(
            "g1", ["d1", "d2"], ("127.0.74.1", free_port()), ["n1", "n2", "n3"], volumes=["d1"]
        )
        config = write_config(
            directory,
            cluster=CLUSTER,
            nodes=NODES,
            portals=portals,
            iqn=IQN,
            disks=DISKS,
            groups=[g1],
        )
        with running_cluster(directory, config, NODES) as nodes:
            # A node that formed a view of its own first may have taken g1: a move brings it.
            nodes.settle("n3", {"g1": "n1"}, SETTLE)
            nodes.wait_status("n3", lambda s: online_on(s, "g1", "n1"), SETTLE, "g1 online on n1")
            yield Cluster(nodes, directory, g1)


def test_snapshot_commands_work_by_group_and_disk_from_any_node(cluster: Cluster) -> None:
    nodes = cluster.nodes
    owner = owner_of(nodes, "n3")
    far, near = others(owner)
    created = volume_cli(nodes, far, "snapshot", "create", "g1/d1", "one", "--weight", "7")
    assert (created["name"], created["weight"], created["keep"]) == ("one", 7, False)
    assert [s["name"] for s in volume_cli(nodes, near, "snapshot", "list", "g1/d1")] == ["one"]
    if shutil.which("nbdinfo"):  # the group's export lists the snapshot, read-only
        host, port = cluster.g1.export
        listing = run_tool(["nbdinfo", "--list", "--json", f"nbd://{host}:{port}"], timeout=60)
        exports = {e["export-name"]: e for e in json.loads(listing.stdout)["exports"]}
        assert {"", "d1", "d2", "d1@one"} <= set(exports), sorted(exports)
        assert exports["d1@one"]["is_read_only"] is True
    info = volume_cli(nodes, far, "volume", "info", "g1/d1")
    assert info["path"] == "g1/d1" and info["snapshots"] == 1
    assert info["holder"]["host"] == owner  # the owner holds the volume and answered
    assert volume_cli(nodes, owner, "volume", "info", "g1/d1")["uuid"] == info["uuid"]
    changed = volume_cli(nodes, near, "snapshot", "set", "g1/d1", "one", "--keep")
    assert changed["keep"] is True
    scheduled = volume_cli(
        nodes, far, "volume", "schedule", "g1/d1", "--every", "1h", "--keep", "3"
    )
    assert scheduled["schedule"]["interval"] == 3600 and scheduled["schedule"]["keep"] == 3
    assert volume_cli(nodes, near, "volume", "schedule", "g1/d1", "--off")["schedule"] is None
    policy = volume_cli(nodes, far, "volume", "policy", "g1/d1", "--warn-percent", "70")
    assert policy["policy"]["warn_percent"] == 70
    volume_cli(nodes, near, "snapshot", "create", "g1/d1", "two")
    restored = volume_cli(nodes, far, "snapshot", "restore", "g1/d1", "two", "--wait")
    assert restored["path"] == "g1/d1" and not restored["background"]
    assert volume_cli(nodes, near, "snapshot", "delete", "g1/d1", "one", "--wait") == {
        "path": "g1/d1",
        "deleted": "one",
    }
    listed = volume_cli(nodes, owner, "snapshot", "list", "g1/d1")
    assert [s["name"] for s in listed if not s["scheduled"]] == ["two"]

    refusals = [
        (("snapshot", "list", "g1/d2"), 1, "volume: disk d2 of group g1 carries no snapshot"),
        (("snapshot", "list", "g9/d1"), 1, "volume: 'g9' is not a group of cluster"),
        (("snapshot", "list", "g1/d9"), 1, "volume: 'd9' is not a disk of group g1"),
        (("snapshot", "list", "g1"), 2, "FILE: g1 is not GROUP/DISK"),
        (("snapshot", "create", "g1/d1", "bad name"), 2, "NAME: snapshot name 'bad name'"),
        (("snapshot", "create", "g1/d1", "two"), 1, "name: snapshot 'two' already exists"),
        (("snapshot", "delete", "g1/d1", "nope"), 1, "name: "),
    ]
    for args, status, words in refusals:
        code, line = volume_cli_refusal(nodes, far, *args)
        assert code == status and words in line, (args, code, line)
    for snapshot in volume_cli(nodes, far, "snapshot", "list", "g1/d1"):
        volume_cli(nodes, near, "snapshot", "delete", "g1/d1", snapshot["name"])


def test_a_group_online_nowhere_is_refused_in_one_line(cluster: Cluster) -> None:
    nodes = cluster.nodes
    for name in NODES:
        nodes.cli("n1", "node", "pause", name)
    try:
        nodes.wait_status(
            "n2",
            lambda s: group_of(s, "g1")["owner"] is None,
            SETTLE,
            "g1 offline with every node paused",
        )
        code, line = volume_cli_refusal(nodes, "n2", "snapshot", "list", "g1/d1")
        assert code == 1 and "volume: group g1 is not online on any node" in line, line
    finally:
        for name in NODES:
            nodes.cli("n1", "node", "resume", name)
    owner_of(nodes, "n2")


def test_a_schedule_keeps_running_on_the_new_owner_after_a_failover(cluster: Cluster) -> None:
    nodes = cluster.nodes
    owner = owner_of(nodes, "n3")
    via = others(owner)[-1]
    volume_cli(nodes, via, "volume", "schedule", "g1/d1", "--every", "1s", "--keep", "30")
    try:
        wait_until(
            lambda: (
                len(scheduled_after(volume_cli(nodes, via, "snapshot", "list", "g1/d1"), 0)) >= 2
            ),
            SETTLE,
            "two scheduled snapshots on the first owner",
        )
        killed_at = nodes.kill(owner)
        status = nodes.wait_status(
            via,
            lambda s: (
                group_of(s, "g1")["state"] == "online" and group_of(s, "g1")["owner"] != owner
            ),
            FAILOVER_BOUND,
            "g1 online on a survivor",
        )
        online_at = time.time()
        new_owner = group_of(status, "g1")["owner"]
        info = volume_cli(nodes, via, "volume", "info", "g1/d1")
        assert info["holder"]["host"] == new_owner
        assert info["schedule"]["interval"] == 1  # kept in the volume's metadata
        wait_until(
            lambda: (
                len(scheduled_after(volume_cli(nodes, via, "snapshot", "list", "g1/d1"), online_at))
                >= 2
            ),
            SETTLE,
            f"two scheduled snapshots taken by {new_owner} after the failover",
        )
        first = min(
            s["created"]
            for s in volume_cli(nodes, via, "snapshot", "list", "g1/d1")
            if s["scheduled"] and s["created"] > killed_at
        )
        print(
            f"\nschedule after kill -9: g1 online {online_at - killed_at:.2f} s, first "
            f"scheduled snapshot on {new_owner} {first - killed_at:.2f} s after the kill"
        )
    finally:
        volume_cli(nodes, via, "volume", "schedule", "g1/d1", "--off")
    for snapshot in volume_cli(nodes, via, "snapshot", "list", "g1/d1"):
        volume_cli(nodes, via, "snapshot", "delete", "g1/d1", snapshot["name"])
    rejoin(nodes, owner)


def qemu_convert(
    export: tuple[str, int], name: str, output: Path, rate: int
) -> subprocess.Popen[bytes]:
    source = (
        f"driver=raw,file.driver=nbd,file.server.type=inet,file.server.host={export[0]},"
        f"file.server.port={export[1]},file.export={name},file.reconnect-delay=30"
    )
    command = ["qemu-img", "convert", "-r", str(rate), "--image-opts", source, "-O", "raw"]
    return subprocess.Popen([*command, str(output)], stderr=subprocess.PIPE)


def test_a_backup_of_a_snapshot_completes_after_a_failover(cluster: Cluster) -> None:
    nodes, g1 = cluster.nodes, cluster.g1
    owner = owner_of(nodes, "n3")
    via = others(owner)[0]
    offset, length = REGION
    before = known_pattern(829440, length)
    write_range(g1.export, "d1", offset, before)
    volume_cli(nodes, via, "snapshot", "create", "g1/d1", "backup")
    write_range(g1.export, "d1", offset, known_pattern(1, length))  # the live volume moves on
    qemu = shutil.which("qemu-img")
    output = cluster.directory / "backup.raw"
    converting = qemu_convert(g1.export, "d1@backup", output, 1 << 20) if qemu else None
    try:
        with running_reader(
            cluster.directory, "failover", g1.export, "d1@backup", region=REGION, pace=0.05
        ) as reader:
            reader.wait_pieces(8, SETTLE, "the backup reader under way")
            killed_at = nodes.kill(owner)
            read_before = reader.pieces()
            sha = reader.wait_done(SETTLE + FAILOVER_BOUND)
            done_at = time.time()
        assert sha == digest(before)  # the snapshot's content, not the live volume's
        assert read_before < length // (64 << 10)  # the kill came while it was reading
        assert reader.reconnects() > 0 and not reader.errors()
        if converting is not None:
            code = converting.wait(SETTLE + FAILOVER_BOUND)
            assert code == 0, converting.stderr.read() if converting.stderr else code
            with output.open("rb") as copy:
                copy.seek(offset)
                assert digest(copy.read(length)) == digest(before)
        print(
            f"\nbackup across kill -9 of {owner}: {read_before} pieces before the kill, "
            f"done {done_at - killed_at:.2f} s after it, {reader.reconnects()} reconnects"
            + (", qemu-img convert too" if converting is not None else "")
        )
    finally:
        if converting is not None and converting.poll() is None:
            converting.kill()
            converting.wait(10)
    survivor = owner_of(nodes, via)
    assert survivor != owner
    # The reader and qemu-img both reconnected to the new owner, which opened the snapshot
    # for each of their connections.
    opened = nodes.processes[survivor].log().count("snapshot export d1@backup opened")
    assert opened >= (2 if converting is not None else 1), opened
    volume_cli(nodes, via, "snapshot", "delete", "g1/d1", "backup")
    rejoin(nodes, owner)
