"""The control routes of the snapshot volumes on cluster disks, served by every node
(``cluster/snapshots.py`` answers them).

A clustered volume is named ``GROUP/DISK`` (a disk listed in the group's ``volumes``), as
the query parameter ``volume``; the rest mirrors ``snapshot/routes.py``, whose answers and
checks these share, so ``sanstack snapshot ... --cluster-control SOCKET GROUP/DISK`` prints
what ``sanstack snapshot ... FILE`` prints::

    GET    /v1/cluster/volumes/info?volume=G/D                   volume info (holder: the owner)
    GET    /v1/cluster/volumes/snapshots?volume=G/D              snapshot list
    POST   /v1/cluster/volumes/snapshots?volume=G/D              {name, weight?, keep?}
    PUT    /v1/cluster/volumes/snapshots/NAME?volume=G/D         {weight?, keep?}
    DELETE /v1/cluster/volumes/snapshots/NAME?volume=G/D         -> {path, deleted}
    POST   /v1/cluster/volumes/snapshots/NAME/restore?volume=G/D -> volume info
    PUT    /v1/cluster/volumes/schedule?volume=G/D               {interval, keep, weight?, prefix?}
    DELETE /v1/cluster/volumes/schedule?volume=G/D               no schedule
    PUT    /v1/cluster/volumes/policy?volume=G/D                 {warn_percent?, delete_percent?,
                                                                 on_full?}

Each request is checked here, whichever node receives it; that node acts on the volume when
it runs the group, or forwards the request unchanged to the group's owner with
``via=NODE`` added (a node that gets a forwarded request for a group it does not run
refuses it rather than forwarding it again).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sanstack.control.server import Params, RouteRow
from sanstack.errors import ServiceError
from sanstack.snapshot.model import Schedule, SpacePolicy
from sanstack.snapshot.service import (
    check_flag,
    check_name,
    check_weight,
    policy_changes,
    schedule_from_json,
)

if TYPE_CHECKING:
    from sanstack.snapshot.volume import SnapshotVolume

PREFIX = "/v1/cluster/volumes"

# What a request does to the volume, on the node that runs the group: (volume, "G/D").
Action = Callable[["SnapshotVolume", str], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class VolumeRequest:
    """One checked request: what to forward (``method``, the path after ``PREFIX/``, the
    body as received) and what it does where the volume is open."""

    method: str
    suffix: str
    body: Any
    action: Action


class ClusterVolumeService(Protocol):
    async def volume_request(self, volume: str, via: str | None, request: VolumeRequest) -> Any:
        """Carry out ``request`` on volume ``GROUP/DISK``, here or at the group's owner."""
        ...


def _object(body: Any, what: str, allowed: set[str]) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ServiceError(400, f"body: a JSON object {what} is needed")
    unknown = set(body) - allowed
    if unknown:
        raise ServiceError(400, f"{sorted(unknown)[0]}: unknown field")
    return body


async def _run(svc: ClusterVolumeService, m: Params, request: VolumeRequest) -> Any:
    volume = m.get("volume")
    if not volume:
        raise ServiceError(400, "volume: GROUP/DISK is needed (?volume=GROUP/DISK)")
    return await svc.volume_request(volume, m.get("via") or None, request)


def _info_of(volume: SnapshotVolume, key: str) -> dict[str, Any]:
    return {"path": key, **volume.info().to_dict()}


async def _info(svc: ClusterVolumeService, m: Params, _b: Any) -> Any:
    async def action(volume: SnapshotVolume, key: str) -> Any:
        return _info_of(volume, key)

    return await _run(svc, m, VolumeRequest("GET", "info", None, action))


async def _snapshots(svc: ClusterVolumeService, m: Params, _b: Any) -> Any:
    async def action(volume: SnapshotVolume, _key: str) -> Any:
        return [s.to_dict() for s in volume.snapshots()]

    return await _run(svc, m, VolumeRequest("GET", "snapshots", None, action))


