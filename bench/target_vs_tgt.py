"""Benchmark sanstack's iSCSI target against tgt (the Linux SCSI target daemon) side by side.

Not a test: run it by hand (docs/benchmarks.md has the exact command and the figures).

One run starts both targets on 127.0.0.1 (free ports), each with its own fully written
backing file of the same size (page cache warmed by reading each file once before any
measurement), then runs the same client, libiscsi's ``iscsi-perf`` (or ``qemu-img bench``
with ``--client qemu-img``), against each in turn, alternating which target goes first
in each round, and prints the median per workload and the ratio sanstack/tgt.

While each client run lasts it also records the CPU time the target process used
(``/proc/<pid>/stat`` utime+stime, all threads), the client's CPU time (rusage of the
reaped child) and the machine's total busy CPU (``/proc/stat``), so that a figure taken
while something else loaded the machine can be told apart.

Exit status: 0 all runs succeeded, 1 some run failed or a target misbehaved, 2 a tool is
missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.perf_output import (
    PerfParseError,
    parse_iscsi_perf_output,
    parse_qemu_img_bench_output,
)
from bench.targets import (
    MIB,
    BenchError,
    SanstackTarget,
    Target,
    TgtTarget,
    children_cpu_seconds,
    find_tool,
    log,
    machine_busy_seconds,
    process_cpu_seconds,
    running,
    tail,
    warm_page_cache,
    write_backing_file,
)

TARGETS = ("sanstack", "tgt")
QEMU_STRIDE_BLOCKS = 104729  # a prime: with -S it scatters 4 KiB reads over the whole LUN


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    blocks: int  # 512-byte blocks per request
    depth: int
    random: bool

    @property
    def request_bytes(self) -> int:
        return self.blocks * 512


@dataclass
class Run:
    """One client run against one target."""

    target: str
    workload: str
    round: int
    ok: bool
    iops: float = 0.0
    mib_per_s: float = 0.0
    wall_s: float = 0.0
    target_cpu_s: float = 0.0
    target_main_thread_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    machine_busy_s: float = 0.0
    note: str = ""

    @property
    def target_cpu_pct(self) -> float:
        return 100.0 * self.target_cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def main_thread_cpu_pct(self) -> float:
        return 100.0 * self.target_main_thread_cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def others_cpu_pct(self) -> float:
        """Busy CPU not spent by this target or client (other target idle, this script, ...)."""
        rest = self.machine_busy_s - self.target_cpu_s - self.client_cpu_s
        return 100.0 * max(0.0, rest) / self.wall_s if self.wall_s else 0.0


# ---------------------------------------------------------------- clients


def measure(
    target: Target,
    args: list[str],
    run: Run,
    timeout: float,
    interrupt_after: float | None = None,
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run a client with a wall-clock bound; fill ``run``'s wall time and CPU figures.

    If ``interrupt_after`` is given and the client is still running then, it gets SIGINT
    (iscsi-perf then drains and logs out) and, 10 s later, SIGKILL.  Without it the
    client is killed after ``timeout``.  Returns the client's output and a note saying
    how it had to be stopped ("" if it exited by itself).
    """
    pid = target.pid
    cpu0 = process_cpu_seconds(pid)
    main0 = process_cpu_seconds(pid, main_thread_only=True)
    client0, busy0 = children_cpu_seconds(), machine_busy_seconds()
    started = time.monotonic()
    note = ""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        try:
            process.wait(interrupt_after if interrupt_after is not None else timeout)
        except subprocess.TimeoutExpired:
            if interrupt_after is None:
                process.kill()
                note = f"killed after {timeout:.0f}s"
            else:
                process.send_signal(signal.SIGINT)
                note = f"did not stop by itself; SIGINT after {interrupt_after:.0f}s"
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                note += "; SIGKILL"
            process.wait(10)
        run.wall_s = time.monotonic() - started
        run.machine_busy_s = machine_busy_seconds() - busy0
        run.client_cpu_s = children_cpu_seconds() - client0
        if target.alive():
            run.target_cpu_s = process_cpu_seconds(pid) - cpu0
            run.target_main_thread_cpu_s = process_cpu_seconds(pid, main_thread_only=True) - main0
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(
            args,
            process.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )
    return result, note


