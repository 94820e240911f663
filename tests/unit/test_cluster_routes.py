"""The cluster node's control routes: what each answers and how a bad request is refused (a
400 naming the field, never a 500), against a fake service."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from sanstack.cluster.routes import CLUSTER_ROUTES, MAX_EVENTS
from sanstack.control.server import bind_routes, dispatch
from sanstack.errors import ServiceError


class FakeService:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def status(self) -> dict[str, Any]:
        self.calls.append(("status",))
        return {"cluster": "c"}

    def events(self, since: int, limit: int | None) -> dict[str, Any]:
        self.calls.append(("events", since, limit))
        return {"events": []}

    def io(self) -> dict[str, Any]:
        self.calls.append(("io",))
        return {"node": "n1", "groups": {}}

    def maps(self) -> dict[str, Any]:
        self.calls.append(("maps",))
        return {"node": "n1", "maps": []}

    async def move(self, group: str, target: str) -> dict[str, Any]:
        self.calls.append(("move", group, target))
        if group == "nope":
            raise ServiceError(404, "group: 'nope' is not a group of this cluster")
        return {"group": group, "to": target, "state": "requested"}

    async def set_paused(self, node: str, paused: bool) -> dict[str, Any]:
        self.calls.append(("pause", node, paused))
        return {"node": node, "paused": paused}


def ask(method: str, path: str, body: Any = None) -> tuple[int, Any, FakeService]:
    service = FakeService()
    data = b"" if body is None else json.dumps(body).encode()
    status, answer = asyncio.run(dispatch(bind_routes(service, CLUSTER_ROUTES), method, path, data))
    return status, answer, service


def test_each_route_reaches_the_service() -> None:
    assert ask("GET", "/v1/cluster/status")[::2][0] == 200
    status, _answer, service = ask("GET", "/v1/cluster/events?since=7&limit=3")
    assert status == 200 and service.calls == [("events", 7, 3)]
    assert ask("GET", "/v1/cluster/events")[2].calls == [("events", 0, MAX_EVENTS)]
    assert ask("GET", "/v1/cluster/io")[1] == {"node": "n1", "groups": {}}
    assert ask("GET", "/v1/cluster/maps")[2].calls == [("maps",)]
    status, answer, service = ask("POST", "/v1/cluster/move", {"group": "g1", "node": "n2"})
    assert status == 200 and answer["state"] == "requested"
    assert service.calls == [("move", "g1", "n2")]
    assert ask("POST", "/v1/cluster/nodes/n2/pause")[2].calls == [("pause", "n2", True)]
    assert ask("POST", "/v1/cluster/nodes/n2/resume")[2].calls == [("pause", "n2", False)]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("GET", "/v1/cluster/events?since=-1", None, 400, "since"),
        ("GET", "/v1/cluster/events?since=x", None, 400, "not a whole number"),
        ("GET", "/v1/cluster/events?limit=0", None, 400, "limit: 0 is not within"),
        ("GET", f"/v1/cluster/events?limit={MAX_EVENTS + 1}", None, 400, "limit"),
        ("POST", "/v1/cluster/move", None, 400, "body"),
        ("POST", "/v1/cluster/move", ["g1"], 400, "body"),
        ("POST", "/v1/cluster/move", {"group": "g1"}, 400, "node: a name is needed"),
        ("POST", "/v1/cluster/move", {"group": 3, "node": "n1"}, 400, "group"),
        ("POST", "/v1/cluster/move", {"group": "g1", "node": "n1", "x": 1}, 400, "'x'"),
        ("POST", "/v1/cluster/move", {"group": "nope", "node": "n1"}, 404, "nope"),
        ("GET", "/v1/cluster/move", None, 405, "not allowed"),
        ("POST", "/v1/cluster/nodes/n1/stop", None, 404, "no such resource"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    method: str, path: str, body: Any, status: int, words: str
) -> None:
    got, answer, _service = ask(method, path, body)
    assert got == status, answer
    assert words in answer["error"]
