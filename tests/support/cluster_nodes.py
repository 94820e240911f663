"""Failover cluster nodes as real processes (``sanstack cluster node``) for interop tests: a
config file written from a few parameters, nodes started together and waited for (their
``ready`` line), stopped (SIGTERM, exit 0 required), killed (``kill -9``), frozen and thawed
(``kill -STOP``/``-CONT``), and the cluster's CLI asked for status and events as JSON through
a node's control socket. ``wrap`` runs a node inside something, its network namespace
(``tests/support/cluster_netns.py``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.support.processes import free_port, run_tool, sanstack_command, wait_for_line
from tests.support.waits import wait_until

REPO = Path(__file__).resolve().parents[2]


def free_udp_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (``free_port`` checks TCP)."""
    import socket

    for _ in range(100):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail("no free UDP port found on 127.0.0.1")


@dataclass(frozen=True)
class GroupDef:
    name: str
    disks: Sequence[str]
    export: tuple[str, int]
    preferred: Sequence[str]
    volumes: Sequence[str] = ()
    failback: str = "never"
    floating: bool = False


@dataclass(frozen=True)
class Timings:
    heartbeat_interval: float = 0.2
    missed_heartbeats: int = 5
    arbitration_interval: float = 1.0
    pending_timeout: float = 10.0
    quorum_loss_stop: float = 5.0
    storage_loss_stop: float = 10.0


def write_config(
    directory: Path,
    *,
    cluster: str,
    nodes: Sequence[str],
    portals: Sequence[int],
    iqn: str,
    disks: dict[str, int],
    groups: Sequence[GroupDef],
    timings: Timings = Timings(),
    quorum: str = "node-majority",
    witness: str | None = None,
    addresses: Mapping[str, str] | None = None,
    portal_host: str = "127.0.0.1",
) -> Path:
    """The cluster's TOML file in ``directory``: each node's UDP address a free port (on
    ``addresses[node]``, 127.0.0.1 by default), control socket and state directory inside
    ``directory``; the portals on ``portal_host``; disks by ``IQN/LUN``."""
    lines = ["[cluster]", f'name = "{cluster}"', f'quorum = "{quorum}"']
    if witness is not None:
        lines.append(f'witness = "{witness}"')
    lines += ["", "[timings]"]
    for key, value in vars(timings).items():
        lines.append(f"{key} = {value}")
    portal_list = ", ".join(f'"{portal_host}:{p}"' for p in portals)
    lines += ["", "[storage]", f"portals = [{portal_list}]", f'targets = ["{iqn}"]']
    for name in nodes:
        lines += [
            "",
            "[[node]]",
            f'name = "{name}"',
            f'address = "{(addresses or {}).get(name, "127.0.0.1")}:{free_udp_port()}"',
            f'control = "{directory / (name + ".sock")}"',
            f'state_dir = "{directory / ("state-" + name)}"',
        ]
    lines += ["", "[disks]"]
    lines += [f'{disk} = "{iqn}/{lun}"' for disk, lun in disks.items()]
    for group in groups:
        failback = group.failback if group.failback[0].isdigit() else f'"{group.failback}"'
        lines += [
            "",
            "[[group]]",
            f'name = "{group.name}"',
            f"disks = {json.dumps(list(group.disks))}",
            f"volumes = {json.dumps(list(group.volumes))}",
            f'export = "{group.export[0]}:{group.export[1]}"',
            f"preferred_owners = {json.dumps(list(group.preferred))}",
            f"failback = {failback}",
            f"floating = {'true' if group.floating else 'false'}",
        ]
    path = directory / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class NodeProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    control: Path
    killed: bool = False
    ready_line: bytes = b""  # what it printed up to its ready line

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class ClusterNodes:
    """The nodes of one config; ``start``/``stop``/``kill`` by name, CLI through any."""

    directory: Path
    config: Path
    names: Sequence[str]
    processes: dict[str, NodeProcess] = field(default_factory=dict)
    runs: int = 0
    wrap: Callable[[str], list[str]] | None = None  # node name -> a prefix to run it in

    def control(self, name: str) -> Path:
        return self.directory / f"{name}.sock"

    def start(self, *names: str, ready_timeout: float = 60.0) -> None:
        """Start ``names`` (every node when none) at once, then wait for each one's ready
        line."""
        started = []
        for name in names or self.names:
            assert name not in self.processes or self.processes[name].process.poll() is not None
            self.runs += 1
            log_path = self.directory / f"{name}-{self.runs}.log"
            args = [
                *sanstack_command(),
                "--log-level",
                "info",
                "cluster",
                "node",
                "--config",
                str(self.config),
                "--name",
                name,
            ]
            if self.wrap is not None:
                args = [*self.wrap(name), *args]
            with log_path.open("w") as log:
                process = subprocess.Popen(
                    args, stdout=subprocess.PIPE, stderr=log, cwd=self.directory
                )
            node = NodeProcess(name, process, log_path, self.control(name))
            self.processes[name] = node
            started.append(node)
        for node in started:
            node.ready_line = wait_for_line(node.process, b"ready", ready_timeout, context=node.log)

    def stop(self, name: str, timeout: float = 30.0) -> None:
        """SIGTERM; the node must offline its groups and exit 0 within ``timeout``."""
        node = self.processes[name]
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
            try:
                node.process.wait(timeout)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(10)
                pytest.fail(f"node {name} did not stop within {timeout}s:\n{node.log()[-4000:]}")
        if node.process.stdout is not None:
            node.process.stdout.close()
        assert node.process.returncode == 0, f"{name} exited {node.process.returncode}"
        assert "Traceback" not in node.log(), node.log()[-5000:]

    def kill(self, name: str) -> float:
        """``kill -9``; the time it was sent (``time.time()``)."""
        node = self.processes[name]
        when = time.time()
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(10)
        node.killed = True
        if node.process.stdout is not None:
            node.process.stdout.close()
        return when

    def freeze(self, name: str) -> float:
        """``kill -STOP``: the node is paused, not dead; the time it was sent."""
        when = time.time()
        self.processes[name].process.send_signal(signal.SIGSTOP)
        return when

    def thaw(self, name: str) -> float:
        """``kill -CONT``; the time it was sent."""
        when = time.time()
        self.processes[name].process.send_signal(signal.SIGCONT)
        return when

    def cli(self, via: str, *args: str) -> Any:
        """``sanstack cluster ARGS --json --control <via's socket>``, decoded."""
        command = [*sanstack_command(), "cluster", *args, "--json", "--control"]
        result = run_tool([*command, str(self.control(via))], timeout=60)
        return json.loads(result.stdout)

    def status(self, via: str) -> Any:
        return self.cli(via, "status")

    def events(self, via: str, since: int = 0) -> list[dict[str, Any]]:
        answer = self.cli(via, "events", "--since", str(since))
        events: list[dict[str, Any]] = answer["events"]
        return events

    def wait_status(self, via: str, check: Any, within: float, what: str) -> Any:
        """Poll ``status`` through ``via`` until ``check(status)`` holds (bounded)."""
        seen: list[Any] = []

        def holds() -> bool:
            seen[:] = [self.status(via)]
            return bool(check(seen[0]))

        try:
            wait_until(holds, within, what)
        except pytest.fail.Exception as failed:
            pytest.fail(f"{failed}; last status: {json.dumps(seen[-1:], indent=1)}")
        return seen[0]

    def settle(self, via: str, owners: Mapping[str, str], within: float) -> Any:
        """Every group online, then each of ``owners`` (group -> node) moved there if it is
        elsewhere: a node that formed a view of its own first may have taken groups that
        are not its (failback never keeps them). Returns the status before the moves."""
        wanted = set(owners.values())

        def ready(s: Any) -> bool:
            # A move needs its target node alive and a member of ``via``'s view, not just
            # started: the first node forms a view alone and may run every group before the
            # others join (the move would be refused: "not a live member").
            alive = {n["name"] for n in s["nodes"] if n["state"] == "alive" and n["member"]}
            return wanted <= alive and all(group["state"] == "online" for group in s["groups"])

        status = self.wait_status(via, ready, within, "every group online, the owners alive")
        for group, owner in owners.items():
            if group_of(status, group)["owner"] != owner:
                self.cli(via, "move", group, owner, "--wait", str(within))
        return status

    def close(self) -> None:
        problems = []
        for name, node in self.processes.items():
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)  # a frozen node must hear SIGTERM
                try:
                    self.stop(name)
                except (AssertionError, pytest.fail.Exception) as exc:
                    problems.append(str(exc))
        assert not problems, problems


