"""``sanstack target serve --workers 2`` as real processes: sessions on different workers
share reservations, unit attentions and ALUA; reinstatement moves a nexus between workers;
a killed worker is restarted while the other serves on; stop with I/O in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.interop.test_iscsi_test_cu import parse_cunit
from tests.support.iscsi_client import Response, TestInitiator
from tests.support.processes import (
    Daemon,
    free_port,
    require_tool,
    run_tool,
    running_target,
    sanstack_command,
)
from tests.support.waits import wait_until

from sanstack.control.client import call
from sanstack.scsi.cdb import CompareAndWriteCDB, ReadWriteCDB
from sanstack.scsi.codes import ASC, Opcode, SenseKey, Status
from sanstack.scsi.pr_codec import (
    PRInCdb,
    PRInServiceAction,
    PROutCdb,
    PROutParameters,
    PROutServiceAction,
    PRScope,
    PRType,
    ReadKeysData,
)
from sanstack.scsi.sense import parse_sense

pytestmark = pytest.mark.interop
IQN = "iqn.2026-11.org.sanstack:workers"
NODE1 = "iqn.2026-11.org.sanstack:node1"
NODE2 = "iqn.2026-11.org.sanstack:node2"
NODE3 = "iqn.2026-11.org.sanstack:node3"
READ_ONE = ReadWriteCDB(Opcode.READ_10, 0, 1).encode()
WRITE_ONE = ReadWriteCDB(Opcode.WRITE_10, 0, 1).encode()
TEST_UNIT_READY = bytes(6)


@contextmanager
def workers_target(tmp_path: Path, ports: list[int], workers: int = 2) -> Iterator[Daemon]:
    lun = f"{tmp_path / 'lun.img'}:64M"
    extra = ["--workers", str(workers)]
    with running_target(tmp_path, IQN, ports, [lun], extra=extra) as daemon:
        yield daemon


def login(port: int, name: str, isid: int) -> TestInitiator:
    return TestInitiator("127.0.0.1", port, IQN, initiator_name=name, isid=isid)


def sessions(daemon: Daemon) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = call(daemon.control, "GET", "/v1/sessions")
    return [row for row in rows if not row["discovery"]]


def worker_of(daemon: Daemon, name: str, isid: int) -> int:
    port = f"{name},i,0x{isid:012x}"
    found = [row["worker"] for row in sessions(daemon) if row["initiator_port"] == port]
    assert len(found) == 1, sessions(daemon)
    return int(found[0])


def workers(daemon: Daemon) -> list[dict[str, Any]]:
    status: dict[str, Any] = call(daemon.control, "GET", "/v1/status")
    return list(status["workers"])


def set_alua(daemon: Daemon, state: str) -> None:
    call(daemon.control, "PUT", f"/v1/targets/{IQN}/portal-groups/1/alua", {"state": state})


def read_keys(client: TestInitiator) -> tuple[int, ...]:
    answer = client.command(PRInCdb(PRInServiceAction.READ_KEYS, 512).encode(), read_length=512)
    assert answer.status == Status.GOOD, answer
    return ReadKeysData.decode(answer.data).reservation_keys


def prout(
    client: TestInitiator,
    action: PROutServiceAction,
    *,
    key: int = 0,
    sa_key: int = 0,
    pr_type: int = 0,
) -> Response:
    parameters = PROutParameters(reservation_key=key, service_action_reservation_key=sa_key)
    data = parameters.encode()
    cdb = PROutCdb(action, PRScope.LU_SCOPE, pr_type, len(data)).encode()
    return client.command(cdb, data_out=data)


def write(client: TestInitiator) -> Response:
    return client.command(WRITE_ONE, data_out=bytes(512))


def read(client: TestInitiator) -> Response:
    return client.command(READ_ONE, read_length=512)


def asc_of(response: Response) -> int:
    assert response.status == Status.CHECK_CONDITION, response
    _key, asc, ascq = parse_sense(response.sense)
    return asc << 8 | ascq


def test_reservations_and_unit_attentions_cross_workers(tmp_path: Path) -> None:
    port = free_port()
    with workers_target(tmp_path, [port]) as daemon:
        node1 = login(port, NODE1, 0x23D000001)
        node2 = login(port, NODE2, 0x23D000002)
        # Placement is by fewest connections: the two sessions are in two processes.
        assert worker_of(daemon, NODE1, 0x23D000001) == 0
        assert worker_of(daemon, NODE2, 0x23D000002) == 1
        assert prout(node1, PROutServiceAction.REGISTER, sa_key=0x1111).status == Status.GOOD
        assert prout(node2, PROutServiceAction.REGISTER, sa_key=0x2222).status == Status.GOOD
        we = PRType.WRITE_EXCLUSIVE
        reserve = prout(node1, PROutServiceAction.RESERVE, key=0x1111, pr_type=we)
        assert reserve.status == Status.GOOD
        assert write(node1).status == Status.GOOD
        assert write(node2).status == Status.RESERVATION_CONFLICT  # checked in worker 1
        assert read(node2).status == Status.GOOD

        preempt = prout(
            node2, PROutServiceAction.PREEMPT_AND_ABORT, key=0x2222, sa_key=0x1111, pr_type=we
        )
        assert preempt.status == Status.GOOD
        # Once PREEMPT AND ABORT has completed, worker 0 knows: the unit attention first,
        # then the conflict; node1's registration is gone.
        assert asc_of(read(node1)) == ASC.REGISTRATIONS_PREEMPTED
        assert write(node1).status == Status.RESERVATION_CONFLICT
        assert write(node2).status == Status.GOOD
        assert read_keys(node1) == (0x2222,)

        # An operator's ALUA change reaches both workers' nexuses before it returns.
        set_alua(daemon, "standby")
        for client in (node1, node2):
            assert asc_of(client.command(TEST_UNIT_READY)) == ASC.ASYMMETRIC_ACCESS_STATE_CHANGED
            standby = read(client)
            assert asc_of(standby) == ASC.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE
            assert parse_sense(standby.sense)[0] == SenseKey.NOT_READY
        set_alua(daemon, "active-optimized")
        for client in (node1, node2):
            assert asc_of(client.command(TEST_UNIT_READY)) == ASC.ASYMMETRIC_ACCESS_STATE_CHANGED
            client.logout()


def test_reinstatement_moves_a_nexus_to_another_worker(tmp_path: Path) -> None:
    port = free_port()
    with workers_target(tmp_path, [port]) as daemon:
        first = login(port, NODE1, 0x1)
        other = login(port, NODE2, 0x2)
        third = login(port, NODE3, 0x3)
        assert [worker_of(daemon, n, i) for n, i in ((NODE1, 1), (NODE2, 2), (NODE3, 3))] == [
            0,
            1,
            0,
        ]
        assert prout(first, PROutServiceAction.REGISTER, sa_key=0xAA).status == Status.GOOD
        # The same initiator port again: worker 1 has fewer connections, so it lands there
        # and worker 0 closes the old session (RFC 7143 §6.3.5).
        again = login(port, NODE1, 0x1)
        wait_until(
            lambda: worker_of(daemon, NODE1, 0x1) == 1, 30, "the old session closed in worker 0"
        )
        first.sock.settimeout(30)
        assert first.sock.recv(65536) == b""  # closed by worker 0
        # Same nexus: the registration is still its own.
        assert read_keys(again) == (0xAA,)
        assert prout(again, PROutServiceAction.REGISTER, key=0xAA).status == Status.GOOD
        assert read(again).status == Status.GOOD
        for client in (again, other, third):
            client.logout()
        first.close()


def test_a_killed_worker_is_restarted_and_the_other_serves_on(tmp_path: Path) -> None:
    port = free_port()
    with workers_target(tmp_path, [port]) as daemon:
        node1 = login(port, NODE1, 0x1)
        node2 = login(port, NODE2, 0x2)
        assert worker_of(daemon, NODE2, 0x2) == 1
        assert prout(node2, PROutServiceAction.REGISTER, sa_key=0x22).status == Status.GOOD
        victim = workers(daemon)[1]["pid"]
        os.kill(victim, signal.SIGKILL)

        def restarted() -> bool:
            now = workers(daemon)[1]  # one snapshot: alive and pid from the same moment
            return bool(now["alive"]) and now["pid"] not in (None, victim)

        wait_until(restarted, 60, "worker 1 restarted")
        assert workers(daemon)[1]["restarts"] == 1
        assert "worker 1 exited with status -9; its 1 sessions ended" in daemon.log()
        node2.sock.settimeout(30)
        assert node2.sock.recv(65536) == b""  # its connection died with it
        node2.close()
        for _ in range(20):
            assert read(node1).status == Status.GOOD
        # A new session lands on the restarted worker, which knows the registrations
        # (a registration outlives its session).
        node2 = login(port, NODE2, 0x2)
        assert worker_of(daemon, NODE2, 0x2) == 1
        assert read_keys(node2) == (0x22,)
        assert write(node2).status == Status.GOOD
        for client in (node1, node2):
            client.logout()


def test_compare_and_write_is_atomic_across_workers(tmp_path: Path) -> None:
    """Two sessions in two workers race COMPARE AND WRITE increments of one counter block
    (ATS-style): no increment is lost, so the two never both won the same compare."""
    port = free_port()
    rounds = 150
    with workers_target(tmp_path, [port]) as daemon:
        clients = [login(port, NODE1, 0x1), login(port, NODE2, 0x2)]
        assert [worker_of(daemon, NODE1, 0x1), worker_of(daemon, NODE2, 0x2)] == [0, 1]
        assert write(clients[0]).status == Status.GOOD  # block 0 := zeros, counter 0
        wins = [0, 0]

        def increment(index: int) -> None:
            client = clients[index]
            for _ in range(rounds):
                seen = read(client).data
                value = int.from_bytes(seen[:8], "little")
                new = (value + 1).to_bytes(8, "little") + seen[8:]
                cdb = CompareAndWriteCDB(0, 1).encode()
                if client.command(cdb, data_out=seen + new).status == Status.GOOD:
                    wins[index] += 1

        threads = [threading.Thread(target=increment, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads)
        counter = int.from_bytes(read(clients[0]).data[:8], "little")
        assert counter == sum(wins) and min(wins) > 0, wins
        for client in clients:
            client.logout()


def test_stop_with_io_in_flight_leaves_no_worker_behind(tmp_path: Path) -> None:
    perf = require_tool("iscsi-perf")
    port = free_port()
    loads: list[subprocess.Popen[bytes]] = []
    with workers_target(tmp_path, [port]) as daemon:
        pids = [w["pid"] for w in workers(daemon)]
        url = f"iscsi://127.0.0.1:{port}/{IQN}/0"
        for i in range(2):
            loads.append(
                subprocess.Popen(
                    [perf, "-i", f"{IQN}-perf{i}", "-b", "8", "-m", "16", "-t", "60", url],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        wait_until(lambda: len(sessions(daemon)) == 2, 30, "both iscsi-perf sessions")
        assert {row["worker"] for row in sessions(daemon)} == {0, 1}
        # Leaving the block sends SIGTERM; the daemon must exit 0 in time.
    try:
        wait_until(lambda: not any(_alive(pid) for pid in pids), 10, f"workers {pids} gone")
    finally:
        for load in loads:
            if load.poll() is None:
                load.kill()
            load.wait(10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose: only its parent's wait is left.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.timeout(900)
def test_libiscsi_conformance_suite_against_two_workers(tmp_path: Path) -> None:
    """iscsi-test-cu's whole suite over two portals: its two sessions land on the two
    workers, so the PR, RESERVE(6) and task management tests cross processes."""
    tool = require_tool("iscsi-test-cu")
    ls = require_tool("iscsi-ls")
    ports = [free_port(), free_port()]
    with workers_target(tmp_path, ports):
        listing = run_tool([ls, "-s", f"iscsi://127.0.0.1:{ports[0]}/"], timeout=60)
        assert IQN in listing.stdout
        urls = [f"iscsi://127.0.0.1:{port}/{IQN}/0" for port in ports]
        result = run_tool([tool, "-d", "--test=ALL", *urls], timeout=850, check=False)
    output = result.stdout + result.stderr
    (tmp_path / "iscsi-test-cu.log").write_text(output)
    run = parse_cunit(output)
    assert run.total >= 200, output[-3000:]
    assert not run.failed, f"failed: {run.failed}\n{output[-5000:]}"
    for family in ("PrinReadKeys", "ProutReserve", "ProutPreempt", "Reserve6"):
        assert f"Suite: {family}" in output, family


@pytest.mark.parametrize(
    ("lun", "workers", "message"),
    [
        (
            "memory:16M",
            "2",
            f"--workers: LUN 0 of {IQN} is a memory LUN; --workers above 1 serves file LUNs only",
        ),
        ("LUN.img:16M", "0", "--workers: must be 1..256"),
    ],
)
def test_bad_workers_flags_are_one_line_errors(
    tmp_path: Path, lun: str, workers: str, message: str
) -> None:
    result = run_tool(
        [
            *sanstack_command(),
            "target",
            "serve",
            "--iqn",
            IQN,
            "--portal",
            f"127.0.0.1:{free_port()}",
            "--lun",
            lun.replace("LUN.img", str(tmp_path / "lun.img")),
            "--workers",
            workers,
            "--control",
            str(tmp_path / "control.sock"),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"sanstack: error: {message}"]
