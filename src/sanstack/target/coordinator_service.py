"""The target service of a coordinator (``--workers N``) and its control routes.

The queries and changes are ``TargetService``'s, acting on the coordinator; the sessions
listing asks every worker (each row names its ``worker``), the status adds the workers, an
ALUA change is pushed to every worker before it answers, and LUNs cannot be added or
removed at runtime (every worker would have to open them; restart with the new
configuration instead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sanstack.control.server import Params, RouteRow
from sanstack.errors import ServiceError
from sanstack.scsi.alua import TransitionRefused
from sanstack.target.routes import TARGET_ROUTES
from sanstack.target.service import ALUA_STATE_NAMES, TargetService

if TYPE_CHECKING:
    from sanstack.snapshot.service import VolumeService
    from sanstack.target.coordinator import Coordinator

_NO_RUNTIME_LUNS = (
    "lun: LUNs cannot be added or removed at runtime with --workers above 1; "
    "restart the target with the new configuration"
)


class CoordinatorService(TargetService):
    """``TargetService`` over a coordinator and its workers."""

    def __init__(self, coordinator: Coordinator, volumes: VolumeService | None = None) -> None:
        super().__init__(coordinator, volumes)
        self.coordinator = coordinator

    def status(self) -> dict[str, Any]:
        workers = self.coordinator.status()
        return {
            **super().status(),
            "sessions": len(self.coordinator.book.sessions),
            "connections": sum(int(str(w["connections"])) for w in workers),
            "workers": workers,
        }

    async def all_sessions(self) -> list[dict[str, Any]]:
        rows = await self.coordinator.all_sessions()
        return sorted(rows, key=lambda row: (str(row.get("worker")), str(row.get("peer"))))

    async def set_alua_state_everywhere(self, name: str, tag: int, state: str) -> dict[str, Any]:
        target = self._target(name)
        if target.portal_group(tag) is None:
            raise ServiceError(404, f"portal_group: {name} has no portal group {tag}")
        wanted = ALUA_STATE_NAMES.get(state)
        if wanted is None:
            choices = ", ".join(ALUA_STATE_NAMES)
            raise ServiceError(400, f"state: {state!r} is not one of {choices}")
        try:
            await self.coordinator.set_alua_state(target, tag, wanted)
        except TransitionRefused as exc:
            raise ServiceError(409, f"state: {exc}") from None
        return self._target_summary(target)

    async def add_lun(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        self._target(name)
        raise ServiceError(409, _NO_RUNTIME_LUNS)

    async def remove_lun(self, name: str, number: int) -> dict[str, Any]:
        self._target(name)
        raise ServiceError(409, _NO_RUNTIME_LUNS)


async def _sessions(svc: CoordinatorService, _m: Params, _b: Any) -> Any:
    return await svc.all_sessions()


async def _alua(svc: CoordinatorService, m: Params, body: Any) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get("state"), str):
        raise ServiceError(400, 'state: the body must be {"state": "<ALUA state>"}')
    return await svc.set_alua_state_everywhere(m["target"], int(m["tag"]), body["state"])


_REPLACED = {r"^/v1/sessions$": _sessions, r"/alua$": _alua}


def _coordinator_routes() -> list[RouteRow[CoordinatorService]]:
    rows: list[RouteRow[CoordinatorService]] = []
    for method, pattern, handler in TARGET_ROUTES:
        replaced = next((h for key, h in _REPLACED.items() if pattern.endswith(key)), None)
        rows.append((method, pattern, replaced or handler))
    return rows


COORDINATOR_ROUTES: list[RouteRow[CoordinatorService]] = _coordinator_routes()
