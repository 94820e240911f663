"""One node's disks at the edge: the PR commands a ``DiskArbiter`` asks for, carried out on the
disk's multipath map through the node's PR work queue, and the gate the group's I/O passes.

``DiskExecutor.round`` runs one arbitration round of one disk to its verdict: each
``Command`` the arbiter returns becomes one job on the PR ``WorkQueue`` (READ is READ KEYS
then READ RESERVATION, one job), bounded, and its outcome goes back to the arbiter. The
queue is the node's own, apart from the host's path work (KB967724: neither ever waits for a
slot in the other). A round cancelled mid-command tells the arbiter the command's fate is
unknown (NO_PATH), so the next round can begin.

A READ of a disk that waits in the queue, not yet started, is shared by every caller that
asks for the same disk meanwhile (``read``): it reads the disk after each of them asked, so
each sees the disk as new as if it had queued its own READ, and a flood of ``cluster
status`` requests (each reads every disk; ``cluster move --wait`` polls it) or defences
and rounds piling up queue at most one waiting READ per disk, not one per request.

The map sends every PERSISTENT RESERVE OUT with the key it believes it registered
(``registration``). A map built after a restart believes none while the disk still has our
key on the same I_T nexuses (the host's ISIDs are stable), so a READ that shows our key
tells the map it holds it, without a command.

``DiskGate`` is the disk as the group's volume and export see it: it passes I/O to the map
until the group is fenced or stopped (``shut``), after which every I/O fails at once with
``DeviceNotReady`` and nothing more reaches the disk; a RESERVATION CONFLICT on the group's
own I/O is reported (``on_conflict``: the node is fenced, WSFC Event 1038) and the gate
shuts itself. It never closes the map, which is the host's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from sanstack.block.device import BlockDevice, DeviceNotReady, LBAExtent
from sanstack.cluster.arbitration import (
    CLUSTER_TYPE,
    Action,
    ArbitrationView,
    Command,
    CommandOutcome,
    Decision,
    DiskArbiter,
    Verdict,
    outcome_of,
)
from sanstack.cluster.work_queue import WorkQueue
from sanstack.initiator.lun_device import ReservationConflict
from sanstack.mpio.reservations import HostRegistration
from sanstack.scsi.pr_codec import PRType, ReadKeysData, ReadReservationData

log = logging.getLogger(__name__)

PR_JOB_BOUND = 10.0  # one PR command (or the READ pair), queueing and running each


class PRDisk(Protocol):
    """What arbitration needs of a disk: ``MultipathDevice``'s PR methods (every path for
    REGISTER and RELEASE, one path for the others) and the key the map registered."""

    registration: HostRegistration

    async def pr_register(self, key: int, *, aptpl: bool = False) -> None: ...

    async def pr_reserve(self, pr_type: PRType) -> None: ...

    async def pr_release(self, pr_type: PRType) -> None: ...

    async def pr_preempt(
        self, victim_key: int, pr_type: PRType, *, abort: bool = False
    ) -> None: ...

    async def pr_read_keys(self) -> ReadKeysData: ...

    async def pr_read_reservation(self) -> ReadReservationData: ...


# (disk name, command sent, its outcome, the error's text): what the node logs as events.
CommandListener = Callable[[str, Command, CommandOutcome, str], None]
DiskRead = tuple[ReadKeysData, ReadReservationData]


class _Abandoned(Exception):
    """The caller that queued a shared READ gave up before it started: queue another."""


@dataclass(slots=True)
class _SharedRead:
    """A READ of one disk in the PR queue and the callers' shared answer."""

    answer: asyncio.Future[DiskRead]
    started: bool = False


