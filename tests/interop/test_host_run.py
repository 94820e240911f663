"""``sanstack host run`` against sanstack's target: two sessions for every LUN, one export per
map under its WWID and its alias, and ``sanstack host status|maps|paths``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.support.processes import (
    free_port,
    require_tool,
    run_tool,
    running_host,
    running_target,
)

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:hostrun"
LUNS = 8


def sanstack(*args: str) -> list[str]:
    return [sys.executable, "-m", "sanstack.cli.main", *args]


def host_cli(control: Path, *args: str) -> Any:
    result = subprocess.run(
        sanstack("host", *args, "--control", str(control)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if "--json" in args else result.stdout


def test_host_run_exports_every_map_over_two_sessions(tmp_path: Path) -> None:
    nbdinfo = require_tool("nbdinfo")
    qemu_io = require_tool("qemu-io")
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:1M"] * LUNS) as target:
        nbd_port = free_port()
        with running_host(tmp_path, "n1", ports, nbd_port) as host:
            assert f"maps {LUNS}".encode() in host.ready_line
            control = host.control

            status = host_cli(control, "status", "--json")
            assert status["initiator"] == "iqn.2026-11.org.sanstack.host:n1"
            assert status["counts"] == {"sessions": 2, "sessions_up": 2, "maps": LUNS}
            assert all(s["listeners"] == LUNS for s in status["sessions"])
            maps = host_cli(control, "maps", "--json")
            assert sorted(m["alias"] for m in maps) == [f"{IQN}/{n}" for n in range(LUNS)]
            assert all(m["paths"] == {"active": 2} for m in maps)
            assert all(m["wwid"].startswith("naa.") and m["size_bytes"] == 1 << 20 for m in maps)
            paths = host_cli(control, "paths", "--json")
            assert len(paths) == 2 * LUNS
            for table in ("status", "maps", "paths"):
                assert IQN in host_cli(control, table)

            # The target sees exactly two sessions from this host, one per portal.
            sessions = json.loads(
                run_tool(
                    sanstack("target", "sessions", "--json", "--control", str(target.control))
                ).stdout
            )
            ours = [s for s in sessions if s["initiator"] == status["initiator"]]
            assert len([s for s in ours if not s["discovery"]]) == 2

            listed = run_tool([nbdinfo, "--list", f"nbd://127.0.0.1:{nbd_port}"]).stdout
            for m in maps:
                assert m["wwid"] in listed and m["alias"] in listed
            # Written under the alias, read back under the WWID: one device.
            alias = maps[3]
            pattern = os.urandom(1)[0]
            run_tool([qemu_io, "-f", "raw", "-c", f"write -P {pattern} 0 64k",
                      f"nbd://127.0.0.1:{nbd_port}/{alias['alias']}"])  # fmt: skip
            run_tool([qemu_io, "-f", "raw", "-c", f"read -P {pattern} 0 64k",
                      f"nbd://127.0.0.1:{nbd_port}/{alias['wwid']}"])  # fmt: skip
