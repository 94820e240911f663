"""Control requests between nodes over TCP, in one process (``cluster/peer_control.py``,
``control/forward.py``, ``control/server.py`` with a guard): n1 listens on its
``peer_control``; n2 sends to it, signed. Only what peers forward is served there; a
request with another secret, a replayed one, or an unsigned one is refused with 401 and a
log line; an answer that is not signed is not believed; every failure to reach a node is
one line saying why."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.support.processes import free_port

from sanstack.cluster.config import parse_config
from sanstack.cluster.model import ClusterConfig
from sanstack.cluster.peer_control import PeerControl, PeerLinks, peer_routes
from sanstack.cluster.snapshot_routes import CLUSTER_VOLUME_ROUTES, VolumeRequest
from sanstack.control.forward import ForwardError, forward
from sanstack.control.peer_auth import PeerSigner
from sanstack.control.server import ControlServer, Request, bind_routes
from sanstack.errors import ConfigError

SECRET = b"0123456789abcdef" * 4
IQN = "iqn.2026-11.org.sanstack:cluster"
STATUS = "/v1/cluster/status"
VOLUME = "/v1/cluster/volumes/info?volume=g1%2Fd1"


def config_in(directory: Path, port: int) -> ClusterConfig:
    secret = directory / "secret"
    secret.write_bytes(SECRET)
    os.chmod(secret, 0o600)
    nodes = "".join(
        f"""
[[node]]
name = "{name}"
address = "127.0.0.1:{7400 + i}"
control = "{directory / (name + ".sock")}"
state_dir = "{directory / name}"
{f'peer_control = "127.0.0.1:{port}"' if name == "n1" else ""}
"""
        for i, name in enumerate(("n1", "n2", "n3"), start=1)
    )
    return parse_config(
        tomllib.loads(f"""
[cluster]
name = "prod"
secret_file = "{secret}"

[storage]
portals = ["127.0.0.1:3260"]

{nodes}

[disks]
d1 = "{IQN}/1"

