"""A daemon's control plane: its service API as JSON over HTTP on a Unix socket (or on a
TCP address, behind a guard).

h11 does the HTTP/1.1 framing (sans-IO, like sanstack's own cores); this module knows no
service. Each service defines its routes beside itself as a table of (method, path regex,
handler) rows (``target/routes.py``, ``snapshot/routes.py``); a daemon binds each table to
its service object with ``bind_routes`` and hands the routes to its ``ControlServer``. A
handler gets the route's named groups and the query parameters in one dict, and the
request's JSON body (None when there is none); what it returns is the JSON answer, and a
``ServiceError`` it raises is the error answer with that HTTP status.

A Unix socket keeps the control plane local and lets file permissions decide who may use
it (0600: the daemon's user, root by default). A TCP listener (a cluster node's
``peer_control``) has no such permission: it serves only behind a ``Guard`` that sees each
whole request (headers and body) before any route does and refuses it, or admits it with
the headers its answer must carry (``control/peer_auth.py``), and it takes at most
``max_connections`` at once. Requests are small and bounded (``MAX_BODY``, h11's 16 KiB of
headers); each connection serves one request and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import h11

from sanstack.edge.tasks import wait_ended
from sanstack.errors import ServiceError

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
REQUEST_TIMEOUT = 10.0  # to receive a request
# To carry it out: a snapshot waits for in-flight writes to drain (up to 15 s), a restore
# for the free-space scan; below the CLI's 30 s socket timeout, so it hears why.
HANDLER_TIMEOUT = 25.0

Service = TypeVar("Service")
Params = dict[str, str]
# A row of a service's route table: (method, path regex, handler(service, params, body)).
RouteRow = tuple[str, str, Callable[[Service, Params, Any], Awaitable[Any]]]
# Where a control server listens: a Unix socket's path, or a TCP (host, port).
Listen = Path | tuple[str, int]


def describe(listen: Listen) -> str:
    """A listen address as a person writes it: the path, ``HOST:PORT`` or ``[V6]:PORT``."""
    if isinstance(listen, Path):
        return str(listen)
    host, port = listen
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Request:
    """One whole request, as a ``Guard`` sees it (header names in lower case)."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    peer: str  # HOST:PORT of a TCP client; the socket's path for a Unix one


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    message: str


# The headers the answer must carry, given its status and body.
AnswerHeaders = Callable[[int, bytes], list[tuple[str, str]]]
Guard = Callable[[Request], Refusal | AnswerHeaders]


@dataclass(frozen=True, slots=True)
class Route:
    """One (method, path) a control server answers, with its handler bound to its service."""

    method: str
    pattern: re.Pattern[str]
    handler: Callable[[Params, Any], Awaitable[Any]]


def bind_routes(service: Service, table: Iterable[RouteRow[Service]]) -> list[Route]:
    """``table``'s rows as routes whose handlers are called with ``service``."""
    return [
        Route(method, re.compile(pattern), functools.partial(handler, service))
        for method, pattern, handler in table
    ]


async def dispatch(routes: Iterable[Route], method: str, path: str, body: bytes) -> tuple[int, Any]:
    """(HTTP status, JSON value) for one request; every failure is a JSON error object.

    ``path`` may carry a query string; its parameters join the route's matched groups.
    A path no route matches is 404; one matched only for other methods is 405.
    """
    path, _sep, query = path.partition("?")
    params = dict(urllib.parse.parse_qsl(query))
    allowed = False
    for route in routes:
        match = route.pattern.match(path)
        if match is None:
            continue
        allowed = True
        if route.method != method:
            continue
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            return 400, {"error": "body: not valid JSON"}
        try:
            return 200, await route.handler({**params, **match.groupdict()}, payload)
        except ServiceError as exc:
            return exc.status, {"error": str(exc)}
        except Exception:
            log.exception("control request %s %s failed", method, path)
            return 500, {"error": "internal error (see the daemon's log)"}
    if allowed:
        return 405, {"error": f"{method} is not allowed on {path}"}
    return 404, {"error": f"no such resource: {path}"}


class ControlServer:
    """Serves ``routes`` (a daemon's bound route tables) on a Unix socket, or on a TCP
    address behind ``guard``, until ``close``."""

    def __init__(
        self,
        listen: Listen,
        routes: Iterable[Route],
        *,
        guard: Guard | None = None,
        max_connections: int | None = None,
    ) -> None:
        if not isinstance(listen, Path) and guard is None:
            raise ValueError("a TCP control listener needs a guard")
        self.listen = listen
        self.routes = list(routes)
        self.guard = guard
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def path(self) -> Path:
        assert isinstance(self.listen, Path)
        return self.listen

    @property
    def where(self) -> str:
        return describe(self.listen)

    async def start(self) -> None:
        if not isinstance(self.listen, Path):
            host, port = self.listen
            self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._accept, path=str(self.path))
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await wait_ended(list(self._tasks), "control requests")
        if isinstance(self.listen, Path):
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.max_connections is not None and len(self._tasks) >= self.max_connections:
            log.warning(
                "control %s: %d connections already; one refused", self.where, len(self._tasks)
            )
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await asyncio.wait_for(
                self._serve(reader, writer), REQUEST_TIMEOUT + HANDLER_TIMEOUT + 1
            )
        except (TimeoutError, ConnectionError, h11.ProtocolError) as exc:
            log.debug("control connection ended: %s", exc)
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                chunk = await asyncio.wait_for(reader.read(65536), REQUEST_TIMEOUT)
                conn.receive_data(chunk)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    await self._reply(conn, writer, 413, {"error": "body: too large"})
                    return
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                method, target = request.method.decode(), request.target.decode()
                seal: AnswerHeaders | None = None
                if self.guard is not None:
                    admitted = self.guard(
                        Request(
                            method,
                            target,
                            {k.decode(): v.decode() for k, v in request.headers},
                            bytes(body),
                            _peer_name(writer),
                        )
                    )
                    if isinstance(admitted, Refusal):
                        await self._reply(
                            conn, writer, admitted.status, {"error": admitted.message}
                        )
                        return
                    seal = admitted
                try:
                    status, payload = await asyncio.wait_for(
                        dispatch(self.routes, method, target, bytes(body)), HANDLER_TIMEOUT
                    )
                except TimeoutError:
                    status = 503
                    payload = {"error": f"not done within {HANDLER_TIMEOUT:.0f} s; try again"}
                await self._reply(conn, writer, status, payload, seal)
                return
            elif isinstance(event, h11.ConnectionClosed):
                return

    @staticmethod
    async def _reply(
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        seal: AnswerHeaders | None = None,
    ) -> None:
        data = json.dumps(payload, indent=1).encode() + b"\n"
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(data))),
            ("connection", "close"),
        ]
        if seal is not None:
            headers += seal(status, data)
        writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
        writer.write(conn.send(h11.Data(data=data)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
    return str(writer.get_extra_info("sockname") or "unix")
