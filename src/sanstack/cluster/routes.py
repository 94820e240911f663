"""The cluster node's control-plane routes (a ``ClusterService`` over ``control/server.py``).

::

    GET  /v1/cluster/status                     nodes, view, quorum, groups, disks
    GET  /v1/cluster/events?since=N&limit=M     the cluster log after event N (M at most)
    GET  /v1/cluster/io                         I/O counters of the groups running here
    GET  /v1/cluster/maps                       this node's maps: paths by state, PR key
    POST /v1/cluster/move                       {"group": G, "node": N} -> the request
    POST /v1/cluster/nodes/NAME/pause           drain NAME: its groups move away
    POST /v1/cluster/nodes/NAME/resume          NAME takes groups again

Every node answers each of them: status and events from what it knows, a move by carrying
the request in its heartbeats, a pause or resume by forwarding it to NAME. ``io`` and
``maps`` are this node's own: the status asks each group's owner for its ``io``, and the
dashboard asks every node for its ``maps`` (keys and paths per node).
"""

from __future__ import annotations

from typing import Any, Protocol

from sanstack.control.server import Params, RouteRow
from sanstack.errors import ServiceError

MAX_EVENTS = 10_000  # one answer's events at most


class ClusterService(Protocol):
    async def status(self) -> dict[str, Any]: ...

    def events(self, since: int, limit: int | None) -> dict[str, Any]: ...

    def io(self) -> dict[str, Any]: ...

    def maps(self) -> dict[str, Any]: ...

    async def move(self, group: str, target: str) -> dict[str, Any]: ...

    async def set_paused(self, node: str, paused: bool) -> dict[str, Any]: ...


def _count(params: Params, name: str, default: int | None, low: int, high: int) -> int | None:
    text = params.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit():
        raise ServiceError(400, f"{name}: {text!r} is not a whole number")
    value = int(text)
    if not low <= value <= high:
        raise ServiceError(400, f"{name}: {value} is not within {low}..{high}")
    return value


async def _status(svc: ClusterService, _m: Params, _b: Any) -> Any:
    return await svc.status()


async def _events(svc: ClusterService, m: Params, _b: Any) -> Any:
    since = _count(m, "since", 0, 0, 1 << 62)
    limit = _count(m, "limit", MAX_EVENTS, 1, MAX_EVENTS)
    assert since is not None
    return svc.events(since, limit)


async def _io(svc: ClusterService, _m: Params, _b: Any) -> Any:
    return svc.io()


async def _maps(svc: ClusterService, _m: Params, _b: Any) -> Any:
    return svc.maps()


async def _move(svc: ClusterService, _m: Params, body: Any) -> Any:
    if not isinstance(body, dict):
        raise ServiceError(400, 'body: {"group": GROUP, "node": NODE} is needed')
    unknown = sorted(set(body) - {"group", "node"})
    if unknown:
        raise ServiceError(400, f"body: unknown field {unknown[0]!r}")
    for field in ("group", "node"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise ServiceError(400, f"{field}: a name is needed")
    return await svc.move(body["group"], body["node"])


async def _pause(svc: ClusterService, m: Params, _b: Any) -> Any:
    return await svc.set_paused(m["node"], True)


async def _resume(svc: ClusterService, m: Params, _b: Any) -> Any:
    return await svc.set_paused(m["node"], False)


CLUSTER_ROUTES: list[RouteRow[ClusterService]] = [
    ("GET", r"^/v1/cluster/status$", _status),
    ("GET", r"^/v1/cluster/events$", _events),
    ("GET", r"^/v1/cluster/io$", _io),
    ("GET", r"^/v1/cluster/maps$", _maps),
    ("POST", r"^/v1/cluster/move$", _move),
    ("POST", r"^/v1/cluster/nodes/(?P<node>[^/]+)/pause$", _pause),
    ("POST", r"^/v1/cluster/nodes/(?P<node>[^/]+)/resume$", _resume),
]
