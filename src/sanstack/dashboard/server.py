"""``sanstack dashboard``: the cluster's web dashboard, one aiohttp process over the nodes'
control sockets (asyncio edge; the view model is ``dashboard/view.py``, the sockets
``dashboard/sources.py``).

::

    GET    /                            the page (static/index.html; /static/... beside it)
    GET    /api/view                    the current view (JSON)
    GET    /api/stream                  server-sent events: the view on connect and on change
    POST   /api/move                    {group, node} -> the node's answer
    POST   /api/nodes/NAME/pause|resume -> the node's answer
    POST   /api/snapshots               {volume: "G/D", name} -> the snapshot
    DELETE /api/snapshots/NAME?volume=G/D

One task polls the cluster every ``interval`` (at once after an action) and publishes the
view; each stream sends the newest view it has not sent (never a queue of old ones: a slow
browser skips views), and a comment every ``PING`` seconds so proxies keep it open. An
action answers with the node's answer or its refusal (status and one line), as the CLI
prints them.

Access: on a loopback address anyone on the machine may use it (as the control sockets'
users may), and a request must name a loopback host (a web page elsewhere cannot reach it
through DNS rebinding). Anywhere else ``--token`` is required: the page and the API then
want the token, from a cookie that visiting ``/?token=TOKEN`` sets (HttpOnly,
SameSite=Strict) or an ``Authorization: Bearer TOKEN`` header. Actions need a JSON body
content type, which a cross-site form cannot send.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from sanstack.cluster.model import ClusterConfig
from sanstack.dashboard.sources import ACTION_TIMEOUT, Answer, Sources, Unreachable
from sanstack.dashboard.view import DashboardState, volume_names
from sanstack.edge.tasks import wait_ended
from sanstack.errors import ConfigError

log = logging.getLogger("sanstack.dashboard")

STATIC: Final = Path(__file__).parent / "static"
PING: Final = 15.0
COOKIE: Final = "sanstack_dashboard"
MAX_BODY: Final = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class DashboardOptions:
    config: ClusterConfig
    host: str
    port: int
    target_control: Path | None = None
    token: str | None = None
    interval: float = 1.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host: str) -> str:
    """The name in a Host header: ``name``, ``name:port``, ``[v6]`` or ``[v6]:port``."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.partition(":")[0]


def check_options(options: DashboardOptions) -> None:
    if not is_loopback(options.host) and not options.token:
        raise ConfigError(
            "--token",
            f"listening on {options.host}, not a loopback address, needs a token "
            "(anyone who can reach it could move groups and delete snapshots)",
        )
    if options.token is not None and (len(options.token) < 8 or not options.token.isprintable()):
        raise ConfigError("--token", "must be at least 8 printable characters")