def run_iscsi_perf(
    iscsi_perf: str, target: Target, workload: Workload, seconds: int, round_no: int
) -> tuple[Run, str]:
    args = [iscsi_perf, "-l", "-t", str(seconds), "-m", str(workload.depth)]
    args += ["-b", str(workload.blocks)]
    if workload.random:
        args.append("-r")
    args.append(target.url)
    # iscsi-perf's own countdown (-t) can miss zero and then never stop (it only checks
    # once a second from its completion callback): bound it and interrupt it ourselves.
    run = Run(target.name, workload.key, round_no, ok=False)
    result, note = measure(target, args, run, timeout=seconds + 40, interrupt_after=seconds + 20)
    output = result.stdout + result.stderr
    try:
        parsed = parse_iscsi_perf_output(output)
    except PerfParseError as exc:
        run.note = f"{exc}; exit {result.returncode}; {note}".strip("; ")
        return run, output
    run.iops = parsed.iops
    run.mib_per_s = parsed.mib_per_s or parsed.iops * workload.request_bytes / MIB
    problems = [note] if note else []
    if result.returncode != 0:
        problems.append(f"exit {result.returncode}")
    if not parsed.finished:
        problems.append("no 'finished.'")
    if parsed.transfer_bytes not in (None, workload.request_bytes):
        problems.append(f"transfer size {parsed.transfer_bytes} (LUN block size not 512?)")
    problems += list(parsed.errors[:3])
    run.ok = not problems
    run.note = "; ".join(problems)
    return run, output


def run_qemu_bench(
    qemu_img: str, target: Target, workload: Workload, seconds: int, round_no: int
) -> tuple[Run, str]:
    """``qemu-img bench`` runs a request count, not a duration: calibrate, then size it."""

    def args_for(count: int) -> list[str]:
        step = workload.request_bytes * (QEMU_STRIDE_BLOCKS if workload.random else 1)
        return [
            qemu_img, "bench", "-f", "raw", "-c", str(count), "-d", str(workload.depth),
            "-s", str(workload.request_bytes), "-S", str(step), target.url,
        ]  # fmt: skip

    calibration = max(workload.depth * 4, 8192 if workload.request_bytes <= 65536 else 256)
    run = Run(target.name, workload.key, round_no, ok=False)
    result, _ = measure(target, args_for(calibration), run, timeout=120)
    try:
        rate = parse_qemu_img_bench_output(result.stdout).iops
    except PerfParseError:
        run.note = "calibration failed"
        return run, result.stdout + result.stderr
    count = max(workload.depth, int(rate * seconds))
    run = Run(target.name, workload.key, round_no, ok=False)
    result, note = measure(target, args_for(count), run, timeout=seconds * 4 + 60)
    output = result.stdout + result.stderr
    try:
        parsed = parse_qemu_img_bench_output(result.stdout)
    except PerfParseError as exc:
        run.note = f"{exc}; exit {result.returncode}; {note}".strip("; ")
        return run, output
    run.iops, run.mib_per_s = parsed.iops, parsed.mib_per_s
    run.ok = result.returncode == 0 and not note
    run.note = note if run.ok else f"exit {result.returncode} {note}".strip()
    return run, output


# ---------------------------------------------------------------- reporting


@dataclass
class Summary:
    workload: Workload
    unit: str
    median: dict[str, float] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)
    cpu_pct: dict[str, float] = field(default_factory=dict)
    main_thread_cpu_pct: dict[str, float] = field(default_factory=dict)
    client_cpu_pct: dict[str, float] = field(default_factory=dict)
    others_cpu_pct: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        tgt = self.median.get("tgt")
        mine = self.median.get("sanstack")
        return mine / tgt if tgt and mine is not None else None


def summarise(workloads: Sequence[Workload], runs: Sequence[Run]) -> list[Summary]:
    summaries = []
    for workload in workloads:
        unit = "IOPS" if workload.random else "MiB/s"
        summary = Summary(workload, unit)
        for name in TARGETS:
            mine = [r for r in runs if r.workload == workload.key and r.target == name and r.ok]
            if not mine:
                continue
            values = [r.iops if workload.random else r.mib_per_s for r in mine]
            summary.values[name] = values
            summary.median[name] = statistics.median(values)
            summary.cpu_pct[name] = statistics.median(r.target_cpu_pct for r in mine)
            summary.main_thread_cpu_pct[name] = statistics.median(
                r.main_thread_cpu_pct for r in mine
            )
            summary.client_cpu_pct[name] = statistics.median(
                100.0 * r.client_cpu_s / r.wall_s for r in mine
            )
            summary.others_cpu_pct[name] = statistics.median(r.others_cpu_pct for r in mine)
        summaries.append(summary)
    return summaries


