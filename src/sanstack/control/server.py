"""A daemon's control plane: its service API as JSON over HTTP on a Unix socket.

h11 does the HTTP/1.1 framing (sans-IO, like sanstack's own cores); this module knows no
service. Each service defines its routes beside itself as a table of (method, path regex,
handler) rows (``target/routes.py``, ``snapshot/routes.py``); a daemon binds each table to
its service object with ``bind_routes`` and hands the routes to its ``ControlServer``. A
handler gets the route's named groups and the query parameters in one dict, and the
request's JSON body (None when there is none); what it returns is the JSON answer, and a
``ServiceError`` it raises is the error answer with that HTTP status.

A Unix socket keeps the control plane local and lets file permissions decide who may use
it (0600: the daemon's user, root by default). Requests are small and bounded
(``MAX_BODY``); each connection serves one request and closes.
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
    """Serves ``routes`` (a daemon's bound route tables) on a Unix socket until ``close``."""

    def __init__(self, path: Path, routes: Iterable[Route]) -> None:
        self.path = path
        self.routes = list(routes)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
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
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
                try:
                    status, payload = await asyncio.wait_for(
                        dispatch(
                            self.routes,
                            request.method.decode(),
                            request.target.decode(),
                            bytes(body),
                        ),
                        HANDLER_TIMEOUT,
                    )
                except TimeoutError:
                    status = 503
                    payload = {"error": f"not done within {HANDLER_TIMEOUT:.0f} s; try again"}
                await self._reply(conn, writer, status, payload)
                return
            elif isinstance(event, h11.ConnectionClosed):
                return

    @staticmethod
    async def _reply(
        conn: h11.Connection, writer: asyncio.StreamWriter, status: int, payload: Any
    ) -> None:
        data = json.dumps(payload, indent=1).encode() + b"\n"
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(data))),
            ("connection", "close"),
        ]
        writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
        writer.write(conn.send(h11.Data(data=data)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
