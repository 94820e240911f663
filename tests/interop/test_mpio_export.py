"""`sanstack mpio export` with real processes: target, fault proxies, qemu-img over nbd://;
its control socket is a host's (``sanstack host status|maps|paths --control``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.processes import free_port, require_tool, run_tool, running_target
from tests.support.waits import wait_until

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:export"


def _sanstack(*args: str) -> list[str]:
    return [sys.executable, "-m", "sanstack.cli.main", *args]


def _wait_line(process: subprocess.Popen[str], prefix: str, timeout: float = 30) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if not line and process.poll() is not None:
            break
    pytest.fail(f"no {prefix!r} line from {process.args!r}")


@contextlib.contextmanager
def proxies(target_ports: list[int]) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    listen = [free_port() for _ in target_ports]
    args = _sanstack("proxy")
    for mine, theirs in zip(listen, target_ports, strict=True):
        args += ["--listen", f"127.0.0.1:{mine}", "--to", f"127.0.0.1:{theirs}"]
    process = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        _wait_line(process, f"proxy {len(target_ports)} ")  # printed once all listen
        yield process, listen
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def fault(process: subprocess.Popen[str], command: str) -> None:
    assert process.stdin is not None
    process.stdin.write(command + "\n")
    process.stdin.flush()


@contextlib.contextmanager
def export(tmp_path: Path, ports: list[int], *extra: str) -> Iterator[str]:
    nbd_port = free_port()
    control = tmp_path / "mpio.sock"
    args = _sanstack("mpio", "export", "--iqn", IQN, "--lun", "0")
    for port in ports:
        args += ["--portal", f"127.0.0.1:{port}"]
    args += ["--nbd", f"127.0.0.1:{nbd_port}", "--control", str(control), *extra]
    log = (tmp_path / "mpio.log").open("w")
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        _wait_line(process, "ready")
        yield f"nbd://127.0.0.1:{nbd_port}"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        log.close()
        text = (tmp_path / "mpio.log").read_text()
        assert "Traceback" not in text, text[-3000:]


def host_show(tmp_path: Path, what: str) -> Any:
    """``sanstack host status|maps|paths --json`` against the export's control socket."""
    result = subprocess.run(
        _sanstack("host", what, "--control", str(tmp_path / "mpio.sock"), "--json"),
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


def path_field(tmp_path: Path, field: str) -> list[Any]:
    """``field`` of every path of the one exported map, as ``host paths`` shows it."""
    return [path[field] for path in host_show(tmp_path, "paths")]


def queued(tmp_path: Path) -> int:
    (device,) = host_show(tmp_path, "maps")
    return int(device["queued"])


def test_host_commands_read_the_exports_control_socket(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with (
        running_target(tmp_path, IQN, ports, ["memory:1M", "memory:2M"]),
        export(tmp_path, ports),
    ):
        # A host with one map: LUN 0 alone (its filter keeps LUN 1 out), over both portals.
        (only,) = host_show(tmp_path, "maps")
        assert only["alias"] == f"{IQN}/0" and only["wwid"].startswith("naa.")
        assert only["paths"] == {"active": 2} and only["size_bytes"] == 1 << 20
        assert f"{IQN}/0" in only["exports"] and only["wwid"] in only["exports"]
        status = host_show(tmp_path, "status")
        assert status["initiator"] == "iqn.2026-11.org.sanstack:initiator"
        assert status["counts"] == {"sessions": 2, "sessions_up": 2, "maps": 1}
        assert [p["map"] for p in host_show(tmp_path, "paths")] == [f"{IQN}/0"] * 2
        table = subprocess.run(
            _sanstack("host", "maps", "--control", str(tmp_path / "mpio.sock")),
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        assert f"{IQN}/0" in table and "active=2" in table
        # The old command is gone: one way to see a map.
        gone = subprocess.run(
            _sanstack("mpio", "status"), capture_output=True, text=True, timeout=30, check=False
        )
        assert gone.returncode == 2 and "invalid choice" in gone.stderr


@pytest.mark.parametrize("cut", ["reset", "down"])
@pytest.mark.parametrize("victim", [1, 2])
def test_convert_while_a_path_is_cut_and_restored(tmp_path: Path, cut: str, victim: int) -> None:
    qemu_img = require_tool("qemu-img")
    source = tmp_path / "source.img"
    source.write_bytes(os.urandom(256 * 1024 * 1024))
    ports = [free_port(), free_port()]
    with (
        running_target(tmp_path, IQN, ports, [f"{tmp_path / 'lun.img'}:256M"]),
        proxies(ports) as (proxy, listen),
        export(tmp_path, listen) as url,
    ):
        copy = subprocess.Popen(
            [qemu_img, "convert", "-n", "-f", "raw", "-O", "raw", str(source), url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_until(lambda: sum(path_field(tmp_path, "completed")) >= 64, 60, "the copy runs")
        fault(proxy, f"{cut} {victim}")
        wait_until(
            lambda: path_field(tmp_path, "failures")[victim - 1] >= 1, 30, f"path {victim} failed"
        )
        if cut == "down":
            fault(proxy, f"up {victim}")
        _out, err = copy.communicate(timeout=240)
        assert copy.returncode == 0, err
        run_tool([qemu_img, "compare", "-f", "raw", "-F", "raw", str(source), url])


def test_all_paths_down_queues_for_the_bound_then_fails(tmp_path: Path) -> None:
    qemu_io = require_tool("qemu-io")
    ports = [free_port(), free_port()]
    with (
        running_target(tmp_path, IQN, ports, ["memory:16M"]),
        proxies(ports) as (proxy, listen),
        export(tmp_path, listen, "--no-path-queue", "10") as url,
    ):
        run_tool([qemu_io, "-f", "raw", "-c", "write -P 0x5a 0 64k", url])
        fault(proxy, "down 1")
        fault(proxy, "down 2")
        wait_until(
            lambda: path_field(tmp_path, "state") == ["failed", "failed"], 30, "both paths failed"
        )
        # Back within 10 s: the read waits and then succeeds.
        reader = subprocess.Popen(
            [qemu_io, "-f", "raw", "-c", "read -P 0x5a 0 64k", url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_until(lambda: queued(tmp_path) >= 1, 8, "the read waits for a path")
        assert reader.poll() is None
        fault(proxy, "up 2")
        out, err = reader.communicate(timeout=60)
        assert reader.returncode == 0 and "Pattern verification failed" not in out, out + err
        # Down past 10 s: an error, and the export and the process stay alive.
        fault(proxy, "down 2")
        started = time.monotonic()
        failed = run_tool([qemu_io, "-f", "raw", "-c", "read 0 4k", url], check=False, timeout=60)
        waited = time.monotonic() - started
        assert "error" in (failed.stdout + failed.stderr).lower() or failed.returncode != 0
        assert waited >= 9
        fault(proxy, "up 1")
        fault(proxy, "up 2")
        wait_until(lambda: "active" in path_field(tmp_path, "state"), 30, "a path back")
        again = run_tool([qemu_io, "-f", "raw", "-c", "read -P 0x5a 0 64k", url])
        assert "Pattern verification failed" not in again.stdout
