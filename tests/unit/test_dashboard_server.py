"""The dashboard server without a cluster (its nodes' sockets do not exist): who may use it
(loopback names only without a token; the token by cookie or bearer header), the stream's
first view, an action's refusal when no node answers, and the option checks. And its
sources against fake nodes' control sockets: any live node answers, a refusal is final."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sanstack.cluster.config import parse_config
from sanstack.cluster.routes import CLUSTER_ROUTES
from sanstack.control.server import ControlServer, bind_routes
from sanstack.dashboard.server import Dashboard, DashboardOptions, check_options, host_name
from sanstack.dashboard.sources import Sources, Unreachable
from sanstack.errors import ConfigError, ServiceError

TOKEN = "s3cret-token"


def config(tmp_path: Path) -> Any:
    return parse_config(
        {
            "cluster": {"name": "c"},
            "storage": {"portals": ["127.0.0.1:3260"]},
            "node": [
                {
                    "name": n,
                    "address": f"127.0.0.1:{7400 + i}",
                    "control": str(tmp_path / f"{n}.sock"),
                    "state_dir": str(tmp_path / n),
                }
                for i, n in enumerate(("n1", "n2", "n3"))
            ],
            "disks": {"d1": "iqn.2026-11.org.sanstack:c/1"},
            "group": [{"name": "g1", "disks": ["d1"], "volumes": ["d1"]}],
        }
    )


Run = Callable[[Callable[[Dashboard, aiohttp.ClientSession], Awaitable[None]]], None]


def serving(tmp_path: Path, token: str | None = None) -> Run:
    def run(body: Callable[[Dashboard, aiohttp.ClientSession], Awaitable[None]]) -> None:
        async def main() -> None:
            options = DashboardOptions(config(tmp_path), "127.0.0.1", 0, token=token)
            dashboard = Dashboard(options)
            await dashboard.start()
            try:
                jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies of an IP address too
                async with aiohttp.ClientSession(base_url=dashboard.url, cookie_jar=jar) as session:
                    await body(dashboard, session)
            finally:
                await dashboard.close()

        asyncio.run(main())

    return run


async def lines(response: aiohttp.ClientResponse, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        async with asyncio.timeout(10):
            yield await response.content.readline()


def test_without_nodes_the_view_says_none_answered(tmp_path: Path) -> None:
    async def body(_d: Dashboard, session: aiohttp.ClientSession) -> None:
        async with session.get("/api/view") as response:
            view = await response.json()
        assert view["stale"] and view["error"].startswith("no node answered (n1: ")
        assert view["volumes"] == [{"volume": "g1/d1", "info": None, "snapshots": []}]
        async with session.get("/") as page:
            assert page.status == 200 and "<title>sanstack cluster</title>" in await page.text()
        async with session.get("/static/dashboard.js") as script:
            assert script.status == 200
        async with session.get("/api/stream") as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            got = [line async for line in lines(stream, 4)]
            assert got[0] == b"retry: 1000\n" and got[2].startswith(b"id: ")
            assert got[3].startswith(b"data: {")

    serving(tmp_path)(body)


def test_closing_ends_an_open_stream_at_once(tmp_path: Path) -> None:
    """A browser left open must not hold the dashboard's exit (aiohttp waits for handlers)."""

    async def body(dashboard: Dashboard, session: aiohttp.ClientSession) -> None:
        async with session.get("/api/stream") as stream:
            assert [line async for line in lines(stream, 4)][3].startswith(b"data: ")
            async with asyncio.timeout(5):
                await dashboard.close()

    serving(tmp_path)(body)


def test_an_action_no_node_answers_is_refused_with_why(tmp_path: Path) -> None:
    async def body(_d: Dashboard, session: aiohttp.ClientSession) -> None:
        move = {"group": "g1", "node": "n2"}
        async with session.post("/api/move", json=move) as response:
            answer = await response.json()
        assert response.status == 503 and not answer["ok"]
        assert answer["error"].startswith("no node answered (n1: ")
        async with session.post("/api/move", data="group=g1") as form:
            assert form.status == 415  # a cross-site form cannot send JSON
        async with session.post("/api/snapshots", json={"name": "s"}) as missing:
            assert missing.status == 400 and "volume" in (await missing.json())["error"]

    serving(tmp_path)(body)


def test_loopback_names_only_without_a_token(tmp_path: Path) -> None:
    async def body(_d: Dashboard, session: aiohttp.ClientSession) -> None:
        async with session.get("/api/view", headers={"Host": "evil.example:80"}) as response:
            assert response.status == 403
        async with session.get("/api/view", headers={"Host": "localhost"}) as response:
            assert response.status == 200

    serving(tmp_path)(body)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost", "localhost"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::1]:8", "::1"),
    ],
)
def test_the_name_in_a_host_header(header: str, name: str) -> None:
    assert host_name(header) == name


