"""Benchmark ``sanstack host run`` at scale: start time, a path reset under load, data path cost.

Not a test: run it by hand (docs/benchmarks.md has the command and the figures). Three parts,
each against sanstack's own target (``sanstack target serve``, quick form, two portals,
memory LUNs) and ``sanstack host run`` as separate processes on 127.0.0.1:

(a) **Start.** For each LUN count (``--luns``, default 1,64,256,1024) a target with that many
    LUNs, a ``FaultProxy`` in front of each portal, and a host given the two proxies: the
    seconds from spawning the host to its ``ready`` line (discovery, logins, every map
    built and exported) and to every map showing both paths active (``GET /v1/maps`` on its
    control socket, polled every 50 ms); the sessions the target sees from the host
    (``GET /v1/sessions``, data sessions only: two expected whatever the LUN count); the
    host's RSS then (``/proc/PID/status`` VmRSS) and the memory per map: (RSS(N) - RSS(1)) /
    (N - 1), the one-LUN host being the "before".
(b) **Path reset.** With the largest count, one NBD connection per map (its WWID export),
    each reading 4 KiB at a random offset every ``--interval`` seconds (a light load,
    staggered), then ``FaultProxy.reset()`` on portal 1 (every connection RST) and, with
    ``--hold S`` (default 3), ``down()`` at once for S seconds (re-logins refused; with a plain
    reset the host is logged in again on portal 1 within milliseconds and most maps never
    need portal 2): per map the time from the reset until it completed a read after it, and
    the time until every map's path through portal 2 had completed an I/O after the reset
    (``GET /v1/paths`` counters); the longest read in flight within 2 s of the reset; read
    errors (none expected). The per-map figure cannot be below the read interval's share.
(c) **Data path.** A target with one LUN of ``--size-mib``, a fully written file whose page
    cache is warm (a memory LUN reads as unmapped, and QEMU's iscsi driver then skips the
    reads), and a host over both portals (no proxy): ``qemu-img bench`` 4 KiB random read
    QD32 and 1 MiB sequential read QD8 through NBD -> map -> iSCSI (``nbd://…/naa.…``) and
    straight at the same LUN over ``iscsi://``, alternating which goes first each round,
    ``--repeat`` rounds, medians, the ratio NBD/direct, with the CPU seconds the host and the
    target used per run through the host, and the host's CPU seconds per 1000 I/Os (steadier
    than the rates on a busy machine).

The CPU model, kernel and load average are printed with the table; ``--json`` prints the
whole report as JSON on stdout instead. Exit status: 0 all parts ran, 1 a part failed (the
report says which), 2 a tool is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.multipath_report import overlapping, percentile
from bench.perf_output import PerfParseError, parse_qemu_img_bench_output
from bench.target_vs_tgt import machine_info
from bench.targets import (
    BenchError,
    find_tool,
    free_port,
    log,
    process_cpu_seconds,
    stop_process,
    tail,
    warm_page_cache,
    write_backing_file,
)
from sanstack.control.client import call
from sanstack.nbd import NBDCmd, NBDOpt, NBDRep
from sanstack.nbd.protocol import (
    ClientFlags,
    InfoRequestData,
    OptionReply,
    OptionRequest,
    RequestHeader,
    ServerGreeting,
    SimpleReplyHeader,
)
from sanstack.tools.fault_proxy import FaultProxy

HOST = "127.0.0.1"
IQN = "iqn.2026-11.org.sanstack:host-scale"
HOST_NAME = "scale"
INITIATOR = f"iqn.2026-11.org.sanstack.host:{HOST_NAME}"
READY_TIMEOUT = 300.0  # a host with 1024 maps on a busy machine
USABLE_TIMEOUT = 120.0
MOVE_TIMEOUT = 60.0
IO_TIMEOUT = 30.0
CONNECT_CONCURRENCY = 32
PLAIN_RESET_WAIT = 5.0  # (b) with --hold 0 path 1 is back at once: portal 2 may never be used
STALL_WINDOW = 2.0  # (b): reads in flight at some point of this long after the reset
BLOCK = 4096


# ---------------------------------------------------------------- pure helpers (unit-tested)


def vm_rss_kib(status_text: str) -> int:
    """VmRSS in KiB from a ``/proc/PID/status`` text."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError("no VmRSS line")


