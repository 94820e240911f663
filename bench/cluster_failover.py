"""Benchmark the failover cluster: failover time after ``kill -9`` of the owner, and a move.

Not a test: run it by hand (docs/benchmarks.md has the command and the figures). For each
disk count (``--disks``, default 1,10,100,1000): a sanstack target (``sanstack target serve``,
quick form, two portals, that many memory LUNs; with ``--volumes`` the first disk of the
first groups is a formatted snapshot volume on a sparse file LUN instead), three ``sanstack
cluster node`` processes on 127.0.0.1 (node majority, default timings unless ``--timing``
says otherwise), and groups of at most ``--group-size`` disks, all preferring n1, then n2,
then n3, each exported on its own 127.0.81.x address. Once every group is online on n1:

(a) **kill -9** of n1. From the cluster log of the survivor (``GET /v1/cluster/events``,
    each event's time is the node's wall clock, the same clock as the kill's on one
    machine), in seconds from the kill: *detected* (``membership.left`` of n1), *fenced*
    (the first and last ``disk.preempted``: PREEMPT AND ABORT of n1's key), *disks online*
    (the last group's ``onlining_disks -> onlining_volumes``), *volumes* (the last group's
    ``onlining_volumes -> onlining_export``: snapshot volumes opened, their free-space scans
    started) and *scanned* (the last ``volume.scanned``: free-space scans finished), and
    *export* (the last group's ``-> online``: every group online and exported). Then one
    ``GET /v1/cluster/status`` checks every disk is held by the survivor with only live
    nodes' keys.
(b) **cluster move** of every group from the survivor (n2) to n3: ``sanstack cluster move
    GROUP n3 --json`` for each group at once (no ``--wait``: its status polls read every
    disk), then the old owner's log (export unbound, volumes closed, disks released) and the
    new owner's (onlining begun, disks online, volumes, export), each in seconds from that
    group's own request as the old owner logged it (the commands' processes start spread
    out on a busy machine; that spread is shown apart), the slowest group's.

A node logs its events only once per change, so the split costs nothing to the failover;
the bench polls the events of the node it waits on every 100 ms. The CPU model, kernel and
load average are printed with the table; ``--json`` prints the whole report as JSON. Exit
status: 0 every count ran, 1 one failed (the report says which).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.host_scale import Daemon
from bench.target_vs_tgt import machine_info
from bench.targets import BenchError, free_port, log
from sanstack.control.client import ControlError, call

HOST = "127.0.0.1"
IQN = "iqn.2026-11.org.sanstack:cluster-bench"
CLUSTER = "bench"
NODES = ("n1", "n2", "n3")
READY_TIMEOUT = 600.0  # three nodes each building 1000 maps on a busy 2-CPU machine
SETTLE_TIMEOUT = 600.0
FAILOVER_TIMEOUT = 300.0
POLL = 0.1
VOLUME_SIZE = "16M"
EXPORT_NET = "127.0.81"


def sanstack(python: str) -> list[str]:
    return [python, "-m", "sanstack.cli.main"]


# ---------------------------------------------------------------- pure helpers (unit-tested)


def group_layout(disks: int, group_size: int) -> list[list[str]]:
    """Disk names d0..d(N-1) in groups of at most ``group_size``, as even as can be."""
    if disks < 1 or group_size < 1:
        raise ValueError("at least one disk and one disk per group")
    count = -(-disks // group_size)
    names = [f"d{i}" for i in range(disks)]
    base, extra = divmod(disks, count)
    groups, start = [], 0
    for i in range(count):
        size = base + (1 if i < extra else 0)
        groups.append(names[start : start + size])
        start += size
    return groups


def transition_times(
    events: Sequence[Mapping[str, Any]], after: float, node: str, change: str
) -> dict[str, float]:
    """group -> the time of its first ``group.state`` event on ``node`` after ``after`` whose
    reason starts with ``change`` (``"onlining_disks -> onlining_volumes"``, or ``"-> online"``
    for any state into online)."""
    found: dict[str, float] = {}
    for event in events:
        if event["kind"] != "group.state" or event["node"] != node or event["time"] < after:
            continue
        reason = str(event["reason"])
        head = reason.split(":", 1)[0]
        matches = head.endswith(change.strip()) if change.startswith("->") else head == change
        group = event.get("group")
        if matches and group is not None and group not in found:
            found[group] = float(event["time"])
    return found


def kinds_times(
    events: Sequence[Mapping[str, Any]], after: float, node: str, kind: str
) -> list[float]:
    return sorted(
        float(e["time"])
        for e in events
        if e["kind"] == kind and e["node"] == node and e["time"] >= after
    )


def _last(times: Mapping[str, float], groups: Sequence[str]) -> float | None:
    values = [times[g] for g in groups if g in times]
    return max(values) if len(values) == len(groups) and values else None


def _since(value: float | None, t0: float) -> float | None:
    return None if value is None else value - t0


def failover_split(
    events: Sequence[Mapping[str, Any]],
    killed_at: float,
    *,
    survivor: str,
    dead: str,
    groups: Sequence[str],
    volume_groups: Sequence[str],
) -> dict[str, float | None]:
    """Seconds from the kill to each milestone on ``survivor`` (module docstring, (a))."""
    left = [
        float(e["time"])
        for e in events
        if e["kind"] == "membership.left"
        and e["node"] == survivor
        and e.get("peer") == dead
        and e["time"] >= killed_at
    ]
    preempted = kinds_times(events, killed_at, survivor, "disk.preempted")
    scanned = kinds_times(events, killed_at, survivor, "volume.scanned")
    disks = transition_times(events, killed_at, survivor, "onlining_disks -> onlining_volumes")
    volumes = transition_times(events, killed_at, survivor, "onlining_volumes -> onlining_export")
    online = transition_times(events, killed_at, survivor, "-> online")
    return {
        "detected": _since(min(left) if left else None, killed_at),
        "fenced_first": _since(preempted[0] if preempted else None, killed_at),
        "fenced_last": _since(preempted[-1] if preempted else None, killed_at),
        "preempted": float(len(preempted)),
        "disks_online": _since(_last(disks, groups), killed_at),
        "volumes_open": _since(_last(volumes, groups), killed_at) if volume_groups else None,
        "scanned": _since(max(scanned), killed_at)
        if volume_groups and len(scanned) >= len(volume_groups)
        else None,
        "exported": _since(_last(online, groups), killed_at),
    }


def move_split(
    events: Sequence[Mapping[str, Any]],
    asked_at: float,
    *,
    old: str,
    new: str,
    groups: Sequence[str],
    volume_groups: Sequence[str],
) -> dict[str, float | None]:
    """Each milestone of a move (module docstring, (b)) in seconds from that group's own
    request as the old owner logged it (``group.moved``, "move requested"), the slowest
    group's: the commands that ask arrive spread out (one process each), and the spread is
    not the move's. ``cli`` is from ``asked_at`` (the commands spawned) to the first request
    logged, ``requested`` from the first to the last."""
    asked: dict[str, float] = {}
    for e in events:
        if (
            e["kind"] == "group.moved"
            and e["node"] == old
            and str(e["reason"]).startswith("move requested")
            and e["time"] >= asked_at
            and e.get("group") is not None
        ):
            asked.setdefault(e["group"], float(e["time"]))
    first = min(asked.values()) if asked else asked_at

    def slowest(node: str, change: str) -> float | None:
        times = transition_times(events, first, node, change)
        spans = [times[g] - asked[g] for g in groups if g in times and g in asked]
        return max(spans) if len(spans) == len(groups) and spans else None

    return {
        "cli": first - asked_at if asked else None,
        "requested": max(asked.values()) - first if asked else None,
        "unbound": slowest(old, "offlining_export -> offlining_volumes"),
        "volumes_closed": slowest(old, "offlining_volumes -> releasing_disks"),
        "released": slowest(old, "releasing_disks -> offline"),
        "onlining_first": slowest(new, "offline -> onlining_disks"),
        "disks_online": slowest(new, "onlining_disks -> onlining_volumes"),
        "volumes_open": slowest(new, "onlining_volumes -> onlining_export")
        if volume_groups
        else None,
        "exported": slowest(new, "-> online"),
    }


def check_holders(
    status: Mapping[str, Any], owner: str, live_keys: set[str], disks: Sequence[str]
) -> list[str]:
    """What is wrong with the status' disks table: each of ``disks`` held by ``owner`` with
    exactly ``live_keys`` registered."""
    rows = {d["name"]: d for d in status["disks"]}
    problems = []
    for disk in disks:
        row = rows.get(disk)
        if row is None:
            problems.append(f"{disk}: not in the status")
            continue
        keys = {k["key"] for k in row.get("keys", [])}
        if row.get("holder") != owner or keys != live_keys:
            problems.append(f"{disk}: holder {row.get('holder')}, keys {sorted(keys)}")
    return problems


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


FAILOVER_COLUMNS = (
    ("detected", "detect"),
    ("fenced_first", "fence 1st"),
    ("fenced_last", "fence last"),
    ("disks_online", "disks"),
    ("volumes_open", "volumes"),
    ("scanned", "scanned"),
    ("exported", "export"),
)
MOVE_COLUMNS = (
    ("requested", "requested"),
    ("unbound", "unbound"),
    ("volumes_closed", "closed"),
    ("released", "released"),
    ("onlining_first", "onlining"),
    ("disks_online", "disks"),
    ("volumes_open", "volumes"),
    ("exported", "export"),
)


def format_report(report: Mapping[str, Any]) -> str:
    info = report["machine"]
    timings = report["args"].get("timing") or ["defaults"]
    lines = [
        f"sanstack cluster failover, {info['nproc']} CPUs ({info['cpu_model']}), kernel "
        f"{info['kernel']}, Python {info['python']}, load {' '.join(info['loadavg_at_start'])}",
        f"three nodes, timings: {', '.join(timings)}; groups of at most "
        f"{report['args']['group_size']} disks",
        "",
        "(a) kill -9 of the owner: seconds from the kill (survivor's cluster log)",
        f"{'disks':>6} {'groups':>6} {'start s':>8} "
        + " ".join(f"{title:>10}" for _k, title in FAILOVER_COLUMNS),
    ]
    for row in report["runs"]:
        split = row.get("failover") or {}
        lines.append(
            f"{row['disks']:>6} {row['groups']:>6} {_fmt(row.get('start_s')):>8} "
            + " ".join(f"{_fmt(split.get(key)):>10}" for key, _t in FAILOVER_COLUMNS)
        )
    lines += [
        "",
        "(b) cluster move of every group n2 -> n3 (one command each, at once): seconds from "
        "each group's request as n2 logged it, the slowest group's",
        f"{'disks':>6} {'groups':>6} {'cli s':>8} "
        + " ".join(f"{title:>10}" for _k, title in MOVE_COLUMNS),
    ]
    for row in report["runs"]:
        split = row.get("move") or {}
        lines.append(
            f"{row['disks']:>6} {row['groups']:>6} {_fmt(split.get('cli')):>8} "
            + " ".join(f"{_fmt(split.get(key)):>10}" for key, _t in MOVE_COLUMNS)
        )
    for problem in report.get("problems", []):
        lines.append(f"PROBLEM: {problem}")
    return "\n".join(lines)


# ---------------------------------------------------------------- processes


def free_udp_port() -> int:
    for _ in range(100):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    raise BenchError("no free UDP port")


@dataclass
class Layout:
    disks: int
    groups: list[list[str]]
    volume_groups: list[str]  # groups whose first disk carries a snapshot volume

    @property
    def names(self) -> list[str]:
        return [f"g{i + 1}" for i in range(len(self.groups))]


def write_config(
    workdir: Path, layout: Layout, portals: Sequence[int], timing: Sequence[str]
) -> Path:
    lines = ["[cluster]", f'name = "{CLUSTER}"', 'quorum = "node-majority"', "", "[timings]"]
    lines += list(timing)
    lines += [
        "",
        "[storage]",
        f"portals = [{', '.join(f'{chr(34)}{HOST}:{p}{chr(34)}' for p in portals)}]",
        f'targets = ["{IQN}"]',
    ]
    for name in NODES:
        lines += [
            "",
            "[[node]]",
            f'name = "{name}"',
            f'address = "{HOST}:{free_udp_port()}"',
            f'control = "{workdir / (name + ".sock")}"',
            f'state_dir = "{workdir / ("state-" + name)}"',
        ]
    lines += ["", "[disks]"]
    lines += [f'd{i} = "{IQN}/{i}"' for i in range(layout.disks)]
    for index, (name, disks) in enumerate(zip(layout.names, layout.groups, strict=True)):
        volumes = [disks[0]] if name in layout.volume_groups else []
        lines += [
            "",
            "[[group]]",
            f'name = "{name}"',
            f"disks = {json.dumps(disks)}",
            f"volumes = {json.dumps(volumes)}",
            f'export = "{EXPORT_NET}.{index + 1}:{free_port()}"',
            f"preferred_owners = {json.dumps(list(NODES))}",
        ]
    path = workdir / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_target(
    python: str, workdir: Path, layout: Layout, lun: str, *, profile: bool = False
) -> Daemon:
    volume_luns: dict[int, str] = {}
    for name, disks in zip(layout.names, layout.groups, strict=True):
        if name in layout.volume_groups:
            image = workdir / f"{disks[0]}.img"
            subprocess.run(
                [*sanstack(python), "volume", "format", str(image), "--size", VOLUME_SIZE],
                check=True,
                capture_output=True,
                timeout=120,
            )
            volume_luns[int(disks[0][1:])] = f"{image}:{VOLUME_SIZE}"
    ports = [free_port(), free_port()]
    args = [*sanstack(python), "target", "serve", "--iqn", IQN]
    if profile:
        args[1:1] = ["-m", "cProfile", "-o", str(workdir / "target.prof")]
    for port in ports:
        args += ["--portal", f"{HOST}:{port}"]
    for i in range(layout.disks):
        args += ["--lun", volume_luns.get(i, lun)]
    sock = workdir / "target.sock"
    args += ["--control", str(sock), "--state-dir", str(workdir / "target-state")]
    daemon = Daemon("target", args, workdir, control=sock, ports=ports)
    daemon.wait_ready(READY_TIMEOUT)
    return daemon


def start_nodes(
    python: str, workdir: Path, config: Path, profile: Sequence[str] = ()
) -> dict[str, Daemon]:
    """The three nodes at once; those in ``profile`` under cProfile (``NODE.prof``, written
    when the node stops cleanly at the end)."""
    nodes: dict[str, Daemon] = {}
    for name in NODES:
        args = [*sanstack(python), "--log-level", "info", "cluster", "node"]
        if name in profile:
            args[1:1] = ["-m", "cProfile", "-o", str(workdir / f"{name}.prof")]
        args += ["--config", str(config), "--name", name]
        nodes[name] = Daemon(name, args, workdir, control=workdir / f"{name}.sock")
    for daemon in nodes.values():
        daemon.wait_ready(READY_TIMEOUT)
    return nodes


class EventReader:
    """One node's cluster log, read incrementally (``since``)."""

    def __init__(self, control: Path) -> None:
        self.control = control
        self.seq = 0
        self.events: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        answer = call(self.control, "GET", f"/v1/cluster/events?since={self.seq}")
        new: list[dict[str, Any]] = answer["events"]
        if new:
            self.seq = int(new[-1]["seq"])
            self.events.extend(new)
        return new


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not within {timeout:.0f} s")
        time.sleep(POLL)