def format_tables(summaries: Sequence[Summary], seconds: int, repeat: int) -> str:
    lines: list[str] = []
    for s in summaries:
        lines.append("")
        lines.append(f"{s.workload.title}: median {s.unit} of {repeat} x {seconds}s")
        lines.append(f"  {'':28}{'sanstack':>12}{'tgt':>12}{'sanstack/tgt':>14}")

        def row(label: str, values: dict[str, float], fmt: str, ratio: bool = False) -> None:
            cells = [format(values[t], fmt) if t in values else "-" for t in TARGETS]
            extra = ""
            if ratio and values.get("tgt") and "sanstack" in values:
                extra = f"{values['sanstack'] / values['tgt']:14.2f}"
            lines.append(f"  {label:28}{cells[0]:>12}{cells[1]:>12}{extra}")

        row(s.unit, s.median, ",.0f" if s.unit == "IOPS" else ",.1f", ratio=True)
        if s.unit == "IOPS":
            mib = {t: v * s.workload.request_bytes / MIB for t, v in s.median.items()}
            row("(MiB/s)", mib, ",.1f")
        else:
            iops = {t: v * MIB / s.workload.request_bytes for t, v in s.median.items()}
            row("(IOPS)", iops, ",.0f")
        row("target CPU, % of one core", s.cpu_pct, ".0f")
        row("  of which main thread", s.main_thread_cpu_pct, ".0f")
        row("client CPU, % of one core", s.client_cpu_pct, ".0f")
        row("other busy CPU, %", s.others_cpu_pct, ".0f")
        busy = [t for t, v in s.others_cpu_pct.items() if v > 20]
        if busy:
            lines.append(
                f"  NOTE: something else kept the machine busy during the {', '.join(busy)} "
                "runs (other busy CPU > 20% of a core): those figures are disturbed"
            )
        for name in TARGETS:
            if name in s.values:
                values = ", ".join(format(v, ",.0f") for v in s.values[name])
                lines.append(f"    {name} runs: {values}")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


