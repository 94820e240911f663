"""The clients of bench/target_vs_tgt.py: one run of iscsi-perf or qemu-img bench against a
target, with the target's, the client's and the machine's CPU over the run.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

from bench.perf_output import (
    PerfParseError,
    parse_iscsi_perf_output,
    parse_qemu_img_bench_output,
)
from bench.profile_breakdown import ThreadCpu
from bench.targets import (
    MIB,
    Target,
    children_cpu_seconds,
    machine_busy_seconds,
    process_cpu_seconds,
)

QEMU_STRIDE_BLOCKS = 104729  # a prime: with -S it scatters 4 KiB I/O over the whole LUN
WRITE_PATTERN = 0xA5


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    blocks: int  # 512-byte blocks per request
    depth: int
    random: bool
    client: str  # "iscsi-perf" or "qemu-img"
    write: bool = False

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
    ios: float = 0.0  # I/Os the run completed
    note: str = ""

    @property
    def target_us_per_io(self) -> float:
        return 1e6 * self.target_cpu_s / self.ios if self.ios else 0.0

    @property
    def thread_cpu(self) -> ThreadCpu:
        """The target's CPU µs per I/O: its main thread's and all its other threads'."""
        main = 1e6 * self.target_main_thread_cpu_s / self.ios if self.ios else 0.0
        return ThreadCpu(main, max(0.0, self.target_us_per_io - main))

    @property
    def client_us_per_io(self) -> float:
        return 1e6 * self.client_cpu_s / self.ios if self.ios else 0.0

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
    run.ios = parsed.iops * seconds  # the average is over the countdown's seconds
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
    """``qemu-img bench`` runs a request count, not a duration: calibrate, then size it.

    Writes carry a non-zero pattern (no target can take them for zeroes) and use cache
    mode ``unsafe``: qemu ignores flushes, so no SYNCHRONIZE CACHE at close lands in the
    measured CPU (each write is a plain WRITE(16), no FUA, as in ``writeback`` mode).
    """

    def args_for(count: int) -> list[str]:
        step = workload.request_bytes * (QEMU_STRIDE_BLOCKS if workload.random else 1)
        args = [
            qemu_img, "bench", "-f", "raw", "-c", str(count), "-d", str(workload.depth),
            "-s", str(workload.request_bytes), "-S", str(step),
        ]  # fmt: skip
        if workload.write:
            args += ["-w", f"--pattern={WRITE_PATTERN}", "-t", "unsafe"]
        return [*args, target.url]

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
    run.ios = parsed.requests
    run.ok = result.returncode == 0 and not note
    run.note = note if run.ok else f"exit {result.returncode} {note}".strip()
    return run, output
