"""Control requests between nodes over TCP, signed (issue 11; docs/cluster-design.md,
"Control across machines"), with real ``sanstack cluster node`` processes: three nodes,
each with a ``peer_control`` address and the cluster's ``secret_file``, a group whose disk
carries a snapshot volume.

The owner's Unix control socket is moved out of the way once it runs, so no other node
can reach it as nodes on other machines could not: what is forwarded to it must travel
over TCP (its log names each signed request it served, and who sent it).

- A snapshot command sent to a node that does not run the group works, on the owner.
- ``cluster node pause|resume NAME`` sent to another node reaches NAME.
- A request signed with another secret, a replayed one and an unsigned one are refused
  with 401, and the owner logs each refusal.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.cluster_nodes import (
    ClusterNodes,
    GroupDef,
    group_of,
    node_of,
    running_cluster,
    write_config,
)
from tests.support.cluster_volumes import volume_cli
from tests.support.processes import free_port, run_tool, running_target, sanstack_command
from tests.support.waits import wait_until

from sanstack.control.peer_auth import PeerSigner

pytestmark = pytest.mark.interop

IQN = "iqn.2026-11.org.sanstack:peercontrol"
CLUSTER = "peer-control-test"
NODES = ("n1", "n2", "n3")
SETTLE = 30.0
SECRET = secrets.token_hex(32).encode()


@dataclass
class Cluster:
    nodes: ClusterNodes
    ports: dict[str, int]
    hidden: Path  # where n1's Unix control socket was moved

    def log(self, name: str) -> str:
        return self.nodes.processes[name].log()


def online_on(status: Any, group: str, node: str) -> bool:
    entry = group_of(status, group)
    return bool(entry["owner"] == node and entry["state"] == "online")


def with_peer_control(config: Path, secret: Path, ports: dict[str, int]) -> None:
    """``config`` with ``secret_file`` and each node's ``peer_control`` on 127.0.0.1."""
    text = config.read_text().replace("[cluster]\n", f'[cluster]\nsecret_file = "{secret}"\n', 1)
    for name, port in ports.items():
        line = f'name = "{name}"\n'
        assert text.count(line) == 1
        text = text.replace(line, f'{line}peer_control = "127.0.0.1:{port}"\n')
    config.write_text(text)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster-peer")
    portals = [free_port(), free_port()]
    volume = directory / "d1.img"
    run_tool([*sanstack_command(), "volume", "format", str(volume), "--size", "64M"])
    secret = directory / "secret"
    secret.write_bytes(SECRET + b"\n")
    os.chmod(secret, 0o600)
    ports = {name: free_port() for name in NODES}
    with running_target(directory, IQN, portals, ["memory:1M", f"{volume}:64M"]):
        g1 = GroupDef("g1", ["d1"], ("127.0.75.1", free_port()), list(NODES), volumes=["d1"])
        config = write_config(
            directory,
            cluster=CLUSTER,
            nodes=NODES,
            portals=portals,
            iqn=IQN,
            disks={"d1": 1},
            groups=[g1],
        )
        with_peer_control(config, secret, ports)
        with running_cluster(directory, config, NODES) as nodes:
            nodes.settle("n3", {"g1": "n1"}, SETTLE)
            nodes.wait_status("n3", lambda s: online_on(s, "g1", "n1"), SETTLE, "g1 on n1")
            # From here on only n1's peer_control reaches it: its socket is elsewhere.
            hidden = directory / "n1-hidden.sock"
            nodes.control("n1").rename(hidden)
            try:
                yield Cluster(nodes, ports, hidden)
            finally:
                hidden.rename(nodes.control("n1"))


def served_over_tcp(cluster: Cluster, method: str, path: str, sender: str) -> int:
    """How many signed requests n1 logs having served: ``method path`` from ``sender``."""
    line = f"peer control: {method} {path} from {sender} at 127.0.0.1:"
    return cluster.log("n1").count(line)