def data_sessions(sessions: Sequence[dict[str, Any]], initiator: str) -> int:
    """The target's data sessions (not discovery) from ``initiator``: distinct (TSIH, ISID)."""
    return len(
        {
            (s.get("tsih"), s.get("isid"))
            for s in sessions
            if s.get("initiator") == initiator and not s.get("discovery")
        }
    )


def per_map_kib(rss: dict[int, int]) -> dict[int, float | None]:
    """KiB per map for each LUN count: the growth over the smallest count's RSS."""
    if not rss:
        return {}
    base = min(rss)
    return {n: None if n == base else (kib - rss[base]) / (n - base) for n, kib in rss.items()}


def all_usable(maps: Sequence[dict[str, Any]], count: int, paths: int) -> bool:
    """``count`` maps, each with ``paths`` active paths and nothing else."""
    return len(maps) == count and all(m["paths"] == {"active": paths} for m in maps)


def completed_on(paths: Sequence[dict[str, Any]], portal: str) -> dict[str, int]:
    """Per map (WWID): I/Os completed on its path through ``portal`` (``host:port``)."""
    return {p["wwid"]: int(p["completed"]) for p in paths if p["path"].endswith(f"@{portal}")}


def first_completion_after(ends: Sequence[float], t0: float) -> float | None:
    """Seconds from ``t0`` to the first of ``ends`` after it; None if none is."""
    after = [e - t0 for e in ends if e > t0]
    return min(after) if after else None


def move_spread(values: Sequence[float]) -> dict[str, float]:
    """p50, p99 (nearest rank) and max of per-map times."""
    if not values:
        return {}
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "max": max(values)}


def ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def format_report(report: dict[str, Any]) -> str:
    info = report["machine"]
    lines = [
        f"sanstack host at scale, {info['nproc']} CPUs ({info['cpu_model']}), kernel "
        f"{info['kernel']}, Python {info['python']}, load {' '.join(info['loadavg_at_start'])}",
        "",
        "(a) host start to every map usable, two portals (through fault proxies)",
        f"{'LUNs':>6} {'ready s':>8} {'usable s':>9} {'sessions':>9} {'RSS MiB':>8} {'KiB/map':>8}",
    ]
    for row in report["start"]:
        lines.append(
            f"{row['luns']:>6} {_fmt(row.get('ready_s')):>8} {_fmt(row.get('usable_s')):>9} "
            f"{row.get('sessions', '-')!s:>9} {_fmt(row.get('rss_kib', 0) / 1024, '.1f'):>8} "
            f"{_fmt(row.get('kib_per_map'), '.1f'):>8}"
        )
    reset = report.get("reset")
    if reset:
        lines += [
            "",
            f"(b) portal 1 reset (then down for {reset['hold_s']} s), {reset['maps']} maps, "
            f"one 4 KiB read per map every {reset['interval_s']} s",
            f"  every map completed a read after the reset: {_fmt(reset['all_moved_s'])} s "
            f"(per map: p50 {_fmt(reset['move_s'].get('p50'))} / p99 "
            f"{_fmt(reset['move_s'].get('p99'))} / max {_fmt(reset['move_s'].get('max'))} s)",
            f"  every map's portal-2 path completed an I/O after it: "
            f"{_fmt(reset['all_other_path_s'])} s",
            f"  longest read in flight within {STALL_WINDOW:.0f} s of the reset: "
            f"{_fmt(reset['stall_max_s'])} s; "
            f"read errors: {reset['errors']}",
        ]
    rows = report.get("data_path") or []
    if rows:
        lines += [
            "",
            f"(c) qemu-img bench, medians of {report['args']['repeat']} rounds, "
            f"{report['args']['size_mib']} MiB file LUN (written, page cache warm)",
            f"{'workload':<28} {'via host':>10} {'direct':>10} {'ratio':>6} "
            f"{'host CPU s':>10} {'target CPU s':>12} {'host CPU s/kIO':>14}",
        ]
        for row in rows:
            lines.append(
                f"{row['title']:<28} {_fmt(row['via_host'], '.0f'):>10} "
                f"{_fmt(row['direct'], '.0f'):>10} {_fmt(row['ratio']):>6} "
                f"{_fmt(row['host_cpu_s']):>10} {_fmt(row['target_cpu_s']):>12} "
                f"{_fmt(row.get('host_cpu_s_per_kio'), '.3f'):>14}   {row['unit']}"
            )
    for problem in report.get("problems", []):
        lines.append(f"PROBLEM: {problem}")
    return "\n".join(lines)


