"""The demo's small process supervisor: starts a stage of ``ProcessSpec``s at once, waits
(bounded) for each one's ready line, notices a process that ends on its own, and stops
everything stage by stage in reverse order: SIGTERM, a bounded wait, then SIGKILL.

Each child runs in a session of its own, so a Ctrl-C at the terminal reaches only the demo,
which stops the children in order (nodes before the target they release their disks on);
each is also asked to die (PR_SET_PDEATHSIG, SIGTERM) if the demo itself is killed. Its
stdout goes through a pipe here, copied line by line to its log (where its stderr goes).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

from sanstack.demo.plan import LOAD_STAGE, ProcessSpec
from sanstack.edge.tasks import wait_ended
from sanstack.errors import SanstackError

PR_SET_PDEATHSIG = 1
KILL_WAIT = 5.0  # after SIGKILL, for the kernel to reap it
LINE_LIMIT = 1 << 16


class DemoFailed(SanstackError):
    """A process of the demo did not come up; the message says which and where its log is."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    spec: ProcessSpec
    process: asyncio.subprocess.Process
    log: IO[bytes]
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ready_line: str = ""
    starting: bool = False  # start_stage waits for its ready line
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    """The demo's processes. ``on_exit(spec, pid, returncode)`` hears of every one that ends
    while the demo is neither starting (``start_stage`` reports those) nor stopping it."""

    def __init__(
        self, table: Sequence[ProcessSpec], on_exit: Callable[[ProcessSpec, int, int], None]
    ) -> None:
        self.table = list(table)
        self.children: dict[str, Child] = {}
        self._on_exit = on_exit
        self._stopping = False

    def pids(self) -> dict[str, int]:
        return {name: child.pid for name, child in self.children.items()}

    def others(self) -> list[tuple[ProcessSpec, int, str]]:
        """(spec, pid, its ready line) of each process after the loads' stage."""
        return [
            (c.spec, c.pid, c.ready_line)
            for c in self.children.values()
            if c.spec.stage > LOAD_STAGE
        ]

    def stages(self) -> list[int]:
        return sorted({spec.stage for spec in self.table})

    async def start_stage(self, stage: int, say: Callable[[str], None]) -> None:
        """Start every process of ``stage`` at once; return when each has said it is ready.
        ``DemoFailed`` when one ends first or stays silent past its ``ready_within``."""
        specs = [spec for spec in self.table if spec.stage == stage]
        started = [await self._spawn(spec, starting=True) for spec in specs]
        for child in started:
            say(f"started {child.spec.name} (pid {child.pid})")
        pending = list(started)
        begun = time.monotonic()
        while pending:
            child = pending[0]
            left = child.spec.ready_within - (time.monotonic() - begun)
            ready = asyncio.ensure_future(child.ready.wait())
            ended = asyncio.ensure_future(child.ended.wait())
            try:
                await asyncio.wait(
                    {ready, ended}, timeout=max(left, 0.0), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in (ready, ended):
                    waiter.cancel()
                await asyncio.gather(ready, ended, return_exceptions=True)
            if child.ready.is_set():
                child.starting = False
                pending.pop(0)
                up = len(started) - len(pending)
                say(f"{child.spec.name} is up ({up}/{len(started)} of this stage)")
                continue
            if child.ended.is_set():
                raise DemoFailed(
                    f"demo: {child.spec.name} exited {child.process.returncode} before it was "
                    f"ready; its log: {child.spec.log}{_last_line(child)}"
                )
            raise DemoFailed(
                f"demo: {child.spec.name} (pid {child.pid}) was not ready within "
                f"{child.spec.ready_within:g} s; its log: {child.spec.log}{_last_line(child)}"
            )

    async def restart_ended(self) -> list[Child]:
        """Start again every process that has ended (without waiting for its ready line)."""
        again = []
        for name, child in list(self.children.items()):
            if child.process.returncode is None:
                continue
            await wait_ended(child.tasks, f"tasks of {name}")  # they end with the process
            child.log.close()
            again.append(await self._spawn(child.spec))
        return again

    async def _spawn(self, spec: ProcessSpec, *, starting: bool = False) -> Child:
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        log = spec.log.open("ab", buffering=0)
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(spec.argv)}\n".encode())
        try:
            process = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                limit=LINE_LIMIT,
            )
        except OSError as exc:
            log.close()
            raise DemoFailed(f"demo: cannot start {spec.name}: {exc.strerror or exc}") from None
        child = Child(spec, process, log, starting=starting)
        child.tasks = [
            asyncio.create_task(self._copy_stdout(child), name=f"{spec.name} stdout"),
            asyncio.create_task(self._watch(child), name=f"{spec.name} exit"),
        ]
        self.children[spec.name] = child
        return child

    async def _copy_stdout(self, child: Child) -> None:
        assert child.process.stdout is not None
        while True:
            try:
                line = await child.process.stdout.readline()
            except ValueError:  # a line over LINE_LIMIT: keep what there is of it
                line = await child.process.stdout.read(LINE_LIMIT)
            if not line:
                return
            child.log.write(line)
            text = line.decode(errors="replace").rstrip()
            if not child.ready.is_set() and text.startswith(child.spec.ready):
                child.ready_line = text
                child.ready.set()

    async def _watch(self, child: Child) -> None:
        returncode = await child.process.wait()
        child.ended.set()
        if not child.starting and not self._stopping:  # a failed start says so itself
            self._on_exit(child.spec, child.pid, returncode)

    async def stop(self, say: Callable[[str], None]) -> None:
        """Stop every running process, stage by stage from the last, each bounded."""
        self._stopping = True
        for stage in reversed(self.stages()):
            children = [c for c in self.children.values() if c.spec.stage == stage]
            if children:
                say(f"stopping {', '.join(c.spec.name for c in children)}")
                await asyncio.gather(*(self._stop_one(child, say) for child in children))
        for child in self.children.values():
            _done, running = await asyncio.wait(child.tasks, timeout=KILL_WAIT)
            for task in running:
                task.cancel()
            await wait_ended(running, f"tasks of {child.spec.name}")
            child.log.close()

    def hurry(self) -> None:
        """Kill every process still running now (a second Ctrl-C)."""
        self._stopping = True
        for child in self.children.values():
            if child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()

    async def _stop_one(self, child: Child, say: Callable[[str], None]) -> None:
        if child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.process.wait(), child.spec.stop_within)
                return
            except TimeoutError:
                say(
                    f"{child.spec.name} (pid {child.pid}) did not stop within "
                    f"{child.spec.stop_within:g} s: killed"
                )
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.process.wait(), KILL_WAIT)


def _last_line(child: Child) -> str:
    """The log's last line, which often says why."""
    try:
        with child.spec.log.open("rb") as log:
            log.seek(max(0, os.fstat(log.fileno()).st_size - 4096))
            lines = log.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f"\n  {lines[-1]}" if lines else ""
