"""Run sanstack daemons and external tools from tests: free ports, bounded waits, no leaks."""

from __future__ import annotations

import contextlib
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """The tool's path; a missing tool fails the run in CI and skips the test elsewhere."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        message = f"{name} is not installed (scripts/install-deps installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses right now, for a daemon to listen on.

    It is taken below the kernel's ephemeral range, at random: between this check and the
    daemon's bind, no outgoing connection can be given it as its source port (one from
    the ephemeral range could), and another test's pick is unlikely to be the same.
    """
    low = _ephemeral_range_start()
    for _ in range(100):
        port = _PICK.randrange(FIRST_PICKED_PORT, low) if low > FIRST_PICKED_PORT else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            picked: int = sock.getsockname()[1]
            return picked
    pytest.fail("no free TCP port found on 127.0.0.1")


FIRST_PICKED_PORT = 10000
_PICK = random.SystemRandom()


def _ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0  # unknown: let the kernel choose


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    log_path: Path
    control: Path
    ready_line: bytes = b""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def sanstack_command() -> list[str]:
    return [sys.executable, "-m", "sanstack.cli.main"]


@contextmanager
def running_config_target(
    tmp_path: Path, config: Path, *, ready_timeout: float = 60.0, stop_timeout: float = 30.0
) -> Iterator[Daemon]:
    """``sanstack target serve --config FILE``, stopped with SIGTERM afterwards."""
    args = [*sanstack_command(), "target", "serve", "--config", str(config)]
    with _daemon(tmp_path, args, "config", ready_timeout, stop_timeout) as daemon:
        yield daemon


@contextmanager
def running_target(
    tmp_path: Path,
    iqn: str,
    portals: Sequence[int],
    luns: Sequence[str],
    *,
    extra: Sequence[str] = (),
    ready_timeout: float = 60.0,
    stop_timeout: float = 30.0,
) -> Iterator[Daemon]:
    """Start ``sanstack target serve`` in the quick form; stop it with SIGTERM afterwards.

    The daemon must exit 0 on SIGTERM within ``stop_timeout``: a graceful shutdown is part
    of every test that uses it.
    """
    args = [*sanstack_command(), "target", "serve", "--iqn", iqn]
    for port in portals:
        args += ["--portal", f"127.0.0.1:{port}"]
    for lun in luns:
        args += ["--lun", lun]
    args += list(extra)
    with _daemon(tmp_path, args, str(portals[0]), ready_timeout, stop_timeout) as daemon:
        yield daemon


def host_run_command(
    name: str, portals: Sequence[int], nbd_port: int, extra: Sequence[str] = ()
) -> list[str]:
    """``sanstack host run`` in the quick form over ``portals`` of 127.0.0.1."""
    args = [*sanstack_command(), "host", "run", "--name", name, "--nbd", f"127.0.0.1:{nbd_port}"]
    for port in portals:
        args += ["--portal", f"127.0.0.1:{port}"]
    return [*args, *extra]


@contextmanager
def running_host(
    tmp_path: Path,
    name: str,
    portals: Sequence[int],
    nbd_port: int,
    *,
    extra: Sequence[str] = (),
    ready_timeout: float = 60.0,
    stop_timeout: float = 30.0,
) -> Iterator[Daemon]:
    """Start ``sanstack host run``; stop it with SIGTERM afterwards (exit 0 required).

    Its control socket and state directory are in ``tmp_path``, named after ``name``.
    """
    args = host_run_command(name, portals, nbd_port, extra)
    with _daemon(tmp_path, args, name, ready_timeout, stop_timeout, kind="host") as daemon:
        yield daemon


@contextmanager
def running_config_host(
    tmp_path: Path,
    config: Path,
    name: str,
    *,
    extra: Sequence[str] = (),
    ready_timeout: float = 60.0,
    stop_timeout: float = 30.0,
) -> Iterator[Daemon]:
    """``sanstack host run --config FILE``, as ``running_host``; its control socket and state
    directory are flags (in ``tmp_path``, named after ``name``), which override the file's."""
    args = [*sanstack_command(), "host", "run", "--config", str(config), *extra]
    with _daemon(tmp_path, args, name, ready_timeout, stop_timeout, kind="host") as daemon:
        yield daemon


@contextmanager
def _daemon(
    tmp_path: Path,
    args: list[str],
    tag: str,
    ready_timeout: float,
    stop_timeout: float,
    *,
    kind: str = "target",
) -> Iterator[Daemon]:
    log_path = tmp_path / f"{kind}-{tag}.log"
    control = tmp_path / f"control-{kind}-{tag}.sock"
    state_dir = tmp_path / f"state-{kind}-{tag}"
    args = [*args, "--control", str(control), "--state-dir", str(state_dir)]
    with log_path.open("w") as log_file:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log_file, cwd=tmp_path)
    daemon = Daemon(process, log_path, control)
    try:
        _wait_ready(daemon, ready_timeout)
        yield daemon
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
                pytest.fail(f"{kind} did not stop within {stop_timeout}s:\n{daemon.log()[-3000:]}")
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == 0, f"{kind} exited {process.returncode}:\n{daemon.log()[-3000:]}"
    assert "Traceback" not in daemon.log(), daemon.log()[-5000:]


def _wait_ready(daemon: Daemon, timeout: float) -> None:
    daemon.ready_line = wait_for_line(
        daemon.process, b"ready", timeout, context=lambda: daemon.log()[-3000:]
    )


def wait_for_line(
    process: subprocess.Popen[bytes],
    marker: bytes,
    timeout: float,
    *,
    context: Callable[[], str] = lambda: "",
) -> bytes:
    """Read ``process``'s stdout until ``marker`` appears; returns what was read.

    Fails the test if the process closes its stdout (exits) first, or after ``timeout``
    seconds; ``context`` adds to the message (its log, say).
    """
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    buffered = b""
    while marker not in buffered:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"{process.args!r} did not say {marker!r} within {timeout}s:\n{context()}")
        # Also look at the process now and then: a child it started may hold the pipe open.
        readable, _, _ = select.select([fd], [], [], min(left, 1.0))
        data = os.read(fd, 65536) if readable else None
        if data == b"" or (data is None and process.poll() is not None):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            pytest.fail(f"exited {process.returncode} before saying {marker!r}:\n{context()}")
        buffered += data or b""
    return buffered


def run_tool(
    args: Sequence[str], *, timeout: float = 300.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run an external tool with a bound; on failure show its output."""
    # errors="replace": iscsi-inq prints binary designators (the NAA) as raw bytes.
    result = subprocess.run(
        list(args), check=False, capture_output=True, text=True, errors="replace", timeout=timeout
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(args[:4])} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result
