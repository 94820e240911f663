"""The snapshot volumes' control-plane routes (``VolumeService`` over ``control/server.py``).

A volume is named by its file, which is no URL segment, so a route takes it as the query
parameter ``path`` (URL-encoded, absolute); a snapshot is the segment NAME::

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

from typing import Any

from sanstack.control.server import Params, RouteRow
from sanstack.errors import ServiceError
from sanstack.snapshot.service import (
    VolumeService,
    check_flag,
    check_name,
    check_weight,
    policy_changes,
    schedule_from_json,
)


def _volume_path(m: Params) -> str:
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


async def _volumes(volumes: VolumeService, _m: Params, _b: Any) -> Any:
    return volumes.volumes()


async def _volume_info(volumes: VolumeService, m: Params, _b: Any) -> Any:
    return await volumes.info(_volume_path(m))


async def _snapshots(volumes: VolumeService, m: Params, _b: Any) -> Any:
    return await volumes.snapshots(_volume_path(m))


async def _create_snapshot(volumes: VolumeService, m: Params, body: Any) -> Any:
    request = _object(body, "{name, weight?, keep?}")
    unknown = set(request) - {"name", "weight", "keep"}
    if unknown:
        raise ServiceError(400, f"{sorted(unknown)[0]}: unknown field")
    return await volumes.create(
        _volume_path(m),
        check_name(request.get("name")),
        check_weight(request.get("weight", 1)),
        check_flag(request.get("keep", False), "keep"),
    )


async def _set_snapshot(volumes: VolumeService, m: Params, body: Any) -> Any:
    request = _object(body, "{weight?, keep?}")
    unknown = set(request) - {"weight", "keep"}
    if unknown:
        raise ServiceError(400, f"{sorted(unknown)[0]}: unknown field")
    weight = request.get("weight")
    keep = request.get("keep")
    return await volumes.set_snapshot(
        _volume_path(m),
        m["name"],
        None if weight is None else check_weight(weight),
        None if keep is None else check_flag(keep, "keep"),
    )


async def _delete_snapshot(volumes: VolumeService, m: Params, _b: Any) -> Any:
    return await volumes.delete(_volume_path(m), m["name"])


async def _restore(volumes: VolumeService, m: Params, _b: Any) -> Any:
    return await volumes.restore(_volume_path(m), m["name"])


async def _set_schedule(volumes: VolumeService, m: Params, body: Any) -> Any:
    return await volumes.set_schedule(_volume_path(m), schedule_from_json(body))


async def _clear_schedule(volumes: VolumeService, m: Params, _b: Any) -> Any:
    return await volumes.set_schedule(_volume_path(m), None)


async def _set_policy(volumes: VolumeService, m: Params, body: Any) -> Any:
    return await volumes.set_policy(_volume_path(m), **policy_changes(_object(body, "")))


_SNAPSHOT = r"(?P<name>[A-Za-z0-9][A-Za-z0-9._:+-]*)"

# Anything else is 404 or 405.
VOLUME_ROUTES: list[RouteRow[VolumeService]] = [
    ("GET", r"^/v1/volumes$", _volumes),
    ("GET", r"^/v1/volumes/info$", _volume_info),
    ("GET", r"^/v1/volumes/snapshots$", _snapshots),
    ("POST", r"^/v1/volumes/snapshots$", _create_snapshot),
    ("PUT", rf"^/v1/volumes/snapshots/{_SNAPSHOT}$", _set_snapshot),
    ("DELETE", rf"^/v1/volumes/snapshots/{_SNAPSHOT}$", _delete_snapshot),
    ("POST", rf"^/v1/volumes/snapshots/{_SNAPSHOT}/restore$", _restore),
    ("PUT", r"^/v1/volumes/schedule$", _set_schedule),
    ("DELETE", r"^/v1/volumes/schedule$", _clear_schedule),
    ("PUT", r"^/v1/volumes/policy$", _set_policy),
]
