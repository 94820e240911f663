"""``sanstack demo --dir DIR`` as a process, as a newcomer runs it (issue 12, item 1): it
brings up a target, three cluster nodes with a witness and two groups, and a client load
through each group's export; ``kill -9`` of a group's owner fails the group over within
20 s and its load goes on after a reconnect; SIGUSR1 starts the dead node again; SIGINT
stops everything and exits 0; a second run in the same directory finds the data of the
first."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.cluster_volumes import known_pattern, write_range
from tests.support.nbd_socket import NBDSocketClient
from tests.support.processes import run_tool, sanstack_command, wait_for_line
from tests.support.waits import wait_until

pytestmark = pytest.mark.interop

READY_WITHIN = 180.0  # a format, three nodes, quorum and two groups, on a busy machine
FAILOVER_BOUND = 20.0
STOP_WITHIN = 60.0
MARKER_OFFSET = 64 << 20  # beyond the first MiB the load writes
MARKER = known_pattern(0xDE30, 64 << 10)


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    directory: Path
    stdout: bytes

    @property
    def run(self) -> dict[str, Any]:
        run: dict[str, Any] = json.loads((self.directory / "demo.json").read_text())
        return run

    def pid(self, name: str) -> int:
        return int(next(p["pid"] for p in self.run["processes"] if p["name"] == name))

    def control(self, node: str) -> Path:
        return Path(self.run["nodes"][node])

    def export(self, group: str) -> tuple[str, int]:
        host, port = self.run["exports"][group].rsplit(":", 1)
        return host, int(port)

    def status(self, via: str) -> Any:
        command = [*sanstack_command(), "cluster", "status", "--json", "--control"]
        return json.loads(run_tool([*command, str(self.control(via))], timeout=60).stdout)

    def load_log(self, group: str) -> str:
        return (self.directory / "logs" / f"load-{group}.log").read_text(errors="replace")

    def writes(self, group: str) -> int:
        counts = re.findall(r"load \S+: (\d+) writes", self.load_log(group))
        return int(counts[-1]) if counts else 0

    def writes_since_reconnect(self, group: str) -> int:
        """Writes acknowledged since the load last lost its connection (by its reports)."""
        before, _lost, after = self.load_log(group).rpartition("connection lost")
        counts_before = re.findall(r"load \S+: (\d+) writes", before)
        counts_after = re.findall(r"load \S+: (\d+) writes", after)
        if not counts_after:
            return 0
        return int(counts_after[-1]) - (int(counts_before[-1]) if counts_before else 0)

    def logs(self) -> str:
        return "\n".join(
            f"== {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted((self.directory / "logs").glob("*.log"))
        )

    def stop(self) -> bytes:
        """SIGINT: every process stopped, exit 0, within STOP_WITHIN; the rest of stdout."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            pytest.fail(f"the demo did not stop within {STOP_WITHIN}s:\n{self.logs()}")
        assert self.process.stdout is not None
        rest = self.process.stdout.read()
        assert self.process.returncode == 0, self.logs()
        return rest


@contextmanager
def running_demo(directory: Path) -> Iterator[Demo]:
    command = [*sanstack_command(), "demo", "--dir", str(directory)]
    stderr = directory.parent / f"{directory.name}-stderr.log"
    with stderr.open("ab") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err)
    try:
        said = wait_for_line(
            process,
            b"ready: Ctrl-C",
            READY_WITHIN,
            context=lambda: stderr.read_text()[-5000:],
        )
        yield Demo(process, directory, said)
    finally:
        if process.poll() is None:  # the test failed midway: no process may outlive it
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_WITHIN)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def group_of(status: Any, name: str) -> dict[str, Any]:
    return next(g for g in status["groups"] if g["name"] == name)


def read_range(export: tuple[str, int], name: str, offset: int, length: int) -> bytes:
    async def read() -> bytes:
        client = await NBDSocketClient.connect(export[0], export[1], name)
        try:
            return await client.read(offset, length)
        finally:
            await client.close()

    return asyncio.run(read())


