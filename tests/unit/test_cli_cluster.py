"""``sanstack cluster``: a bad config or argument is one line naming the field and exit 2
(before anything starts), an unreachable node is one line and exit 1; the status table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sanstack.cli.cluster import status_table

CONFIG = """
[cluster]
name = "c"

[storage]
portals = ["127.0.0.1:3260"]

[[node]]
name = "n1"
address = "{address}"
control = "{tmp}/n1.sock"
state_dir = "{tmp}/n1"

[[node]]
name = "n2"
address = "127.0.0.1:7402"
control = "{tmp}/n2.sock"
state_dir = "{tmp}/n2"

[[node]]
name = "n3"
address = "127.0.0.1:7403"
control = "{tmp}/n3.sock"
state_dir = "{tmp}/n3"
"""


def sanstack(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sanstack.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize(
    ("address", "name", "words"),
    [
        ("127.0.0.1:99999", "n1", ["node[0].address", "outside 0..65535"]),
        ("127.0.0.1:7402", "n1", ["node[1].address", "also the address of node n1"]),
        ("127.0.0.1:7401", "n9", ["--name", "'n9' is not a node of cluster 'c'"]),
    ],
)
def test_a_bad_config_or_name_is_one_line_and_exit_2(
    tmp_path: Path, address: str, name: str, words: list[str]
) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text(CONFIG.format(address=address, tmp=tmp_path))
    result = sanstack("cluster", "node", "--config", str(config), "--name", name, cwd=tmp_path)
    one_line(result, 2, *words)
    assert not (tmp_path / "n1").exists()  # nothing started


def test_missing_arguments_and_an_unreachable_node(tmp_path: Path) -> None:
    one_line(sanstack("cluster", "node", "--name", "n1", cwd=tmp_path), 2, "--config")
    socket = str(tmp_path / "none.sock")
    for args in (["status"], ["events"], ["move", "g1", "n2"], ["node", "pause", "n2"]):
        result = sanstack("cluster", *args, "--control", socket, cwd=tmp_path)
        one_line(result, 1, "no daemon is listening on", "none.sock")
    one_line(sanstack("cluster", "events", "--since", "-1", cwd=tmp_path), 2, "--since")


def test_the_status_table_names_holders_and_registered_nodes() -> None:
    status = {
        "cluster": "c",
        "node": "n2",
        "fenced": False,
        "view": {"epoch": 4, "members": ["n2", "n3"], "coordinator": "n2"},
        "quorum": {
            "model": "node-and-disk",
            "has": True,
            "votes": 3,
            "needed": 3,
            "total": 4,
            "witness": "wit",
            "witness_owner": "n2",
        },
        "nodes": [
            {
                "name": "n1",
                "state": "down",
                "member": False,
                "incarnation": "0x1",
                "epoch": 3,
                "coordinator": "n1",
                "key": "0x01",
            }
        ],
        "groups": [
            {
                "name": "g1",
                "state": "online",
                "owner": "n2",
                "preferred": ["n1", "n2"],
                "export": "127.0.73.1:10809",
                "disks": ["d1", "d2"],
            }
        ],
        "disks": [
            {
                "name": "d1",
                "group": "g1",
                "holder": "n2",
                "holder_key": "0x02",
                "type": "write_exclusive_registrants_only",
                "keys": [
                    {"key": "0x02", "node": "n2"},
                    {"key": "0x02", "node": "n2"},
                    {"key": "0x09", "node": None},
                ],
                "error": None,
            }
        ],
    }
    table = status_table(status)
    assert "epoch 4" in table and "quorum yes (3/4 votes, 3 needed)" in table
    assert "witness wit held by n2" in table
    assert "n1    down   no" in table
    assert "g1     online  n2     n1,n2" in table
    assert "n2x2 0x09" in table
