"""A portal that was down when ``sanstack host run`` started (its SendTargets discovery
failed) is found again once it answers: on the rescan timer, and on an operator's
``sanstack host rescan``; every map then has its second path, and the I_T nexus of the
first portal was never disturbed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.support.processes import free_port, run_tool, running_host, running_target
from tests.support.proxy_process import fault_proxies
from tests.support.waits import wait_until

pytestmark = pytest.mark.interop
IQN = "iqn.2026-12.org.sanstack:rediscovery"
LUNS = 4
BOUND = 30.0


def host_json(control: Path, *args: str) -> Any:
    command = [sys.executable, "-m", "sanstack.cli.main", "host", *args, "--json"]
    return json.loads(run_tool([*command, "--control", str(control)], timeout=60).stdout)


def paths_by_map(control: Path) -> dict[str, dict[str, int]]:
    return {m["wwid"]: m["paths"] for m in host_json(control, "maps")}


@pytest.mark.parametrize("how", ["timer", "rescan"])
def test_a_portal_down_at_start_is_discovered_when_it_answers(tmp_path: Path, how: str) -> None:
    portals = [free_port(), free_port()]
    with (
        running_target(tmp_path, IQN, portals, ["memory:1M"] * LUNS),
        fault_proxies(tmp_path, portals) as proxies,
    ):
        proxies.command("down 2")
        extra = ["--rescan-interval", "1" if how == "timer" else "0"]
        with running_host(tmp_path, "h1", proxies.listen, free_port(), extra=extra) as host:
            maps = paths_by_map(host.control)
            assert len(maps) == LUNS and all(p == {"active": 1} for p in maps.values()), maps
            sessions_before = {s["isid"] for s in host_json(host.control, "status")["sessions"]}
            proxies.command("up 2")
            if how == "rescan":
                host_json(host.control, "rescan")
            wait_until(
                lambda: all(p == {"active": 2} for p in paths_by_map(host.control).values()),
                BOUND,
                "every map on both portals",
            )
            sessions = host_json(host.control, "status")["sessions"]
            assert len(sessions) == 2
            assert sessions_before < {s["isid"] for s in sessions}
