"""``sanstack host run`` killed (-9) and restarted with the same ``--state-dir``: the target
sees the same I_T nexuses, and the key registered through the host before the kill is still
the key of those nexuses, so its I/O passes a registrants-only reservation; the restarted
host knows the key (``host maps`` shows it) and registers it again on a nexus whose session
comes back after the target forgot it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.support.iscsi_client import Response, TestInitiator
from tests.support.processes import (
    Daemon,
    free_port,
    host_run_command,
    require_tool,
    run_tool,
    running_target,
    wait_for_line,
)
from tests.support.waits import wait_until

from sanstack.scsi.cdb import ReadWriteCDB
from sanstack.scsi.codes import Opcode, Status
from sanstack.scsi.pr_codec import (
    PROutCdb,
    PROutParameters,
    PROutServiceAction,
    PRScope,
    PRType,
)

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:restart"
HOST = "iqn.2026-11.org.sanstack.host:k1"
NODE2 = "iqn.2026-11.org.sanstack:restart-node2"
KEY = 0xABC1
OTHER_KEY = 0x2222


def sanstack(*args: str) -> list[str]:
    return [sys.executable, "-m", "sanstack.cli.main", *args]


def cli(*args: str) -> Any:
    out = run_tool(sanstack(*args), timeout=60).stdout
    return json.loads(out) if "--json" in args else out


def nexuses(target: Daemon) -> list[tuple[int, str]]:
    """(portal group, ISID) of every session the target has from the host."""
    sessions = cli("target", "sessions", "--json", "--control", str(target.control))
    return sorted(
        (s["portal_group"], s["isid"])
        for s in sessions
        if s["initiator"] == HOST and not s["discovery"]
    )


def registrations(target: Daemon) -> list[tuple[str, str]]:
    """(ISID, key) of the host's registrations on LUN 0."""
    state = cli("target", "pr", IQN, "0", "--json", "--control", str(target.control))
    return sorted(
        (str(r["isid"]), str(r["key"])) for r in state["registrations"] if r["initiator"] == HOST
    )


def start_host(
    tmp_path: Path, ports: list[int], nbd_port: int, run: int
) -> subprocess.Popen[bytes]:
    args = host_run_command("k1", ports, nbd_port, ["--rescan-interval", "0"])
    args += ["--control", str(tmp_path / "host.sock"), "--state-dir", str(tmp_path / "host-state")]
    log_path = tmp_path / f"host-{run}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log)
    wait_for_line(process, b"ready", 60, context=log_path.read_text)
    return process


def prout(
    client: TestInitiator,
    action: PROutServiceAction,
    *,
    key: int = 0,
    sa_key: int = 0,
    pr_type: int = 0,
) -> Response:
    parameters = PROutParameters(
        reservation_key=key, service_action_reservation_key=sa_key
    ).encode()
    cdb = PROutCdb(action, PRScope.LU_SCOPE, pr_type, len(parameters)).encode()
    return settled(client, cdb, parameters)


def settled(client: TestInitiator, cdb: bytes, data_out: bytes = b"") -> Response:
    """The command's answer once the new nexus's unit attentions are reported (bounded)."""
    for _ in range(8):
        answer = client.command(cdb, data_out=data_out)
        if answer.status != Status.CHECK_CONDITION:
            return answer
    return answer


def test_kill_and_restart_keeps_the_nexuses_and_the_registered_key(tmp_path: Path) -> None:
    qemu_io = require_tool("qemu-io")
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:1M"] * 2) as target:
        nbd_port = free_port()
        control = str(tmp_path / "host.sock")
        first = start_host(tmp_path, ports, nbd_port, 1)
        second: subprocess.Popen[bytes] | None = None
        try:
            before = nexuses(target)
            assert len(before) == 2
            shown = cli("host", "pr", "register", f"{IQN}/0", hex(KEY), "--json",
                        "--control", control)  # fmt: skip
            assert shown["pr_key"] == hex(KEY)
            registered = registrations(target)
            assert sorted(isid for isid, _key in registered) == sorted(i for _g, i in before)
            assert {key for _isid, key in registered} == {f"0x{KEY:016x}"}

            first.send_signal(signal.SIGKILL)
            first.wait(30)
            wait_until(lambda: not nexuses(target), 30, "the target saw the host's sessions end")
            second = start_host(tmp_path, ports, nbd_port, 2)
            # The same I_T nexuses, still registered with the same key, which the host
            # knows again (its state directory) and shows.
            assert nexuses(target) == before
            assert registrations(target) == registered
            keys = {m["alias"]: m["pr_key"] for m in cli("host", "maps", "--json",
                                                         "--control", control)}  # fmt: skip
            assert keys == {f"{IQN}/0": hex(KEY), f"{IQN}/1": None}

            # Another node reserves the LUN for registrants only: the host's I/O still
            # passes (its nexuses are registrants), a new ISID of the same host does not.
            node2 = TestInitiator("127.0.0.1", ports[0], IQN, initiator_name=NODE2,
                                  isid=0x80_0000_2222)  # fmt: skip
            try:
                answer = prout(node2, PROutServiceAction.REGISTER, sa_key=OTHER_KEY)
                assert answer.status == Status.GOOD
                answer = prout(
                    node2, PROutServiceAction.RESERVE, key=OTHER_KEY,
                    pr_type=PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
                )  # fmt: skip
                assert answer.status == Status.GOOD
                pattern = os.urandom(1)[0] | 1
                for export in (f"{IQN}/0",):
                    run_tool([qemu_io, "-f", "raw", "-c", f"write -P {pattern} 0 64k",
                              "-c", f"read -P {pattern} 0 64k",
                              f"nbd://127.0.0.1:{nbd_port}/{export}"])  # fmt: skip
                stranger = TestInitiator("127.0.0.1", ports[0], IQN, initiator_name=HOST,
                                         isid=0x80_0000_7777)  # fmt: skip
                try:
                    write = ReadWriteCDB(Opcode.WRITE_10, 0, 1).encode()
                    assert settled(stranger, write, bytes(512)).status == (
                        Status.RESERVATION_CONFLICT
                    )
                finally:
                    stranger.logout()
                prout(node2, PROutServiceAction.CLEAR, key=OTHER_KEY)
            finally:
                node2.logout()

            # CLEAR by another initiator took every registration away, the host's too. A
            # reconnect (portal group 1 down, then up) reads the keys before it registers
            # (multipathd's prflag): ours is gone, so the host forgets it rather than undo
            # the CLEAR behind the back of whoever cleared (or fenced) it.
            assert registrations(target) == []
            (group1, _isid1), _second_nexus = before
            target_cli = ("--control", str(target.control))
            cli("target", "portal-group", IQN, str(group1), "down", *target_cli)
            wait_until(lambda: len(nexuses(target)) == 1, 30, "portal group 1's session dropped")
            cli("target", "portal-group", IQN, str(group1), "up", *target_cli)
            wait_until(lambda: nexuses(target) == before, 30, "the host logged in again")

            def key_shown() -> object:
                maps = cli("host", "maps", "--json", "--control", control)
                return next(m["pr_key"] for m in maps if m["alias"] == f"{IQN}/0")

            wait_until(lambda: key_shown() is None, 30, "the host forgot the cleared key")
            assert registrations(target) == []
        finally:
            for process in (first, second):
                if process is None or process.poll() is not None:
                    continue
                process.send_signal(signal.SIGTERM)
                assert process.wait(30) == 0
            for process in (first, second):
                if process is not None and process.stdout is not None:
                    process.stdout.close()
        assert "Traceback" not in (tmp_path / "host-2.log").read_text()