def test_the_token_by_cookie_or_bearer(tmp_path: Path) -> None:
    async def body(dashboard: Dashboard, session: aiohttp.ClientSession) -> None:
        async with session.get("/api/view") as response:
            assert response.status == 401
        async with session.get("/?token=wrong", allow_redirects=False) as response:
            assert response.status == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with session.get("/api/view", headers=bearer) as response:
            assert response.status == 200
        async with session.get(f"/?token={TOKEN}", allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/"
            cookie = response.cookies["sanstack_dashboard"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
        async with session.get("/api/view") as response:  # the cookie, from now on
            assert response.status == 200
        async with session.get("/api/view", headers={"Host": "dashboard.example"}) as response:
            assert response.status == 200  # with a token any name is fine

    serving(tmp_path, TOKEN)(body)


def test_beyond_loopback_a_token_is_needed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--token"):
        check_options(DashboardOptions(config(tmp_path), "0.0.0.0", 0))
    with pytest.raises(ConfigError, match="--token: must be at least 8"):
        check_options(DashboardOptions(config(tmp_path), "0.0.0.0", 0, token="short"))
    check_options(DashboardOptions(config(tmp_path), "::1", 0))
    check_options(DashboardOptions(config(tmp_path), "0.0.0.0", 0, token=TOKEN))


def test_the_command_refuses_in_one_line(tmp_path: Path) -> None:
    toml = tmp_path / "cluster.toml"
    toml.write_text(
        '[cluster]\nname = "c"\n[storage]\nportals = ["127.0.0.1:3260"]\n'
        + "".join(
            f'[[node]]\nname = "{n}"\naddress = "127.0.0.1:{7400 + i}"\n'
            f'control = "{tmp_path}/{n}.sock"\nstate_dir = "{tmp_path}/{n}"\n'
            for i, n in enumerate(("n1", "n2", "n3"))
        )
    )
    command = [sys.executable, "-m", "sanstack.cli.main", "dashboard", "--config", str(toml)]
    for extra, words in (
        (["--listen", "0.0.0.0:0"], "--token: listening on 0.0.0.0"),
        (["--listen", "127.0.0.1"], "--listen: '127.0.0.1' is not HOST:PORT"),
    ):
        done = subprocess.run(
            [*command, *extra], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 2, done
        assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


class FakeNode:
    """A node's cluster routes: its status, a move it refuses."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.asked = 0

    async def status(self) -> dict[str, Any]:
        self.asked += 1
        return {"node": self.name, "nodes": [], "groups": []}

    def events(self, since: int, limit: int | None) -> dict[str, Any]:
        return {"last_seq": 0, "events": []}

    def io(self) -> dict[str, Any]:
        return {"node": self.name, "groups": {}}

    def maps(self) -> dict[str, Any]:
        return {"node": self.name, "maps": []}

    async def move(self, group: str, target: str) -> dict[str, Any]:
        raise ServiceError(409, f"node: {target} is paused; resume it first")

    async def set_paused(self, node: str, paused: bool) -> dict[str, Any]:
        return {"node": node, "paused": paused}


def test_any_live_node_answers_and_a_refusal_is_an_answer(tmp_path: Path) -> None:
    """n1's socket is gone (killed): n2 answers, and is asked first from then on; n2's
    refusal is returned as it is, not asked of n3."""

    async def main() -> None:
        n2, n3 = FakeNode("n2"), FakeNode("n3")
        servers = [
            ControlServer(tmp_path / f"{node.name}.sock", bind_routes(node, CLUSTER_ROUTES))
            for node in (n2, n3)
        ]
        for server in servers:
            await server.start()
        try:
            sources = Sources(config(tmp_path), None)
            answer = await sources.ask("GET", "/v1/cluster/status")
            assert (answer.node, answer.status, answer.body["node"]) == ("n2", 200, "n2")
            refused = await sources.ask("POST", "/v1/cluster/move", {"group": "g1", "node": "n3"})
            assert (refused.node, refused.status) == ("n2", 409)
            assert refused.error() == "node: n3 is paused; resume it first"
            assert n3.asked == 0
            poll, events = await sources.poll(1.0, {})
            assert poll.source == "n2" and set(poll.maps) == {"n1", "n2", "n3"}
            assert isinstance(poll.maps["n1"], str) and poll.maps["n2"] == {
                "node": "n2",
                "maps": [],
            }
            assert set(events) == {"n2", "n3"}
        finally:
            for server in servers:
                await server.close()
        with pytest.raises(Unreachable, match=r"^no node answered \(n2: .*; n1: .*; n3: "):
            await sources.ask("GET", "/v1/cluster/status")

    asyncio.run(main())
