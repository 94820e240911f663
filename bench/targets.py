"""The two targets under test, started and stopped as subprocesses, and /proc helpers.

Used by bench/target_vs_tgt.py; see docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from sanstack.errors import SanstackError
from sanstack.initiator.session import ISCSISession

SANSTACK_IQN = "iqn.2026-01.org.sanstack.bench:sanstack"
TGT_IQN = "iqn.2026-01.org.sanstack.bench:tgt"
MIB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A target could not be started, configured or stopped."""


# ---------------------------------------------------------------- processes and /proc


def find_tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_cpu_seconds(pid: int, *, main_thread_only: bool = False) -> float:
    """utime+stime of a whole process (all threads) or of its main thread, in seconds."""
    path = f"/proc/{pid}/task/{pid}/stat" if main_thread_only else f"/proc/{pid}/stat"
    stat = Path(path).read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent neither idle nor in iowait since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return (total - values[3] - values[4]) / CLK_TCK


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on, from its socket fds and /proc/net/tcp{,6}."""
    inodes: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def wait_listening(process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"pid {process.pid} exited {process.returncode}")
        if port in listening_ports(process.pid):
            return
        time.sleep(0.05)
    raise BenchError(f"pid {process.pid} does not listen on 127.0.0.1:{port} after {timeout:.0f}s")


def stop_process(process: subprocess.Popen[bytes], sig: int, timeout: float) -> bool:
    """Send ``sig``, wait ``timeout``; SIGKILL on expiry.  True if it exited by itself."""
    if process.poll() is not None:
        return True
    process.send_signal(sig)
    try:
        process.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        return False


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- backing files


def write_backing_file(path: Path, size: int) -> None:
    """A fully allocated (written, not sparse) file of ``size`` bytes of incompressible data."""
    chunk = bytearray(os.urandom(MIB))
    with path.open("wb", buffering=0) as out:
        written = 0
        while written < size:
            n = min(MIB, size - written)
            chunk[:8] = written.to_bytes(8, "little")  # every MiB differs
            out.write(memoryview(chunk)[:n])
            written += n
        os.fsync(out.fileno())
    allocated = path.stat().st_blocks * 512
    if allocated < size:
        raise BenchError(f"{path} is sparse ({allocated} of {size} bytes allocated)")


def sync_file(path: Path) -> float:
    """fdatasync a backing file (its dirty pages go out now, not during the next run)."""
    started = time.monotonic()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)
    return time.monotonic() - started


def warm_page_cache(path: Path) -> float:
    """Read the whole file once; returns the seconds it took."""
    started = time.monotonic()
    buf = bytearray(4 * MIB)
    with path.open("rb", buffering=0) as src:
        while src.readinto(buf):
            pass
    return time.monotonic() - started


# ---------------------------------------------------------------- targets


class SanstackTarget:
    name = "sanstack"

    def __init__(self, python: str, workdir: Path, backing: Path, size: int) -> None:
        self.port = free_port()
        self.url = f"iscsi://127.0.0.1:{self.port}/{SANSTACK_IQN}/0"
        self.log_path = workdir / "sanstack-target.log"
        self.args = [
            python,
            "-m",
            "sanstack.cli.main",
            "target",
            "serve",
            "--iqn",
            SANSTACK_IQN,
            "--portal",
            f"127.0.0.1:{self.port}",
            "--lun",
            f"{backing}:{size // MIB}M",
            "--nop-interval",
            "0",
            "--control",
            str(workdir / "sanstack-control.sock"),
            "--state-dir",
            str(workdir / "sanstack-state"),
        ]
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self.stopped_cleanly = True

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                self.args, stdout=subprocess.PIPE, stderr=log_file, cwd=self.workdir
            )
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        os.set_blocking(fd, False)
        seen = b""
        deadline = time.monotonic() + timeout
        while b"ready" not in seen:
            if self.process.poll() is not None:
                raise BenchError(
                    f"sanstack target exited {self.process.returncode} before 'ready':\n"
                    + tail(self.log_path)
                )
            if time.monotonic() > deadline:
                raise BenchError(f"sanstack target not ready in {timeout:.0f}s")
            with contextlib.suppress(BlockingIOError):
                seen += os.read(fd, 4096)
            time.sleep(0.02)
        wait_listening(self.process, self.port, 10.0)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        self.stopped_cleanly = stop_process(self.process, signal.SIGTERM, timeout)
        self.exit_code = self.process.returncode
        if self.process.stdout is not None:
            self.process.stdout.close()

    def problems(self) -> list[str]:
        found: list[str] = []
        if not self.stopped_cleanly:
            found.append("did not exit within 30s of SIGTERM (killed)")
        elif self.exit_code not in (0, None):
            found.append(f"exited {self.exit_code} after SIGTERM")
        text = tail(self.log_path, 200_000)
        for marker in ("Traceback", "ERROR", "CRITICAL"):
            if marker in text:
                found.append(f"{marker!r} in its stderr log")
        return found


class TgtTarget:
    name = "tgt"

    def __init__(
        self, tgtd: str, tgtadm: str, workdir: Path, backing: Path, *, port: int | None = None
    ) -> None:
        self.tgtd = tgtd
        self.tgtadm = tgtadm
        self.workdir = workdir
        self.backing = backing
        self.port = port or free_port()
        # tgtd's management channel is the unix socket "$TGT_IPC_SOCKET.<control port>"
        # (the "port" must be 0..32767); a private socket path keeps it away from any
        # system tgtd (which uses 3260 and /var/run/tgtd/socket.0), so any number is free.
        self.control_port = 1 + os.getpid() % 32767
        self.env = {**os.environ, "TGT_IPC_SOCKET": str(workdir / "tgtd-ipc")}
        self.url = f"iscsi://127.0.0.1:{self.port}/{TGT_IQN}/1"  # LUN 0 is tgt's controller
        self.log_path = workdir / "tgtd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.killed = False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def adm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.tgtadm, "-C", str(self.control_port), "--lld", "iscsi", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check and result.returncode != 0:
            raise BenchError(
                f"tgtadm {' '.join(args)} exited {result.returncode}: "
                f"{result.stdout}{result.stderr}"
            )
        return result

    def start(self, timeout: float = 30.0) -> None:
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [
                    self.tgtd,
                    "-f",
                    "-C",
                    str(self.control_port),
                    "--iscsi",
                    f"portal=127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
            )
        try:
            wait_listening(self.process, self.port, timeout)
        except BenchError as exc:
            raise BenchError(f"tgtd did not come up ({exc}):\n{tail(self.log_path)}") from None
        ports = listening_ports(self.pid)
        if 3260 in ports:
            raise BenchError(f"tgtd listens on 3260 as well ({sorted(ports)})")
        self.adm("--mode", "target", "--op", "new", "--tid", "1", "-T", TGT_IQN)
        self.adm(
            "--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1",
            "-b", str(self.backing),
        )  # fmt: skip
        self.adm("--mode", "target", "--op", "bind", "--tid", "1", "-I", "ALL")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # tgtd catches SIGTERM and carries on; the documented way down is to delete the
        # targets and then the "system".  SIGKILL if that does not work within 10 s.
        with contextlib.suppress(Exception):
            self.adm("--mode", "target", "--op", "delete", "--force", "--tid", "1", check=False)
            subprocess.run(
                [self.tgtadm, "-C", str(self.control_port), "--mode", "system", "--op", "delete"],
                env=self.env,
                capture_output=True,
                timeout=30,
                check=False,
            )
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.killed = True
            self.process.kill()
            self.process.wait(10)
        log(f"tgtd stopped ({'SIGKILL' if self.killed else 'tgtadm --mode system --op delete'})")


Target = SanstackTarget | TgtTarget


@contextlib.contextmanager
def running(targets: Sequence[Target]) -> Iterator[None]:
    try:
        for target in targets:
            target.start()
        yield
    finally:
        for target in reversed(targets):
            target.stop()


# ---------------------------------------------------------------- write cache probe

MODE_SENSE_6 = 0x1A
CACHING_PAGE = 0x08
WCE, RCD = 0x04, 0x01
CHECK_CONDITION = 0x02


def caching_page(url: str, timeout: float = 20.0) -> dict[str, bool] | str:
    """WCE and RCD of a LUN's Caching mode page (MODE SENSE(6), current values).

    Asked through sanstack's initiator at ``iscsi://host:port/iqn/lun``; a string says why
    it could not be read.
    """
    parts = urlsplit(url)
    iqn, lun = parts.path.strip("/").rsplit("/", 1)
    host, port = parts.hostname or "127.0.0.1", parts.port or 3260

    async def ask() -> dict[str, bool] | str:
        session = await ISCSISession.connect(
            host, port, iqn, initiator_name="iqn.2026-01.org.sanstack.bench:probe",
            nop_interval=None,
        )  # fmt: skip
        cdb = bytes([MODE_SENSE_6, 0x08, CACHING_PAGE, 0, 255, 0])  # DBD: no descriptors
        try:
            # tgt answers a new nexus's first command with a UNIT ATTENTION: ask again.
            for _ in range(3):
                response = await session.command(int(lun), cdb, read_length=255)
                if response.status != CHECK_CONDITION:
                    break
        finally:
            await session.logout()
        data = bytes(response.data)
        if response.status != 0 or len(data) < 4:
            return f"MODE SENSE status {response.status:#x}, {len(data)} bytes"
        page = data[4 + data[3] :]
        if len(page) < 3 or page[0] & 0x3F != CACHING_PAGE:
            return f"no caching page in {data.hex()}"
        return {"wce": bool(page[2] & WCE), "rcd": bool(page[2] & RCD)}

    try:
        return asyncio.run(asyncio.wait_for(ask(), timeout))
    except (OSError, TimeoutError, SanstackError) as exc:
        return f"{type(exc).__name__}: {exc}"


def write_cache_note(probes: dict[str, dict[str, bool] | str]) -> str:
    def one(name: str) -> str:
        probe = probes.get(name, "not asked")
        if isinstance(probe, str):
            return f"{name} caching page unreadable ({probe})"
        return f"{name} WCE={int(probe['wce'])} RCD={int(probe['rcd'])}"

    return (
        f"write cache (MODE SENSE caching page): {one('sanstack')} (file backstore: writes "
        f"go to the page cache, fdatasync on SYNCHRONIZE CACHE, FUA or WCE=0); {one('tgt')} "
        "(rdwr: pwrite; sync_file_range on FUA or WCE=0)"
    )


# ---------------------------------------------------------------- py-spy


class PySpyRecorder:
    """``py-spy record --format raw`` attached to a process until ``stop``."""

    def __init__(
        self, py_spy: str, pid: int, output: Path, *, rate: int, native: bool = False
    ) -> None:
        self.args = [
            py_spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(output),
            "--rate", str(rate),
        ]  # fmt: skip
        # Blocking mode (py-spy stops the process for each sample) skews the profile on
        # this VM: the stops land at system calls (getpid, writev, preadv), so functions
        # that make one look several times heavier, and it slows the target by a quarter.
        # --nonblocking reads the stacks of the running process instead; the few stacks
        # caught mid-change are dropped ("Errors" in its summary).  --native needs blocking.
        self.args.append("--native" if native else "--nonblocking")
        self.output = output
        self.log_path = output.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while b"Sampling process" not in self.log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"py-spy did not start sampling:\n{tail(self.log_path)}")
            time.sleep(0.05)

    def stop(self, timeout: float = 60.0) -> str:
        """SIGINT (py-spy then writes its file); returns its log."""
        if self.process is not None and not stop_process(self.process, signal.SIGINT, timeout):
            log("py-spy did not exit on SIGINT (killed)")
        return tail(self.log_path)
