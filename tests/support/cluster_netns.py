"""A failover cluster whose hosts have their own addresses, on one machine: a network
namespace per node, one for the target and one for the clients (``tests/support/netns.py``:
a cluster network and a storage network, each a bridge). The nodes heartbeat over the
cluster network; the target's two portals, the groups' floating export addresses and the
clients are on the storage network, so a partition of the cluster network leaves every
side with its storage, and a node's storage link can go down alone.

The test process stays in the root namespace: the control sockets are files, so the
cluster's CLI reaches every node from there; whatever must reach the storage network (the
writers, ``cluster_probe``) runs in the client namespace.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.cluster_nodes import REPO
from tests.support.netns import NetHost, Topology, ip, topology
from tests.support.processes import Daemon, free_port, sanstack_command, wait_for_line

TARGET, CLIENT = "target", "client"
FLOATING_BASE = 200  # group i's floating address: PREFIX.2.(200 + i)


@dataclass
class NetCluster:
    directory: Path
    top: Topology
    iqn: str
    portals: list[int]
    target: Daemon

    def host(self, name: str) -> NetHost:
        return self.top.hosts[name]

    def wrap(self, name: str) -> list[str]:
        """The prefix that runs a command in ``name``'s namespace."""
        return self.host(name).command([])

    @property
    def portal_host(self) -> str:
        return self.host(TARGET).address("storage")

    def addresses(self, nodes: Sequence[str]) -> dict[str, str]:
        """Each node's cluster address (its heartbeats')."""
        return {name: self.host(name).address("cluster") for name in nodes}

    def floating(self, index: int) -> str:
        return f"{self.top.prefix}.2.{FLOATING_BASE + index}"

    def storage_link(self, node: str, up: bool) -> None:
        """The node's storage interface up or down (its paths, its floating address)."""
        host = self.host(node)
        ip("link", "set", f"s{host.index}", "up" if up else "down", netns=host.netns)

    @contextmanager
    def pinned(self, node: str, address: str) -> Iterator[None]:
        """From ``node`` itself, ``address`` is reached only while it is ``node``'s own (a
        prohibit route under the local one): a client there cannot follow the address to
        another node. (Nor can ``node`` take the address meanwhile: no route to it.)"""
        netns = self.host(node).netns
        ip("route", "add", "prohibit", f"{address}/32", netns=netns)
        try:
            yield
        finally:
            ip("route", "del", "prohibit", f"{address}/32", netns=netns)

    def probe(self, *args: str) -> str:
        """``cluster_probe`` against the first portal, from the client namespace."""
        command = self.host(CLIENT).command(
            [*python(), "tests.support.cluster_probe", self.portal_host, str(self.portals[0])]
        )
        result = subprocess.run(
            [*command, self.iqn, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"cluster_probe {' '.join(args)}: {result.stderr[-3000:]}")
        return result.stdout

    def reservations(self, luns: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Each LUN's registered keys and reservation holder, read by an initiator of the
        test's own (keys as ``0x`` + 16 hex digits)."""
        answer = json.loads(self.probe("pr", *(str(lun) for lun in luns)))
        return {int(lun): state for lun, state in answer.items()}

    def read(self, lun: int, offset: int, length: int) -> bytes:
        out = self.directory / f"read-{lun}-{offset}.bin"
        self.probe("read", str(lun), str(offset), str(length), str(out))
        return out.read_bytes()

    @contextmanager
    def watching(self, tag: str, luns: Sequence[int], interval: float) -> Iterator[Path]:
        """``cluster_probe watch`` in the background; yields its JSON lines file."""
        out = self.directory / f"watch-{tag}.jsonl"
        stop = self.directory / f"watch-{tag}.stop"
        command = self.host(CLIENT).command(
            [*python(), "tests.support.cluster_probe", self.portal_host, str(self.portals[0])]
        )
        args = [*command, self.iqn, "watch", str(out), str(interval), str(stop)]
        process = subprocess.Popen([*args, *(str(lun) for lun in luns)], cwd=REPO)
        try:
            yield out
        finally:
            stop.touch()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        assert process.returncode == 0, f"cluster_probe watch exited {process.returncode}"


def python() -> list[str]:
    return [sanstack_command()[0], "-m"]


def samples(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


@contextmanager
def net_cluster(
    directory: Path, nodes: Sequence[str], iqn: str, luns: Sequence[str]
) -> Iterator[NetCluster]:
    """The namespaces (``nodes``, the target, the client) and a running target on two
    portals of its storage address with ``luns``; the cluster itself is the test's."""
    with topology([*nodes, TARGET, CLIENT]) as top:
        host = top.hosts[TARGET]
        portals = [free_port(), free_port()]
        args = [*sanstack_command(), "target", "serve", "--iqn", iqn]
        for port in portals:
            args += ["--portal", f"{host.address('storage')}:{port}"]
        for lun in luns:
            args += ["--lun", lun]
        args += [
            "--control",
            str(directory / "target.sock"),
            "--state-dir",
            str(directory / "state-target"),
        ]
        with running_in(host, args, directory / "target.log", directory / "target.sock") as target:
            yield NetCluster(directory, top, iqn, portals, target)


@contextmanager
def running_in(host: NetHost, args: list[str], log_path: Path, control: Path) -> Iterator[Daemon]:
    """A daemon in ``host``'s namespace: ready line waited for, SIGTERM and exit 0 at the
    end."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            host.command(args), stdout=subprocess.PIPE, stderr=log, cwd=log_path.parent
        )
    daemon = Daemon(process, log_path, control)
    try:
        wait_for_line(process, b"ready", 60.0, context=lambda: daemon.log()[-3000:])
        yield daemon
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == 0, f"exited {process.returncode}:\n{daemon.log()[-3000:]}"