class Dashboard:
    """The web server and its poll task (module docstring)."""

    def __init__(self, options: DashboardOptions) -> None:
        check_options(options)
        self.options = options
        config = options.config
        self.sources = Sources(config, options.target_control)
        self.state = DashboardState(
            cluster=config.name,
            controls={n.name: str(n.control) for n in config.nodes},
            devices={d.name: d.device for d in config.disks},
            volume_names=volume_names([(g.name, g.volumes) for g in config.groups]),
            has_target=options.target_control is not None,
        )
        self.latest = "null"
        self.version = 0
        self._changed = asyncio.Condition()
        self._poke = asyncio.Event()
        self._closing = False
        self._poller: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> str:
        """Listen, poll once, and return the URL (the real port when 0 was asked)."""
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        app.router.add_get("/", self._page)
        app.router.add_static("/static/", STATIC)
        app.router.add_get("/api/view", self._view)
        app.router.add_get("/api/stream", self._stream)
        app.router.add_post("/api/move", self._move)
        app.router.add_post("/api/nodes/{node}/{action:pause|resume}", self._pause)
        app.router.add_post("/api/snapshots", self._create_snapshot)
        app.router.add_delete("/api/snapshots/{name}", self._delete_snapshot)
        app.on_shutdown.append(self._on_shutdown)
        host, port = self.options.host, self.options.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                "--listen", f"cannot listen on {host}:{port}: {exc.strerror}"
            ) from None
        port = sock.getsockname()[1]
        await self._publish()
        self._poller = asyncio.create_task(self._poll_loop(), name="dashboard poll")
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"
        return self.url

    async def close(self) -> None:
        await self._on_shutdown(None)
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            await wait_ended([poller], "dashboard polls")
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _on_shutdown(self, _app: web.Application | None) -> None:
        # Streams wait for the next view; wake them so they end instead of holding shutdown.
        self._closing = True
        async with self._changed:
            self._changed.notify_all()

    # -- polling -----------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.interval):
                    await self._poke.wait()
            self._poke.clear()
            try:
                await self._publish()
            except Exception:  # one bad poll must not end the dashboard
                log.exception("dashboard poll failed")

    async def _publish(self) -> None:
        poll, new_events = await self.sources.poll(time.time(), self.state.events.since)
        for node, answer in new_events.items():
            self.state.events.add(node, answer)
        view = self.state.update(poll)
        self.latest = json.dumps(view)
        self.version = view["version"]
        async with self._changed:
            self._changed.notify_all()

    # -- access ------------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        token = self.options.token
        if token is None:
            if not is_loopback(host_name(request.host)):
                return _refusal(403, "host: the dashboard answers only loopback names")
            return await handler(request)
        offered = request.query.get("token")
        if request.path == "/" and offered is not None:
            if not hmac.compare_digest(offered.encode(), token.encode()):
                return _refusal(401, "token: wrong token")
            response = web.Response(status=303, headers={"Location": "/"})
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
            return response
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        cookie = request.cookies.get(COOKIE, "")
        if not any(hmac.compare_digest(c.encode(), token.encode()) for c in (bearer, cookie)):
            return _refusal(401, "token: open /?token=TOKEN first, or send Authorization: Bearer")
        return await handler(request)

    # -- the page and the view ---------------------------------------------------------------

    async def _page(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def _view(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(text=self.latest, content_type="application/json")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        sent = 0
        try:
            await response.write(b"retry: 1000\n\n")
            while not self._closing:
                if self.version > sent:
                    sent = self.version
                    await response.write(f"id: {sent}\ndata: {self.latest}\n\n".encode())
                elif not await self._changed_since(sent):
                    await response.write(b": ping\n\n")
        except ConnectionResetError:
            pass  # the browser left
        return response

    async def _changed_since(self, sent: int) -> bool:
        """Wait for a view newer than ``sent`` (or the end); False after ``PING`` seconds."""
        async with self._changed:
            try:
                async with asyncio.timeout(PING):
                    await self._changed.wait_for(lambda: self.version > sent or self._closing)
            except TimeoutError:
                return False
        return True

    # -- actions -----------------------------------------------------------------------------

    async def _move(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if isinstance(body, web.Response):
            return body
        return await self._act("POST", "/v1/cluster/move", body)

    async def _pause(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != "application/json":
            return _refusal(415, "content-type: application/json is needed")
        node = urllib.parse.quote(request.match_info["node"], safe="")
        return await self._act("POST", f"/v1/cluster/nodes/{node}/{request.match_info['action']}")

    async def _create_snapshot(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if isinstance(body, web.Response):
            return body
        volume = body.get("volume") if isinstance(body, dict) else None
        if not isinstance(volume, str) or not volume:
            return _refusal(400, "volume: GROUP/DISK is needed")
        rest = {k: v for k, v in body.items() if k != "volume"}
        query = urllib.parse.urlencode({"volume": volume})
        return await self._act("POST", f"/v1/cluster/volumes/snapshots?{query}", rest)

    async def _delete_snapshot(self, request: web.Request) -> web.StreamResponse:
        volume = request.query.get("volume", "")
        if not volume:
            return _refusal(400, "volume: GROUP/DISK is needed (?volume=GROUP/DISK)")
        name = urllib.parse.quote(request.match_info["name"], safe="")
        query = urllib.parse.urlencode({"volume": volume})
        return await self._act("DELETE", f"/v1/cluster/volumes/snapshots/{name}?{query}")

    async def _act(self, method: str, resource: str, body: Any = None) -> web.StreamResponse:
        try:
            answer: Answer = await self.sources.ask(method, resource, body, ACTION_TIMEOUT)
        except Unreachable as exc:
            return _refusal(503, str(exc))
        self._poke.set()
        if not answer.ok:
            log.info(
                "action %s %s refused by %s: %s", method, resource, answer.node, answer.error()
            )
            return web.json_response(
                {"ok": False, "node": answer.node, "error": answer.error()}, status=answer.status
            )
        return web.json_response({"ok": True, "node": answer.node, "answer": answer.body})


async def _json_body(request: web.Request) -> Any:
    if request.content_type != "application/json":
        return _refusal(415, "content-type: application/json is needed")
    try:
        return await request.json()
    except ValueError:
        return _refusal(400, "body: not JSON")


def _refusal(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status)
