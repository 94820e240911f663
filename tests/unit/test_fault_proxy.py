"""The fault-injection proxy against a tiny echo server on 127.0.0.1.

Timing assertions are lower bounds only: the machine is shared, so nothing here asserts
that something was fast, only that a fault made it at least as slow as it must be.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

try:
    import uvloop

    HAVE_UVLOOP = True
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    HAVE_UVLOOP = False

from sanstack.cli.proxy import routes_from_args
from sanstack.errors import ConfigError
from sanstack.tools.fault_proxy import (
    FaultProxy,
    Route,
    run_command,
    run_proxies_from_cli,
)

LOOPS = [
    "asyncio",
    pytest.param("uvloop", marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="no uvloop")),
]
SHORT = 0.3  # how long "nothing arrives" is watched for
LONG = 30.0  # bound on waits that should succeed (a loaded 2-core machine)


class EchoServer:
    """Echoes every byte back; owns its handler tasks so a test can check for leftovers."""

    def __init__(self) -> None:
        self.handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> EchoServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers[task] = writer
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            del self.handlers[task]
            writer.close()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        # Aborting the transports ends the handlers with EOF; cancelling them would make
        # asyncio 3.11's stream callback log the CancelledError.
        tasks = list(self.handlers)
        for writer in self.handlers.values():
            writer.transport.abort()
        if tasks:
            await asyncio.wait(tasks, timeout=LONG)
        await self._server.wait_closed()


Scenario = Callable[[FaultProxy, EchoServer], Awaitable[None]]
Runner = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=LOOPS)
def arun(request: pytest.FixtureRequest) -> Runner:
    """``asyncio.run`` on each loop the proxy meets: asyncio in tests, uvloop in the CLI."""
    if request.param == "uvloop":
        runner: Runner = uvloop.run
        return runner
    return asyncio.run


def scenario_runner(arun: Runner, scenario: Scenario) -> None:
    async def main() -> None:
        echo = await EchoServer().start()
        proxy = await FaultProxy("127.0.0.1", echo.port).start()
        try:
            await scenario(proxy, echo)
        finally:
            await proxy.close()
            await echo.close()
        # Nothing may outlive close(): no pump, no connection task.
        assert asyncio.all_tasks() == {asyncio.current_task()}

    arun(main())


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", proxy.listen_port), timeout=LONG
    )


async def round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> bytes:
    async def send() -> None:
        writer.write(payload)
        await writer.drain()

    sender = asyncio.create_task(send())
    try:
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout=LONG * 4)
    finally:
        await sender


async def assert_silent(reader: asyncio.StreamReader) -> None:
    """Nothing arrives: no data, no FIN (EOF), no RST (ConnectionResetError)."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), timeout=SHORT)
    assert not reader.at_eof()
    assert reader.exception() is None


def test_large_payloads_pass_unchanged_both_ways(arun: Runner) -> None:
    async def scenario(proxy: FaultProxy, echo: EchoServer) -> None:
        payload = random.Random(7).randbytes(4 * 1024 * 1024 + 13)
        reader, writer = await connect(proxy)
        assert await round_trip(reader, writer, payload) == payload
        reader2, writer2 = await connect(proxy)
        assert await round_trip(reader2, writer2, b"x") == b"x"
        assert proxy.bytes_to_target == proxy.bytes_to_client == len(payload) + 1
        assert proxy.connections_accepted == 2
        assert proxy.active_connections == 2
        assert str(proxy.state) == "forwarding"
        writer.close()
        # The proxy passes the FIN on and the echo server closes its side back.
        assert await asyncio.wait_for(reader.read(), timeout=LONG) == b""
        writer2.close()

    scenario_runner(arun, scenario)


def test_reset_aborts_with_rst_and_new_connections_work(arun: Runner) -> None:
    async def scenario(proxy: FaultProxy, echo: EchoServer) -> None:
        reader, writer = await connect(proxy)
        assert await round_trip(reader, writer, b"hello") == b"hello"
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), timeout=LONG)
        writer.close()
        reader2, writer2 = await connect(proxy)
        assert await round_trip(reader2, writer2, b"again") == b"again"
        assert proxy.connections_accepted == 2
        writer2.close()

    scenario_runner(arun, scenario)