# ---------------------------------------------------------------- processes


class Daemon:
    """A sanstack daemon started with ``args``; ready when its stdout says ``ready``."""

    def __init__(
        self,
        name: str,
        args: list[str],
        workdir: Path,
        *,
        control: Path,
        ports: Sequence[int] = (),
        nbd: int = 0,
    ) -> None:
        self.name = name
        self.control = control
        self.ports = list(ports)  # a target's portals
        self.nbd = nbd  # a host's NBD port
        self.log_path = workdir / f"{name}.log"
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=log_file, cwd=workdir
            )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float) -> float:
        """Seconds from the spawn to the ``ready`` line (bounded)."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        os.set_blocking(fd, False)
        seen = b""
        deadline = self.started + timeout
        while b"ready" not in seen:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} not ready in {timeout:.0f}s")
            with contextlib.suppress(BlockingIOError):
                seen += os.read(fd, 4096)
            time.sleep(0.01)
        return time.monotonic() - self.started

    def rss_kib(self) -> int:
        return vm_rss_kib(Path(f"/proc/{self.pid}/status").read_text())

    def cpu_s(self) -> float:
        return process_cpu_seconds(self.pid)

    def tail(self) -> str:
        return tail(self.log_path)

    def stop(self, problems: list[str]) -> None:
        if not stop_process(self.process, signal.SIGTERM, 60):
            problems.append(f"{self.name}: killed, not stopped within 60 s of SIGTERM")
        elif self.process.returncode != 0:
            problems.append(f"{self.name}: exited {self.process.returncode}")
        if self.process.stdout is not None:
            self.process.stdout.close()
        if "Traceback" in tail(self.log_path, 1_000_000):
            problems.append(f"{self.name}: Traceback in {self.log_path}")


def start_target(python: str, workdir: Path, tag: str, luns: Sequence[str]) -> Daemon:
    ports = [free_port(), free_port()]
    args = [python, "-m", "sanstack.cli.main", "target", "serve", "--iqn", IQN]
    for port in ports:
        args += ["--portal", f"{HOST}:{port}"]
    for lun in luns:
        args += ["--lun", lun]
    sock = workdir / f"target-{tag}.sock"
    args += ["--control", str(sock), "--state-dir", str(workdir / f"target-{tag}-state")]
    daemon = Daemon(f"target-{tag}", args, workdir, control=sock, ports=ports)
    daemon.wait_ready(READY_TIMEOUT)
    return daemon


def start_host(python: str, workdir: Path, tag: str, portals: Sequence[int]) -> Daemon:
    nbd = free_port()
    args = [python, "-m", "sanstack.cli.main", "host", "run", "--name", HOST_NAME]
    for port in portals:
        args += ["--portal", f"{HOST}:{port}"]
    sock = workdir / f"host-{tag}.sock"
    args += ["--nbd", f"{HOST}:{nbd}", "--control", str(sock)]
    args += ["--state-dir", str(workdir / f"host-{tag}-state"), "--rescan-interval", "0"]
    return Daemon(f"host-{tag}", args, workdir, control=sock, nbd=nbd)


async def control(socket_path: Path, resource: str) -> Any:
    return await asyncio.to_thread(call, socket_path, "GET", resource)


# ---------------------------------------------------------------- a minimal NBD reader


class NBDReader:
    """One NBD connection (fixed newstyle, NBD_OPT_GO, simple replies), one read at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.cookie = reader, writer, 0

    @classmethod
    async def connect(cls, port: int, export: str) -> NBDReader:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), IO_TIMEOUT)
        client = cls(reader, writer)
        ServerGreeting.decode(await client._read(18))
        writer.write(ClientFlags(3).encode())
        writer.write(
            OptionRequest(NBDOpt.NBD_OPT_GO, InfoRequestData(export, ()).encode()).encode()
        )
        while True:
            head = await client._read(20)
            (length,) = struct.unpack(">I", head[16:])
            reply = OptionReply.decode(head + await client._read(length))
            if reply.reply_type & (1 << 31):
                raise BenchError(f"export {export} refused")
            if reply.reply_type == NBDRep.NBD_REP_ACK:
                return client

    async def _read(self, n: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), IO_TIMEOUT)

    async def read(self, offset: int, length: int) -> None:
        self.cookie += 1
        header = RequestHeader(0, NBDCmd.NBD_CMD_READ, self.cookie, offset, length).encode()
        self.writer.write(header)
        reply = SimpleReplyHeader.decode(await self._read(16))
        if reply.error:
            raise BenchError(f"read failed with NBD error {reply.error}")
        await self._read(length)

    async def close(self) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            self.writer.write(RequestHeader(0, NBDCmd.NBD_CMD_DISC, 0, 0, 0).encode())
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), IO_TIMEOUT)


