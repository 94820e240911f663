"""Benchmark sanstack's iSCSI target against tgt (the Linux SCSI target daemon) side by side.

Not a test: run it by hand (docs/benchmarks.md has the exact command and the figures).

One run starts both targets on 127.0.0.1 (free ports), each with its own fully written
backing file of the same size (page cache warmed by reading each file once before any
measurement), then runs the same client, libiscsi's ``iscsi-perf`` (or ``qemu-img bench``
with ``--client qemu-img``) for the reads and ``qemu-img bench -w`` for the writes
(iscsi-perf cannot write), against each in turn, alternating which target goes first
in each round, and prints the median per workload and the ratio sanstack/tgt.  After a
write run the target's backing file is fdatasynced (outside the measurement) so that its
dirty pages are not written back during the next run.

While each client run lasts it also records the CPU time the target process used
(``/proc/<pid>/stat`` utime+stime, all threads), the client's CPU time (rusage of the
reaped child) and the machine's total busy CPU (``/proc/stat``), so that a figure taken
while something else loaded the machine can be told apart; CPU per I/O is CPU seconds
over the I/Os the run completed.

``--profile`` adds, after the measured rounds, one run per workload against sanstack
with ``py-spy record --format raw`` attached, and prints where the target's CPU per
command goes, layer by layer (bench/profile_breakdown.py).

Exit status: 0 all runs succeeded, 1 some run failed or a target misbehaved, 2 a tool is
missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.profile_breakdown import (
    Breakdown,
    ProfileParseError,
    ThreadCpu,
    breakdown,
    format_breakdown,
    parse_collapsed,
)
from bench.target_clients import (
    QEMU_STRIDE_BLOCKS,
    Run,
    Workload,
    run_iscsi_perf,
    run_qemu_bench,
)
from bench.targets import (
    MIB,
    BenchError,
    PySpyRecorder,
    SanstackTarget,
    Target,
    TgtTarget,
    caching_page,
    find_tool,
    log,
    running,
    sync_file,
    tail,
    warm_page_cache,
    write_backing_file,
    write_cache_note,
)

TARGETS = ("sanstack", "tgt")


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
    target_us_per_io: dict[str, float] = field(default_factory=dict)
    main_thread_us_per_io: dict[str, float] = field(default_factory=dict)
    client_us_per_io: dict[str, float] = field(default_factory=dict)

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
            summary.target_us_per_io[name] = statistics.median(r.target_us_per_io for r in mine)
            summary.main_thread_us_per_io[name] = statistics.median(
                r.thread_cpu.main_us for r in mine
            )
            summary.client_us_per_io[name] = statistics.median(r.client_us_per_io for r in mine)
        summaries.append(summary)
    return summaries


def format_tables(summaries: Sequence[Summary], seconds: int, repeat: int) -> str:
    lines: list[str] = []
    for s in summaries:
        lines.append("")
        client = "qemu-img bench" if s.workload.client == "qemu-img" else "iscsi-perf"
        lines.append(f"{s.workload.title}: median {s.unit} of {repeat} x {seconds}s ({client})")
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
        row("target CPU µs per I/O", s.target_us_per_io, ".1f", ratio=True)
        row("client CPU, % of one core", s.client_cpu_pct, ".0f")
        row("client CPU µs per I/O", s.client_us_per_io, ".1f")
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
    parser.add_argument("--write-depth", type=int, default=32, help="4 KiB write QD (32)")
    parser.add_argument("--client", choices=("iscsi-perf", "qemu-img"), default="iscsi-perf")
    parser.add_argument("--python", default=sys.executable, help="runs sanstack's target")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and logs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--profile", action="store_true", help="then one py-spy run per workload on sanstack"
    )
    parser.add_argument("--profile-rate", type=int, default=200, help="py-spy Hz (200)")
    parser.add_argument(
        "--profile-native", action="store_true", help="py-spy --native (C frames too)"
    )
    return parser


def find_tools(args: argparse.Namespace) -> tuple[dict[str, str], list[str]]:
    names = ["iscsi-perf", "qemu-img"] if args.client == "iscsi-perf" else ["qemu-img"]
    names += ["tgtd", "tgtadm"]
    found = {name: find_tool(name) for name in names}
    if args.profile:
        beside = Path(args.python).parent / "py-spy"
        found["py-spy"] = str(beside) if beside.exists() else find_tool("py-spy")
    missing = [name for name, path in found.items() if path is None]
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
    return {name: path for name, path in found.items() if path is not None}, missing


def make_workloads(args: argparse.Namespace) -> list[Workload]:
    stride = f"strided (step {QEMU_STRIDE_BLOCKS} x 4 KiB)"
    rand = "random" if args.client == "iscsi-perf" else stride
    return [
        Workload("rand4k", f"4 KiB {rand} read, QD {args.rand_depth}", 8, args.rand_depth,
                 True, args.client),
        Workload("seq1m", f"1 MiB sequential read, QD {args.seq_depth}", 2048, args.seq_depth,
                 False, args.client),
        Workload("write4k", f"4 KiB {stride} write, QD {args.write_depth}", 8,
                 args.write_depth, True, "qemu-img", write=True),
    ]  # fmt: skip


Runner = Callable[[Target, Workload, int, int], tuple[Run, str]]


def make_runner(tools: dict[str, str]) -> Runner:
    def run(target: Target, workload: Workload, seconds: int, round_no: int) -> tuple[Run, str]:
        if workload.client == "iscsi-perf":
            return run_iscsi_perf(tools["iscsi-perf"], target, workload, seconds, round_no)
        return run_qemu_bench(tools["qemu-img"], target, workload, seconds, round_no)

    return run


@dataclass
class Profile:
    """One py-spy recording of sanstack's target during one workload."""

    workload: Workload
    run: Run
    result: Breakdown
    cpu: ThreadCpu | None  # the measured rounds' medians, else the profiled run's
    py_spy_summary: str


