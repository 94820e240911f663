"""The demo's supervisor with small Python processes: a stage is up once each says its
ready line; one that exits first or stays silent fails the start, naming it and its log; one
that dies later is reported and can be started again; stop goes stage by stage from the
last, SIGTERM then SIGKILL after the bound."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest
from tests.support.waits import until

from sanstack.demo.plan import ProcessSpec
from sanstack.demo.supervisor import DemoFailed, Supervisor

SERVE = "import signal,sys,time; print('ready', flush=True); time.sleep(60)"
STUBBORN = (
    "import signal,sys,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def spec(tmp_path: Path, name: str, code: str, stage: int = 0, **kw: float) -> ProcessSpec:
    log = tmp_path / f"{name}.log"
    return ProcessSpec(name, (sys.executable, "-c", code), "ready", log, stage, **kw)


def test_stages_start_in_order_and_stop_in_reverse(tmp_path: Path) -> None:
    said: list[str] = []
    ended: list[tuple[str, int]] = []

    async def run() -> None:
        table = [
            spec(tmp_path, "first", SERVE, 0),
            spec(tmp_path, "second", SERVE, 1),
            spec(tmp_path, "stubborn", STUBBORN, 1, stop_within=0.5),
            spec(tmp_path, "extra", SERVE.replace("'ready'", "'ready at http://x/'"), 3),
        ]
        supervisor = Supervisor(table, lambda s, _pid, code: ended.append((s.name, code)))
        for stage in supervisor.stages():
            await supervisor.start_stage(stage, said.append)
        assert set(supervisor.pids()) == {"first", "second", "stubborn", "extra"}
        # A process after the loads' stage is shown with its ready line (a dashboard's URL).
        assert supervisor.others() == [(table[3], supervisor.pids()["extra"], "ready at http://x/")]
        # One dies on its own: reported, and started again on request.
        supervisor.children["second"].process.send_signal(signal.SIGKILL)
        await until(lambda: bool(ended), 10, "the death of 'second' reported")
        (again,) = await supervisor.restart_ended()
        assert again.spec.name == "second" and again.pid == supervisor.pids()["second"]
        started = time.monotonic()
        await supervisor.stop(said.append)
        assert time.monotonic() - started < 10
        assert all(c.process.returncode is not None for c in supervisor.children.values())

    asyncio.run(run())
    assert ended == [("second", -signal.SIGKILL)]  # the stop itself is not reported
    first_up = said.index("first is up (1/1 of this stage)")
    assert first_up < next(i for i, s in enumerate(said) if s.startswith("started second"))
    stops = [s for s in said if s.startswith("stopping")]
    assert stops == ["stopping extra", "stopping second, stubborn", "stopping first"]
    assert any("stubborn" in s and "killed" in s for s in said)
    assert "ready" in (tmp_path / "first.log").read_text()


def test_a_process_that_exits_or_stays_silent_fails_the_start(tmp_path: Path) -> None:
    async def start(table: list[ProcessSpec]) -> str:
        supervisor = Supervisor(table, lambda *_: None)
        try:
            with pytest.raises(DemoFailed) as failed:
                await supervisor.start_stage(0, lambda _text: None)
        finally:
            await supervisor.stop(lambda _text: None)
        return str(failed.value)

    crash = "import sys; print('bad config: no such file', file=sys.stderr); sys.exit(2)"
    message = asyncio.run(start([spec(tmp_path, "crash", crash)]))
    assert message.startswith("demo: crash exited 2 before it was ready")
    assert str(tmp_path / "crash.log") in message and "bad config: no such file" in message
    silent = "import time; time.sleep(60)"
    message = asyncio.run(start([spec(tmp_path, "silent", silent, ready_within=0.5)]))
    assert "demo: silent (pid" in message and "was not ready within 0.5 s" in message