@contextmanager
def running_cluster(
    directory: Path,
    config: Path,
    names: Sequence[str],
    wrap: Callable[[str], list[str]] | None = None,
) -> Iterator[ClusterNodes]:
    nodes = ClusterNodes(directory, config, names, wrap=wrap)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.close()


def group_of(status: Any, name: str) -> dict[str, Any]:
    return next(g for g in status["groups"] if g["name"] == name)


def node_of(status: Any, name: str) -> dict[str, Any]:
    return next(n for n in status["nodes"] if n["name"] == name)


def writer_command(
    host: str, port: int, export: str, log: Path, stop: Path, *, extra: Sequence[str] = ()
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.support.cluster_writer",
        host,
        str(port),
        export,
        str(log),
        str(stop),
        *extra,
    ]


@contextmanager
def running_writer(
    directory: Path,
    tag: str,
    export: tuple[str, int],
    name: str = "",
    *,
    extra: Sequence[str] = (),
    wrap: Sequence[str] = (),
) -> Iterator[WriterLog]:
    """The sequence writer (``cluster_writer``) against ``export``, with ``extra`` options,
    run inside ``wrap`` (a namespace, say); stopped at the end."""
    log = directory / f"writer-{tag}.log"
    stop = directory / f"writer-{tag}.stop"
    log.write_text("")
    command = [*wrap, *writer_command(export[0], export[1], name, log, stop, extra=extra)]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE)
    writer = WriterLog(log, stop, process)
    try:
        yield writer
    finally:
        writer.stop()


@dataclass
class WriterLog:
    path: Path
    stop_file: Path
    process: subprocess.Popen[bytes]

    def lines(self) -> list[list[str]]:
        return [line.split() for line in self.path.read_text().splitlines() if line.strip()]

    def acked(self) -> list[tuple[int, int, float]]:
        """(write number, offset, time) of every acknowledged write."""
        return [(int(p[1]), int(p[2]), float(p[3])) for p in self.lines() if p[0] == "A"]

    def errors(self) -> list[tuple[int, int]]:
        """(write number, NBD errno) of every write the server answered with an error."""
        return [(int(p[1]), int(p[2])) for p in self.lines() if p[0] == "E"]

    def wait_acked(self, count: int, within: float, what: str) -> None:
        wait_until(lambda: len(self.acked()) >= count, within, what)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.stop_file.touch()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        stderr = self.process.stderr.read().decode() if self.process.stderr else ""
        if self.process.stderr is not None:
            self.process.stderr.close()
        assert self.process.returncode == 0, f"writer exited {self.process.returncode}: {stderr}"
