"""The NBD server against real clients: qemu-img and qemu-io (structured replies), libnbd's
nbdinfo, nbdcopy and nbdsh (simple replies and the NBD_OPT_EXPORT_NAME handshake too).

Each test runs an ``NBDServer`` on its own event loop in a background thread, stops it, and
checks that it stopped cleanly: the thread ended, no task was left behind, nothing was
logged at ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.support.processes import free_port, require_tool, run_tool, sanstack_command
from tests.support.waits import wait_until

from sanstack.block.device import (
    BlockDevice,
    DeviceNotReady,
    DeviceReadOnly,
    MediumError,
    SpaceExhausted,
)
from sanstack.block.file import FileDevice
from sanstack.block.memory import MemoryDevice
from sanstack.nbd import NBDCmd, NBDError, NBDInfo, NBDOpt
from sanstack.nbd.protocol import (
    ClientFlags,
    InfoRequestData,
    OptionReply,
    OptionRequest,
    RequestHeader,
    ServerGreeting,
    SimpleReplyHeader,
)
from sanstack.nbd.server import MAX_IN_FLIGHT, NBDServer

pytestmark = pytest.mark.interop

MiB = 1 << 20
SIZE = 64 * MiB


@dataclass
class Running:
    server: NBDServer
    loop: asyncio.AbstractEventLoop
    devices: dict[str, BlockDevice] = field(default_factory=dict)

    def uri(self, name: str) -> str:
        return f"nbd://127.0.0.1:{self.server.port}/{name}"

    def call(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the server's loop and wait for it."""
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(10)


