"""``sanstack proxy`` as a process in front of a target's portals, driven line by line on its
stdin (``reset N``, ``down N``, ``up N``, ``blackhole N``, ``restore N``, ``status``): a test
flips a fault and knows it holds once ``command`` returns. Every test that injects faults
this way shares it."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.support.processes import free_port, sanstack_command


class FaultProxies:
    """The proxies of one ``sanstack proxy`` process; portal N (from 1) listens on
    ``listen[N - 1]``."""

    def __init__(self, process: subprocess.Popen[bytes], listen: list[int]) -> None:
        self.process = process
        self.listen = listen
        self._buffer = b""

    def line(self, timeout: float = 30.0) -> str:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"sanstack proxy said nothing within {timeout}s")
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                data = os.read(fd, 65536)
                if not data:
                    pytest.fail(f"sanstack proxy exited {self.process.wait(10)}")
                self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def command(self, text: str) -> str:
        """Apply one fault and return the proxy's answer: the fault holds once this returns."""
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()
        answer = self.line()
        assert not answer.startswith("error"), f"{text}: {answer}"
        return answer

    def bytes_to_target(self) -> list[int]:
        """Bytes each proxy has forwarded to the target so far."""
        return [int(n) for n in re.findall(r"to_target=(\d+)", self.command("status"))]


@contextmanager
def fault_proxies(directory: Path, ports: Sequence[int]) -> Iterator[FaultProxies]:
    """One proxy in front of each of ``ports`` on 127.0.0.1; stopped (exit 0) at the end."""
    listen = [free_port() for _ in ports]
    args = [*sanstack_command(), "proxy"]
    for mine, theirs in zip(listen, ports, strict=True):
        args += ["--listen", f"127.0.0.1:{mine}", "--to", f"127.0.0.1:{theirs}"]
    log_path = directory / "proxy.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    proxies = FaultProxies(process, listen)
    try:
        while not proxies.line().startswith("commands:"):  # said once every proxy listens
            pass
        yield proxies
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
    assert process.returncode == 0, log_path.read_text()[-3000:]
