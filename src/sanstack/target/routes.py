"""The target service's control-plane routes (``TargetService`` over ``control/server.py``).

::

    GET    /v1/status                                    daemon status
    GET    /v1/targets                                   every target
    GET    /v1/targets/NAME                              one target
    GET    /v1/targets/NAME/luns                         its LUNs
    POST   /v1/targets/NAME/luns                         {number?, backstore?, path?, size?,
                                                         block_size?, ...} -> the LUN
    DELETE /v1/targets/NAME/luns/N                       -> {removed}
    GET    /v1/targets/NAME/luns/N/pr                    persistent reservation state
    PUT    /v1/targets/NAME/portal-groups/TAG            {enabled} -> the target
    PUT    /v1/targets/NAME/portal-groups/TAG/alua       {state} -> the target
    GET    /v1/sessions                                  every connection

The target daemon serves these beside the snapshot volumes' (``snapshot/routes.py``).
"""

from __future__ import annotations

from typing import Any

from sanstack.control.server import Params, RouteRow
from sanstack.errors import ServiceError
from sanstack.target.service import TargetService


async def _status(svc: TargetService, _m: Params, _b: Any) -> Any:
    return svc.status()


async def _targets(svc: TargetService, _m: Params, _b: Any) -> Any:
    return svc.targets()


async def _target(svc: TargetService, m: Params, _b: Any) -> Any:
    return svc.target(m["target"])


async def _luns(svc: TargetService, m: Params, _b: Any) -> Any:
    return svc.luns(m["target"])


async def _sessions(svc: TargetService, _m: Params, _b: Any) -> Any:
    return svc.sessions()


async def _add_lun(svc: TargetService, m: Params, body: Any) -> Any:
    if not isinstance(body, dict):
        raise ServiceError(400, "body: a JSON object describing the LUN is needed")
    return await svc.add_lun(m["target"], body)


async def _remove_lun(svc: TargetService, m: Params, _b: Any) -> Any:
    return await svc.remove_lun(m["target"], int(m["lun"]))


async def _portal_group(svc: TargetService, m: Params, body: Any) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
        raise ServiceError(400, 'enabled: the body must be {"enabled": true|false}')
    return await svc.set_portal_group_enabled(m["target"], int(m["tag"]), body["enabled"])


async def _alua(svc: TargetService, m: Params, body: Any) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get("state"), str):
        raise ServiceError(400, 'state: the body must be {"state": "<ALUA state>"}')
    return svc.set_alua_state(m["target"], int(m["tag"]), body["state"])


async def _reservations(svc: TargetService, m: Params, _b: Any) -> Any:
    return svc.reservations(m["target"], int(m["lun"]))


_NAME = r"(?P<target>[^/]+)"

# Anything else is 404 or 405.
TARGET_ROUTES: list[RouteRow[TargetService]] = [
    ("GET", r"^/v1/status$", _status),
    ("GET", r"^/v1/targets$", _targets),
    ("GET", rf"^/v1/targets/{_NAME}$", _target),
    ("GET", rf"^/v1/targets/{_NAME}/luns$", _luns),
    ("POST", rf"^/v1/targets/{_NAME}/luns$", _add_lun),
    ("DELETE", rf"^/v1/targets/{_NAME}/luns/(?P<lun>\d+)$", _remove_lun),
    ("GET", rf"^/v1/targets/{_NAME}/luns/(?P<lun>\d+)/pr$", _reservations),
    ("PUT", rf"^/v1/targets/{_NAME}/portal-groups/(?P<tag>\d+)$", _portal_group),
    ("PUT", rf"^/v1/targets/{_NAME}/portal-groups/(?P<tag>\d+)/alua$", _alua),
    ("GET", r"^/v1/sessions$", _sessions),
]
