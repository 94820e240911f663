"""KB829440 at cluster level (../shared/seeds/kb829440-psm-snapshot-delete.txt): PSM crashed
when a snapshot was deleted while the volume scanned its free space, which it does when the
volume starts, after a restore, and at a cluster failover; and during a backup.

Real processes on loopback: a target, three ``sanstack cluster node`` processes, a group
whose disk carries a large snapshot volume (a million chunks, so the free-space scan at
open takes a while), a client writing a sequence pattern through the group's export. Each
round, randomized (seeded; the seed is printed): snapshots are taken while the writer
writes, a backup starts reading one of them through the group's export (``DISK@SNAP``),
another node starts deleting the others (``DELETE`` on its control socket, forwarded to
the owner), and the owner is killed (``kill -9``) at a random point of both. The survivor
opens the volume and scans while the deletes, now forwarded to it, go on and the backup
reconnects. Then: every delete is done, the backup read exactly the snapshot's content, the
writer goes on, the killed node rejoins. At the end every acknowledged write reads back and
no node logged a traceback: no crash, no hang, no lost acknowledged write.

Rounds: ``SANSTACK_KB829440_ROUNDS`` (default 2; the long run sets more), seed:
``SANSTACK_KB829440_SEED``.
"""

from __future__ import annotations

import os
import random
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.support.cluster_nodes import (
    ClusterNodes,
    GroupDef,
    WriterLog,
    group_of,
    node_of,
    running_cluster,
    running_writer,
    write_config,
)
from tests.support.cluster_volumes import (
    check_reads_back,
    digest,
    known_pattern,
    running_reader,
    write_range,
)
from tests.support.processes import free_port, run_tool, running_target, sanstack_command
from tests.support.waits import wait_until

from sanstack.control.client import ControlError, call
from sanstack.nbd import NBDError

pytestmark = pytest.mark.interop

IQN = "iqn.2026-11.org.sanstack:kb829440"
CLUSTER = "kb829440"
NODES = ("n1", "n2", "n3")
DISKS = {"d1": 1, "d2": 2}
VOLUME_SIZE = os.environ.get("SANSTACK_KB829440_VOLUME", "4G")  # 4 KiB chunks: ~1M to scan
ROUNDS = int(os.environ.get("SANSTACK_KB829440_ROUNDS", "2"))
SEED = int(os.environ.get("SANSTACK_KB829440_SEED", str(random.SystemRandom().randrange(1 << 32))))
REGION = (1 << 20, 2 << 20)  # the known pattern the backup reads
FAILOVER_BOUND = 15.0
SETTLE = 45.0
RETRY_GAP = 0.05  # between a refused delete (the group is moving) and the next try
# Answers that mean "the group is moving, try again", as the deleter sees them.
MOVING = ("not online", "did not answer", "try again", "no daemon is listening")


@dataclass
class Deletes:
    """Another node's deletes, in a thread the test owns: each name is tried until it is
    deleted; the volume's background work is looked at before and after each. The first
    ``before_kill`` go at once, the others once ``killed`` is set (during the failover)."""

    control: Path
    names: list[str]
    before_kill: int
    deadline: float
    killed: threading.Event = field(default_factory=threading.Event)
    done: list[tuple[str, bool]] = field(default_factory=list)  # (name, during the scan)
    refusals: int = 0
    failures: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="deletes", daemon=True)
        self.thread.start()

    def _ask(self, method: str, resource: str) -> Any:
        return call(self.control, method, f"/v1/cluster/volumes/{resource}?volume=g1%2Fd1")

    def scanning(self) -> bool | None:
        try:
            info = self._ask("GET", "info")
        except ControlError:
            return None
        return any(p["operation"] == "scan" for p in info["background"])

    def _run(self) -> None:
        for index, name in enumerate(self.names):
            if index == self.before_kill and not self.killed.wait(self.deadline - time.monotonic()):
                self.failures.append("the owner was not killed in time")
                return
            while True:
                if time.monotonic() > self.deadline:
                    self.failures.append(f"{name}: not deleted in time")
                    return
                before = self.scanning()
                try:
                    self._ask("DELETE", f"snapshots/{urllib.parse.quote(name)}")
                except ControlError as exc:
                    if any(words in str(exc) for words in MOVING):
                        self.refusals += 1
                        time.sleep(RETRY_GAP)
                        continue
                    self.failures.append(f"{name}: {exc}")
                    return
                after = self.scanning()
                self.done.append((name, bool(before and after)))
                break

    def join(self, within: float) -> None:
        assert self.thread is not None
        self.thread.join(within)
        assert not self.thread.is_alive(), f"deletes still running after {within} s"


@dataclass
class Cluster:
    nodes: ClusterNodes
    directory: Path
    g1: GroupDef


def online_owner(status: Any) -> str | None:
    entry = group_of(status, "g1")
    return entry["owner"] if entry["state"] == "online" else None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    portals = [free_port(), free_port()]
    volume = tmp_path / "d1.img"
    run_tool([*sanstack_command(), "volume", "format", str(volume), "--size", VOLUME_SIZE])
    luns = ["memory:1M", f"{volume}:{VOLUME_SIZE}", "memory:1M"]
    with running_target(tmp_path, IQN, portals, luns):
        g1 = GroupDef("g1", ["d1", "d2"], ("127.0.75.1", free_port()), list(NODES), volumes=["d1"])
        config = write_config(
            tmp_path,
            cluster=CLUSTER,
            nodes=NODES,
            portals=portals,
            iqn=IQN,
            disks=DISKS,
            groups=[g1],
        )
        with running_cluster(tmp_path, config, NODES) as nodes:
            nodes.wait_status("n2", online_owner, SETTLE, "g1 online")
            yield Cluster(nodes, tmp_path, g1)