# ---------------------------------------------------------------- (a) start, (b) reset


async def start_part(
    count: int, args: argparse.Namespace, workdir: Path, reset: bool, problems: list[str]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    tag = f"{count}"
    target = start_target(args.python, workdir, tag, [f"memory:{args.lun_mib}M"] * count)
    proxies = [await FaultProxy(HOST, p).start() for p in target.ports]
    host: Daemon | None = None
    row: dict[str, Any] = {"luns": count}
    reset_row = None
    try:
        host = start_host(args.python, workdir, tag, [p.listen_port for p in proxies])
        row["ready_s"] = await asyncio.to_thread(host.wait_ready, READY_TIMEOUT)
        deadline = time.monotonic() + USABLE_TIMEOUT
        while True:
            maps = await control(host.control, "/v1/maps")
            if all_usable(maps, count, 2):
                row["usable_s"] = time.monotonic() - host.started
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{count} LUNs: maps not all usable in {USABLE_TIMEOUT:.0f}s")
            await asyncio.sleep(0.05)
        sessions = await asyncio.to_thread(call, target.control, "GET", "/v1/sessions")
        row["sessions"] = data_sessions(sessions, INITIATOR)
        row["rss_kib"] = host.rss_kib()
        log(f"{count} LUNs: ready {row['ready_s']:.2f}s, usable {row['usable_s']:.2f}s, "
            f"{row['sessions']} sessions, RSS {row['rss_kib'] / 1024:.1f} MiB")  # fmt: skip
        if reset:
            try:
                reset_row = await reset_part(host, maps, proxies, args)
            except Exception as exc:  # reported; the start figures stand
                problems.append(f"reset with {count} maps: {type(exc).__name__}: {exc}")
                log(traceback.format_exc())
    finally:
        if host is not None:
            host.stop(problems)
        for proxy in proxies:
            await proxy.close()
        target.stop(problems)
    return row, reset_row


async def reset_part(
    host: Daemon, maps: list[dict[str, Any]], proxies: list[FaultProxy], args: argparse.Namespace
) -> dict[str, Any]:
    wwids = [m["wwid"] for m in maps]
    size = args.lun_mib * (1 << 20)
    connecting = asyncio.Semaphore(CONNECT_CONCURRENCY)  # the NBD listener's backlog

    async def connect(wwid: str) -> NBDReader:
        async with connecting:
            return await NBDReader.connect(host.nbd, wwid)

    clients = await asyncio.gather(*(connect(w) for w in wwids))
    ends: dict[str, list[float]] = {w: [] for w in wwids}
    spans: list[tuple[float, float]] = []
    errors: list[str] = []
    stop = asyncio.Event()

    async def reader(wwid: str, client: NBDReader, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0, args.interval))
        while not stop.is_set():
            began = time.monotonic()
            try:
                await client.read(rng.randrange(size // BLOCK) * BLOCK, BLOCK)
            except (BenchError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                errors.append(f"{wwid}: {exc}")
                return
            ended = time.monotonic()
            ends[wwid].append(ended)
            spans.append((began, ended))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.interval)

    tasks = [
        asyncio.create_task(reader(w, c, random.Random(i)))
        for i, (w, c) in enumerate(zip(wwids, clients, strict=True))
    ]
    other = str(proxies[1].listen_port)
    try:
        await asyncio.sleep(max(2.0, 2 * args.interval))  # every reader has read
        before = completed_on(await control(host.control, "/v1/paths"), f"{HOST}:{other}")
        t0 = time.monotonic()
        proxies[0].reset()
        if args.hold > 0:  # and it stays away: re-logins are refused until it is up again
            proxies[0].down()
            asyncio.get_running_loop().call_later(args.hold, proxies[0].up)
        all_other = None
        deadline = t0 + (MOVE_TIMEOUT if args.hold > 0 else PLAIN_RESET_WAIT)
        while time.monotonic() < deadline:
            now = completed_on(await control(host.control, "/v1/paths"), f"{HOST}:{other}")
            if all(now.get(w, 0) > before.get(w, 0) for w in wwids):
                all_other = time.monotonic() - t0
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(max(args.interval * 2, args.hold - (time.monotonic() - t0)))
        moves = [first_completion_after(ends[w], t0) for w in wwids]
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=IO_TIMEOUT * 2)
        await asyncio.gather(*(c.close() for c in clients))
    moved = [m for m in moves if m is not None]
    starts, finishes = [b for b, _e in spans], [e for _b, e in spans]
    stall = overlapping(starts, finishes, t0, t0 + STALL_WINDOW)
    return {
        "maps": len(wwids),
        "interval_s": args.interval,
        "hold_s": args.hold,
        "move_s": move_spread(moved),
        "all_moved_s": max(moved) if len(moved) == len(wwids) else None,
        "not_moved": len(wwids) - len(moved),
        "all_other_path_s": all_other,
        "stall_max_s": max(stall, default=0.0),
        "errors": len(errors),
        "first_errors": errors[:5],
    }


# ---------------------------------------------------------------- (c) data path


WORKLOADS = (
    ("rand4k", "4 KiB random read, QD 32", 4096, 32, True, "IOPS"),
    ("seq1m", "1 MiB sequential read, QD 8", 1 << 20, 8, False, "MiB/s"),
)
STRIDE_BLOCKS = 104729  # a prime: scatters the 4 KiB reads over the LUN (bench/target_vs_tgt)


def qemu_args(
    qemu_img: str, url: str, size: int, depth: int, *, rand: bool, count: int
) -> list[str]:
    step = size * (STRIDE_BLOCKS if rand else 1)
    return [qemu_img, "bench", "-f", "raw", "-c", str(count), "-d", str(depth),
            "-s", str(size), "-S", str(step), url]  # fmt: skip


def run_qemu(args: list[str], timeout: float) -> tuple[float, float] | None:
    """(IOPS, MiB/s) of one ``qemu-img bench`` run; None if it failed."""
    try:
        result = subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout)
        parsed = parse_qemu_img_bench_output(result.stdout)
    except (subprocess.TimeoutExpired, PerfParseError):
        return None
    return (parsed.iops, parsed.mib_per_s) if result.returncode == 0 else None


