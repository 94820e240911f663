"""Benchmark ``sanstack target serve --workers N``: aggregate IOPS of concurrent sessions.

Not a test: run it by hand (docs/benchmarks.md, "The target on more than one core").

For each target configuration (``--workers 1`` and ``--workers 2`` by default) and each CPU
set the target is pinned to with ``taskset`` (``0`` and ``0,1`` by default), it starts the
target on a fully written, page-cached backing file, runs ``--clients`` concurrent
``iscsi-perf`` clients (separate sessions, 4 KiB random reads at QD32 by default) for
``--seconds``, and reports the aggregate IOPS and the target's CPU per I/O (utime+stime of
the coordinator and every worker, from /proc) besides the clients' CPU and the machine's.
Clients are not pinned: on a machine with few cores they share the target's.

Exit status: 0 every run succeeded, 1 some run failed, 2 a tool is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.perf_output import PerfParseError, parse_iscsi_perf_output
from bench.targets import (
    MIB,
    SANSTACK_IQN,
    BenchError,
    SanstackTarget,
    children_cpu_seconds,
    find_tool,
    log,
    machine_busy_seconds,
    process_cpu_seconds,
    warm_page_cache,
    write_backing_file,
)
from sanstack.control.client import call


@dataclass
class Result:
    workers: int
    cpus: str
    clients: int
    iops: float
    per_client: list[float]
    target_cpu_s: float
    client_cpu_s: float
    machine_busy_s: float
    wall_s: float
    ok: bool
    note: str = ""

    @property
    def target_us_per_io(self) -> float:
        ios = self.iops * self.wall_s
        return 1e6 * self.target_cpu_s / ios if ios else 0.0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def target_pids(target: SanstackTarget, control: Path) -> list[int]:
    status = call(control, "GET", "/v1/status")
    return [target.pid, *(w["pid"] for w in status.get("workers", []) if w["pid"])]


def run_config(
    workdir: Path, backing: Path, workers: int, cpus: str, args: argparse.Namespace
) -> Result:
    clients = args.clients
    target = SanstackTarget(sys.executable, workdir, backing, args.size_mib * MIB)
    target.args = ["taskset", "-c", cpus, *target.args, "--workers", str(workers)]
    control = workdir / "sanstack-control.sock"
    target.start()
    try:
        pids = target_pids(target, control)
        cpu0 = sum(process_cpu_seconds(pid) for pid in pids)
        client0, busy0 = children_cpu_seconds(), machine_busy_seconds()
        started = time.monotonic()
        perf = [args.iscsi_perf, "-l", "-r", "-t", str(args.seconds), "-m", str(args.depth)]
        perf += ["-b", str(args.blocks)]
        runs = [
            subprocess.Popen(
                [*perf, "-i", f"{SANSTACK_IQN}-client{i}", target.url],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for i in range(clients)
        ]
        outputs: list[str] = []
        notes: list[str] = []
        for run in runs:
            try:
                out, _ = run.communicate(timeout=args.seconds + 40)
            except subprocess.TimeoutExpired:
                run.kill()
                out, _ = run.communicate(timeout=10)
                notes.append("a client was killed")
            outputs.append(out.decode(errors="replace"))
        wall = time.monotonic() - started
        target_cpu = sum(process_cpu_seconds(pid) for pid in pids) - cpu0
        client_cpu = children_cpu_seconds() - client0
        busy = machine_busy_seconds() - busy0
    finally:
        target.stop()
    per_client: list[float] = []
    for output in outputs:
        try:
            per_client.append(parse_iscsi_perf_output(output).iops)
        except PerfParseError as exc:
            notes.append(str(exc))
            per_client.append(0.0)
    notes += target.problems()
    return Result(
        workers,
        cpus,
        clients,
        sum(per_client),
        per_client,
        target_cpu,
        client_cpu,
        busy,
        wall,
        ok=not notes,
        note="; ".join(notes),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="worker counts (default %(default)s)")
    parser.add_argument("--cpus", default="0;0,1", help="taskset CPU lists, ';'-separated")
    parser.add_argument("--clients", type=int, default=2, help="concurrent iscsi-perf clients")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--depth", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=8, help="512-byte blocks per request")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.iscsi_perf = find_tool("iscsi-perf")
    if args.iscsi_perf is None or find_tool("taskset") is None:
        print("iscsi-perf and taskset are needed", file=sys.stderr)
        return 2
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="sanstack-workers-bench-") as tmp:
        workdir = Path(tmp)
        backing = workdir / "backing.img"
        size = args.size_mib * MIB
        log(f"writing {args.size_mib} MiB backing file")
        write_backing_file(backing, size)
        warm_page_cache(backing)
        for cpus in args.cpus.split(";"):
            for workers in (int(w) for w in args.workers.split(",")):
                log(f"--workers {workers} under taskset -c {cpus}, {args.clients} clients")
                try:
                    result = run_config(workdir, backing, workers, cpus, args)
                except BenchError as exc:
                    log(f"failed: {exc}")
                    return 1
                results.append(result)
                log(
                    f"  {result.iops:,.0f} IOPS, target {result.target_us_per_io:.1f} us CPU/IO"
                    f"{'' if result.ok else ' (' + result.note + ')'}"
                )
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs")
    print(
        f"{args.clients} iscsi-perf clients, {args.blocks * 512 // 1024} KiB random reads, "
        f"QD{args.depth} each, {args.seconds} s"
    )
    header = (
        "workers  taskset  agg IOPS  per client          target CPU  us/IO  clients CPU  machine"
    )
    print(header)
    for r in results:
        clients = "/".join(f"{c:,.0f}" for c in r.per_client)
        print(
            f"{r.workers:>7}  {r.cpus:>7}  {r.iops:>8,.0f}  {clients:<18}  "
            f"{100 * r.target_cpu_s / r.wall_s:>8.0f}%  {r.target_us_per_io:>5.1f}  "
            f"{100 * r.client_cpu_s / r.wall_s:>10.0f}%  {100 * r.machine_busy_s / r.wall_s:>6.0f}%"
            + ("" if r.ok else f"  FAILED: {r.note}")
        )
    if args.json is not None:
        rows = [{**asdict(r), "target_us_per_io": r.target_us_per_io} for r in results]
        args.json.write_text(json.dumps({"cpu": cpu_model(), "results": rows}, indent=2))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