def test_blackhole_is_silent_and_restore_resumes_the_same_connection(arun: Runner) -> None:
    async def scenario(proxy: FaultProxy, echo: EchoServer) -> None:
        reader, writer = await connect(proxy)
        assert await round_trip(reader, writer, b"before") == b"before"
        proxy.blackhole()
        assert str(proxy.state) == "blackholed"
        writer.write(b"during")
        await writer.drain()
        await assert_silent(reader)
        assert proxy.bytes_to_target == len(b"before")

        # A new connection either hangs in connect (SYN unanswered) or completes in the
        # kernel's backlog and then hears nothing; either way it is not served.
        late: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            late = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", proxy.listen_port), timeout=SHORT
            )
        except TimeoutError:
            pass
        else:
            late[1].write(b"late")
            await assert_silent(late[0])
        assert proxy.connections_accepted == 1

        proxy.restore()
        assert str(proxy.state) == "forwarding"
        assert await asyncio.wait_for(reader.readexactly(6), timeout=LONG) == b"during"
        assert await round_trip(reader, writer, b"after") == b"after"
        if late is not None:  # the backlog is accepted once the path is back
            assert await asyncio.wait_for(late[0].readexactly(4), timeout=LONG) == b"late"
            late[1].close()
        writer.close()

    scenario_runner(arun, scenario)


def test_delay_adds_latency_each_way(arun: Runner) -> None:
    async def scenario(proxy: FaultProxy, echo: EchoServer) -> None:
        reader, writer = await connect(proxy)
        proxy.delay(0.2)
        started = time.monotonic()
        assert await round_trip(reader, writer, b"ping") == b"ping"
        assert time.monotonic() - started >= 0.39  # 0.2 s to the target and 0.2 s back
        proxy.delay(None)
        assert proxy.current_delay is None
        assert await round_trip(reader, writer, b"pong") == b"pong"
        writer.close()

    scenario_runner(arun, scenario)


def test_clearing_delay_releases_waiting_chunks(arun: Runner) -> None:
    async def scenario(proxy: FaultProxy, echo: EchoServer) -> None:
        reader, writer = await connect(proxy)
        proxy.delay(3600)
        writer.write(b"stuck")
        await assert_silent(reader)
        proxy.delay(None)
        assert await asyncio.wait_for(reader.readexactly(5), timeout=LONG) == b"stuck"
        writer.close()

    scenario_runner(arun, scenario)


def test_throttle_caps_throughput(arun: Runner) -> None:
    async def scenario(proxy: FaultProxy, echo: EchoServer) -> None:
        rate = 256 * 1024
        payload = os.urandom(rate)  # one second's worth at the cap
        reader, writer = await connect(proxy)
        proxy.throttle(rate)
        started = time.monotonic()
        assert await round_trip(reader, writer, payload) == payload
        # The bucket starts with a 50 ms burst; the rest is paced at the rate.
        assert time.monotonic() - started >= 0.9
        proxy.throttle(None)
        assert proxy.current_throttle is None
        writer.close()

    scenario_runner(arun, scenario)


def test_down_refuses_and_up_listens_on_the_same_port(arun: Runner) -> None:
    async def scenario(proxy: FaultProxy, echo: EchoServer) -> None:
        port = proxy.listen_port
        reader, writer = await connect(proxy)
        assert await round_trip(reader, writer, b"x") == b"x"
        proxy.down()
        assert str(proxy.state) == "down"
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), timeout=LONG)
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            await connect(proxy)
        proxy.restore()  # restore does not bring a downed path up
        with pytest.raises(ConnectionRefusedError):
            await connect(proxy)
        proxy.up()
        assert proxy.listen_port == port
        assert str(proxy.state) == "forwarding"
        reader2, writer2 = await connect(proxy)
        assert await round_trip(reader2, writer2, b"y") == b"y"
        writer2.close()

    scenario_runner(arun, scenario)


def test_close_ends_active_connections_and_leaves_no_tasks(arun: Runner) -> None:
    async def main() -> None:
        echo = await EchoServer().start()
        proxy = await FaultProxy("127.0.0.1", echo.port).start()
        streams = [await connect(proxy) for _ in range(3)]
        for reader, writer in streams:
            assert await round_trip(reader, writer, b"live") == b"live"
        streams[0][1].write(b"x" * 100_000)  # one connection mid-transfer
        proxy.blackhole()  # and the others stuck
        assert len(asyncio.all_tasks()) > 1 + len(echo.handlers)
        await proxy.close()
        assert proxy.active_connections == 0
        for reader, writer in streams:
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(1 << 20), timeout=LONG)
            writer.close()
        await echo.close()
        assert asyncio.all_tasks() == {asyncio.current_task()}
        with pytest.raises(ConnectionRefusedError):
            await connect(proxy)

    arun(main())