async def data_part(
    args: argparse.Namespace, workdir: Path, problems: list[str]
) -> list[dict[str, Any]]:
    qemu_img = find_tool("qemu-img")
    assert qemu_img is not None
    # A written file, not a memory LUN: QEMU's iscsi driver does not read blocks GET LBA
    # STATUS calls unmapped (it fills zeros), which would flatter the direct figure.
    backing = workdir / "data.img"
    write_backing_file(backing, args.size_mib << 20)
    warm_page_cache(backing)
    target = start_target(args.python, workdir, "data", [f"{backing}:{args.size_mib}M"])
    host = start_host(args.python, workdir, "data", target.ports)
    rows = []
    try:
        await asyncio.to_thread(host.wait_ready, READY_TIMEOUT)
        (entry,) = await control(host.control, "/v1/maps")
        urls = {
            "via_host": f"nbd://{HOST}:{host.nbd}/{entry['wwid']}",
            "direct": f"iscsi://{HOST}:{target.ports[0]}/{IQN}/0",
        }
        for key, title, size, depth, rand, unit in WORKLOADS:
            figures: dict[str, list[float]] = {"via_host": [], "direct": []}
            cpu: dict[str, list[float]] = {"host": [], "target": [], "host_per_kio": []}
            for round_no in range(args.repeat):
                order = ["via_host", "direct"] if round_no % 2 == 0 else ["direct", "via_host"]
                for which in order:
                    command = functools.partial(
                        qemu_args, qemu_img, urls[which], size, depth, rand=rand
                    )
                    rate = run_qemu(
                        command(count=max(depth * 4, 8192 if size <= 65536 else 256)), 120
                    )
                    if rate is None:
                        problems.append(f"{key} {which}: calibration failed")
                        continue
                    count = max(depth, int(rate[0] * args.seconds))
                    h0, t0 = host.cpu_s(), target.cpu_s()
                    got = run_qemu(command(count=count), args.seconds * 4 + 60)
                    if got is None:
                        problems.append(f"{key} {which} round {round_no + 1}: run failed")
                        continue
                    figures[which].append(got[0] if unit == "IOPS" else got[1])
                    if which == "via_host":
                        cpu["host"].append(host.cpu_s() - h0)
                        cpu["target"].append(target.cpu_s() - t0)
                        cpu["host_per_kio"].append(cpu["host"][-1] / count * 1000)
                    log(f"{key} {which} round {round_no + 1}: {figures[which][-1]:.0f} {unit}")
            via = statistics.median(figures["via_host"]) if figures["via_host"] else 0.0
            direct = statistics.median(figures["direct"]) if figures["direct"] else 0.0
            rows.append(
                {
                    "workload": key,
                    "title": title,
                    "unit": unit,
                    "via_host": via,
                    "direct": direct,
                    "ratio": ratio(via, direct),
                    "host_cpu_s": statistics.median(cpu["host"]) if cpu["host"] else None,
                    "target_cpu_s": statistics.median(cpu["target"]) if cpu["target"] else None,
                    "host_cpu_s_per_kio": (
                        statistics.median(cpu["host_per_kio"]) if cpu["host_per_kio"] else None
                    ),
                    "runs": figures,
                }
            )
    finally:
        host.stop(problems)
        target.stop(problems)
    return rows


