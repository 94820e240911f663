"""The host's shared sessions against sanstack's target: one session per portal for all LUNs,
the same ISIDs (I_T nexuses) after a path reset and after a restart."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.support.processes import Daemon, free_port, running_target
from tests.support.waits import until

from sanstack.host.isids import IsidStore
from sanstack.host.sessions import SessionOptions, SessionPool, SessionState
from sanstack.initiator.lun_device import ISCSIDevice
from sanstack.initiator.session import PathFailed
from sanstack.mpio.path_slot import PathAddress
from sanstack.mpio.shared_path import SharedPath
from sanstack.tools.fault_proxy import FaultProxy

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:host"
HOST = "iqn.2026-11.org.sanstack:host-n1"
LUNS = 16
OPTIONS = SessionOptions(nop_interval=0.5, nop_timeout=1.0, reconnect_min=0.05)


async def target_sessions(daemon: Daemon) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sanstack.cli.main", "target", "sessions", "--json",
        "--control", str(daemon.control),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    sessions: list[dict[str, Any]] = json.loads(out)
    return [s for s in sessions if s["initiator"] == HOST and not s["discovery"]]


class Notices:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def path_down(self, path: SharedPath, failure: PathFailed) -> None:
        self.seen.append(f"down {failure.kind.value}")

    def path_up(self, path: SharedPath) -> None:
        self.seen.append("up")


def test_one_session_per_portal_for_every_lun_and_stable_isids(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    state_dir = tmp_path / "host-state"
    with running_target(tmp_path, IQN, ports, ["memory:1M"] * LUNS) as daemon:

        async def body() -> None:
            proxies = [await FaultProxy("127.0.0.1", port).start() for port in ports]
            portals = [PathAddress("127.0.0.1", p.listen_port) for p in proxies]
            pool = SessionPool(HOST, IsidStore(state_dir), OPTIONS)
            shared = [pool.session(IQN, portal) for portal in portals]
            assert all([await s.wait_up(10) for s in shared])
            # Every LUN through each of the two sessions.
            for s in shared:
                assert s.session is not None
                devices = [await ISCSIDevice.open(s.session, n) for n in range(LUNS)]
                assert len({d.identity.naa for d in devices}) == LUNS
                assert all([bytes(await d.read(0, 1)) == bytes(512) for d in devices])
            seen = await target_sessions(daemon)
            assert len(seen) == 2
            isids = sorted(s["isid"] for s in seen)
            assert isids == sorted(f"0x{s.isid:012x}" for s in shared)

            # A reset of one portal: down, then up again on the same nexus.
            notices = Notices()
            shared[0].add_listener(notices)
            proxies[0].reset()
            await until(lambda: notices.seen[-1:] == ["up"], 10, "logged in again")
            assert notices.seen[0].startswith("down")
            assert shared[0].logins == 2 and shared[1].logins == 1
            assert sorted(s["isid"] for s in await target_sessions(daemon)) == isids
            await pool.close()
            assert all(s.state is SessionState.CLOSED for s in shared)
            await until_no_sessions(daemon)

            # A restart with the same state directory: the same ISIDs, the same nexuses.
            again = SessionPool(HOST, IsidStore(state_dir), OPTIONS)
            for portal in reversed(portals):
                assert await again.session(IQN, portal).wait_up(10)
            seen = await target_sessions(daemon)
            assert sorted(s["isid"] for s in seen) == isids
            await again.close()
            for proxy in proxies:
                await proxy.close()

        async def until_no_sessions(daemon: Daemon) -> None:
            for _ in range(50):
                if not await target_sessions(daemon):
                    return
                await asyncio.sleep(0.1)
            pytest.fail("the host's sessions did not log out")

        asyncio.run(body())