async def _create(svc: ClusterVolumeService, m: Params, body: Any) -> Any:
    request = _object(body, "{name, weight?, keep?}", {"name", "weight", "keep"})
    name = check_name(request.get("name"))
    weight = check_weight(request.get("weight", 1))
    keep = check_flag(request.get("keep", False), "keep")

    async def action(volume: SnapshotVolume, _key: str) -> Any:
        return (await volume.create_snapshot(name, weight=weight, keep=keep)).to_dict()

    return await _run(svc, m, VolumeRequest("POST", "snapshots", body, action))


async def _set(svc: ClusterVolumeService, m: Params, body: Any) -> Any:
    name = check_name(m["name"])
    request = _object(body, "{weight?, keep?}", {"weight", "keep"})
    weight = request.get("weight")
    keep = request.get("keep")
    weight = None if weight is None else check_weight(weight)
    keep = None if keep is None else check_flag(keep, "keep")

    async def action(volume: SnapshotVolume, _key: str) -> Any:
        return (await volume.set_snapshot(name, weight=weight, keep=keep)).to_dict()

    return await _run(svc, m, VolumeRequest("PUT", f"snapshots/{name}", body, action))


async def _delete(svc: ClusterVolumeService, m: Params, _b: Any) -> Any:
    name = check_name(m["name"])

    async def action(volume: SnapshotVolume, key: str) -> Any:
        await volume.delete_snapshot(name)
        return {"path": key, "deleted": name}

    return await _run(svc, m, VolumeRequest("DELETE", f"snapshots/{name}", None, action))


async def _restore(svc: ClusterVolumeService, m: Params, _b: Any) -> Any:
    name = check_name(m["name"])

    async def action(volume: SnapshotVolume, key: str) -> Any:
        await volume.restore(name)
        return _info_of(volume, key)

    return await _run(svc, m, VolumeRequest("POST", f"snapshots/{name}/restore", None, action))


async def _set_schedule(svc: ClusterVolumeService, m: Params, body: Any) -> Any:
    schedule = schedule_from_json(body)
    return await _run(svc, m, _schedule_request("PUT", body, schedule))


async def _clear_schedule(svc: ClusterVolumeService, m: Params, _b: Any) -> Any:
    return await _run(svc, m, _schedule_request("DELETE", None, None))


def _schedule_request(method: str, body: Any, schedule: Schedule | None) -> VolumeRequest:
    async def action(volume: SnapshotVolume, key: str) -> Any:
        await volume.set_schedule(schedule)
        return _info_of(volume, key)

    return VolumeRequest(method, "schedule", body, action)


async def _set_policy(svc: ClusterVolumeService, m: Params, body: Any) -> Any:
    changes = policy_changes({} if body is None else body)

    async def action(volume: SnapshotVolume, key: str) -> Any:
        old = volume.info().policy
        await volume.set_policy(
            SpacePolicy(
                changes.get("warn_percent", old.warn_percent),
                changes.get("delete_percent", old.delete_percent),
                changes.get("on_full", old.on_full),
            )
        )
        return _info_of(volume, key)

    return await _run(svc, m, VolumeRequest("PUT", "policy", body, action))


# Any segment: a bad name is refused naming the field (400), not as an unknown route.
_NAME = r"(?P<name>[^/]+)"

CLUSTER_VOLUME_ROUTES: list[RouteRow[ClusterVolumeService]] = [
    ("GET", rf"^{PREFIX}/info$", _info),
    ("GET", rf"^{PREFIX}/snapshots$", _snapshots),
    ("POST", rf"^{PREFIX}/snapshots$", _create),
    ("PUT", rf"^{PREFIX}/snapshots/{_NAME}$", _set),
    ("DELETE", rf"^{PREFIX}/snapshots/{_NAME}$", _delete),
    ("POST", rf"^{PREFIX}/snapshots/{_NAME}/restore$", _restore),
    ("PUT", rf"^{PREFIX}/schedule$", _set_schedule),
    ("DELETE", rf"^{PREFIX}/schedule$", _clear_schedule),
    ("PUT", rf"^{PREFIX}/policy$", _set_policy),
]
