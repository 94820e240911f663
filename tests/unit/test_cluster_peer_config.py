"""The config of control across machines (``cluster/config.py``): each node's
``peer_control`` address and the cluster's ``secret_file``, required with it; the secret
file checked at start (``read_secret``): it exists, is a regular file no other user may
read, and holds at least 32 bytes. Each refusal is one line naming the field."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from sanstack.cluster.config import parse_config, read_secret
from sanstack.cluster.node import ClusterNode
from sanstack.cluster.peer_control import PeerControl
from sanstack.errors import ConfigError

IQN = "iqn.2026-11.org.sanstack:cluster"


def raw_config(secret_file: str | None = None, **peers: Any) -> dict[str, Any]:
    nodes = ""
    for i, name in enumerate(("n1", "n2", "n3"), start=1):
        nodes += f"""
[[node]]
name = "{name}"
address = "10.0.0.{i}:7400"
control = "/run/{name}.sock"
state_dir = "/var/lib/{name}"
"""
    raw = tomllib.loads(f"""
[cluster]
name = "prod"

[storage]
portals = ["10.0.1.9:3260"]

{nodes}

[disks]
d1 = "{IQN}/1"

[[group]]
name = "g1"
disks = ["d1"]
""")
    if secret_file is not None:
        raw["cluster"]["secret_file"] = secret_file
    for name, value in peers.items():
        raw["node"][int(name[1:]) - 1]["peer_control"] = value
    return raw


def error_of(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_peer_control_and_secret_file_are_read() -> None:
    config = parse_config(
        raw_config("/etc/sanstack/secret", n1="10.0.0.1:7500", n3="[fd00::3]:7500")
    )
    assert config.secret_file == Path("/etc/sanstack/secret")
    assert [n.peer_control for n in config.nodes] == [
        ("10.0.0.1", 7500),
        None,
        ("fd00::3", 7500),
    ]


def test_without_them_nothing_changes() -> None:
    config = parse_config(raw_config())
    assert config.secret_file is None
    assert all(n.peer_control is None for n in config.nodes)
    # A secret without any peer_control is allowed (nodes may get one later).
    assert parse_config(raw_config("/etc/s")).secret_file == Path("/etc/s")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            raw_config(n2="10.0.0.2:7500"),
            "cluster.secret_file: is required: node n2 (node[1]) has peer_control, and "
            "requests between nodes are signed with this file's secret",
        ),
        (raw_config("/s", n1="10.0.0.1"), "node[0].peer_control: '10.0.0.1' is not HOST:PORT"),
        (
            raw_config("/s", n1="10.0.0.1:0"),
            "node[0].peer_control: port 0 in '10.0.0.1:0': name the port to connect to",
        ),
        (
            raw_config("/s", n1="10.0.0.1:99999"),
            "node[0].peer_control: port 99999 in '10.0.0.1:99999' is outside 0..65535",
        ),
        (raw_config("/s", n1=7500), "node[0].peer_control: 7500 is not a string (HOST:PORT)"),
        (
            raw_config("/s", n1="10.0.0.1:7500", n3="10.0.0.1:7500"),
            "node[2].peer_control: 10.0.0.1:7500 is also the peer_control of node n1 (node[0])",
        ),
        (raw_config(""), "cluster.secret_file: must be a non-empty path without NUL"),
        (raw_config("/s\0x"), "cluster.secret_file: must be a non-empty path without NUL"),
    ],
    ids=["no secret", "no port", "port 0", "port range", "number", "twice", "empty", "nul"],
)
def test_bad_values_are_one_line_naming_the_field(raw: dict[str, Any], message: str) -> None:
    assert error_of(raw) == message


def test_a_secret_number_is_refused() -> None:
    raw = raw_config()
    raw["cluster"]["secret_file"] = 5
    assert error_of(raw) == "cluster.secret_file: 5 is not a string (a path)"


def secret_at(tmp_path: Path, data: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640])
def test_a_good_secret_is_read(tmp_path: Path, mode: int) -> None:
    assert read_secret(secret_at(tmp_path, b"s" * 32, mode)) == b"s" * 32


def test_a_final_newline_is_not_part_of_the_secret(tmp_path: Path) -> None:
    text = b"0123456789abcdef" * 4
    assert read_secret(secret_at(tmp_path, text + b"\n")) == text
    assert read_secret(secret_at(tmp_path, text + b"\r\n")) == text


def secret_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        read_secret(path)
    assert caught.value.field == "cluster.secret_file"
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_a_missing_secret_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    assert secret_error(missing) == f"cluster.secret_file: {missing}: file not found"


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o666])
def test_a_world_readable_secret_is_refused(tmp_path: Path, mode: int) -> None:
    path = secret_at(tmp_path, b"s" * 64, mode)
    assert secret_error(path) == (
        f"cluster.secret_file: {path} is readable by every user (mode {mode:04o}); "
        "chmod o-rwx it (0600)"
    )


@pytest.mark.parametrize("data", [b"", b"s" * 31, b"s" * 31 + b"\n\n"])
def test_a_short_secret_is_refused(tmp_path: Path, data: bytes) -> None:
    path = secret_at(tmp_path, data)
    assert secret_error(path) == (
        f"cluster.secret_file: {path} holds {len(data.rstrip())} bytes; at least 32 "
        "(openssl rand -hex 32 > FILE)"
    )


def test_a_directory_is_not_a_secret(tmp_path: Path) -> None:
    assert secret_error(tmp_path) == f"cluster.secret_file: {tmp_path} is not a regular file"


def test_the_node_checks_the_secret_before_it_starts(tmp_path: Path) -> None:
    path = secret_at(tmp_path, b"s" * 8)
    config = parse_config(raw_config(str(path), n1="127.0.0.1:7500"))
    with pytest.raises(ConfigError, match=r"^cluster.secret_file: .* holds 8 bytes"):
        ClusterNode(config, "n1")
    # Every node reads it, with peer_control or not: it signs what it forwards.
    with pytest.raises(ConfigError, match=r"^cluster.secret_file: "):
        ClusterNode(config, "n2")
    os.chmod(path, 0o600)
    path.write_bytes(b"s" * 32)
    peers = PeerControl.of(config, "n2")
    assert peers.links.where("n1") == ("127.0.0.1", 7500)  # signed over TCP
    assert peers.links.where("n3") == Path("/run/n3.sock")  # no peer_control: its socket
