"""A TCP proxy that breaks one network path on demand, for multipath tests and benchmarks.

It sits between an initiator and a target (both usually on 127.0.0.1) and can, while
connections are live: reset them, blackhole the path, add latency, cap bandwidth, or take
the path down. The fault methods are synchronous so a test can flip a fault between two
awaits and know it already holds.

What each fault looks like to the initiator, and why:

``reset()``
    Every current connection is aborted with RST on both sides (SO_LINGER 0), as a
    rebooting switch or a firewall flushing its state would. New connections still work.

``blackhole()``
    A dead switch port: nothing is forwarded either way and no FIN or RST is ever sent.
    The proxy stops reading its sockets, so the kernel buffers fill and the senders stall,
    as they would with no ACKs coming back. (A read already in progress may still take one
    chunk in; it is held, not forwarded, until ``restore()``.) The listener stays open but
    stops accepting and its backlog shrinks to the minimum: the kernel still completes the
    handshake for the one connection that fits the accept queue (it looks established but
    never answers, as a path that died after its SYN-ACK would), and SYNs beyond that go
    unanswered, so ``connect()`` hangs until the initiator's own timeout. Closing the
    listener instead would answer RST, which a dead path never does.

``restore()``
    Undoes ``blackhole()``: stalled connections resume where they stopped (initiators have
    usually given up on them by then) and the backlog is accepted.

``down()`` / ``up()``
    A port administratively shut: existing connections are reset and the listener is
    closed, so a connect is refused at once (RST to the SYN). ``up()`` listens again on the
    same port. Down and blackholed are independent; ``state`` names the one that shows.

``delay(seconds)`` / ``throttle(bytes_per_second)``
    Latency added to every chunk in both directions, keeping order and without capping
    throughput (chunks in flight are held in a bounded buffer, the bandwidth-delay product);
    and a token bucket per direction shared by all connections, as a slow link would be.
    ``None`` clears either; a change also applies to chunks already waiting.

Memory is bounded: reads are at most 64 KiB and each direction of a connection buffers at
most ``BUFFER_LIMIT`` bytes before it stops reading, so backpressure reaches the sender.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import functools
import logging
import os
import socket
import struct
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from sanstack.errors import ConfigError

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
BUFFER_LIMIT = 1024 * 1024
BACKLOG = 1024
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
_LINGER_RST = struct.pack("ii", 1, 0)


class ProxyState(enum.StrEnum):
    FORWARDING = "forwarding"
    BLACKHOLED = "blackholed"
    DOWN = "down"


class _Direction(enum.IntEnum):
    TO_TARGET = 0
    TO_CLIENT = 1


_EOF = None


class _Channel:
    """A FIFO of (chunk, time read) bounded in bytes, between one socket's reader and writer."""

    def __init__(self, limit: int) -> None:
        self._items: collections.deque[tuple[bytes, float] | None] = collections.deque()
        self._bytes = 0
        self._limit = limit
        self._changed = asyncio.Event()

    async def put(self, item: tuple[bytes, float] | None) -> None:
        while self._bytes >= self._limit:
            self._changed.clear()
            await self._changed.wait()
        self._items.append(item)
        if item is not None:
            self._bytes += len(item[0])
        self._changed.set()

    async def get(self) -> tuple[bytes, float] | None:
        while not self._items:
            self._changed.clear()
            await self._changed.wait()
        item = self._items.popleft()
        if item is not None:
            self._bytes -= len(item[0])
        self._changed.set()
        return item


