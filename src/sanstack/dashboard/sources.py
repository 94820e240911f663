"""Where the dashboard's data comes from (asyncio edge): the nodes' control sockets named in
the cluster config, and the target's control socket when one is given. JSON over HTTP on
Unix sockets, as the CLI speaks it (``control/forward.forward``), each request bounded.

A question for the cluster goes to any live node: the one that answered last first, then
the others in config order, so losing any one node costs one refused connect (a killed
node) or one timeout (a frozen one) and the dashboard goes on through the next. A node's
refusal (an HTTP error with its one-line reason) is an answer, not a reason to ask another
node: moving a group to a paused node must show that node's words. An action whose node
took too long is not sent to another (it may have been done; a snapshot would be refused
the second time, a move done twice).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import h11

from sanstack.cluster.model import ClusterConfig
from sanstack.control.forward import ForwardError, forward
from sanstack.dashboard.view import Poll

ASK_TIMEOUT: Final = 5.0  # one request to one node (a status reads every disk: PR commands)
ACTION_TIMEOUT: Final = 25.0  # a snapshot waits for in-flight writes; the node bounds it too


class Unreachable(Exception):
    """No node answered; the message says what each one did."""


@dataclass(frozen=True, slots=True)
class Answer:
    node: str | None  # which node answered (None: the target)
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return self.status == 200

    def error(self) -> str:
        body = self.body
        message = body.get("error") if isinstance(body, dict) else body
        return str(message)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


class Sources:
    """The nodes' and the target's control sockets (module docstring)."""

    def __init__(self, config: ClusterConfig, target_control: Path | None) -> None:
        self.config = config
        self.target_control = target_control
        self.controls = {n.name: n.control for n in config.nodes}
        self._last = config.nodes[0].name

    async def ask_node(
        self, node: str, method: str, resource: str, body: Any = None, bound: float = ASK_TIMEOUT
    ) -> Answer:
        async with asyncio.timeout(bound):
            status, answer = await forward(
                self.controls[node], method, resource, body, within=bound
            )
        return Answer(node, status, answer)

    async def ask(
        self, method: str, resource: str, body: Any = None, bound: float = ASK_TIMEOUT
    ) -> Answer:
        """The first answer of any node (module docstring); ``Unreachable`` when none."""
        order = [self._last, *(n for n in self.controls if n != self._last)]
        failures = []
        for node in order:
            try:
                answer = await self.ask_node(node, method, resource, body, bound)
            except TimeoutError:
                if method != "GET":  # it may have been done: never do it twice
                    raise Unreachable(
                        f"{node} did not answer in time; the action may or may not be done"
                    ) from None
                failures.append(f"{node}: no answer in time")
                continue
            except (ForwardError, OSError, h11.ProtocolError, ValueError) as exc:
                failures.append(f"{node}: {_why(exc)}")
                continue
            self._last = node
            return answer
        raise Unreachable("no node answered (" + "; ".join(failures) + ")")

    async def ask_target(self, resource: str) -> Answer:
        assert self.target_control is not None
        async with asyncio.timeout(ASK_TIMEOUT):
            status, answer = await forward(
                self.target_control, "GET", resource, None, within=ASK_TIMEOUT
            )
        return Answer(None, status, answer)

    # -- one poll ----------------------------------------------------------------------------

    async def poll(self, now: float, since: dict[str, int]) -> tuple[Poll, dict[str, Any]]:
        """Everything the page shows, asked at once; and each live node's new events."""
        status: dict[str, Any] | None = None
        source: str | None = None
        error: str | None = None
        try:
            answer = await self.ask("GET", "/v1/cluster/status")
        except Unreachable as exc:
            status, source, error = None, None, str(exc)
        else:
            if answer.ok and isinstance(answer.body, dict):
                status, source, error = answer.body, answer.node, None
            else:
                status, source, error = None, answer.node, answer.error()
        live = self._live_nodes(status)
        maps_task = asyncio.gather(*(self._maps(n) for n in live))
        events_task = asyncio.gather(*(self._events(n, since.get(n, 0)) for n in live))
        volumes_task = asyncio.gather(*(self._volume(v) for v in self._open_volumes(status)))
        target_task = self._target() if self.target_control is not None else _nothing()
        maps, events, volumes, target = await asyncio.gather(
            maps_task, events_task, volumes_task, target_task
        )
        poll = Poll(
            time=now,
            source=source,
            status=status,
            status_error=error,
            maps=dict(zip(live, maps, strict=True)),
            volumes=dict(volumes),
            target=target,
        )
        new_events = {n: e for n, e in zip(live, events, strict=True) if e is not None}
        return poll, new_events

    def _live_nodes(self, status: dict[str, Any] | None) -> list[str]:
        if status is None:
            return list(self.controls)
        down = {n["name"] for n in status.get("nodes", []) if n.get("state") == "down"}
        return [n for n in self.controls if n not in down or n == status.get("node")]

    def _open_volumes(self, status: dict[str, Any] | None) -> list[str]:
        """The volumes of groups that run somewhere (the others' would only be refused)."""
        if status is None:
            return []
        return [
            f"{g['name']}/{disk}"
            for g in status.get("groups", [])
            if g.get("state") == "online"
            for disk in g.get("volumes", [])
        ]

    async def _maps(self, node: str) -> Any:
        try:
            answer = await self.ask_node(node, "GET", "/v1/cluster/maps")
        except (TimeoutError, ForwardError, OSError, h11.ProtocolError, ValueError) as exc:
            return _why(exc)
        return answer.body if answer.ok else answer.error()

    async def _events(self, node: str, since: int) -> dict[str, Any] | None:
        try:
            answer = await self.ask_node(node, "GET", f"/v1/cluster/events?since={since}")
        except (TimeoutError, ForwardError, OSError, h11.ProtocolError, ValueError):
            return None
        return answer.body if answer.ok and isinstance(answer.body, dict) else None

    async def _volume(self, volume: str) -> tuple[str, Any]:
        query = urllib.parse.urlencode({"volume": volume})
        try:
            info, snapshots = await asyncio.gather(
                self.ask("GET", f"/v1/cluster/volumes/info?{query}"),
                self.ask("GET", f"/v1/cluster/volumes/snapshots?{query}"),
            )
        except Unreachable as exc:
            return volume, str(exc)
        for answer in (info, snapshots):
            if not answer.ok:
                return volume, answer.error()
        return volume, {"info": info.body, "snapshots": snapshots.body}

    async def _target(self) -> dict[str, Any]:
        try:
            targets, sessions = await asyncio.gather(
                self.ask_target("/v1/targets"), self.ask_target("/v1/sessions")
            )
            names = [t["name"] for t in targets.body] if targets.ok else []
            luns = await asyncio.gather(*(self.ask_target(f"/v1/targets/{n}/luns") for n in names))
        except (TimeoutError, ForwardError, OSError, h11.ProtocolError, ValueError) as exc:
            return {"error": f"target at {self.target_control}: {_why(exc)}"}
        for answer in (targets, sessions, *luns):
            if not answer.ok:
                return {"error": f"target: {answer.error()}"}
        return {
            "error": None,
            "targets": targets.body,
            "luns": {n: a.body for n, a in zip(names, luns, strict=True)},
            "sessions": sessions.body,
        }


async def _nothing() -> None:
    return None
