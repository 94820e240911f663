"""``sanstack demo``: prepare the directory, start the processes of ``plan.process_table``
stage by stage under the supervisor, wait for the cluster, say what runs where, and stop
everything on SIGINT, SIGTERM or SIGHUP (a second one kills what is left at once). SIGUSR1 starts
again every process that has ended (a node killed to see a failover, say).

A second run in the same directory reuses everything: the LUN files (the snapshot volume is
formatted only by the first run, under a temporary name renamed when done), the nodes'
state (ISIDs, keys, event logs), the target's reservations and the ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sanstack.control.client import ControlError, call, socket_in_use
from sanstack.demo import plan
from sanstack.demo.ports import choose_ports, save_ports, saved_ports
from sanstack.demo.supervisor import DemoFailed, Supervisor
from sanstack.edge.state_file import write_atomically
from sanstack.errors import ConfigError
from sanstack.snapshot.model import Progress

log = logging.getLogger("sanstack")

CLUSTER_WITHIN = 90.0  # for quorum and both groups online once the nodes are up
CLUSTER_POLL = 0.3
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes, with its NUL
# SIGHUP too: a terminal that closes stops the demo as cleanly as Ctrl-C does.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Reporter:
    """Where the demo tells a person how it goes: ``say`` a state (the shared progress line),
    ``chunks`` of a format, ``finish`` the line; ``out`` prints on stdout."""

    def __init__(
        self,
        say: Callable[[str], None],
        chunks: Callable[[Progress], None],
        finish: Callable[[], None],
    ) -> None:
        self._say = say
        self._chunks = chunks
        self._finish = finish

    # A terminal that went away (EIO, EPIPE) must not stop the demo from stopping cleanly.
    def say(self, text: str) -> None:
        with contextlib.suppress(OSError):
            self._say(text)

    def chunks(self, progress: Progress) -> None:
        with contextlib.suppress(OSError):
            self._chunks(progress)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            self._finish()

    def out(self, text: str) -> None:
        self.finish()
        with contextlib.suppress(OSError):
            print(text, flush=True)


def prepare_directory(layout: plan.Layout) -> bool:
    """Make the directories; True if an earlier run left its data there."""
    longest = max(len(str(layout.node_control(n))) for n in plan.NODES)
    if longest > MAX_SOCKET_PATH:
        raise ConfigError("--dir", f"{layout.root} is too long for the control sockets in it")
    try:
        for directory in layout.directories():
            directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--dir", f"cannot create {layout.root}: {exc.strerror}") from None
    for control in (layout.target_control, *map(layout.node_control, plan.NODES)):
        if socket_in_use(control):
            raise ConfigError("--dir", f"a demo is running in {layout.root} already ({control})")
    return layout.lun(plan.VOLUME_DISK).exists()


async def prepare_volume(layout: plan.Layout, report: Reporter) -> None:
    """Format the snapshot volume on g2's disk with its schedule, on the first run only."""
    from sanstack.snapshot.files import format_volume_file, open_volume_file
    from sanstack.snapshot.model import FormatOptions, Schedule

    path = layout.lun(plan.VOLUME_DISK)
    if await asyncio.to_thread(path.exists):
        return
    partial = path.with_name(path.name + ".formatting")
    report.say(f"formatting the snapshot volume {path}")
    size = plan.LUN_SIZES[plan.VOLUME_DISK]
    await format_volume_file(partial, size, FormatOptions(), progress=report.chunks)
    volume = await open_volume_file(partial)
    try:
        schedule = Schedule(plan.SCHEDULE_SECONDS, plan.SCHEDULE_KEEP, prefix=plan.SCHEDULE_PREFIX)
        await volume.set_schedule(schedule)
    finally:
        await volume.close()
    partial.replace(path)


def cluster_state(status: dict[str, Any]) -> tuple[bool, str]:
    """(up: every node a member, quorum, both groups online; a line saying how it stands)."""
    members = [n["name"] for n in status["nodes"] if n["member"]]
    quorum = status["quorum"]
    groups = {g["name"]: g for g in status["groups"]}
    parts = [
        f"nodes {len(members)}/{len(plan.NODES)} members",
        f"quorum {'yes' if quorum['has'] else 'no'} ({quorum['votes']}/{quorum['total']} votes)",
    ]
    for name in (plan.PLAIN_GROUP, plan.VOLUME_GROUP):
        group = groups.get(name, {})
        where = f" on {group['owner']}" if group.get("owner") else ""
        parts.append(f"{name} {group.get('state', 'unknown')}{where}")
    up = (
        len(members) == len(plan.NODES)
        and bool(quorum["has"])
        and all(groups.get(g, {}).get("state") == "online" for g in plan.GROUPS)
    )
    return up, "cluster: " + ", ".join(parts)


