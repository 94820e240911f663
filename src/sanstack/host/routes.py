"""The host's control-plane routes (``Host`` over ``control/server.py``).

::

    GET    /v1/status          sessions (portal, ISID, TSIH, state, digests) and counts
    GET    /v1/maps            every map: WWID, alias, size, exports, paths by state, PR key
    GET    /v1/paths           every path of every map
    POST   /v1/rescan          {targets?: [IQN, ...]} -> what each target's scan changed
    POST   /v1/pr/register     {map: WWID or alias, key: integer} -> the map and its key

``sanstack host run`` serves them, and so does ``sanstack mpio export`` (a host with one
map): ``sanstack host status|maps|paths|rescan|pr`` read either.
"""

from __future__ import annotations

from typing import Any

from sanstack.control.server import Params, RouteRow
from sanstack.errors import ServiceError
from sanstack.host.host import Host


async def _status(host: Host, _m: Params, _b: Any) -> Any:
    return host.status()


async def _maps(host: Host, _m: Params, _b: Any) -> Any:
    return host.map_list()


async def _paths(host: Host, _m: Params, _b: Any) -> Any:
    return host.path_list()


def _object(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ServiceError(400, "body: a JSON object is needed")
    return body


async def _rescan(host: Host, _m: Params, body: Any) -> Any:
    targets = _object(body).get("targets") or []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ServiceError(400, "targets: a list of target names")
    return await host.rescan(targets, discover=not targets)


async def _pr_register(host: Host, _m: Params, body: Any) -> Any:
    fields = _object(body)
    name, key = fields.get("map"), fields.get("key")
    if not isinstance(name, str) or not isinstance(key, int) or isinstance(key, bool):
        raise ServiceError(400, "body: {'map': WWID or alias, 'key': integer}")
    return await host.pr_register(name, key)


# Anything else is 404 or 405.
HOST_ROUTES: list[RouteRow[Host]] = [
    ("GET", r"^/v1/status$", _status),
    ("GET", r"^/v1/maps$", _maps),
    ("GET", r"^/v1/paths$", _paths),
    ("POST", r"^/v1/rescan$", _rescan),
    ("POST", r"^/v1/pr/register$", _pr_register),
]