class DiskExecutor:
    """Carries arbitration rounds out on maps through one bounded PR queue."""

    def __init__(
        self,
        queue: WorkQueue,
        our_key: int,
        clock: Callable[[], float],
        *,
        bound: float = PR_JOB_BOUND,
        on_command: CommandListener | None = None,
    ) -> None:
        self.queue = queue
        self.our_key = our_key
        self.clock = clock
        self.bound = bound
        self.on_command = on_command
        self._reads: dict[int, _SharedRead] = {}  # id(disk) -> its READ not started yet
        # id(disk) -> (when, answer) of its last READ that no PR OUT has outdated since;
        # and a count of PR OUTs per disk, so a READ that overlapped one is not kept.
        self._recent: dict[int, tuple[float, DiskRead]] = {}
        self._changes: dict[int, int] = {}
        self._forgotten = 0  # how many times every recent READ was forgotten
        # Per (disk, action) the commands of arbitration rounds, and per disk those that
        # met RESERVATION CONFLICT or another error (the node's metrics).
        self.commands: dict[tuple[str, Action], int] = {}
        self.conflicts: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    async def round(
        self,
        name: str,
        arbiter: DiskArbiter,
        disk: PRDisk,
        view: ArbitrationView,
        *,
        fenced: bool = False,
    ) -> Verdict:
        """One round of ``arbiter`` on ``disk`` to its verdict."""
        decision: Decision = arbiter.begin(view, self.clock(), fenced=fenced)
        while isinstance(decision, Command):
            try:
                decision = await self._carry(name, arbiter, disk, decision)
            except asyncio.CancelledError:
                if arbiter.pending is not None:
                    arbiter.done(CommandOutcome.NO_PATH, self.clock(), "cancelled")
                raise
        return decision

    async def read(self, disk: PRDisk) -> DiskRead:
        """READ KEYS then READ RESERVATION, as one PR job (status uses it too); a job of the
        same disk waiting in the queue, not started yet, is shared (module docstring)."""
        while True:
            shared = self._reads.get(id(disk))
            if shared is None or shared.started:
                return await self._queue_read(disk)
            try:
                return await asyncio.shield(shared.answer)
            except _Abandoned:
                continue

    async def read_recent(self, disk: PRDisk, max_age: float) -> tuple[DiskRead, float]:
        """``disk`` as its last READ found it, if that was at most ``max_age`` seconds ago
        and no PR OUT of this node went to the disk since; else a READ (``read``). Returns
        the answer and its age. Status uses it: the owner's defence reads each disk every
        arbitration interval anyway, so a status (polled by a dashboard, or ``cluster move
        --wait``) costs no PR command at all on a disk read that recently."""
        recent = self._recent.get(id(disk))
        now = self.clock()
        if recent is not None and now - recent[0] <= max_age:
            return recent[1], now - recent[0]
        return await self.read(disk), 0.0

    def forget_recent(self) -> None:
        """What was read may be out of date for every disk (a peer's group changed state:
        it may have reserved or released disks): the next status reads again."""
        self._recent.clear()
        self._forgotten += 1

    def _changing(self, disk: PRDisk) -> None:
        self._recent.pop(id(disk), None)
        self._changes[id(disk)] = self._changes.get(id(disk), 0) + 1

    async def _queue_read(self, disk: PRDisk) -> DiskRead:
        shared = _SharedRead(asyncio.get_running_loop().create_future())
        self._reads[id(disk)] = shared
        changes = -1

        async def job() -> DiskRead:
            nonlocal changes
            shared.started = True  # from now on a caller needs a READ of its own
            changes = self._changes.get(id(disk), 0)
            forgotten = self._forgotten
            answer = await _read_both(disk)
            if self._changes.get(id(disk), 0) == changes and self._forgotten == forgotten:
                self._recent[id(disk)] = (self.clock(), answer)
            return answer

        try:
            answer = await self.queue.run(job, self.bound)
        except BaseException as exc:
            # The error is the joiners' too; cancelled, they queue a READ of their own.
            shared.answer.set_exception(exc if isinstance(exc, Exception) else _Abandoned())
            shared.answer.exception()  # retrieved: nobody may have joined
            raise
        else:
            shared.answer.set_result(answer)
            return answer
        finally:
            if self._reads.get(id(disk)) is shared:
                del self._reads[id(disk)]

    async def register(self, disk: PRDisk) -> None:
        """Our key on every path of ``disk`` (REGISTER, then REGISTER AND IGNORE EXISTING
        KEY where a nexus held another key or none): the unfencing of fence_scsi's "on"."""
        self._changing(disk)
        try:
            await self.queue.run(lambda: disk.pr_register(self.our_key), self.bound)
        finally:
            self._changing(disk)

    async def _carry(
        self, name: str, arbiter: DiskArbiter, disk: PRDisk, command: Command
    ) -> Decision:
        if command.action is Action.READ:
            try:
                keys, reservation = await self.read(disk)
            except Exception as exc:  # its outcome is the arbiter's to judge
                self._count(name, command.action, outcome_of(exc))
                return arbiter.done(outcome_of(exc), self.clock(), str(exc) or type(exc).__name__)
            self._count(name, command.action, CommandOutcome.GOOD)
            if self.our_key in keys.reservation_keys and disk.registration.key != self.our_key:
                disk.registration.taken(self.our_key, False)
            return arbiter.read(keys, reservation, self.clock())
        error: BaseException | None = None
        self._changing(disk)
        try:
            await self.queue.run(lambda: _send(disk, command), self.bound)
        except Exception as exc:
            error = exc
        finally:
            self._changing(disk)
        outcome = outcome_of(error)
        self._count(name, command.action, outcome)
        detail = "" if error is None else (str(error) or type(error).__name__)
        if self.on_command is not None:
            self.on_command(name, command, outcome, detail)
        return arbiter.done(outcome, self.clock(), detail)

    def _count(self, name: str, action: Action, outcome: CommandOutcome) -> None:
        key = (name, action)
        self.commands[key] = self.commands.get(key, 0) + 1
        if outcome is CommandOutcome.RESERVATION_CONFLICT:
            self.conflicts[name] = self.conflicts.get(name, 0) + 1
        elif outcome is not CommandOutcome.GOOD:
            self.errors[name] = self.errors.get(name, 0) + 1