@contextlib.contextmanager
def nbd_server(
    make_devices: Callable[[], dict[str, BlockDevice]],
    caplog: pytest.LogCaptureFixture,
    *,
    grace: float = 5.0,
) -> Iterator[Running]:
    """An ``NBDServer`` on port 0 in a thread with its own loop; stopped and checked after."""
    caplog.set_level(logging.INFO, logger="sanstack")
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        devices = make_devices()
        server = NBDServer(devices, "127.0.0.1", 0)
        try:
            await server.start()
            holder["running"] = Running(server, loop, devices)
            ready.set()
            await stop.wait()
            started = loop.time()
            await server.stop(grace=grace)
            holder["stop_seconds"] = loop.time() - started
        finally:
            for device in devices.values():
                await device.close()
        holder["leftover"] = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    def thread_main() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            holder["error"] = exc
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=thread_main, name="nbd-server", daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    if "error" in holder:
        raise AssertionError(f"server failed to start: {holder['error']!r}")
    running = holder["running"]
    assert isinstance(running, Running)
    try:
        yield running
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
    assert not thread.is_alive(), "server thread did not stop"
    assert "error" not in holder, f"server failed: {holder['error']!r}"
    stop_seconds = holder["stop_seconds"]
    assert isinstance(stop_seconds, float)
    assert stop_seconds < grace + 1.0
    assert holder["leftover"] == [], f"tasks left behind: {holder['leftover']}"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def memory_disk(read_only_too: bool = False) -> Callable[[], dict[str, BlockDevice]]:
    def make() -> dict[str, BlockDevice]:
        devices: dict[str, BlockDevice] = {"disk": MemoryDevice(SIZE // 512, 512)}
        if read_only_too:
            devices["ro"] = MemoryDevice(4 * MiB // 4096, 4096, read_only=True)
        return devices

    return make


def file_disk(path: Path) -> Callable[[], dict[str, BlockDevice]]:
    return lambda: {"disk": FileDevice(path, 512, SIZE, create=True)}


def qemu_io(uri: str, *commands: str, read_only: bool = False) -> str:
    args = [require_tool("qemu-io"), "-f", "raw"]
    if read_only:
        args.append("-r")
    for command in commands:
        args += ["-c", command]
    result = run_tool([*args, uri], timeout=120)
    out = result.stdout + result.stderr
    assert "error" not in out.lower() and "fail" not in out.lower(), out
    return out


# -- qemu ------------------------------------------------------------------------------------


def test_qemu_img_info(caplog: pytest.LogCaptureFixture) -> None:
    qemu_img = require_tool("qemu-img")
    with nbd_server(memory_disk(), caplog) as running:
        out = run_tool([qemu_img, "info", "--output=json", running.uri("disk")]).stdout
        assert json.loads(out)["virtual-size"] == SIZE
        # The default export "" is the only export.
        out = run_tool([qemu_img, "info", "--output=json", running.uri("")]).stdout
        assert json.loads(out)["virtual-size"] == SIZE


def test_qemu_io_patterns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    backing = tmp_path / "disk.img"
    with nbd_server(file_disk(backing), caplog) as running:
        uri = running.uri("disk")
        qemu_io(
            uri,
            "write -P 0xab 0 64k",
            "read -P 0xab 0 64k",
            "write -f -P 0xcd 64k 4k",  # FUA
            "read -P 0xcd 64k 4k",
            "write -P 0xee 1M 1M",
            "write -z 1M 512k",  # WRITE_ZEROES, may punch a hole
            "read -P 0 1M 512k",
            "read -P 0xee 1536k 512k",
            "discard 0 32k",
            "read -P 0 0 32k",  # a file backstore punches holes, which read as zeroes
            "read -P 0xab 32k 32k",
            "flush",
            "aio_write -P 0x11 8M 4k",
            "aio_write -P 0x22 9M 4k",
            "aio_flush",
            "read -P 0x11 8M 4k",
            "read -P 0x22 9M 4k",
            "write -P 0x33 63M 1M",
        )
        # A WRITE_ZEROES that must not leave a hole (NO_HOLE, qemu-io's default without -u).
        qemu_io(uri, "write -P 0x44 2M 64k", "write -z 2M 64k", "read -P 0 2M 64k")
    data = backing.read_bytes()
    assert data[32 * 1024 : 64 * 1024] == b"\xab" * (32 * 1024)
    assert data[64 * 1024 : 68 * 1024] == b"\xcd" * 4096
    assert data[: 32 * 1024] == bytes(32 * 1024)
    assert data[8 * MiB : 8 * MiB + 4096] == b"\x11" * 4096
    assert data[63 * MiB :] == b"\x33" * MiB


class CountingDevice(MemoryDevice):
    """Every I/O waits a moment, so requests overlap; records how many ran at once."""

    running = 0
    most = 0

    async def _io(self) -> None:
        CountingDevice.running += 1
        CountingDevice.most = max(CountingDevice.most, CountingDevice.running)
        try:
            await asyncio.sleep(0.001)
        finally:
            CountingDevice.running -= 1

    async def read(self, lba: int, count: int) -> bytes:
        await self._io()
        return await super().read(lba, count)

    async def write(self, lba: int, data: bytes | memoryview) -> None:
        await self._io()
        await super().write(lba, data)


def test_qemu_img_bench_many_in_flight(caplog: pytest.LogCaptureFixture) -> None:
    """qemu pipelines requests (16 at most per connection); they run concurrently."""
    qemu_img = require_tool("qemu-img")
    CountingDevice.most = 0
    with nbd_server(lambda: {"disk": CountingDevice(SIZE // 512)}, caplog) as running:
        for mode in (["-w"], []):
            run_tool(
                [qemu_img, "bench", "-f", "raw", "-c", "4000", "-d", "96", "-s", "4k", *mode,
                 running.uri("disk")],
                timeout=120,
            )  # fmt: skip
    assert CountingDevice.most >= 8, CountingDevice.most


def test_in_flight_requests_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """200 pipelined requests: the reader pauses at 64 in flight, and all are answered."""
    CountingDevice.most = 0
    with (
        nbd_server(lambda: {"disk": CountingDevice(2048, 512)}, caplog) as running,
        RawClient(running.server.port) as client,
    ):
        client.handshake_go("disk")
        client.send(
            b"".join(
                RequestHeader(0, NBDCmd.NBD_CMD_READ, cookie, cookie % 64 * 4096, 4096).encode()
                for cookie in range(200)
            )
        )
        cookies = set()
        for _ in range(200):
            reply = client.simple_reply()
            assert reply.error == 0
            client.recv_exact(4096)
            cookies.add(reply.cookie)
        assert cookies == set(range(200))
    assert 32 < CountingDevice.most <= MAX_IN_FLIGHT, CountingDevice.most


def _random_image(path: Path) -> None:
    """64 MiB of random data with holes of zeroes, so sparse copies are exercised too."""
    chunk = 4 * MiB
    with path.open("wb") as f:
        for i in range(SIZE // chunk):
            f.write(bytes(chunk) if i % 4 == 1 else os.urandom(chunk))


def test_qemu_img_convert_and_compare(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    qemu_img = require_tool("qemu-img")
    source = tmp_path / "source.img"
    back = tmp_path / "back.img"
    _random_image(source)
    with nbd_server(memory_disk(), caplog) as running:
        uri = running.uri("disk")
        run_tool([qemu_img, "convert", "-n", "-f", "raw", "-O", "raw", str(source), uri])
        run_tool([qemu_img, "compare", "-f", "raw", "-F", "raw", str(source), uri])
        run_tool([qemu_img, "convert", "-f", "raw", "-O", "raw", uri, str(back)])
        mapping = json.loads(run_tool([qemu_img, "map", "--output=json", uri]).stdout)
    assert back.read_bytes() == source.read_bytes()
    # base:allocation: the zero holes were never written, so some extent reads as zero.
    assert any(extent["zero"] for extent in mapping)
    assert any(extent["data"] for extent in mapping)


def test_read_only_export_refuses_writes(caplog: pytest.LogCaptureFixture) -> None:
    qemu_io_path = require_tool("qemu-io")
    with nbd_server(memory_disk(read_only_too=True), caplog) as running:
        uri = running.uri("ro")
        refused = run_tool([qemu_io_path, "-f", "raw", "-c", "write 0 4k", uri], check=False)
        assert refused.returncode != 0 or "Permission denied" in refused.stderr
        assert "Permission denied" in refused.stdout + refused.stderr
        qemu_io(uri, "read -P 0 0 4k", read_only=True)
        # Below qemu's own check: the server answers a WRITE with EPERM.
        with RawClient(running.server.port) as client:
            client.handshake_go("ro")
            client.send(RequestHeader(0, NBDCmd.NBD_CMD_WRITE, 7, 0, 4096).encode() + bytes(4096))
            assert client.simple_reply() == SimpleReplyHeader(NBDError.NBD_EPERM, 7)
            client.send(RequestHeader(0, NBDCmd.NBD_CMD_READ, 8, 100, 512).encode())
            assert client.simple_reply() == SimpleReplyHeader(NBDError.NBD_EINVAL, 8)
            client.send(RequestHeader(0, NBDCmd.NBD_CMD_DISC, 9, 0, 0).encode())
            assert client.recv_eof()


# -- libnbd ----------------------------------------------------------------------------------


def test_nbdinfo(caplog: pytest.LogCaptureFixture) -> None:
    nbdinfo = require_tool("nbdinfo")
    with nbd_server(memory_disk(read_only_too=True), caplog) as running:
        listing = run_tool([nbdinfo, "--list", "--json", running.uri("")]).stdout
        exports = {e["export-name"]: e for e in json.loads(listing)["exports"]}
        assert set(exports) == {"disk", "ro"}
        disk = exports["disk"]
        assert disk["export-size"] == SIZE
        assert disk["block_size_minimum"] == 512
        assert disk["block_size_maximum"] == 32 * MiB
        assert disk["is_read_only"] is False
        assert disk["can_trim"] is True
        assert disk["can_zero"] is True
        assert disk["can_multi_conn"] is False
        assert "base:allocation" in disk["contexts"]
        assert exports["ro"]["is_read_only"] is True
        assert exports["ro"]["block_size_minimum"] == 4096
        qemu_io(running.uri("disk"), "write -P 1 1M 1M")
        mapping = run_tool([nbdinfo, "--map", running.uri("disk")]).stdout
        rows = [line.split() for line in mapping.splitlines()]
        assert ["1048576", "1048576", "0", "data"] in rows
        assert any(row[3:] == ["hole,zero"] for row in rows)


def test_nbdcopy_roundtrip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    nbdcopy = require_tool("nbdcopy")
    source = tmp_path / "source.img"
    back = tmp_path / "back.img"
    _random_image(source)
    with nbd_server(file_disk(tmp_path / "disk.img"), caplog) as running:
        uri = running.uri("disk")
        run_tool([nbdcopy, "--flush", str(source), uri], timeout=120)
        run_tool([nbdcopy, uri, str(back)], timeout=120)
    assert back.read_bytes() == source.read_bytes()


NBDSH_SIMPLE = """
import errno
h.set_request_structured_replies(False)
h.connect_uri(URI)
assert not h.get_structured_replies_negotiated()
h.pwrite(b"\\x5a" * 4096, 4096)
assert h.pread(4096, 4096) == b"\\x5a" * 4096
h.flush()
h.zero(4096, 4096)
assert h.pread(4096, 4096) == bytes(4096)
h.trim(4096, 0)
h.set_strict_mode(0)
for call in (lambda: h.pread(100, 1), lambda: h.pwrite(b"x" * 512, 67108864)):
    try:
        call()
    except nbd.Error as exc:
        assert exc.errnum in (errno.EINVAL, errno.ENOSPC), exc
    else:
        raise AssertionError("misuse succeeded")
assert h.pread(512, 0) == bytes(512)
h.shutdown()
"""

NBDSH_EXPORT_NAME = """
h.set_handshake_flags(FLAGS)
h.set_request_structured_replies(False)
h.connect_uri(URI)
assert h.get_protocol() == PROTOCOL, h.get_protocol()
assert h.get_size() == 67108864
h.pwrite(b"\\x77" * 512, 0)
assert h.pread(512, 0) == b"\\x77" * 512
h.shutdown()
"""


def _nbdsh(script: str) -> None:
    nbdsh = require_tool("nbdsh")
    # nbdsh runs "python3" from PATH; libnbd's module is in the system Python's path.
    env = {**os.environ, "PATH": "/usr/bin:" + os.environ.get("PATH", "")}
    result = subprocess.run(
        [nbdsh, "-c", script], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_nbdsh_simple_replies(caplog: pytest.LogCaptureFixture) -> None:
    with nbd_server(memory_disk(), caplog) as running:
        _nbdsh(f"URI = {running.uri('disk')!r}\n" + NBDSH_SIMPLE)


@pytest.mark.parametrize(
    ("flags", "protocol"),
    [("nbd.HANDSHAKE_FLAG_NO_ZEROES", "newstyle"), ("0", "newstyle")],
    ids=["no-zeroes", "zeroes"],
)
def test_nbdsh_export_name_handshake(
    flags: str, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without FIXED_NEWSTYLE a client can only send NBD_OPT_EXPORT_NAME."""
    with nbd_server(memory_disk(), caplog) as running:
        _nbdsh(
            f"URI = {running.uri('disk')!r}\nFLAGS = {flags}\nPROTOCOL = {protocol!r}\n"
            + NBDSH_EXPORT_NAME
        )


# -- lifetime --------------------------------------------------------------------------------


class SlowDevice(MemoryDevice):
    """Reads take ``delay`` seconds: a request is in flight when the server stops."""

    delay = 0.5
    reads_started = 0

    async def read(self, lba: int, count: int) -> bytes:
        self.reads_started += 1
        await asyncio.sleep(self.delay)
        return await super().read(lba, count)


def test_stop_answers_requests_in_flight_then_closes(caplog: pytest.LogCaptureFixture) -> None:
    with nbd_server(lambda: {"disk": SlowDevice(2048, 512)}, caplog) as running:
        idle = RawClient(running.server.port)
        idle.handshake_go("disk")
        haggling = RawClient(running.server.port)
        haggling.greeting()
        busy = RawClient(running.server.port)
        busy.handshake_go("disk")
        busy.send(RequestHeader(0, NBDCmd.NBD_CMD_READ, 1, 0, 4096).encode())
        slow = running.devices["disk"]
        assert isinstance(slow, SlowDevice)
        wait_until(lambda: slow.reads_started == 1, 30, "the read reached the device")
    # The server stopped at the end of the with-block; the read was answered first.
    assert busy.simple_reply() == SimpleReplyHeader(0, 1)
    assert busy.recv_exact(4096) == bytes(4096)
    for client in (busy, idle, haggling):
        assert client.recv_eof()
        client.close()


class HangingDevice(MemoryDevice):
    """Reads never finish on their own; records the ones cancelled."""

    started = 0
    cancelled = 0

    async def read(self, lba: int, count: int) -> bytes:
        HangingDevice.started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            HangingDevice.cancelled += 1
            raise
        raise AssertionError("unreachable")


def test_client_gone_cancels_its_requests_in_flight(caplog: pytest.LogCaptureFixture) -> None:
    HangingDevice.started = HangingDevice.cancelled = 0
    with nbd_server(lambda: {"disk": HangingDevice(2048, 512)}, caplog) as running:
        with RawClient(running.server.port) as client:
            client.handshake_go("disk")
            client.send(b"".join(RequestHeader(0, NBDCmd.NBD_CMD_READ, c, 0, 512).encode()
                                 for c in range(3)))  # fmt: skip
            wait_until(lambda: HangingDevice.started == 3, 30, "the reads reached the device")
            # A reset, not a close: after a plain EOF the server still owes the answers.
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_until(lambda: HangingDevice.cancelled == 3, 30, "the reads were cancelled")
        wait_until(lambda: not running.server.connections, 30, "the connection ended")


class PiecesDevice(MemoryDevice):
    """Reads in 512-byte pieces after a bare yield (``asyncio.sleep(0)``)."""

    async def read_parts(self, lba: int, count: int) -> list[bytes | memoryview]:
        await asyncio.sleep(0)
        data = await self.read(lba, count)
        return [data[i : i + 512] for i in range(0, len(data), 512)]


def test_reads_in_pieces_reach_qemu_whole(caplog: pytest.LogCaptureFixture) -> None:
    with nbd_server(lambda: {"disk": PiecesDevice(SIZE // 512, 512)}, caplog) as running:
        uri = running.uri("disk")
        qemu_io(uri, "write -P 0x5a 1M 192k")
        out = qemu_io(uri, "read -P 0x5a 1M 192k", "read -P 0 0 64k", read_only=True)
        assert "read 196608/196608 bytes" in out


def test_protocol_failure_drops_only_that_connection(caplog: pytest.LogCaptureFixture) -> None:
    with nbd_server(memory_disk(), caplog) as running, RawClient(running.server.port) as good:
        good.handshake_go("disk")
        with RawClient(running.server.port) as bad:
            bad.handshake_go("disk")
            bad.send(b"garbage garbage garbage garbage!")
            assert bad.recv_eof()
        good.send(RequestHeader(0, NBDCmd.NBD_CMD_FLUSH, 3, 0, 0).encode())
        assert good.simple_reply() == SimpleReplyHeader(0, 3)
    assert any("protocol failure" in r.getMessage() for r in caplog.records)


class FaultyDevice(MemoryDevice):
    """Fails I/O at chosen blocks with a chosen device error."""

    faults: dict[int, Exception] = {}  # set by the test before serving

    def _check(self, lba: int) -> None:
        fault = self.faults.get(lba)
        if fault is not None:
            raise fault

    async def read(self, lba: int, count: int) -> bytes:
        self._check(lba)
        return await super().read(lba, count)

    async def write(self, lba: int, data: bytes | memoryview) -> None:
        self._check(lba)
        await super().write(lba, data)


def test_device_errors_become_nbd_errors(caplog: pytest.LogCaptureFixture) -> None:
    FaultyDevice.faults = {
        1: MediumError("bad sector"),
        2: SpaceExhausted("pool is full"),
        3: DeviceReadOnly("went read-only"),
        4: DeviceNotReady("backing store gone"),
    }
    expected = {
        1: NBDError.NBD_EIO,
        2: NBDError.NBD_ENOSPC,
        3: NBDError.NBD_EPERM,
        4: NBDError.NBD_EIO,
    }
    with nbd_server(lambda: {"disk": FaultyDevice(64, 512)}, caplog) as running:
        with RawClient(running.server.port) as client:
            client.handshake_go("disk")
            for lba, error in expected.items():
                client.send(RequestHeader(0, NBDCmd.NBD_CMD_WRITE, lba, lba * 512, 512).encode()
                            + bytes(512))  # fmt: skip
                assert client.simple_reply() == SimpleReplyHeader(error, lba)
            client.send(RequestHeader(0, NBDCmd.NBD_CMD_READ, 9, 512, 512).encode())
            assert client.simple_reply() == SimpleReplyHeader(NBDError.NBD_EIO, 9)
        qemu_io_path = require_tool("qemu-io")
        failed = run_tool(
            [qemu_io_path, "-f", "raw", "-c", "read 512 512", running.uri("disk")], check=False
        )
        assert "Input/output error" in failed.stdout + failed.stderr


def test_cli_serve(tmp_path: Path) -> None:
    qemu_img = require_tool("qemu-img")
    port = free_port()
    backing = tmp_path / "cli.img"
    args = [*sanstack_command()[:-1], "sanstack.cli.nbd", "serve", "--listen",
            f"127.0.0.1:{port}", "--export", f"disk={backing}:16M", "--export", "mem=memory:8M",
            "--read-only", "mem"]  # fmt: skip
    log_path = tmp_path / "nbd.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log_file, cwd=tmp_path)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(b"ready"), log_path.read_text()
        out = run_tool([qemu_img, "info", "--output=json", f"nbd://127.0.0.1:{port}/disk"])
        assert json.loads(out.stdout)["virtual-size"] == 16 * MiB
        qemu_io(f"nbd://127.0.0.1:{port}/mem", "read -P 0 0 4k", read_only=True)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
    log = log_path.read_text()
    assert process.returncode == 0, log
    assert "Traceback" not in log, log
    assert backing.stat().st_size == 16 * MiB


def test_cli_rejects_bad_arguments(tmp_path: Path) -> None:
    base = [*sanstack_command()[:-1], "sanstack.cli.nbd", "serve"]
    for extra, expected in (
        (["--export", "noequals"], "--export"),
        (["--listen", "nowhere", "--export", "a=memory:1M"], "--listen"),
        (["--export", "a=memory:1M", "--read-only", "b"], "--read-only"),
    ):
        result = subprocess.run(
            [*base, *extra], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
        )
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr
        assert "Traceback" not in result.stderr


# -- a minimal blocking client ---------------------------------------------------------------


class RawClient:
    """Just enough of a client to send what well-behaved tools never send."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError(f"connection closed after {len(data)} of {n} bytes")
            data += chunk
        return bytes(data)

    def recv_eof(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def greeting(self) -> None:
        assert ServerGreeting.decode(self.recv_exact(18)) == ServerGreeting()

    def handshake_go(self, name: str) -> None:
        self.greeting()
        self.send(ClientFlags(3).encode())
        data = InfoRequestData(name, (NBDInfo.NBD_INFO_BLOCK_SIZE,)).encode()
        self.send(OptionRequest(NBDOpt.NBD_OPT_GO, data).encode())
        while True:
            head = self.recv_exact(20)
            reply = OptionReply.decode(head + self.recv_exact(int.from_bytes(head[16:], "big")))
            if reply.reply_type != 3:  # NBD_REP_INFO
                assert reply.reply_type == 1, reply  # NBD_REP_ACK
                return

    def simple_reply(self) -> SimpleReplyHeader:
        return SimpleReplyHeader.decode(self.recv_exact(16))
