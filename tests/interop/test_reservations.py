"""Persistent reservations on a real target process: fencing across paths, and APTPL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.iscsi_client import Response, TestInitiator
from tests.support.processes import free_port, running_target, wait_for_line

from sanstack.scsi.cdb import ReadWriteCDB
from sanstack.scsi.codes import ASC, Opcode, Status
from sanstack.scsi.pr_codec import (
    PRInCdb,
    PRInServiceAction,
    PROutCdb,
    PROutParameters,
    PROutServiceAction,
    PRScope,
    PRType,
    ReadFullStatusData,
    ReadReservationData,
)
from sanstack.scsi.sense import parse_sense

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:pr"
NODE1 = "iqn.2026-11.org.sanstack:node1"
NODE2 = "iqn.2026-11.org.sanstack:node2"
READ_ONE = ReadWriteCDB(Opcode.READ_10, 0, 1).encode()
WRITE_ONE = ReadWriteCDB(Opcode.WRITE_10, 0, 1).encode()


def prout(
    client: TestInitiator,
    action: PROutServiceAction,
    *,
    key: int = 0,
    sa_key: int = 0,
    pr_type: int = 0,
    aptpl: bool = False,
) -> Response:
    parameters = PROutParameters(
        reservation_key=key, service_action_reservation_key=sa_key, aptpl=aptpl
    ).encode()
    cdb = PROutCdb(action, PRScope.LU_SCOPE, pr_type, len(parameters)).encode()
    return client.command(cdb, data_out=parameters)


def prin(client: TestInitiator, action: PRInServiceAction) -> bytes:
    answer = client.command(PRInCdb(action, 8192).encode(), read_length=8192)
    assert answer.status == Status.GOOD, answer.sense.hex()
    return answer.data


def write_status(client: TestInitiator) -> int:
    return client.command(WRITE_ONE, data_out=bytes(512)).status


def read_status(client: TestInitiator) -> int:
    return client.command(READ_ONE, read_length=512).status


def test_fence_scsi_flow_across_two_initiators_and_two_paths(tmp_path: Path) -> None:
    """Register on every path, reserve WE-RO, preempt-and-abort the other node: the fenced
    node's writes conflict on every path and its reads still work (fence_scsi's model)."""
    ports = [free_port(), free_port()]
    with running_target(tmp_path, IQN, ports, ["memory:16M"]) as daemon:
        node1 = [TestInitiator("127.0.0.1", p, IQN, initiator_name=NODE1, isid=0x23d000001 + i)
                 for i, p in enumerate(ports)]  # fmt: skip
        node2 = [TestInitiator("127.0.0.1", p, IQN, initiator_name=NODE2, isid=0x23d000101 + i)
                 for i, p in enumerate(ports)]  # fmt: skip
        for path in node1:
            assert prout(path, PROutServiceAction.REGISTER, sa_key=0x1111).status == Status.GOOD
        for path in node2:
            assert prout(path, PROutServiceAction.REGISTER, sa_key=0x2222).status == Status.GOOD
        we_ro = PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
        assert (
            prout(node1[0], PROutServiceAction.RESERVE, key=0x1111, pr_type=we_ro).status
            == Status.GOOD
        )
        # Both nodes are registrants: both may write under WE-RO.
        for path in (*node1, *node2):
            assert write_status(path) == Status.GOOD
        fenced = prout(
            node1[1], PROutServiceAction.PREEMPT_AND_ABORT, key=0x1111, sa_key=0x2222,
            pr_type=we_ro,
        )  # fmt: skip
        assert fenced.status == Status.GOOD
        for path in node2:
            # The preempted registrations first learn of it by unit attention (2A/05).
            first = path.command(READ_ONE, read_length=512)
            assert first.status == Status.CHECK_CONDITION
            _, asc, ascq = parse_sense(first.sense)
            assert asc << 8 | ascq == ASC.REGISTRATIONS_PREEMPTED
            assert write_status(path) == Status.RESERVATION_CONFLICT
            assert read_status(path) == Status.GOOD
        for path in node1:
            assert write_status(path) == Status.GOOD
        reservation = ReadReservationData.decode(prin(node2[0], PRInServiceAction.READ_RESERVATION))
        assert (reservation.reservation_key, reservation.pr_type) == (0x1111, we_ro)
        # The operator's view through the control plane agrees.
        shown = subprocess.run(
            [sys.executable, "-m", "sanstack.cli.main", "target", "pr", IQN, "0",
             "--control", str(daemon.control), "--json"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        state = json.loads(shown.stdout)
        assert state["reservation"]["type"] == "write-exclusive-registrants-only"
        assert {r["initiator"] for r in state["registrations"]} == {NODE1}
        assert len(state["registrations"]) == 2  # node1 on both ports; node2 preempted
        for path in (*node1, *node2):
            path.logout()


def _start(tmp_path: Path, port: int, state: Path) -> subprocess.Popen[bytes]:
    args = [
        sys.executable, "-m", "sanstack.cli.main", "target", "serve", "--iqn", IQN,
        "--portal", f"127.0.0.1:{port}", "--lun", f"{tmp_path / 'lun.img'}:16M",
        "--state-dir", str(state), "--control", str(tmp_path / "control.sock"),
    ]  # fmt: skip
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=tmp_path
    )
    wait_for_line(process, b"ready", 30)
    return process


def test_aptpl_state_survives_kill_9(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    process = _start(tmp_path, port, state)
    try:
        node1 = TestInitiator("127.0.0.1", port, IQN, initiator_name=NODE1, isid=0x23D000001)
        node2 = TestInitiator("127.0.0.1", port, IQN, initiator_name=NODE2, isid=0x23D000002)
        assert (
            prout(node1, PROutServiceAction.REGISTER, sa_key=0xA1, aptpl=True).status == Status.GOOD
        )
        assert (
            prout(node2, PROutServiceAction.REGISTER, sa_key=0xB2, aptpl=True).status == Status.GOOD
        )
        reserve = prout(
            node1, PROutServiceAction.RESERVE, key=0xA1, pr_type=PRType.EXCLUSIVE_ACCESS
        )
        assert reserve.status == Status.GOOD
        before = ReadFullStatusData.decode(prin(node1, PRInServiceAction.READ_FULL_STATUS))
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        node1.close()
        node2.close()
        process = _start(tmp_path, port, state)
        again = TestInitiator("127.0.0.1", port, IQN, initiator_name=NODE1, isid=0x23D000001)
        after = ReadFullStatusData.decode(prin(again, PRInServiceAction.READ_FULL_STATUS))
        assert after.descriptors == before.descriptors
        holder = [d for d in after.descriptors if d.r_holder]
        assert [(d.reservation_key, d.pr_type) for d in holder] == [(0xA1, PRType.EXCLUSIVE_ACCESS)]
        again.logout()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