[[group]]
name = "g1"
disks = ["d1"]
volumes = ["d1"]
""")
    )


@dataclass
class FakeNode:
    """n1 as the peer routes see it: its status, its pause, its volume requests."""

    me: str = "n1"
    paused: bool = False
    volume_requests: list[tuple[str, str | None, str]] = field(default_factory=list)

    async def status(self) -> dict[str, Any]:
        return {"node": self.me}

    async def set_paused(self, node: str, paused: bool) -> dict[str, Any]:
        self.paused = paused
        return {"node": node, "paused": paused}

    def io(self) -> dict[str, Any]:
        return {"groups": {}}

    async def volume_request(self, volume: str, via: str | None, request: VolumeRequest) -> Any:
        self.volume_requests.append((volume, via, request.suffix))
        return {"path": volume}


@dataclass
class Peers:
    config: ClusterConfig
    n1: FakeNode
    listener: PeerControl
    n2: PeerLinks
    port: int


@asynccontextmanager
async def n1_listening(tmp_path: Path) -> AsyncIterator[Peers]:
    port = free_port()
    config = config_in(tmp_path, port)
    fake = FakeNode()
    listener = PeerControl.of(config, "n1")
    await listener.start(
        peer_routes(fake, bind_routes(fake, CLUSTER_VOLUME_ROUTES)), "node[0].peer_control"
    )
    try:
        yield Peers(config, fake, listener, PeerControl.of(config, "n2").links, port)
    finally:
        await listener.close()


def test_a_signed_request_is_served_and_its_answer_believed(tmp_path: Path) -> None:
    async def body() -> None:
        async with n1_listening(tmp_path) as peers:
            assert peers.n2.where("n1") == ("127.0.0.1", peers.port)
            assert await peers.n2.request("n1", "GET", STATUS, None, within=5) == (
                200,
                {"node": "n1"},
            )
            answer = await peers.n2.request(
                "n1", "POST", "/v1/cluster/nodes/n1/pause", None, within=5
            )
            assert answer == (200, {"node": "n1", "paused": True}) and peers.n1.paused
            status, _ = await peers.n2.request("n1", "GET", f"{VOLUME}&via=n2", None, within=5)
            assert status == 200 and peers.n1.volume_requests == [("g1/d1", "n2", "info")]

    asyncio.run(body())


@pytest.mark.parametrize(
    ("method", "resource", "expected"),
    [
        ("POST", "/v1/cluster/nodes/n3/pause", (403, "node: a peer pauses or resumes only n1")),
        ("POST", "/v1/cluster/nodes/n3/resume", (403, "node: a peer pauses or resumes only n1")),
        ("GET", VOLUME, (403, "volume: a peer's address serves only requests forwarded")),
        ("POST", "/v1/cluster/move", (404, "no such resource: /v1/cluster/move")),
        ("GET", "/v1/cluster/events", (404, "no such resource: /v1/cluster/events")),
        ("DELETE", STATUS, (405, "DELETE is not allowed on /v1/cluster/status")),
    ],
)
def test_only_what_peers_forward_is_served(
    tmp_path: Path, method: str, resource: str, expected: tuple[int, str]
) -> None:
    async def body() -> None:
        async with n1_listening(tmp_path) as peers:
            status, answer = await peers.n2.request("n1", method, resource, None, within=5)
            assert status == expected[0] and answer["error"].startswith(expected[1])
            assert not peers.n1.paused and not peers.n1.volume_requests

    asyncio.run(body())


def test_another_secret_is_refused_with_401_and_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        async with n1_listening(tmp_path) as peers:
            stranger = PeerLinks(peers.config, "n2", b"x" * 32)
            with pytest.raises(ForwardError) as refused:
                await stranger.request("n1", "POST", "/v1/cluster/nodes/n1/pause", None, within=5)
            assert refused.value.status == 502
            assert str(refused.value) == (
                f"refused the request at 127.0.0.1:{peers.port}: peer control: signature "
                "from n2 does not match (is secret_file the same on every node?)"
            )
            assert not peers.n1.paused

    with caplog.at_level(logging.WARNING, "sanstack.cluster.peer_control"):
        asyncio.run(body())
    assert any(
        "peer control: refused POST /v1/cluster/nodes/n1/pause from 127.0.0.1:" in r.message
        and "does not match" in r.message
        for r in caplog.records
    ), caplog.text


async def raw_request(port: int, method: str, target: str, headers: list[tuple[str, str]]) -> Any:
    """(status, JSON) of one request written by hand: the same headers twice is a replay."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {target} HTTP/1.1", "host: n1", "content-length: 0"]
        lines += [f"{name}: {value}" for name, value in headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _sep, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_replayed_request_is_refused_with_401(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        async with n1_listening(tmp_path) as peers:
            target = "/v1/cluster/nodes/n1/pause"
            headers = PeerSigner(SECRET, "n2").sign(
                "POST", target, b"", time.time(), secrets.token_hex(16)
            )
            assert (await raw_request(peers.port, "POST", target, headers))[0] == 200
            peers.n1.paused = False
            status, answer = await raw_request(peers.port, "POST", target, headers)
            assert status == 401 and answer["error"].startswith("peer control: replayed: nonce")
            assert not peers.n1.paused
            status, answer = await raw_request(peers.port, "POST", target, [])
            assert status == 401 and "not signed" in answer["error"]
            stale = PeerSigner(SECRET, "n2").sign(
                "POST", target, b"", time.time() - 45, secrets.token_hex(16)
            )
            status, answer = await raw_request(peers.port, "POST", target, stale)
            assert status == 401 and answer["error"].startswith("peer control: stale: ")
            assert not peers.n1.paused

    with caplog.at_level(logging.WARNING, "sanstack.cluster.peer_control"):
        asyncio.run(body())
    refusals = [r.message for r in caplog.records if "peer control: refused" in r.message]
    assert len(refusals) == 3 and "replayed" in refusals[0], refusals


def test_an_answer_that_is_not_signed_is_not_believed(tmp_path: Path) -> None:
    async def body() -> None:
        port = free_port()
        config = config_in(tmp_path, port)

        def admit_unsigned(_request: Request) -> Any:
            return lambda _status, _body: []

        fake = FakeNode()
        server = ControlServer(("127.0.0.1", port), peer_routes(fake, []), guard=admit_unsigned)
        await server.start()
        try:
            links = PeerLinks(config, "n2", SECRET)
            with pytest.raises(ForwardError) as refused:
                await links.request("n1", "POST", "/v1/cluster/nodes/n1/pause", None, within=5)
            assert str(refused.value) == (
                f"refused the request at 127.0.0.1:{port}: "
                "its answer is not signed with the cluster's secret"
            )
        finally:
            await server.close()

    asyncio.run(body())


def test_a_tcp_listener_needs_a_guard() -> None:
    with pytest.raises(ValueError, match="needs a guard"):
        ControlServer(("127.0.0.1", 1), [])


def test_a_node_that_cannot_be_reached_is_one_line_saying_why(tmp_path: Path) -> None:
    async def body() -> None:
        port = free_port()
        config = config_in(tmp_path, port)
        links = PeerLinks(config, "n2", SECRET)
        with pytest.raises(ForwardError) as refused:  # nothing listens
            await links.request("n1", "GET", STATUS, None, within=5)
        assert (refused.value.status, refused.value.reason) == (
            502,
            f"did not answer at 127.0.0.1:{port}: connection refused",
        )
        with pytest.raises(ForwardError) as refused:  # no peer_control: its socket
            await links.request("n3", "GET", STATUS, None, within=5)
        assert refused.value.reason == (f"did not answer at {tmp_path / 'n3.sock'}: no such socket")

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # takes the request, never answers
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", port)
        try:
            with pytest.raises(ForwardError) as refused:
                await links.request("n1", "GET", STATUS, None, within=0.2)
            assert (refused.value.status, refused.value.reason) == (
                504,
                f"did not answer at 127.0.0.1:{port} within 0.2 s",
            )
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(body())


def test_a_unix_socket_is_not_signed(tmp_path: Path) -> None:
    """Without peer_control the request goes to the Unix socket as before, unsigned (the
    socket's file permissions decide)."""

    async def body() -> None:
        config = config_in(tmp_path, free_port())
        server = ControlServer(config.node("n3").control, peer_routes(FakeNode("n3"), []))
        await server.start()
        try:
            status, answer = await forward(config.node("n3").control, "GET", STATUS, None, within=5)
            assert (status, answer) == (200, {"node": "n3"})
            assert isinstance(PeerLinks(config, "n2", SECRET).where("n3"), Path)
        finally:
            await server.close()

    asyncio.run(body())


def test_a_peer_control_address_in_use_is_a_config_error_naming_it(tmp_path: Path) -> None:
    async def body() -> None:
        port = free_port()
        config = config_in(tmp_path, port)
        taken = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", port)
        try:
            listener = PeerControl.of(config, "n1")
            with pytest.raises(ConfigError) as refused:
                await listener.start([], "node[0].peer_control")
            assert str(refused.value).startswith("node[0].peer_control: cannot listen: ")
            assert listener.server is None
        finally:
            taken.close()
            await taken.wait_closed()

    asyncio.run(body())