def wait_for_writes(demo: Demo, group: str, more: int, what: str) -> None:
    """Until ``group``'s load reports ``more`` writes than it has now (it reports every 5 s)."""
    before = demo.writes(group)
    wait_until(lambda: demo.writes(group) >= before + more, 30, f"{group}'s {what}")


def snapshot_cli(demo: Demo, via: str, *args: str) -> Any:
    command = [*sanstack_command(), "snapshot", *args, "--json", "--cluster-control"]
    return json.loads(run_tool([*command, str(demo.control(via))], timeout=60).stdout)


def test_the_demo_fails_over_stops_cleanly_and_keeps_its_data(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    with running_demo(directory) as demo:
        text = demo.stdout.decode()
        assert "new data" in text and "kill -9" in text and "cluster move" in text
        # The dashboard is up and printed its URL; its view has the demo's cluster in it.
        found = re.search(r"dashboard (http://[0-9.:]+/)", text)
        assert found is not None, text
        with urllib.request.urlopen(found.group(1) + "api/view", timeout=30) as answer:
            view = json.dumps(json.load(answer))
        assert all(f'"{name}"' in view for name in ("n1", "n2", "n3", "g1", "g2")), view[:2000]
        status = demo.status("n3")
        assert [n["name"] for n in status["nodes"] if n["member"]] == ["n1", "n2", "n3"]
        quorum = status["quorum"]
        assert quorum["has"] and quorum["votes"] == 4 and quorum["witness"] == "witness"
        assert quorum["witness_owner"] in ("n1", "n2", "n3")
        assert all(group_of(status, g)["state"] == "online" for g in ("g1", "g2"))
        for group in ("g1", "g2"):
            wait_for_writes(demo, group, 10, "load")

        # Run 1 leaves a marker on g1's disk and a snapshot on g2's volume for run 2.
        write_range(demo.export("g1"), "disk1", MARKER_OFFSET, MARKER)
        snapshot_cli(demo, "n3", "create", "g2/vol1", "run1")

        owner = group_of(status, "g1")["owner"]
        survivor = next(n for n in ("n1", "n2", "n3") if n != owner)
        killed = demo.pid(f"node {owner}")
        os.kill(killed, signal.SIGKILL)
        wait_until(
            lambda: (
                group_of(demo.status(survivor), "g1")["state"] == "online"
                and group_of(demo.status(survivor), "g1")["owner"] not in (None, owner)
            ),
            FAILOVER_BOUND,
            "g1 online on a survivor",
        )
        wait_until(lambda: "reconnected" in demo.load_log("g1"), 30, "g1's load to reconnect")
        wait_until(
            lambda: demo.writes_since_reconnect("g1") >= 10, 30, "g1's load after the failover"
        )
        assert not re.search(r"[1-9]\d* mismatches", demo.load_log("g1"))
        said = wait_for_line(demo.process, b"starts it again", 30).decode()
        assert f"node {owner} (pid {killed}) was killed by signal 9" in said
        # SIGUSR1 starts the dead node again; it rejoins the cluster.
        demo.process.send_signal(signal.SIGUSR1)
        wait_for_line(demo.process, f"started node {owner} again".encode(), 30)
        wait_until(
            lambda: all(n["member"] for n in demo.status(survivor)["nodes"]),
            60,
            f"{owner} back in the cluster",
        )
        demo.stop()
        assert "Traceback" not in demo.logs()

    with running_demo(directory) as demo:
        assert "data of an earlier run" in demo.stdout.decode()
        assert read_range(demo.export("g1"), "disk1", MARKER_OFFSET, len(MARKER)) == MARKER
        names = [s["name"] for s in snapshot_cli(demo, "n1", "list", "g2/vol1")]
        assert "run1" in names
        demo.stop()
        assert "Traceback" not in demo.logs()