def test_a_target_that_refuses_resets_the_client(arun: Runner) -> None:
    async def main() -> None:
        echo = await EchoServer().start()
        port = echo.port
        await echo.close()  # nothing listens on the target port now
        async with FaultProxy("127.0.0.1", port) as proxy:
            reader, writer = await connect(proxy)
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(1), timeout=LONG)
            writer.close()
        assert asyncio.all_tasks() == {asyncio.current_task()}

    arun(main())


def test_commands(arun: Runner) -> None:
    async def scenario(proxy: FaultProxy, echo: EchoServer) -> None:
        proxies = [proxy]
        assert run_command(proxies, "status").startswith("proxy 1 ")
        assert "blackholed" in run_command(proxies, "blackhole 1")
        assert "forwarding" in run_command(proxies, "restore 1")
        assert "delay=0.5s" in run_command(proxies, "delay 1 0.5")
        assert "delay" not in run_command(proxies, "delay 1 0")
        assert "throttle=1000B/s" in run_command(proxies, "throttle 1 1000")
        assert "throttle" not in run_command(proxies, "throttle 1 off")
        assert "down" in run_command(proxies, "down 1")
        assert "forwarding" in run_command(proxies, "up 1")
        assert "connections=0" in run_command(proxies, "reset 1")
        assert run_command(proxies, "") == ""
        for bad, words in [
            ("frobnicate 1", "unknown command"),
            ("reset", "takes 1"),
            ("reset 2", "outside 1..1"),
            ("reset one", "not a number"),
            ("delay 1 soon", "not a number"),
            ("delay 1 -1", ">= 0"),
            ("throttle 1 -5", "> 0"),
        ]:
            answer = run_command(proxies, bad)
            assert answer.startswith("error: ") and words in answer, (bad, answer)
            assert "\n" not in answer

    scenario_runner(arun, scenario)


class Lines(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.grew = asyncio.Event()

    def write(self, text: str) -> int:
        self.grew.set()
        return super().write(text)


def test_cli_runner_reads_commands_and_stops(arun: Runner) -> None:
    async def main() -> None:
        echo = await EchoServer().start()
        read_end, write_end = os.pipe()
        out = Lines()
        stop = asyncio.Event()
        routes = [Route("127.0.0.1", 0, "127.0.0.1", echo.port)] * 2
        runner = asyncio.create_task(
            run_proxies_from_cli(routes, stop.wait, commands_fd=read_end, out=out)
        )
        try:
            os.write(write_end, b"blackhole 2\nstatus\nbogus\n")
            async with asyncio.timeout(LONG):
                while out.getvalue().count("\n") < 6:
                    out.grew.clear()
                    await out.grew.wait()
            stop.set()
            assert await asyncio.wait_for(runner, timeout=LONG) == 0
        finally:
            os.close(read_end)
            os.close(write_end)
            await echo.close()
        lines = out.getvalue().splitlines()
        assert lines[0].startswith("proxy 1 127.0.0.1:")
        assert lines[1].startswith("proxy 2 127.0.0.1:")
        assert lines[2].startswith("commands:")
        assert "blackholed" in lines[3]
        assert " | proxy 2 " in lines[4] and "blackholed" in lines[4]
        assert lines[5].startswith("error: unknown command")
        assert asyncio.all_tasks() == {asyncio.current_task()}

    arun(main())


def test_cli_runner_names_listen_when_bind_fails(arun: Runner) -> None:
    async def main() -> None:
        async with FaultProxy("127.0.0.1", 9) as taken:
            route = Route("127.0.0.1", taken.listen_port, "127.0.0.1", 9)
            with pytest.raises(ConfigError) as caught:
                await run_proxies_from_cli([route], asyncio.Event().wait, commands_fd=None)
        assert caught.value.field == "--listen"

    arun(main())


@pytest.mark.parametrize(
    ("listen", "to", "field", "words"),
    [
        ([], [], "--listen", "at least one"),
        (["127.0.0.1:1"], [], "--to", "one --to per --listen"),
        (["127.0.0.1"], ["127.0.0.1:2"], "--listen", "HOST:PORT"),
        (["127.0.0.1:x"], ["127.0.0.1:2"], "--listen", "not a number"),
        (["127.0.0.1:1"], ["127.0.0.1:70000"], "--to", "outside 0..65535"),
        (["127.0.0.1:1"], ["127.0.0.1:0"], "--to", "port 0"),
    ],
)
def test_bad_arguments_name_the_field(
    listen: list[str], to: list[str], field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        routes_from_args(listen, to)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_good_arguments() -> None:
    routes = routes_from_args(["127.0.0.1:0", "[::1]:5"], ["localhost:3260", "10.0.0.1:3261"])
    assert routes == [
        Route("127.0.0.1", 0, "localhost", 3260),
        Route("::1", 5, "10.0.0.1", 3261),
    ]