def online_on(reader: EventReader, node: str, groups: Sequence[str], after: float) -> bool:
    """Every group's latest state change on ``node`` (after ``after``) went to online."""
    reader.poll()
    latest: dict[str, str] = {}
    for event in reader.events:
        if event["kind"] == "group.state" and event["node"] == node and event["time"] >= after:
            latest[event["group"]] = event["reason"].split(":", 1)[0].rsplit("->", 1)[-1].strip()
    return all(latest.get(g) == "online" for g in groups)


@contextlib.contextmanager
def stopped_at_end(daemons: Mapping[str, Daemon], problems: list[str]) -> Iterator[None]:
    try:
        yield
    finally:
        # The nodes first (each offlines its groups and releases their disks), the target last.
        for daemon in reversed(list(daemons.values())):
            if daemon.process.poll() is None:
                daemon.stop(problems)
            elif daemon.process.stdout is not None:
                daemon.process.stdout.close()


def run_count(count: int, args: argparse.Namespace, problems: list[str]) -> dict[str, Any]:
    workdir = Path(args.workdir) / f"disks-{count}"
    workdir.mkdir()
    groups = group_layout(count, args.group_size)
    names = [f"g{i + 1}" for i in range(len(groups))]
    layout = Layout(count, groups, names[: args.volumes])
    row: dict[str, Any] = {"disks": count, "groups": len(groups), "volumes": args.volumes}
    profile = "target" in args.profile
    target = start_target(args.python, workdir, layout, args.lun, profile=profile)
    daemons: dict[str, Daemon] = {"target": target}
    with stopped_at_end(daemons, problems):
        config = write_config(workdir, layout, target.ports, args.timing)
        spawned = time.time()
        nodes = start_nodes(args.python, workdir, config, args.profile)
        daemons.update(nodes)
        readers = {name: EventReader(nodes[name].control) for name in NODES}
        wait_for(
            f"{count} disks: every group online on n1",
            lambda: online_on(readers["n1"], "n1", names, spawned),
            SETTLE_TIMEOUT,
        )
        row["start_s"] = (
            max(transition_times(readers["n1"].events, spawned, "n1", "-> online").values())
            - spawned
        )
        for reader in readers.values():
            reader.poll()
        # (a) kill -9 of the owner
        nodes["n1"].process.kill()
        killed_at = time.time()
        nodes["n1"].process.wait(30)
        wait_for(
            f"{count} disks: every group online on n2 after the kill",
            lambda: online_on(readers["n2"], "n2", names, killed_at),
            FAILOVER_TIMEOUT,
        )
        time.sleep(0.5 if layout.volume_groups else 0.0)  # a scan's end event
        readers["n2"].poll()
        row["failover"] = failover_split(
            readers["n2"].events,
            killed_at,
            survivor="n2",
            dead="n1",
            groups=names,
            volume_groups=layout.volume_groups,
        )
        status = call(nodes["n2"].control, "GET", "/v1/cluster/status")
        live = {n["key"] for n in status["nodes"] if n["name"] in ("n2", "n3")}
        wrong = check_holders(status, "n2", live, [f"d{i}" for i in range(count)])
        if wrong:
            problems.append(f"{count} disks after the kill: {len(wrong)} wrong: {wrong[:3]}")
        # (b) cluster move of every group to n3
        if "move" in args.parts:
            readers["n3"].poll()
            asked_at = time.time()
            # No --wait: it polls the status, which reads every disk of the cluster.
            via = ["--wait", "0", "--json", "--control", str(nodes["n2"].control)]
            movers = [
                subprocess.Popen(
                    [*sanstack(args.python), "cluster", "move", name, "n3", *via],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                for name in names
            ]
            for mover in movers:
                _out, err = mover.communicate(timeout=120)
                if mover.returncode != 0:
                    problems.append(f"{count} disks: cluster move: {err.decode()[-300:]}")
            wait_for(
                f"{count} disks: every group online on n3 after the move",
                lambda: online_on(readers["n3"], "n3", names, asked_at),
                FAILOVER_TIMEOUT,
            )
            readers["n2"].poll()
            both = readers["n2"].events + readers["n3"].events
            row["move"] = move_split(
                both, asked_at, old="n2", new="n3", groups=names, volume_groups=layout.volume_groups
            )
        row["events_survivor"] = len(readers["n2"].events)
    return row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--disks", default="1,10,100,1000", help="disk counts")
    parser.add_argument("--group-size", type=int, default=100, help="disks per group at most")
    parser.add_argument(
        "--volumes", type=int, default=1, help="groups with a snapshot volume on their first disk"
    )
    parser.add_argument("--lun", default="memory:1M", help="each disk's LUN (target --lun)")
    parser.add_argument(
        "--timing",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a [timings] line of the cluster config (default: the defaults)",
    )
    parser.add_argument("--parts", default="kill,move", help="kill, or kill,move")
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        choices=[*NODES, "target"],
        help="run this node (or the target) under cProfile (NAME.prof in the work directory)",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter for the daemons")
    parser.add_argument("--dir", default=None, help="where the temporary directory goes")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def parse_counts(text: str) -> list[int]:
    counts = sorted({int(v) for v in text.split(",") if v.strip()})
    if not counts or counts[0] < 1:
        raise ValueError(f"disk counts must be positive: {text!r}")
    return counts


def run(args: argparse.Namespace) -> dict[str, Any]:
    problems: list[str] = []
    report: dict[str, Any] = {"machine": machine_info(), "args": vars(args), "runs": []}
    for count in parse_counts(args.disks):
        try:
            report["runs"].append(run_count(count, args, problems))
        except (BenchError, ControlError, OSError, subprocess.SubprocessError) as exc:
            problems.append(f"{count} disks: {type(exc).__name__}: {exc}")
            log(traceback.format_exc())
    report["problems"] = problems
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for line in args.timing:
        if "=" not in line:
            log(f"--timing {line!r}: KEY=VALUE")
            return 2
    args.workdir = tempfile.mkdtemp(prefix="sanstack-cluster-bench-", dir=args.dir)
    log(f"work directory {args.workdir}")
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(report))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