# ---------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--luns", default="1,64,256,1024", help="LUN counts for (a)")
    parser.add_argument("--lun-mib", type=int, default=1, help="size of each LUN in (a)/(b)")
    parser.add_argument("--interval", type=float, default=0.5, help="(b): seconds between reads")
    parser.add_argument(
        "--hold",
        type=float,
        default=3.0,
        help="(b): after the reset keep portal 1 down this long (0: a plain reset)",
    )
    parser.add_argument("--size-mib", type=int, default=256, help="(c): the LUN's size")
    parser.add_argument("--seconds", type=float, default=10.0, help="(c): seconds per run")
    parser.add_argument("--repeat", type=int, default=3, help="(c): rounds (medians)")
    parser.add_argument("--parts", default="start,reset,data", help="which parts to run")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the daemons")
    parser.add_argument("--dir", default=None, help="where the temporary directory goes")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def parse_counts(text: str) -> list[int]:
    counts = sorted({int(v) for v in text.split(",") if v.strip()})
    if not counts or counts[0] < 1:
        raise ValueError(f"LUN counts must be positive: {text!r}")
    return counts


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    parts = set(args.parts.split(","))
    problems: list[str] = []
    report: dict[str, Any] = {"machine": machine_info(), "args": vars(args), "start": []}
    counts = parse_counts(args.luns)
    if parts & {"start", "reset"}:
        for count in counts:
            reset = "reset" in parts and count == counts[-1]
            try:
                row, reset_row = await start_part(count, args, workdir, reset, problems)
            except Exception as exc:  # reported, and the next part still runs
                problems.append(f"{count} LUNs: {type(exc).__name__}: {exc}")
                log(traceback.format_exc())
                continue
            report["start"].append(row)
            if reset_row is not None:
                report["reset"] = reset_row
        per_map = per_map_kib({r["luns"]: r["rss_kib"] for r in report["start"]})
        for row in report["start"]:
            row["kib_per_map"] = per_map.get(row["luns"])
    if "data" in parts:
        try:
            report["data_path"] = await data_part(args, workdir, problems)
        except Exception as exc:
            problems.append(f"data path: {type(exc).__name__}: {exc}")
            log(traceback.format_exc())
    report["problems"] = problems
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if "data" in args.parts and find_tool("qemu-img") is None:
        log("qemu-img not found")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="sanstack-hostscale-", dir=args.dir))
    log(f"work directory {workdir}")
    report = asyncio.run(run(args, workdir))
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(report))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