def profile_sanstack(
    *,
    py_spy: str,
    runner: Runner,
    target: SanstackTarget,
    workload: Workload,
    args: argparse.Namespace,
    workdir: Path,
    measured: ThreadCpu | None,
) -> Profile:
    output = workdir / f"py-spy-{workload.key}.txt"
    recorder = PySpyRecorder(
        py_spy, target.pid, output, rate=args.profile_rate, native=args.profile_native
    )
    recorder.start()
    try:
        run, _ = runner(target, workload, args.seconds, 0)
    finally:
        log_text = recorder.stop()
    counts = re.search(r"Samples: \d+ Errors: \d+", log_text)
    summary = f"py-spy {counts[0] if counts else 'printed no sample count'}"
    malformed: list[str] = []
    try:
        result = breakdown(parse_collapsed(output.read_text(), malformed))
    except (OSError, ProfileParseError) as exc:
        raise BenchError(f"py-spy output {output}: {exc}\n{log_text}") from None
    if malformed:
        summary += f", {len(malformed)} malformed lines skipped"
    cpu = measured or (run.thread_cpu if run.ok else None)
    return Profile(workload, run, result, cpu, summary)


def format_profiles(profiles: Sequence[Profile], args: argparse.Namespace) -> str:
    mode = "--native" if args.profile_native else "--nonblocking"
    lines = [
        "",
        f"Where sanstack's target spends its CPU (py-spy record --format raw --rate "
        f"{args.profile_rate} {mode}; self time of the running frame "
        "by layer; the samples of the main thread and of the other threads each share out "
        "that group's CPU µs per I/O, the measured rounds' medians)",
    ]
    for p in profiles:
        unit = f"{p.run.iops:,.0f} IOPS" if p.workload.random else f"{p.run.mib_per_s:,.1f} MiB/s"
        lines.append("")
        lines.append(
            f"profiled run: {unit}, {p.run.target_us_per_io:.1f} µs target CPU per I/O "
            f"(under py-spy); {p.py_spy_summary}"
        )
        lines.append(format_breakdown(p.result, p.cpu, p.workload.title))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.seconds, args.repeat, args.rand_depth, args.seq_depth, args.write_depth) < 1:
        parser.error("--seconds, --repeat and the queue depths must be at least 1")
    if args.profile_rate < 1:
        parser.error("--profile-rate must be at least 1")
    tools, missing = find_tools(args)
    if missing:
        log(f"missing: {', '.join(missing)} (scripts/install-deps installs the tools)")
        return 2
    workloads = make_workloads(args)
    runner = make_runner(tools)

    workdir = Path(tempfile.mkdtemp(prefix="sanstack-bench-", dir=args.dir))
    runs: list[Run] = []
    profiles: list[Profile] = []
    probes: dict[str, dict[str, bool] | str] = {}
    failures: list[str] = []
    started_utc = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
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
        tgt = TgtTarget(tools["tgtd"], tools["tgtadm"], workdir, files["tgt"])
        targets: dict[str, Target] = {"sanstack": sanstack, "tgt": tgt}
        with running([sanstack, tgt]):
            log(f"sanstack pid {sanstack.pid} {sanstack.url}; tgtd pid {tgt.pid} {tgt.url}")
            probes = {name: caching_page(target.url) for name, target in targets.items()}
            log(write_cache_note(probes))
            for round_no in range(args.repeat):
                order = TARGETS if round_no % 2 == 0 else TARGETS[::-1]
                for workload in workloads:
                    for name in order:
                        target = targets[name]
                        if not target.alive():
                            failures.append(f"{name} is not running (round {round_no + 1})")
                            continue
                        run, output = runner(target, workload, args.seconds, round_no + 1)
                        runs.append(run)
                        unit = run.iops if workload.random else run.mib_per_s
                        log(
                            f"round {round_no + 1} {workload.key:7} {name:8} "
                            f"{unit:12,.1f} {'IOPS' if workload.random else 'MiB/s':5} "
                            f"target CPU {run.target_cpu_pct:4.0f}% "
                            f"(main thread {run.main_thread_cpu_pct:3.0f}%) "
                            f"{run.target_us_per_io:5.1f} µs/IO  {run.note}"
                        )
                        if workload.write:
                            log(f"  fdatasync {name}.img: {sync_file(files[name]):.2f}s")
                        if not run.ok:
                            failures.append(
                                f"{name} {workload.key} round {round_no + 1}: {run.note}\n"
                                + output[-2000:]
                            )
            if args.profile and sanstack.alive():
                measured = {
                    s.workload.key: ThreadCpu(
                        s.main_thread_us_per_io["sanstack"],
                        s.target_us_per_io["sanstack"] - s.main_thread_us_per_io["sanstack"],
                    )
                    for s in summarise(workloads, runs)
                    if "sanstack" in s.target_us_per_io
                }
                for workload in workloads:
                    log(f"profiling sanstack: {workload.key} with py-spy")
                    profile = profile_sanstack(
                        py_spy=tools["py-spy"], runner=runner, target=sanstack,
                        workload=workload, args=args, workdir=workdir,
                        measured=measured.get(workload.key),
                    )  # fmt: skip
                    profiles.append(profile)
                    if workload.write:
                        sync_file(files["sanstack"])
                    if not profile.run.ok:
                        failures.append(f"profiled {workload.key} run: {profile.run.note}")
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
    info["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]

    summaries = summarise(workloads, runs)
    if args.json:
        report = json_report(
            args=args, started_utc=started_utc, info=info, probes=probes,
            summaries=summaries, runs=runs, profiles=profiles, failures=failures,
        )  # fmt: skip
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{started_utc}; reads: {args.client}, writes: qemu-img bench; "
            f"{args.size // MIB} MiB fully written file per target, page cache warmed (each "
            f"file read once) before measuring; targets alternate\n"
            f"machine: {info['nproc']} CPUs ({info['cpu_model']}), kernel {info['kernel']}, "
            f"Python {info['python']}; load average {' '.join(info['loadavg_at_start'])} at "
            f"start, {' '.join(info['loadavg_at_end'])} at end\n{write_cache_note(probes)}"
        )
        print(format_tables(summaries, args.seconds, args.repeat))
        if profiles:
            print(format_profiles(profiles, args))
        for failure in failures:
            print(f"\nPROBLEM: {failure}")
    return 1 if failures else 0


