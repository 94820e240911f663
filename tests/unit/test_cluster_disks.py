"""The node's disk edge without processes: ``DiskExecutor`` carrying arbitration rounds out on
a fake multipath map over the real PR engine (two paths per node, as ``MultipathDevice``
sends each service action), through the PR work queue; and ``DiskGate``, which stops the
group's I/O at fencing and turns a RESERVATION CONFLICT into the node's fencing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from tests.support.pr_harness import LU, at
from tests.support.waits import until

from sanstack.block.device import DeviceIdentity, DeviceNotReady
from sanstack.block.memory import MemoryDevice
from sanstack.cluster.arbitration import (
    Action,
    ArbitrationView,
    Command,
    CommandOutcome,
    DiskArbiter,
    Intent,
    VerdictKind,
)
from sanstack.cluster.disks import DiskExecutor, DiskGate
from sanstack.cluster.work_queue import WorkQueue
from sanstack.initiator.lun_device import ReservationConflict
from sanstack.initiator.session import PathFailed
from sanstack.iscsi.initiator_events import PathFailureKind
from sanstack.mpio.reservations import HostRegistration
from sanstack.scsi.codes import Status
from sanstack.scsi.command import Nexus
from sanstack.scsi.pr_codec import PROutServiceAction, PRType, ReadKeysData, ReadReservationData

T = TypeVar("T")
N1, N2, N3 = 0x1111, 0x2222, 0x3333
KEYS = {"n1": N1, "n2": N2, "n3": N3}
SA = PROutServiceAction


class FakeMap:
    """A map of one node over two I_T nexuses of ``lu``, sending PR commands as
    ``MultipathDevice`` does; ``fail_next`` makes the next PR call raise that error,
    ``block`` makes PR calls wait until it is set."""

    def __init__(self, lu: LU, name: str, index: int) -> None:
        initiator = f"iqn.2026-11.org.sanstack:{name}"
        self.lu = lu
        self.paths: tuple[Nexus, Nexus] = (
            at(initiator, 0x10 * index + 1, 1),
            at(initiator, 0x10 * index + 2, 2),
        )
        lu.active.extend(self.paths)
        self.registration = HostRegistration()
        self.fail_next: Exception | None = None
        self.block: asyncio.Event | None = None
        self.calls: list[str] = []

    async def _enter(self, what: str) -> None:
        self.calls.append(what)
        if self.block is not None:
            await self.block.wait()
        error, self.fail_next = self.fail_next, None
        if error is not None:
            raise error

    def _check(self, status: Status) -> None:
        if status is Status.RESERVATION_CONFLICT:
            raise ReservationConflict("reservation conflict")

    async def pr_register(self, key: int, *, aptpl: bool = False) -> None:
        await self._enter("register")
        good = False
        for path in self.paths:
            answer = self.lu.out(path, SA.REGISTER, self.registration.key, key)
            if answer.status is Status.RESERVATION_CONFLICT:
                answer = self.lu.out(path, SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, key)
            good = good or answer.status is Status.GOOD
        if not good:
            raise ReservationConflict("no path took the key")
        self.registration.taken(key, aptpl)

    async def pr_reserve(self, pr_type: PRType) -> None:
        await self._enter("reserve")
        self._check(
            self.lu.out(self.paths[0], SA.RESERVE, self.registration.key, 0, pr_type).status
        )

    async def pr_release(self, pr_type: PRType) -> None:
        await self._enter("release")
        answers = [
            self.lu.out(p, SA.RELEASE, self.registration.key, 0, pr_type).status for p in self.paths
        ]
        if Status.GOOD not in answers:
            raise ReservationConflict("release refused")

    async def pr_preempt(self, victim_key: int, pr_type: PRType, *, abort: bool = False) -> None:
        await self._enter("preempt-and-abort" if abort else "preempt")
        action = SA.PREEMPT_AND_ABORT if abort else SA.PREEMPT
        key = self.registration.key
        self._check(self.lu.out(self.paths[0], action, key, victim_key, pr_type).status)

    async def pr_read_keys(self) -> ReadKeysData:
        await self._enter("read-keys")
        return self.lu.keys()

    async def pr_read_reservation(self) -> ReadReservationData:
        await self._enter("read-reservation")
        return self.lu.reservation()


class WritableFake(MemoryDevice):
    """The map as the group's I/O sees it: writes fail once the node's key is gone."""

    def __init__(self, disk: FakeMap) -> None:
        super().__init__(2048, identity=DeviceIdentity.from_seed("disk"))
        self.disk = disk

    async def write(self, lba: int, data: bytes | memoryview) -> None:
        if not self.disk.lu.can_write(self.disk.paths[0]):
            raise ReservationConflict("reservation conflict")
        await super().write(lba, data)


def view(intent: Intent, members: frozenset[str] = frozenset(KEYS)) -> ArbitrationView:
    return ArbitrationView(intent, members, KEYS, has_quorum=True)


def run(body: Callable[[WorkQueue], Awaitable[T]]) -> T:
    async def main() -> T:
        queue = WorkQueue("pr", 4, 16)
        try:
            return await body(queue)
        finally:
            await queue.close()

    return asyncio.run(main())


def test_a_free_disk_is_registered_reserved_and_confirmed_through_the_pr_queue() -> None:
    lu = LU(active=[])
    disk = FakeMap(lu, "n1", 1)
    sent: list[tuple[Action, CommandOutcome]] = []

    async def body(queue: WorkQueue) -> None:
        executor = DiskExecutor(
            queue, N1, lambda: 0.0, on_command=lambda d, c, o, _t: sent.append((c.action, o))
        )
        verdict = await executor.round("d1", DiskArbiter(N1), disk, view(Intent.OWN))
        assert verdict.kind is VerdictKind.OWNED
        assert queue.stats.done == 5  # READ, REGISTER, READ, RESERVE, READ: one job each

    run(body)
    assert sent == [
        (Action.REGISTER_AND_IGNORE, CommandOutcome.GOOD),
        (Action.RESERVE, CommandOutcome.GOOD),
    ]
    assert lu.keys().reservation_keys == (N1, N1)  # both paths
    reservation = lu.reservation()
    assert reservation.reservation_key == N1
    assert reservation.pr_type is PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY


def test_failover_preempts_and_aborts_and_the_old_owners_io_fences_it() -> None:
    lu = LU(active=[])
    old, new = FakeMap(lu, "n1", 1), FakeMap(lu, "n2", 2)
    fenced: list[str] = []
    sent: list[Command] = []

    async def body(queue: WorkQueue) -> None:
        first = DiskExecutor(queue, N1, lambda: 0.0)
        old_arbiter = DiskArbiter(N1)
        await first.round("d1", old_arbiter, old, view(Intent.OWN))
        gate = DiskGate("d1", WritableFake(old), fenced.append)
        await gate.write(0, bytes(512))
        second = DiskExecutor(queue, N2, lambda: 1.0, on_command=lambda d, c, o, t: sent.append(c))
        survivors = view(Intent.OWN, frozenset({"n2", "n3"}))
        verdict = await second.round("d1", DiskArbiter(N2), new, survivors)
        assert verdict.kind is VerdictKind.OWNED
        with pytest.raises(ReservationConflict):
            await gate.write(0, bytes(512))
        assert fenced == ["d1"]
        assert gate.shut_reason is not None and "RESERVATION CONFLICT" in gate.shut_reason
        with pytest.raises(DeviceNotReady):  # nothing more reaches the disk
            await gate.read(0, 1)
        # The old owner's own defence finds it too (WSFC Event 1038).
        verdict = await first.round("d1", old_arbiter, old, view(Intent.DEFEND))
        assert verdict.kind is VerdictKind.FENCED
        assert "unexpectedly lost" in verdict.reason

    run(body)
    assert [c.action for c in sent] == [Action.REGISTER_AND_IGNORE, Action.PREEMPT_AND_ABORT]
    assert sent[1].service_action_key == N1
    assert N1 not in lu.keys().reservation_keys


def test_a_restarted_map_learns_its_key_from_the_disk_and_can_release() -> None:
    lu = LU(active=[])
    disk = FakeMap(lu, "n1", 1)

    async def body(queue: WorkQueue) -> None:
        executor = DiskExecutor(queue, N1, lambda: 0.0)
        await executor.round("d1", DiskArbiter(N1), disk, view(Intent.OWN))
        restarted = FakeMap(lu, "n1", 1)  # the same nexuses (stable ISIDs), a new map
        lu.active[:] = list(dict.fromkeys(lu.active))
        assert restarted.registration.key == 0
        arbiter = DiskArbiter(N1)
        verdict = await executor.round("d1", arbiter, restarted, view(Intent.NONE))
        assert verdict.kind is VerdictKind.OWNED and arbiter.owned
        assert restarted.registration.key == N1  # learnt from READ KEYS, no command sent
        assert restarted.calls == ["read-keys", "read-reservation"]
        verdict = await executor.round("d1", arbiter, restarted, view(Intent.RELEASE))
        assert verdict.kind is VerdictKind.RELEASED

    run(body)
    assert lu.reservation().pr_type is None


def test_a_path_failure_ends_the_round_waiting_and_a_cancelled_round_leaves_none_pending() -> None:
    lu = LU(active=[])
    disk = FakeMap(lu, "n1", 1)

    async def body(queue: WorkQueue) -> None:
        executor = DiskExecutor(queue, N1, lambda: 0.0)
        arbiter = DiskArbiter(N1)
        disk.fail_next = PathFailed(PathFailureKind.CONNECTION_LOST, "gone")
        verdict = await executor.round("d1", arbiter, disk, view(Intent.OWN))
        assert verdict.kind is VerdictKind.WAIT and verdict.rule == "no-path"
        disk.block = asyncio.Event()
        task = asyncio.create_task(executor.round("d1", arbiter, disk, view(Intent.OWN)))
        await until(lambda: disk.calls[-1:] == ["read-keys"], 5, "the READ under way")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert arbiter.pending is None  # the next round may begin
        disk.block = None
        verdict = await executor.round("d1", arbiter, disk, view(Intent.OWN))
        assert verdict.kind is VerdictKind.OWNED

    run(body)


def test_a_shut_gate_refuses_every_io_and_never_closes_the_map() -> None:
    async def body() -> None:
        base = MemoryDevice(2048, identity=DeviceIdentity.from_seed("gate"))
        gate = DiskGate("d1", base, lambda _d: None)
        await gate.write(0, b"\1" * 512)
        assert bytes(await gate.read(0, 1)) == b"\1" * 512
        assert gate.health() is None
        gate.shut("fenced: test")
        for io in (gate.read(0, 1), gate.write(0, bytes(512)), gate.flush(), gate.unmap(0, 1)):
            with pytest.raises(DeviceNotReady, match="fenced: test"):
                await io
        assert gate.health() == "disk d1: fenced: test"
        await gate.close()
        assert bytes(await base.read(0, 1)) == b"\1" * 512  # the map is the host's

    asyncio.run(body())