class _Bucket:
    """A token bucket that goes into debt for a large chunk; the debt is the wait."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        # A 50 ms burst: small enough that a short test sees the cap, large enough that
        # one chunk of a fast link does not wait for every packet.
        self.capacity = max(rate * 0.05, 1.0)
        self.tokens = self.capacity
        self.stamp = now

    def take(self, size: int, now: float) -> float:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= size
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def _abort(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)


class _Connection:
    __slots__ = ("aborting", "client", "task", "upstream")

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.task: asyncio.Task[None] | None = None
        self.aborting = False

    def close(self, *, abort: bool) -> None:
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            if abort:
                _abort(sock)
            sock.close()


class FaultProxy:
    """One proxied path: listens on ``listen_host:listen_port``, forwards to the target."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.connect_timeout = connect_timeout
        self.bytes_to_target = 0
        self.bytes_to_client = 0
        self.connections_accepted = 0
        self._listener: socket.socket | None = None
        self._accepting = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connections: set[_Connection] = set()
        self._down = False
        self._blackholed = False
        self._closed = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._delay: float | None = None
        self._rate: float | None = None
        self._buckets: list[_Bucket | None] = [None, None]
        # Replaced (and the old one set) on every delay or throttle change, so chunks
        # already waiting recompute their wait.
        self._changed = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> FaultProxy:
        """Listen; ``listen_port`` then holds the real port. Returns self for chaining."""
        self._loop = asyncio.get_running_loop()
        self._open_listener()
        return self

    async def close(self) -> None:
        """Stop listening, abort every connection with RST and wait for their tasks."""
        self._closed = True
        self._close_listener()
        tasks = [c.task for c in self._connections if c.task is not None]
        for conn in list(self._connections):
            self._abort_connection(conn)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
            for task in pending:  # pragma: no cover - a task ignoring cancellation is a bug
                log.error("proxy connection task %r did not stop", task)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- faults ------------------------------------------------------------------------

    @property
    def state(self) -> ProxyState:
        if self._down:
            return ProxyState.DOWN
        if self._blackholed:
            return ProxyState.BLACKHOLED
        return ProxyState.FORWARDING

    @property
    def active_connections(self) -> int:
        return len(self._connections)

    @property
    def current_delay(self) -> float | None:
        return self._delay

    @property
    def current_throttle(self) -> float | None:
        return self._rate

    def reset(self) -> None:
        """Abort every current connection with RST on both sides."""
        for conn in list(self._connections):
            self._abort_connection(conn)

    def blackhole(self) -> None:
        """Stop forwarding and accepting, silently (see the module docstring)."""
        self._blackholed = True
        self._flowing.clear()
        self._pause_accepting()
        if self._listener is not None:
            # Linux lets listen() be called again to change the backlog of a listener.
            self._listener.listen(0)

    def restore(self) -> None:
        """Forward and accept again after ``blackhole()``."""
        self._blackholed = False
        self._flowing.set()
        if self._listener is not None:
            self._listener.listen(BACKLOG)
            self._resume_accepting()

    def down(self) -> None:
        """Refuse new connections (close the listener) and reset existing ones."""
        self._down = True
        self._close_listener()
        self.reset()

    def up(self) -> None:
        """Listen again on the same port after ``down()``; OSError if it was taken."""
        if not self._down or self._closed:
            return
        self._open_listener()
        self._down = False

    def delay(self, seconds: float | None) -> None:
        """Add ``seconds`` of latency to every chunk in both directions; None clears."""
        if seconds is not None and not seconds >= 0:
            raise ValueError(f"delay must be >= 0 seconds, not {seconds!r}")
        self._delay = seconds or None
        self._bump()

    def throttle(self, bytes_per_second: float | None) -> None:
        """Cap each direction at ``bytes_per_second``; None clears."""
        if bytes_per_second is not None and not bytes_per_second > 0:
            raise ValueError(f"throttle must be > 0 bytes per second, not {bytes_per_second!r}")
        self._rate = bytes_per_second
        if bytes_per_second is None:
            self._buckets = [None, None]
        else:
            now = asyncio.get_running_loop().time()
            self._buckets = [_Bucket(bytes_per_second, now), _Bucket(bytes_per_second, now)]
        self._bump()

    def status(self) -> dict[str, object]:
        return {
            "listen": f"{self.listen_host}:{self.listen_port}",
            "target": f"{self.target_host}:{self.target_port}",
            "state": self.state.value,
            "delay": self._delay,
            "throttle": self._rate,
            "connections": self.active_connections,
            "accepted": self.connections_accepted,
            "bytes_to_target": self.bytes_to_target,
            "bytes_to_client": self.bytes_to_client,
        }

    # -- listener ----------------------------------------------------------------------

    def _open_listener(self) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in self.listen_host else socket.AF_INET)
        try:
            # TIME_WAIT leftovers of our own connections must not stop up() rebinding.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.listen_host, self.listen_port))
            sock.listen(0 if self._blackholed else BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._listener = sock
        self.listen_port = sock.getsockname()[1]
        if not self._blackholed:
            self._resume_accepting()

    def _close_listener(self) -> None:
        self._pause_accepting()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _resume_accepting(self) -> None:
        # A reader callback rather than a task blocked in sock_accept: it can be removed
        # synchronously, before the socket is closed, so no stale selector entry remains.
        if self._accepting or self._listener is None or self._loop is None:
            return
        self._loop.add_reader(self._listener.fileno(), self._on_acceptable)
        self._accepting = True

    def _pause_accepting(self) -> None:
        if self._accepting and self._listener is not None and self._loop is not None:
            self._loop.remove_reader(self._listener.fileno())
        self._accepting = False

    def _on_acceptable(self) -> None:
        listener = self._listener
        assert listener is not None and self._loop is not None
        for _ in range(BACKLOG):  # bounded, so one busy listener cannot starve the loop
            try:
                client, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: try again on the next readiness
                log.warning("proxy %s: accept failed: %s", self.listen_port, exc)
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(client)
            self.connections_accepted += 1
            self._connections.add(conn)
            conn.task = self._loop.create_task(self._serve(conn))
            conn.task.add_done_callback(functools.partial(self._forget, conn))

    def _forget(self, conn: _Connection, _task: object) -> None:
        self._connections.discard(conn)

    def _abort_connection(self, conn: _Connection) -> None:
        conn.aborting = True
        _abort(conn.client)
        if conn.upstream is not None:
            _abort(conn.upstream)
        if conn.task is not None:
            conn.task.cancel()

    # -- forwarding --------------------------------------------------------------------

    async def _serve(self, conn: _Connection) -> None:
        abort = True
        try:
            upstream = await self._connect(conn)
            if not conn.aborting:  # else reset while connecting
                abort = not await self._pump(conn, upstream)
        except (OSError, TimeoutError) as exc:
            # The target refused or vanished: the nearest a proxy can come to passing the
            # target's RST on is to reset the client too.
            log.debug("proxy %s: cannot reach the target: %s", self.listen_port, exc)
        finally:
            conn.close(abort=abort or conn.aborting)

    async def _connect(self, conn: _Connection) -> socket.socket:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            infos = await loop.getaddrinfo(
                self.target_host, self.target_port, type=socket.SOCK_STREAM
            )
            family, kind, proto, _name, address = infos[0]
            upstream = socket.socket(family, kind, proto)
            conn.upstream = upstream
            upstream.setblocking(False)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(upstream, address)
        return upstream

    async def _pump(self, conn: _Connection, upstream: socket.socket) -> bool:
        """Forward both ways until both have ended; False if a side broke or reset."""
        to_target = _Channel(BUFFER_LIMIT)
        to_client = _Channel(BUFFER_LIMIT)
        clean = True
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._read(conn.client, to_target))
                group.create_task(self._write(to_target, upstream, _Direction.TO_TARGET))
                group.create_task(self._read(upstream, to_client))
                group.create_task(self._write(to_client, conn.client, _Direction.TO_CLIENT))
        except* OSError as broken:
            # One side reset or broke: the caller resets the other, as the far end would.
            log.debug("proxy %s: connection broken: %s", self.listen_port, broken.exceptions)
            clean = False
        return clean

    async def _read(self, sock: socket.socket, channel: _Channel) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._flowing.wait()
            data = await loop.sock_recv(sock, CHUNK)
            if not data:
                await channel.put(_EOF)
                return
            await channel.put((data, loop.time()))

    async def _write(self, channel: _Channel, sock: socket.socket, direction: _Direction) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await channel.get()
            if item is None:
                with contextlib.suppress(OSError):  # the peer may have gone already
                    sock.shutdown(socket.SHUT_WR)
                return
            data, read_at = item
            await self._pause_until(functools.partial(self._delayed, read_at))
            bucket = self._buckets[direction]
            if bucket is not None:
                until = loop.time() + bucket.take(len(data), loop.time())
                await self._pause_until(
                    functools.partial(self._throttled, direction, bucket, until)
                )
            await self._flowing.wait()
            await loop.sock_sendall(sock, data)
            if direction is _Direction.TO_TARGET:
                self.bytes_to_target += len(data)
            else:
                self.bytes_to_client += len(data)

    def _delayed(self, read_at: float) -> float:
        return read_at + (self._delay or 0.0)

    def _throttled(self, direction: _Direction, bucket: _Bucket, until: float) -> float:
        # A new throttle() replaced the bucket: this chunk's debt was to the old rate.
        return until if self._buckets[direction] is bucket else 0.0

    async def _pause_until(self, deadline: Callable[[], float]) -> None:
        """Wait until ``deadline()``, recomputing it whenever delay or throttle change."""
        loop = asyncio.get_running_loop()
        while (remaining := deadline() - loop.time()) > 0:
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    def _bump(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


# -- the ``sanstack proxy`` command ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    listen_host: str
    listen_port: int
    target_host: str
    target_port: int


COMMANDS_HELP = (
    "commands: reset N | blackhole N | restore N | delay N SECONDS | "
    "throttle N BYTES_PER_SEC | down N | up N | status [N]  (N from 1; 0 or - clears)"
)


def describe(index: int, proxy: FaultProxy) -> str:
    s = proxy.status()
    extras = ""
    if s["delay"] is not None:
        extras += f" delay={s['delay']}s"
    if s["throttle"] is not None:
        extras += f" throttle={s['throttle']:.0f}B/s"
    return (
        f"proxy {index} {s['listen']}->{s['target']} {s['state']}{extras} "
        f"connections={s['connections']} accepted={s['accepted']} "
        f"to_target={s['bytes_to_target']} to_client={s['bytes_to_client']}"
    )


def _optional_number(text: str, what: str) -> float | None:
    if text in ("-", "none", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    return value or None


def _nothing(_proxy: FaultProxy) -> None:
    pass


def run_command(proxies: Sequence[FaultProxy], line: str) -> str:
    """Apply one control line to ``proxies``; the one-line answer (never raises)."""
    words = line.split()
    if not words:
        return ""
    verb, args = words[0].lower(), words[1:]
    if verb in ("help", "?"):
        return COMMANDS_HELP
    if verb == "status" and not args:
        return " | ".join(describe(i, p) for i, p in enumerate(proxies, 1))
    actions: dict[str, Callable[[FaultProxy], None]] = {
        "status": _nothing,
        "reset": FaultProxy.reset,
        "blackhole": FaultProxy.blackhole,
        "restore": FaultProxy.restore,
        "down": FaultProxy.down,
        "up": FaultProxy.up,
        "delay": lambda p: p.delay(_optional_number(args[1], "delay")),
        "throttle": lambda p: p.throttle(_optional_number(args[1], "throttle")),
    }
    action = actions.get(verb)
    if action is None:
        return f"error: unknown command {verb!r}; {COMMANDS_HELP}"
    wanted = 2 if verb in ("delay", "throttle") else 1
    if len(args) != wanted:
        return f"error: {verb} takes {wanted} argument(s); {COMMANDS_HELP}"
    try:
        index = int(args[0])
    except ValueError:
        return f"error: proxy number {args[0]!r} is not a number"
    if not 1 <= index <= len(proxies):
        return f"error: proxy number {index} is outside 1..{len(proxies)}"
    proxy = proxies[index - 1]
    try:
        action(proxy)
    except (ValueError, OSError) as exc:
        return f"error: {exc}"
    return describe(index, proxy)


class _LineReader:
    """Reads control lines from a file descriptor with a reader callback.

    The descriptor is left blocking: making a terminal's stdin non-blocking would make the
    shared stdout non-blocking too. os.read after readiness does not block.
    """

    MAX_LINE = 4096

    def __init__(self, fd: int, on_line: Callable[[str], None]) -> None:
        self._fd = fd
        self._on_line = on_line
        self._buffer = b""
        self._loop = asyncio.get_running_loop()
        self.active = False
        try:
            self._loop.add_reader(fd, self._readable)
            self.active = True
        except (OSError, ValueError, NotImplementedError):  # e.g. /dev/null, a regular file
            log.info("commands on stdin are off: stdin is not a pipe or a terminal")

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("commands on stdin are off: %s", exc)
            data = b""
        if not data:
            self.close()  # EOF (e.g. started with </dev/null): keep proxying, stop reading
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._on_line(line.decode(errors="replace"))
        if len(self._buffer) > self.MAX_LINE:
            log.warning("ignoring a command line longer than %d bytes", self.MAX_LINE)
            self._buffer = b""

    def close(self) -> None:
        if self.active:
            self._loop.remove_reader(self._fd)
            self.active = False


async def run_proxies_from_cli(
    routes: Sequence[Route],
    stop: Callable[[], Awaitable[object]],
    *,
    commands_fd: int | None = 0,
    out: TextIO | None = None,
) -> int:
    """Run a proxy per route until ``stop()`` returns; control lines come from ``commands_fd``.

    A listen address that cannot be bound raises ConfigError naming ``--listen``.
    """
    write_to = out if out is not None else sys.stdout
    proxies: list[FaultProxy] = []

    def say(text: str) -> None:
        if text:
            print(text, file=write_to, flush=True)

    try:
        for route in routes:
            proxy = FaultProxy(
                route.target_host,
                route.target_port,
                listen_host=route.listen_host,
                listen_port=route.listen_port,
            )
            try:
                await proxy.start()
            except OSError as exc:
                where = f"{route.listen_host}:{route.listen_port}"
                raise ConfigError(
                    "--listen", f"cannot listen on {where}: {exc.strerror or exc}"
                ) from None
            proxies.append(proxy)
        for index, proxy in enumerate(proxies, 1):
            say(describe(index, proxy))
        reader = None
        if commands_fd is not None:
            reader = _LineReader(commands_fd, lambda line: say(run_command(proxies, line)))
            if reader.active:
                say(COMMANDS_HELP)
        try:
            await stop()
        finally:
            if reader is not None:
                reader.close()
    finally:
        for proxy in proxies:
            await proxy.close()
    return 0