def create(control: Path, name: str) -> None:
    call(control, "POST", "/v1/cluster/volumes/snapshots?volume=g1%2Fd1", {"name": name})


def snapshot_names(control: Path) -> list[str]:
    listed = call(control, "GET", "/v1/cluster/volumes/snapshots?volume=g1%2Fd1")
    return [s["name"] for s in listed]


@pytest.mark.timeout(900)
def test_kb829440_failover_while_scanning_deleting_and_backing_up(cluster: Cluster) -> None:
    g1 = cluster.g1
    rng = random.Random(SEED)
    print(f"\nKB829440 at cluster level: seed {SEED}, {ROUNDS} rounds, volume {VOLUME_SIZE}")
    during_scan = 0
    with running_writer(cluster.directory, "kb", g1.export, "d1") as writer:
        writer.wait_acked(100, SETTLE, "100 writes through g1's volume export")
        for number in range(ROUNDS):
            during_scan += one_round(cluster, writer, rng, number)
    checked = check_reads_back(writer, g1.export, "d1")
    assert {errno for _n, errno in writer.errors()} <= {NBDError.NBD_ESHUTDOWN}
    for log in sorted(cluster.directory.glob("n?-*.log")):  # killed runs' logs too
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, f"{log.name}:\n{text[-5000:]}"
    print(f"{checked} blocks read back; {during_scan} deletes landed during a scan")
    assert during_scan > 0, "no delete landed while the new owner was scanning"


def one_round(cluster: Cluster, writer: WriterLog, rng: random.Random, number: int) -> int:
    """One failover with deletes and a backup (module docstring); returns how many deletes
    landed while the new owner scanned."""
    nodes, g1 = cluster.nodes, cluster.g1
    owner = online_owner(nodes.wait_status("n3", online_owner, SETTLE, "g1 online"))
    assert owner is not None
    heir, via = [n for n in NODES if n != owner]  # the first preferred survivor takes g1
    control = nodes.control(via)
    offset, length = REGION
    seed = rng.randrange(1 << 32)
    before = known_pattern(seed, length)
    write_range(g1.export, "d1", offset, before)
    backup = f"backup-{number}"
    create(control, backup)
    write_range(g1.export, "d1", offset, known_pattern(seed + 1, length))  # the volume moves on
    old = [f"old-{number}-{i}" for i in range(rng.randint(4, 10))]
    for name in old:
        acked = len(writer.acked())
        writer.wait_acked(acked + rng.randint(1, 40), SETTLE, "writes between snapshots")
        create(control, name)
    rng.shuffle(old)
    kill_after_pieces = rng.randint(1, length // (64 << 10) // 2)
    kill_after_deletes = rng.randint(0, 2)
    deletes = Deletes(control, old, kill_after_deletes, time.monotonic() + 2 * SETTLE)
    with running_reader(
        cluster.directory, f"kb-{number}", g1.export, f"d1@{backup}", region=REGION, pace=0.1
    ) as reader:
        reader.wait_pieces(kill_after_pieces, SETTLE, "the backup under way")
        deletes.start()
        wait_until(
            lambda: len(deletes.done) >= kill_after_deletes or bool(deletes.failures),
            SETTLE,
            f"{kill_after_deletes} deletes before the kill",
        )
        killed_at = nodes.kill(owner)
        deletes.killed.set()
        status = nodes.wait_status(
            via,
            lambda s: online_owner(s) == heir,
            FAILOVER_BOUND,
            f"g1 online on {heir} after the kill of {owner}",
        )
        online_at = time.time()
        deletes.join(SETTLE)
        wait_until(lambda: deletes.scanning() is False, SETTLE, "the new owner's scan done")
        scanned_at = time.time()
        sha = reader.wait_done(SETTLE)
    assert not deletes.failures, deletes.failures
    assert sha == digest(before), "the backup did not read the snapshot's content"
    assert not reader.errors(), reader.errors()
    assert sorted(n for n, _scan in deletes.done) == sorted(old)
    names = snapshot_names(control)
    assert backup in names and not [n for n in names if n.startswith("old-")], names
    call(control, "DELETE", f"/v1/cluster/volumes/snapshots/{backup}?volume=g1%2Fd1")
    assert node_of(status, owner)["state"] == "down"
    scanned = sum(1 for _n, scan in deletes.done if scan)
    print(
        f"round {number}: {owner} killed after {kill_after_pieces} pieces read and "
        f"{kill_after_deletes} deletes; g1 online on {heir} {online_at - killed_at:.2f} s "
        f"after, its scan done {scanned_at - killed_at:.2f} s after; {len(old)} deletes "
        f"through {via} ({scanned} during the scan, "
        f"{deletes.refusals} refused while it moved); the backup reconnected "
        f"{reader.reconnects()} times"
    )
    nodes.start(owner)
    nodes.wait_status(
        via,
        lambda s: all(node_of(s, n)["member"] for n in NODES),
        SETTLE,
        f"{owner} a member again",
    )
    acked = len(writer.acked())
    writer.wait_acked(acked + 50, SETTLE, "the writer goes on")
    return scanned