async def cluster_status(layout: plan.Layout) -> dict[str, Any] | None:
    """The status as the first node that answers sees it."""
    for node in plan.NODES:
        try:
            status: dict[str, Any] = await asyncio.to_thread(
                call, layout.node_control(node), "GET", "/v1/cluster/status"
            )
        except ControlError:
            continue
        return status
    return None


async def wait_for_cluster(layout: plan.Layout, report: Reporter) -> dict[str, str | None]:
    """Until every node is a member, with quorum, and both groups are online (bounded);
    returns each group's owner."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLUSTER_WITHIN
    text = "cluster: no node answers yet"
    while True:
        status = await cluster_status(layout)
        if status is not None:
            up, text = cluster_state(status)
            report.say(text)
            if up:
                return {g["name"]: g["owner"] for g in status["groups"]}
        if loop.time() >= deadline:
            raise DemoFailed(
                f"demo: the cluster was not up within {CLUSTER_WITHIN:g} s ({text}); "
                f"the logs are in {layout.logs}"
            )
        await asyncio.sleep(CLUSTER_POLL)


def prepare_run(root: Path) -> tuple[plan.Layout, bool, dict[str, int]]:
    """The directory made (or found), its ports chosen and saved, the cluster's file written:
    (layout, whether an earlier run's data is there, ports)."""
    layout = plan.Layout(root.absolute())
    reused = prepare_directory(layout)
    ports = choose_ports(saved_ports(layout.ports_file))
    save_ports(layout.ports_file, ports)
    layout.cluster_config.write_text(plan.cluster_toml(layout, ports))
    return layout, reused, ports


def write_run_file(path: Path, run: dict[str, Any]) -> None:
    # Replaced whole, never truncated and rewritten: scripts and tests read it while the
    # demo rewrites it (a node started again has a new pid).
    write_atomically(path, (json.dumps(run, indent=1) + "\n").encode())


async def run_demo(
    root: Path, sanstack_argv: Sequence[str], sanstack_text: str, report: Reporter
) -> int:
    """The demo, until a signal stops it (see the module docstring); 0 when stopped."""
    layout, reused, ports = prepare_run(root)
    table = plan.process_table(layout, ports, sanstack_argv, sys.executable)

    def on_exit(spec: plan.ProcessSpec, pid: int, returncode: int) -> None:
        report.out(plan.exit_report(spec, pid, returncode, os.getpid()))

    supervisor = Supervisor(table, on_exit)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():  # a second Ctrl-C: no more waiting
            supervisor.hurry()
        stop.set()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    restart = asyncio.Event()  # SIGUSR1: start again what has ended
    loop.add_signal_handler(signal.SIGUSR1, restart.set)

    async def start() -> None:
        await prepare_volume(layout, report)
        owners: dict[str, str | None] = {}
        for stage in supervisor.stages():
            await supervisor.start_stage(stage, report.say)
            if stage == plan.NODE_STAGE:
                owners = await wait_for_cluster(layout, report)
        pids = supervisor.pids()
        write_run_file(layout.run_file, plan.describe(layout, ports, pids, table))
        report.out(
            plan.summary(
                layout,
                ports,
                pids,
                owners,
                sanstack_text,
                reused=reused,
                demo_pid=os.getpid(),
                others=supervisor.others(),
            )
        )

    async def restart_ended() -> None:
        for child in await supervisor.restart_ended():
            report.out(f"sanstack demo: started {child.spec.name} again (pid {child.pid})")
        write_run_file(layout.run_file, plan.describe(layout, ports, supervisor.pids(), table))

    starting = asyncio.create_task(start(), name="demo start")
    stopping = asyncio.create_task(stop.wait(), name="demo stop signal")
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # DemoFailed: the run stops, and says why
        while not stop.is_set():
            restarting = asyncio.create_task(restart.wait(), name="demo restart signal")
            await asyncio.wait({stopping, restarting}, return_when=asyncio.FIRST_COMPLETED)
            restarting.cancel()
            await asyncio.gather(restarting, return_exceptions=True)
            if restart.is_set() and not stop.is_set():
                restart.clear()
                await restart_ended()
    finally:
        for task in (starting, stopping):
            task.cancel()
        await asyncio.gather(starting, stopping, return_exceptions=True)
        await supervisor.stop(report.say)
        report.say("stopped")
        report.finish()
        for sig in (*STOP_SIGNALS, signal.SIGUSR1):
            with contextlib.suppress(RuntimeError):
                loop.remove_signal_handler(sig)
        layout.run_file.unlink(missing_ok=True)
    return 0
