"""The target daemon's control plane: its service API as JSON over HTTP on a Unix socket.

h11 does the HTTP/1.1 framing (sans-IO, like sanstack's own cores); this module only maps
routes to ``TargetService`` calls. A Unix socket keeps the control plane local and lets
file permissions decide who may use it (root by default). Requests are small and bounded
(``MAX_BODY``); each connection serves one request and closes.

Snapshot volumes (``sanstack.snapshot.service.VolumeService``, the target service's
``volumes``) are named by their file, which is no URL segment, so a volume route takes it
as the query parameter ``path`` (URL-encoded, absolute); a snapshot is the segment NAME::

    GET    /v1/volumes                                  volumes this daemon holds
    GET    /v1/volumes/info?path=FILE                   volume info (space, policy, schedule,
                                                        background work with progress)
    GET    /v1/volumes/snapshots?path=FILE              snapshot list
    POST   /v1/volumes/snapshots?path=FILE              {name, weight?, keep?} -> the snapshot
    PUT    /v1/volumes/snapshots/NAME?path=FILE         {weight?, keep?} -> the snapshot
    DELETE /v1/volumes/snapshots/NAME?path=FILE         -> {path, deleted}
    POST   /v1/volumes/snapshots/NAME/restore?path=FILE -> volume info (restore started)
    PUT    /v1/volumes/schedule?path=FILE               {interval, keep, weight?, prefix?}
    DELETE /v1/volumes/schedule?path=FILE               no schedule
    PUT    /v1/volumes/policy?path=FILE                 {warn_percent?, delete_percent?,
                                                        on_full?} -> volume info
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import h11

from sanstack.snapshot.service import (
    check_flag,
    check_name,
    check_weight,
    policy_changes,
    schedule_from_json,
)
from sanstack.target.service import ServiceError, TargetService

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
REQUEST_TIMEOUT = 10.0  # to receive a request
# To carry it out: a snapshot waits for in-flight writes to drain (up to 15 s), a restore
# for the free-space scan; below the CLI's 30 s socket timeout, so it hears why.
HANDLER_TIMEOUT = 25.0
Handler = Callable[[Any, dict[str, str], Any], Awaitable[Any]]
Route = tuple[str, "re.Pattern[str]", Handler]
_NAME = r"(?P<target>[^/]+)"


async def _status(svc: TargetService, _m: dict[str, str], _b: Any) -> Any:
    return svc.status()


async def _targets(svc: TargetService, _m: dict[str, str], _b: Any) -> Any:
    return svc.targets()


async def _target(svc: TargetService, m: dict[str, str], _b: Any) -> Any:
    return svc.target(m["target"])


async def _luns(svc: TargetService, m: dict[str, str], _b: Any) -> Any:
    return svc.luns(m["target"])


async def _sessions(svc: TargetService, _m: dict[str, str], _b: Any) -> Any:
    return svc.sessions()


async def _add_lun(svc: TargetService, m: dict[str, str], body: Any) -> Any:
    if not isinstance(body, dict):
        raise ServiceError(400, "body: a JSON object describing the LUN is needed")
    return await svc.add_lun(m["target"], body)


async def _remove_lun(svc: TargetService, m: dict[str, str], _b: Any) -> Any:
    return await svc.remove_lun(m["target"], int(m["lun"]))


async def _portal_group(svc: TargetService, m: dict[str, str], body: Any) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
        raise ServiceError(400, 'enabled: the body must be {"enabled": true|false}')
    return await svc.set_portal_group_enabled(m["target"], int(m["tag"]), body["enabled"])


async def _alua(svc: TargetService, m: dict[str, str], body: Any) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get("state"), str):
        raise ServiceError(400, 'state: the body must be {"state": "<ALUA state>"}')
    return svc.set_alua_state(m["target"], int(m["tag"]), body["state"])


async def _reservations(svc: TargetService, m: dict[str, str], _b: Any) -> Any:
    return svc.reservations(m["target"], int(m["lun"]))


# -- snapshot volumes: ``path`` comes from the query string ----------------------------------


def _volume_path(m: dict[str, str]) -> str:
    path = m.get("path")
    if not path or not path.startswith("/"):
        raise ServiceError(400, "path: an absolute volume file is needed (?path=FILE)")
    return path


def _object(body: Any, what: str) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ServiceError(400, f"body: a JSON object {what} is needed")
    return body


async def _volumes(svc: TargetService, _m: dict[str, str], _b: Any) -> Any:
    return svc.volumes.volumes()


async def _volume_info(svc: TargetService, m: dict[str, str], _b: Any) -> Any:
    return await svc.volumes.info(_volume_path(m))


async def _snapshots(svc: TargetService, m: dict[str, str], _b: Any) -> Any:
    return await svc.volumes.snapshots(_volume_path(m))


async def _create_snapshot(svc: TargetService, m: dict[str, str], body: Any) -> Any:
    request = _object(body, "{name, weight?, keep?}")
    unknown = set(request) - {"name", "weight", "keep"}
    if unknown:
        raise ServiceError(400, f"{sorted(unknown)[0]}: unknown field")
    return await svc.volumes.create(
        _volume_path(m),
        check_name(request.get("name")),
        check_weight(request.get("weight", 1)),
        check_flag(request.get("keep", False), "keep"),
    )


async def _set_snapshot(svc: TargetService, m: dict[str, str], body: Any) -> Any:
    request = _object(body, "{weight?, keep?}")
    unknown = set(request) - {"weight", "keep"}
    if unknown:
        raise ServiceError(400, f"{sorted(unknown)[0]}: unknown field")
    weight = request.get("weight")
    keep = request.get("keep")
    return await svc.volumes.set_snapshot(
        _volume_path(m),
        m["name"],
        None if weight is None else check_weight(weight),
        None if keep is None else check_flag(keep, "keep"),
    )


async def _delete_snapshot(svc: TargetService, m: dict[str, str], _b: Any) -> Any:
    return await svc.volumes.delete(_volume_path(m), m["name"])


async def _restore(svc: TargetService, m: dict[str, str], _b: Any) -> Any:
    return await svc.volumes.restore(_volume_path(m), m["name"])


async def _set_schedule(svc: TargetService, m: dict[str, str], body: Any) -> Any:
    return await svc.volumes.set_schedule(_volume_path(m), schedule_from_json(body))


async def _clear_schedule(svc: TargetService, m: dict[str, str], _b: Any) -> Any:
    return await svc.volumes.set_schedule(_volume_path(m), None)


async def _set_policy(svc: TargetService, m: dict[str, str], body: Any) -> Any:
    return await svc.volumes.set_policy(_volume_path(m), **policy_changes(_object(body, "")))


_SNAPSHOT = r"(?P<name>[A-Za-z0-9][A-Za-z0-9._:+-]*)"

# (method, path pattern) -> handler. Anything else is 404 or 405.
ROUTES: list[Route] = [
    ("GET", re.compile(r"^/v1/status$"), _status),
    ("GET", re.compile(r"^/v1/targets$"), _targets),
    ("GET", re.compile(rf"^/v1/targets/{_NAME}$"), _target),
    ("GET", re.compile(rf"^/v1/targets/{_NAME}/luns$"), _luns),
    ("POST", re.compile(rf"^/v1/targets/{_NAME}/luns$"), _add_lun),
    ("DELETE", re.compile(rf"^/v1/targets/{_NAME}/luns/(?P<lun>\d+)$"), _remove_lun),
    ("GET", re.compile(rf"^/v1/targets/{_NAME}/luns/(?P<lun>\d+)/pr$"), _reservations),
    ("PUT", re.compile(rf"^/v1/targets/{_NAME}/portal-groups/(?P<tag>\d+)$"), _portal_group),
    ("PUT", re.compile(rf"^/v1/targets/{_NAME}/portal-groups/(?P<tag>\d+)/alua$"), _alua),
    ("GET", re.compile(r"^/v1/sessions$"), _sessions),
    ("GET", re.compile(r"^/v1/volumes$"), _volumes),
    ("GET", re.compile(r"^/v1/volumes/info$"), _volume_info),
    ("GET", re.compile(r"^/v1/volumes/snapshots$"), _snapshots),
    ("POST", re.compile(r"^/v1/volumes/snapshots$"), _create_snapshot),
    ("PUT", re.compile(rf"^/v1/volumes/snapshots/{_SNAPSHOT}$"), _set_snapshot),
    ("DELETE", re.compile(rf"^/v1/volumes/snapshots/{_SNAPSHOT}$"), _delete_snapshot),
    ("POST", re.compile(rf"^/v1/volumes/snapshots/{_SNAPSHOT}/restore$"), _restore),
    ("PUT", re.compile(r"^/v1/volumes/schedule$"), _set_schedule),
    ("DELETE", re.compile(r"^/v1/volumes/schedule$"), _clear_schedule),
    ("PUT", re.compile(r"^/v1/volumes/policy$"), _set_policy),
]


def register_route(method: str, pattern: str, handler: Handler) -> None:
    """Let a later layer (PR, ALUA) add its routes to the same control plane."""
    ROUTES.append((method, re.compile(pattern), handler))


async def dispatch(
    service: Any, method: str, path: str, body: bytes, routes: list[Route] | None = None
) -> tuple[int, Any]:
    """(HTTP status, JSON value) for one request; every failure is a JSON error object.

    ``path`` may carry a query string; its parameters join the route's matched groups.
    """
    path, _sep, query = path.partition("?")
    params = dict(urllib.parse.parse_qsl(query))
    allowed = False
    for route_method, pattern, handler in ROUTES if routes is None else routes:
        match = pattern.match(path)
        if match is None:
            continue
        allowed = True
        if route_method != method:
            continue
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            return 400, {"error": "body: not valid JSON"}
        try:
            return 200, await handler(service, {**params, **match.groupdict()}, payload)
        except ServiceError as exc:
            return exc.status, {"error": str(exc)}
        except Exception:
            log.exception("control request %s %s failed", method, path)
            return 500, {"error": "internal error (see the daemon's log)"}
    if allowed:
        return 405, {"error": f"{method} is not allowed on {path}"}
    return 404, {"error": f"no such resource: {path}"}


class ControlServer:
    """Serves a daemon's service API on a Unix socket until ``close``.

    ``routes`` defaults to the target daemon's; other daemons (``sanstack mpio export``)
    pass their own table and service object.
    """

    def __init__(self, service: Any, path: Path, routes: list[Route] | None = None) -> None:
        self.service = service
        self.path = path
        self.routes = ROUTES if routes is None else routes
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
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=REQUEST_TIMEOUT)
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
                            self.service,
                            request.method.decode(),
                            request.target.decode(),
                            bytes(body),
                            self.routes,
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