async def _read_both(disk: PRDisk) -> DiskRead:
    keys = await disk.pr_read_keys()
    reservation = await disk.pr_read_reservation()
    return keys, reservation


def _send(disk: PRDisk, command: Command) -> Awaitable[None]:
    pr_type = command.pr_type or CLUSTER_TYPE
    match command.action:
        case Action.REGISTER_AND_IGNORE:
            return disk.pr_register(command.service_action_key)
        case Action.RESERVE:
            return disk.pr_reserve(pr_type)
        case Action.PREEMPT | Action.PREEMPT_AND_ABORT:
            abort = command.action is Action.PREEMPT_AND_ABORT
            return disk.pr_preempt(command.service_action_key, pr_type, abort=abort)
        case Action.RELEASE:
            return disk.pr_release(pr_type)
    raise AssertionError(f"not a PERSISTENT RESERVE OUT: {command.action}")


class DiskGate(BlockDevice):
    """The group's I/O to one disk (module docstring)."""

    def __init__(self, name: str, device: BlockDevice, on_conflict: Callable[[str], None]) -> None:
        self.name = name
        self.device = device
        self.on_conflict = on_conflict
        self.block_size = device.block_size
        self.num_blocks = device.num_blocks
        self.identity = device.identity
        self.read_only = device.read_only
        self.thin_provisioned = device.thin_provisioned
        self.write_cache = device.write_cache
        self.shut_reason: str | None = None

    def shut(self, reason: str) -> None:
        """From now on no I/O reaches the disk."""
        if self.shut_reason is None:
            self.shut_reason = reason

    def _check(self) -> None:
        if self.shut_reason is not None:
            raise DeviceNotReady(f"disk {self.name}: {self.shut_reason}")

    def _conflict(self) -> None:
        self.shut("RESERVATION CONFLICT on the group's I/O")
        self.on_conflict(self.name)

    async def read(self, lba: int, count: int) -> bytes | memoryview:
        self._check()
        try:
            return await self.device.read(lba, count)
        except ReservationConflict:
            self._conflict()
            raise

    async def write(self, lba: int, data: bytes | memoryview) -> None:
        self._check()
        try:
            await self.device.write(lba, data)
        except ReservationConflict:
            self._conflict()
            raise

    async def flush(self) -> None:
        self._check()
        try:
            await self.device.flush()
        except ReservationConflict:
            self._conflict()
            raise

    async def unmap(self, lba: int, count: int) -> None:
        self._check()
        try:
            await self.device.unmap(lba, count)
        except ReservationConflict:
            self._conflict()
            raise

    async def get_lba_status(self, lba: int, max_count: int) -> list[LBAExtent]:
        self._check()
        return await self.device.get_lba_status(lba, max_count)

    def health(self) -> str | None:
        if self.shut_reason is not None:
            return f"disk {self.name}: {self.shut_reason}"
        return self.device.health()

    async def close(self) -> None:
        self.shut("closed")