# ---------------------------------------------------------------- main


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": MIB, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = units.get(text[-1:], 0)
    value = int(float(text[:-1]) * scale) if scale else int(text)
    if value < 64 * MIB or value % MIB:
        raise argparse.ArgumentTypeError("size must be a whole number of MiB, at least 64M")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="per client run (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; median (default 3)")
    parser.add_argument("--size", type=parse_size, default=1 << 30, help="LUN size (1G)")
    parser.add_argument("--rand-depth", type=int, default=32, help="4 KiB random QD (32)")
    parser.add_argument("--seq-depth", type=int, default=8, help="1 MiB sequential QD (8)")
    parser.add_argument("--client", choices=("iscsi-perf", "qemu-img"), default="iscsi-perf")
    parser.add_argument("--python", default=sys.executable, help="runs sanstack's target")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and logs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.seconds, args.repeat, args.rand_depth, args.seq_depth) < 1:
        parser.error("--seconds, --repeat and the queue depths must be at least 1")
    client_tool = "iscsi-perf" if args.client == "iscsi-perf" else "qemu-img"
    tools = {name: find_tool(name) for name in (client_tool, "tgtd", "tgtadm")}
    missing = [name for name, path in tools.items() if path is None]
    try:
        probe = subprocess.run(
            [args.python, "-c", "import sanstack.cli.main"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        importable = probe.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        importable = False
    if not importable:
        missing.append(f"sanstack (not importable by {args.python})")
    if missing:
        log(f"missing: {', '.join(missing)} (scripts/install-deps installs the tools)")
        return 2
    client_path, tgtd, tgtadm = (str(tools[n]) for n in (client_tool, "tgtd", "tgtadm"))

    workloads = [
        Workload("rand4k", f"4 KiB random read, QD {args.rand_depth}", 8, args.rand_depth, True),
        Workload(
            "seq1m", f"1 MiB sequential read, QD {args.seq_depth}", 2048, args.seq_depth, False
        ),
    ]
    if args.client == "qemu-img":
        workloads[0] = Workload(
            "rand4k",
            f"4 KiB strided read (step {QEMU_STRIDE_BLOCKS} x 4 KiB), QD {args.rand_depth}",
            8,
            args.rand_depth,
            True,
        )
    runner = run_iscsi_perf if args.client == "iscsi-perf" else run_qemu_bench

    workdir = Path(tempfile.mkdtemp(prefix="sanstack-bench-", dir=args.dir))
    runs: list[Run] = []
    failures: list[str] = []
    info = machine_info()
    sanstack: SanstackTarget | None = None
    try:
        files = {name: workdir / f"{name}.img" for name in TARGETS}
        for path in files.values():
            started = time.monotonic()
            write_backing_file(path, args.size)
            log(f"wrote {path} ({args.size // MIB} MiB) in {time.monotonic() - started:.1f}s")
        for name, path in files.items():
            took = warm_page_cache(path)
            log(f"page cache warmed: read {name}.img once in {took:.2f}s")
        sanstack = SanstackTarget(args.python, workdir, files["sanstack"], args.size)
        tgt = TgtTarget(tgtd, tgtadm, workdir, files["tgt"])
        targets: dict[str, Target] = {"sanstack": sanstack, "tgt": tgt}
        with running([sanstack, tgt]):
            log(f"sanstack pid {sanstack.pid} {sanstack.url}; tgtd pid {tgt.pid} {tgt.url}")
            for round_no in range(args.repeat):
                order = TARGETS if round_no % 2 == 0 else TARGETS[::-1]
                for workload in workloads:
                    for name in order:
                        target = targets[name]
                        if not target.alive():
                            failures.append(f"{name} is not running (round {round_no + 1})")
                            continue
                        run, output = runner(
                            client_path, target, workload, args.seconds, round_no + 1
                        )
                        runs.append(run)
                        unit = run.iops if workload.random else run.mib_per_s
                        log(
                            f"round {round_no + 1} {workload.key:7} {name:8} "
                            f"{unit:12,.1f} {'IOPS' if workload.random else 'MiB/s':5} "
                            f"target CPU {run.target_cpu_pct:4.0f}% "
                            f"(main thread {run.main_thread_cpu_pct:3.0f}%)  {run.note}"
                        )
                        if not run.ok:
                            failures.append(
                                f"{name} {workload.key} round {round_no + 1}: {run.note}\n"
                                + output[-2000:]
                            )
    except BenchError as exc:
        failures.append(str(exc))
    finally:
        if sanstack is not None:
            failures += [f"sanstack target {p}" for p in sanstack.problems()]
        if failures and sanstack is not None:
            failures.append(f"sanstack target stderr (tail):\n{tail(sanstack.log_path)}")
        if args.keep or failures:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    summaries = summarise(workloads, runs)
    if args.json:
        report = {
            "client": args.client,
            "seconds": args.seconds,
            "repeat": args.repeat,
            "size_bytes": args.size,
            "page_cache_warmed": True,
            "machine": info,
            "workloads": [
                {
                    **asdict(s.workload),
                    "unit": s.unit,
                    "median": s.median,
                    "ratio_sanstack_over_tgt": s.ratio,
                    "target_cpu_pct_median": s.cpu_pct,
                    "target_main_thread_cpu_pct_median": s.main_thread_cpu_pct,
                    "client_cpu_pct_median": s.client_cpu_pct,
                    "other_busy_cpu_pct_median": s.others_cpu_pct,
                }
                for s in summaries
            ],
            "runs": [
                {
                    **asdict(r),
                    "target_cpu_pct": r.target_cpu_pct,
                    "target_main_thread_cpu_pct": r.main_thread_cpu_pct,
                }
                for r in runs
            ],
            "failures": failures,
        }
        print(json.dumps(report, indent=2))
    else:
        print(
            f"client {args.client}; {args.size // MIB} MiB fully written file per target, "
            f"page cache warmed (each file read once) before measuring; targets alternate; "
            f"{info['nproc']} CPUs ({info['cpu_model']}), kernel {info['kernel']}"
        )
        print(format_tables(summaries, args.seconds, args.repeat))
        for failure in failures:
            print(f"\nPROBLEM: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