def test_a_snapshot_command_through_another_node_runs_on_the_owner(cluster: Cluster) -> None:
    nodes = cluster.nodes
    assert not nodes.control("n1").exists()
    before = served_over_tcp(cluster, "POST", "/v1/cluster/volumes/snapshots", "n2")
    created = volume_cli(nodes, "n2", "snapshot", "create", "g1/d1", "over-tcp", "--keep")
    assert (created["name"], created["keep"]) == ("over-tcp", True)
    assert served_over_tcp(cluster, "POST", "/v1/cluster/volumes/snapshots", "n2") == before + 1
    listed = volume_cli(nodes, "n3", "snapshot", "list", "g1/d1")
    assert [s["name"] for s in listed] == ["over-tcp"]
    info = volume_cli(nodes, "n3", "volume", "info", "g1/d1")
    assert info["holder"]["host"] == "n1" and info["snapshots"] == 1
    assert served_over_tcp(cluster, "GET", "/v1/cluster/volumes/info", "n3") >= 1
    deleted = volume_cli(nodes, "n3", "snapshot", "delete", "g1/d1", "over-tcp", "--wait")
    assert deleted == {"path": "g1/d1", "deleted": "over-tcp"}
    assert "peer control: refused" not in cluster.log("n1")


def test_pause_and_resume_of_another_node_go_over_tcp(cluster: Cluster) -> None:
    nodes = cluster.nodes
    paused = nodes.cli("n2", "node", "pause", "n1")
    assert paused == {"node": "n1", "paused": True}
    assert served_over_tcp(cluster, "POST", "/v1/cluster/nodes/n1/pause", "n2") == 1
    try:
        nodes.wait_status(
            "n3",
            lambda s: (
                node_of(s, "n1")["state"] == "paused"
                and group_of(s, "g1")["state"] == "online"
                and group_of(s, "g1")["owner"] != "n1"
            ),
            SETTLE,
            "g1 moved away from the paused n1",
        )
    finally:
        resumed = nodes.cli("n3", "node", "resume", "n1")
    assert resumed == {"node": "n1", "paused": False}
    assert served_over_tcp(cluster, "POST", "/v1/cluster/nodes/n1/resume", "n3") == 1
    nodes.wait_status("n2", lambda s: node_of(s, "n1")["state"] == "alive", SETTLE, "n1 resumed")


def ask(port: int, method: str, target: str, headers: list[tuple[str, str]]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, target, headers=dict(headers))
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def signed(secret: bytes, method: str, target: str) -> list[tuple[str, str]]:
    return PeerSigner(secret, "n2").sign(method, target, b"", time.time(), secrets.token_hex(16))


def test_a_wrong_secret_a_replay_and_no_signature_are_refused_with_401(cluster: Cluster) -> None:
    port = cluster.ports["n1"]
    status_path = "/v1/cluster/status"
    good = signed(SECRET, "GET", status_path)
    status, answer = ask(port, "GET", status_path, good)
    assert status == 200 and {n["name"] for n in answer["nodes"]} == set(NODES)

    status, answer = ask(port, "GET", status_path, good)  # the same request again
    assert status == 401 and answer["error"].startswith("peer control: replayed: nonce")

    wrong = signed(secrets.token_hex(32).encode(), "POST", "/v1/cluster/nodes/n1/pause")
    status, answer = ask(port, "POST", "/v1/cluster/nodes/n1/pause", wrong)
    assert status == 401
    assert answer["error"] == (
        "peer control: signature from n2 does not match (is secret_file the same on every node?)"
    )
    status, answer = ask(port, "POST", "/v1/cluster/nodes/n1/pause", [])
    assert status == 401 and "not signed" in answer["error"]

    def logged() -> bool:
        refusals = [x for x in cluster.log("n1").splitlines() if "peer control: refused" in x]
        return len(refusals) == 3

    wait_until(logged, 5, "n1 logs the three refusals")
    log = cluster.log("n1")
    assert "peer control: refused GET /v1/cluster/status from 127.0.0.1:" in log
    assert "peer control: refused POST /v1/cluster/nodes/n1/pause from 127.0.0.1:" in log
    status = cluster.nodes.status("n2")
    assert node_of(status, "n1")["state"] == "alive"  # not paused by any of them