def json_report(
    *,
    args: argparse.Namespace,
    started_utc: str,
    info: dict[str, Any],
    probes: dict[str, dict[str, bool] | str],
    summaries: Sequence[Summary],
    runs: Sequence[Run],
    profiles: Sequence[Profile],
    failures: Sequence[str],
) -> dict[str, Any]:
    return {
        "started_utc": started_utc,
        "client": args.client,
        "write_client": "qemu-img",
        "seconds": args.seconds,
        "repeat": args.repeat,
        "size_bytes": args.size,
        "page_cache_warmed": True,
        "machine": info,
        "write_cache": probes,
        "workloads": [
            {
                **asdict(s.workload),
                "unit": s.unit,
                "median": s.median,
                "ratio_sanstack_over_tgt": s.ratio,
                "target_cpu_pct_median": s.cpu_pct,
                "target_main_thread_cpu_pct_median": s.main_thread_cpu_pct,
                "target_cpu_us_per_io_median": s.target_us_per_io,
                "target_main_thread_cpu_us_per_io_median": s.main_thread_us_per_io,
                "client_cpu_pct_median": s.client_cpu_pct,
                "client_cpu_us_per_io_median": s.client_us_per_io,
                "other_busy_cpu_pct_median": s.others_cpu_pct,
            }
            for s in summaries
        ],
        "runs": [
            {
                **asdict(r),
                "target_cpu_pct": r.target_cpu_pct,
                "target_main_thread_cpu_pct": r.main_thread_cpu_pct,
                "target_cpu_us_per_io": r.target_us_per_io,
                "client_cpu_us_per_io": r.client_us_per_io,
            }
            for r in runs
        ],
        "profile": None
        if not args.profile
        else {
            "rate_hz": args.profile_rate,
            "native": args.profile_native,
            "workloads": [
                {
                    "workload": p.workload.key,
                    "profiled_run": {
                        **asdict(p.run),
                        "target_cpu_us_per_io": p.run.target_us_per_io,
                    },
                    "py_spy": p.py_spy_summary,
                    **p.result.as_dict(p.cpu),
                }
                for p in profiles
            ],
        },
        "failures": list(failures),
    }


if __name__ == "__main__":
    sys.exit(main())
