"""Runtime control of a running target through the CLI and its control socket."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.support.iscsi_client import TestInitiator
from tests.support.processes import Daemon, free_port, require_tool, run_tool, running_target

from sanstack.scsi.alua_codec import (
    ALUAState,
    ReportTargetPortGroupsCdb,
    ReportTargetPortGroupsData,
)

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:control"


def cli(daemon: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sanstack.cli.main",
            "target",
            *args,
            "--control",
            str(daemon.control),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    return result


def cli_json(daemon: Daemon, *args: str) -> Any:
    return json.loads(cli(daemon, *args, "--json").stdout)


def test_listing_sessions_and_luns(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M", f"{tmp_path / 'b.img'}:8M"]) as d:
        client = TestInitiator("127.0.0.1", ports[1], IQN, isid=0x80_0000_0101)
        status = cli_json(d, "status")
        assert status["targets"] == 1 and status["luns"] == 2 and status["sessions"] == 1
        (target,) = cli_json(d, "list")
        assert [g["tag"] for g in target["portal_groups"]] == [1, 2]
        assert all(p["listening"] for g in target["portal_groups"] for p in g["portals"])
        (session,) = cli_json(d, "sessions")
        assert session["portal_group"] == 2 and session["target"] == IQN
        assert session["initiator_port"].endswith(",i,0x008000000101")
        luns = cli_json(d, "luns", IQN)
        assert [(lun["lun"], lun["size_bytes"]) for lun in luns] == [(0, 16 << 20), (1, 8 << 20)]
        table = cli(d, "luns", IQN).stdout
        assert "LUN" in table.splitlines()[0] and "16M" in table
        client.logout()


def test_portal_group_down_drops_its_connections_and_up_restores(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M"]) as d:
        on_one = TestInitiator("127.0.0.1", ports[0], IQN, isid=0x80_0000_0201)
        on_two = TestInitiator("127.0.0.1", ports[1], IQN, isid=0x80_0000_0202)
        cli(d, "portal-group", IQN, "1", "down")
        with pytest.raises((ConnectionError, OSError)):
            on_one.read(0, 1)
        with pytest.raises(OSError):
            TestInitiator("127.0.0.1", ports[0], IQN, isid=0x80_0000_0203)
        assert on_two.read(0, 1) == bytes(512)  # the other path is untouched
        (target,) = cli_json(d, "list")
        assert target["portal_groups"][0]["enabled"] is False
        cli(d, "portal-group", IQN, "1", "up")
        back = TestInitiator("127.0.0.1", ports[0], IQN, isid=0x80_0000_0204)
        assert back.read(0, 1) == bytes(512)
        back.logout()
        on_two.logout()


def test_luns_come_and_go_without_disturbing_other_luns(tmp_path: Path) -> None:
    iscsi_ls = require_tool("iscsi-ls")
    port = free_port()
    with running_target(tmp_path, IQN, [port], ["memory:16M"]) as d:
        client = TestInitiator("127.0.0.1", port, IQN, isid=0x80_0000_0301)
        data = os.urandom(4096)
        client.write(0, data)
        added = cli_json(d, "lun-add", IQN, f"{tmp_path / 'new.img'}:32M")
        assert added["lun"] == 1 and added["size_bytes"] == 32 << 20
        # LUN 0 is unaffected, but reports the new LUN once (SPC-4: 3Fh/0Eh), then reads on.
        cdb = struct.pack(">BBIBHB", 0x28, 0, 0, 0, 8, 0)
        answer = client.command(cdb, read_length=4096)
        assert answer.status == 2 and answer.sense[2] == 6 and answer.sense[12:14] == b"\x3f\x0e"
        assert client.read(0, 8) == data
        listing = run_tool([iscsi_ls, "-s", f"iscsi://127.0.0.1:{port}/"]).stdout
        assert "Lun:1" in listing
        client.write(0, data, lun=1)
        assert client.read(0, 8, lun=1) == data
        cli(d, "lun-remove", IQN, "1")
        assert client.command(cdb, read_length=4096).sense[12:14] == b"\x3f\x0e"
        assert client.read(0, 8) == data
        assert "Lun:1" not in run_tool([iscsi_ls, "-s", f"iscsi://127.0.0.1:{port}/"]).stdout
        client.logout()


def test_control_errors_are_one_line(tmp_path: Path) -> None:
    port = free_port()
    with running_target(tmp_path, IQN, [port], ["memory:16M"]) as d:
        for args, words in (
            (["luns", "iqn.2026-11.org.sanstack:nope"], "no target named"),
            (["lun-remove", IQN, "7"], "no LUN 7"),
            (["portal-group", IQN, "9", "down"], "no portal group 9"),
            (["lun-add", IQN, "memory:1X"], "not a size"),
        ):
            result = cli(d, *args, check=False)
            assert result.returncode != 0
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and words in lines[0], result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "sanstack.cli.main", "target", "status",
         "--control", str(tmp_path / "nobody.sock")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert missing.returncode == 1 and "no daemon is listening" in missing.stderr


def test_standby_through_the_cli_refuses_media_access_and_rtpg_reports_it(
    tmp_path: Path,
) -> None:
    """Issue 3's check: the CLI puts a portal group in standby; reads through it fail with
    NOT READY / TARGET PORT IN STANDBY STATE; RTPG through either portal reports it."""
    qemu_io = require_tool("qemu-io")
    ports = [free_port(), free_port()]
    rtpg = ReportTargetPortGroupsCdb(allocation_length=4096).encode()
    with running_target(tmp_path, IQN, ports, ["memory:16M"]) as d:
        clients = [
            TestInitiator("127.0.0.1", port, IQN, isid=0x80_0000_0400 + i)
            for i, port in enumerate(ports)
        ]
        for client in clients:
            client.read(0, 1)
        cli(d, "alua", IQN, "2", "standby")
        standby_read = struct.pack(">BBIBHB", 0x28, 0, 0, 0, 1, 0)
        for client in clients:  # ASYMMETRIC ACCESS STATE CHANGED, once on every nexus
            first = client.command(standby_read, read_length=512)
            assert first.sense[2] == 6 and first.sense[12:14] == b"\x2a\x06"
        answer = clients[1].command(standby_read, read_length=512)
        assert answer.status == 2
        assert (answer.sense[2], answer.sense[12], answer.sense[13]) == (2, 0x04, 0x0B)
        assert clients[0].read(0, 1) == bytes(512)  # the other path stays active
        for client in clients:
            report = client.command(rtpg, read_length=4096)
            assert report.status == 0
            groups = ReportTargetPortGroupsData.decode(report.data).descriptors
            states = {g.target_port_group: g.asymmetric_access_state for g in groups}
            assert states == {1: ALUAState.ACTIVE_OPTIMIZED, 2: ALUAState.STANDBY}
        refused = run_tool(
            [qemu_io, "-f", "raw", "-c", "read 0 4k", f"iscsi://127.0.0.1:{ports[1]}/{IQN}/0"],
            check=False,
        )
        assert refused.returncode != 0 or "error" in (refused.stdout + refused.stderr).lower()
        (target,) = cli_json(d, "list")
        assert [g["alua_state"] for g in target["portal_groups"]] == ["active-optimized", "standby"]
        for client in clients:
            client.logout()
