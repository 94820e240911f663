"""The SCSI device server of one logical unit: dispatch, unit attentions, task management.

Theory of operation. A transport hands ``LogicalUnit.execute`` one ``Command`` at a time
per task; many run concurrently. ``execute`` applies the checks SAM-5 and SPC-4 order before
any command runs (unit attention, reservations), finds the command in the table built from
``sanstack.scsi.spc.COMMANDS`` and ``sanstack.scsi.sbc.COMMANDS``, and turns every failure
into status and sense: a ``CheckCondition``, a block-device error, or (a bug) any other
exception, which is logged and reported as HARDWARE ERROR / INTERNAL TARGET FAILURE. The
daemon never dies of a command.

Task management aborts running commands by cancelling the asyncio task that awaits
``execute``; ``execute`` turns that cancellation into ``TaskAborted`` so the transport knows
to send nothing (or TASK ABORTED status when ``TaskAborted.report_status`` is set, SAM-5
§5.6 with TAS=1), while any other cancellation (a session teardown) propagates unchanged.

What a logical unit needs of the target that serves it comes in, never from an import: the
target's LUN map, nexuses and ports (``TargetInfo``) and where its persistent reservations
are kept (a ``ReservationStore``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol

from sanstack.block.device import (
    BlockDevice,
    DeviceNotReady,
    DeviceReadOnly,
    MediumError,
    SpaceExhausted,
)
from sanstack.edge.tasks import wait_ended
from sanstack.scsi.alua import ALUAGroups
from sanstack.scsi.alua_codec import ALUAState
from sanstack.scsi.codes import ASC, SenseKey, Status
from sanstack.scsi.command import Command, CommandResult, CommandSpec, Nexus
from sanstack.scsi.command_stats import CommandStats
from sanstack.scsi.mode import ModeParameters
from sanstack.scsi.pr import PersistentReservations, TargetPort
from sanstack.scsi.sbc_rw import (
    READ_10_OPCODE,
    READ_16_OPCODE,
    WRITE_10_OPCODE,
    WRITE_16_OPCODE,
    read_at_hand,
    write_at_hand,
)
from sanstack.scsi.sense import CheckCondition, check_condition, invalid_field_in_cdb
from sanstack.scsi.sense_descriptor import to_descriptor_format

log = logging.getLogger(__name__)

# A nexus never needs more than a handful of distinct unit attentions queued; SPC-4 §4.5.5
# lets a device server drop the older ones when it runs out of room.
MAX_UNIT_ATTENTIONS_PER_NEXUS = 8


class TaskAborted(Exception):
    """The command was aborted by task management; the transport sends no normal response."""

    def __init__(self, report_status: bool) -> None:
        super().__init__("task aborted")
        self.report_status = report_status


@dataclass(slots=True, init=False)
class _RunningTask:
    nexus: Nexus
    tag: int
    task: asyncio.Task[object] | None
    aborted: bool = False
    report_status: bool = False

    # Written out (the dataclass makes none, init=False): compiled by mypyc, a generated
    # __init__ stays interpreted Python, and this one is made for every command.
    def __init__(
        self,
        nexus: Nexus,
        tag: int,
        task: asyncio.Task[object] | None,
        aborted: bool = False,
        report_status: bool = False,
    ) -> None:
        self.nexus = nexus
        self.tag = tag
        self.task = task
        self.aborted = aborted
        self.report_status = report_status


@dataclass(slots=True)
class TargetInfo:
    """What a logical unit knows of the target that serves it."""

    target_name: str
    lun_numbers: Callable[[], list[int]]
    active_nexuses: Callable[[], Iterable[Nexus]]
    port_group_id: Callable[[Nexus], int] = field(default=lambda nexus: nexus.tpgt)
    # One target port group per portal group by default; a target replaces this with its own.
    alua: ALUAGroups = field(default_factory=lambda: ALUAGroups.one_per_port([1]))
    # Every SCSI target port of the target (ALL_TG_PT, SPEC_I_PT, READ FULL STATUS).
    target_ports: Callable[[], list[TargetPort]] = field(default=list)
    vendor: str = "SANSTACK"
    product: str = "VIRTUAL-DISK"
    revision: str = "0001"


class ReservationStore(Protocol):
    """Where one logical unit's persistent reservations outlive a restart (SPC-4 §5.13.5).

    The target supplies one per LUN (``target/state_store.py``: a crash-safe file); a logical
    unit without one keeps its reservations in memory only.
    """

    def load(self) -> PersistentReservations | None:
        """The state last saved, None if there is none; a ``SanstackError`` naming the
        store if what is there cannot be used."""
        ...

    async def save(self, reservations: PersistentReservations) -> None:
        """Make ``reservations`` durable as they are when this save's turn comes.

        Saves run one at a time, so concurrent PR OUTs (a REGISTER down every path at once)
        can never leave an older state stored after a newer one.
        """
        ...


class LogicalUnit:
    """A LUN: a block device plus the SCSI state SPC-4 and SBC-4 keep per logical unit."""

    def __init__(
        self,
        lun: int,
        device: BlockDevice,
        target: TargetInfo,
        reservation_store: ReservationStore | None = None,
    ) -> None:
        from sanstack.scsi.command_table import command_table

        self.lun = lun
        self.device = device
        self.target = target
        self.mode = ModeParameters(wce=device.write_cache)
        self.alua = target.alua
        self.reservation_store = reservation_store
        self.pr = self._load_reservations()
        self.commands: dict[tuple[int, int | None], CommandSpec] = command_table()
        # The commands ``execute_now`` may answer, by opcode.
        self._fast_opcodes = frozenset((READ_10_OPCODE, READ_16_OPCODE))
        self._fast_write_opcodes = frozenset((WRITE_10_OPCODE, WRITE_16_OPCODE))
        self._unit_attentions: dict[Nexus, deque[ASC]] = {}
        self.scsi2_reservation: Nexus | None = None
        self.prevent_removal: set[Nexus] = set()
        self.stopped = False
        self._running: dict[tuple[Nexus, int], _RunningTask] = {}
        self._locked_ranges: list[tuple[int, int, asyncio.Future[None]]] = []
        # Recorded by the transport's edge, which times each command (target/server.py).
        self.stats = CommandStats()

    # -- persistent reservations (SPC-4 §5.13) --------------------------------------------

    def _load_reservations(self) -> PersistentReservations:
        """A restart is a power cycle: only an APTPL state comes back (SPC-4 §5.13.5)."""
        store = self.reservation_store
        saved = None if store is None else store.load()
        return PersistentReservations() if saved is None else saved.after_power_on()

    async def save_reservations(self) -> None:
        """Store the reservation state (crash-safely) before the PR OUT is acknowledged."""
        if self.reservation_store is not None:
            await self.reservation_store.save(self.pr)

    async def abort_task_sets(
        self, nexuses: Iterable[Nexus], *, requester: Nexus, requester_tag: int | None = None
    ) -> None:
        """PREEMPT AND ABORT: end the preempted nexuses' tasks, then return (bounded).

        ``requester_tag`` spares the PERSISTENT RESERVE OUT itself when the abort is carried
        out by another task than the command's (a target worker told by its coordinator)."""
        tasks: list[asyncio.Task[object]] = []
        cleared: set[Nexus] = set()
        for nexus in nexuses:
            spared = requester_tag if nexus == requester else None
            aborted = self.abort_task_set(nexus, sparing=spared)
            tasks += aborted
            if aborted and nexus != requester:
                cleared.add(nexus)
        if cleared and not self.mode.tas:
            self.establish_unit_attention(
                ASC.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR, nexuses=cleared
            )
        await wait_ended(tasks, f"preempted tasks of LUN {self.lun}")

    # -- command execution ---------------------------------------------------------------

    def attach_task(self, nexus: Nexus, tag: int, task: asyncio.Task[None]) -> None:
        """The command started outside a Task and now waits inside ``task``: abort cancels it."""
        running = self._running.get((nexus, tag))
        if running is not None:
            running.task = task

    def find_command(self, cdb: bytes) -> CommandSpec | None:
        opcode = cdb[0]
        spec = self.commands.get((opcode, None))
        if spec is None and len(cdb) > 1:
            spec = self.commands.get((opcode, cdb[1] & 0x1F))
        return spec

    async def execute(self, cmd: Command) -> CommandResult:
        """Run one command to its result; raises ``TaskAborted`` if task management ended it."""
        key = (cmd.nexus, cmd.tag)
        running = _RunningTask(cmd.nexus, cmd.tag, asyncio.current_task())
        self._running[key] = running
        try:
            result = await self._execute(cmd)
        except asyncio.CancelledError:
            if running.aborted and running.task is not None:
                running.task.uncancel()
                raise TaskAborted(running.report_status) from None
            raise
        finally:
            if self._running.get(key) is running:
                del self._running[key]
        if result.sense and self.mode.d_sense:
            # Control mode page D_SENSE=1: every CHECK CONDITION uses descriptor format.
            result = replace(result, sense=to_descriptor_format(result.sense))
        return result

    def execute_now(self, cmd: Command) -> CommandResult | None:
        """The result of a command that needs no waiting (a READ of cached blocks, a WRITE
        into the page cache), or None: then ``execute`` runs it. The caller records stats
        as for ``execute``.

        The target's fast path: no coroutine, no task, nothing to abort meanwhile. It makes
        the checks ``_execute`` makes before any handler, in the same order, and hands any
        command they would stop (a unit attention, an ALUA state, a reservation) to
        ``execute`` so that the answer is built in one place.
        """
        if self.stopped or (self._unit_attentions and cmd.nexus in self._unit_attentions):
            return None
        cdb = cmd.cdb
        if not cdb:
            return None
        write = cdb[0] in self._fast_write_opcodes
        if not write and cdb[0] not in self._fast_opcodes:
            return None
        # Both active states let media access through (SPC-4 §5.16.2.4); any other state
        # goes to ``execute``, which answers with the state's sense data.
        state = self.alua.state_of_port(cmd.nexus.relative_target_port_id)
        if state is not ALUAState.ACTIVE_OPTIMIZED and state is not ALUAState.ACTIVE_NON_OPTIMIZED:
            return None
        holder = self.scsi2_reservation
        if holder is not None and holder != cmd.nexus:
            return None
        if self.pr.reservation is not None and self.pr.conflict(cmd.nexus, cdb):
            return None
        if write:
            return write_at_hand(self, cdb, cmd.data_out)
        return read_at_hand(self, cdb)

    def range_locked(self, lba: int, count: int) -> bool:
        """Whether a holder of ``lock_range`` holds any block of ``[lba, lba+count)``."""
        end = lba + count
        return any(s < end and lba < e for s, e, _ in self._locked_ranges)

    async def _execute(self, cmd: Command) -> CommandResult:
        cdb = cmd.cdb
        if not cdb:
            return check_condition(SenseKey.ILLEGAL_REQUEST, ASC.INVALID_COMMAND_OPERATION_CODE)
        spec = self.find_command(cdb)
        if spec is None or not spec.allowed_with_unit_attention:
            ua = self.pop_unit_attention(cmd.nexus)
            if ua is not None:
                return check_condition(SenseKey.UNIT_ATTENTION, ua)
        if spec is None:
            if (cdb[0], None) not in self.commands and any(op == cdb[0] for op, _ in self.commands):
                # The opcode exists with other service actions: point at the SA field.
                return CommandResult(
                    status=Status.CHECK_CONDITION, sense=invalid_field_in_cdb(1, 4).sense
                )
            return check_condition(SenseKey.ILLEGAL_REQUEST, ASC.INVALID_COMMAND_OPERATION_CODE)
        if len(cdb) < spec.cdb_length:
            return check_condition(SenseKey.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_CDB)
        # ALUA before reservations (LIO's order): a standby path must say "standby", which
        # multipath treats as a path state, not RESERVATION CONFLICT, which it must not.
        inaccessible = self.alua.access_check(cmd.nexus.relative_target_port_id, spec, cdb)
        if inaccessible is not None:
            return CommandResult(status=Status.CHECK_CONDITION, sense=inaccessible.sense)
        holder = self.scsi2_reservation
        if holder is not None and holder != cmd.nexus and not spec.allowed_with_scsi2_reservation:
            return CommandResult(status=Status.RESERVATION_CONFLICT)
        if self.pr.reservation is not None and self.pr.conflict(cmd.nexus, cdb):
            return CommandResult(status=Status.RESERVATION_CONFLICT)
        try:
            return await spec.handler(self, cmd)
        except CheckCondition as cc:
            return CommandResult(status=Status.CHECK_CONDITION, sense=cc.sense)
        except MediumError as error:
            asc = ASC.WRITE_ERROR if error.write else ASC.UNRECOVERED_READ_ERROR
            return check_condition(SenseKey.MEDIUM_ERROR, asc)
        except SpaceExhausted:
            return check_condition(SenseKey.DATA_PROTECT, ASC.SPACE_ALLOCATION_FAILED_WRITE_PROTECT)
        except DeviceReadOnly:
            return check_condition(SenseKey.DATA_PROTECT, ASC.WRITE_PROTECTED)
        except DeviceNotReady:
            return check_condition(
                SenseKey.NOT_READY, ASC.LOGICAL_UNIT_NOT_READY_CAUSE_NOT_REPORTABLE
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("LUN %d: %s failed", self.lun, spec.name)
            return check_condition(SenseKey.HARDWARE_ERROR, ASC.INTERNAL_TARGET_FAILURE)

    # -- range locks (COMPARE AND WRITE atomicity) -----------------------------------------

    def lock_range(self, lba: int, count: int) -> RangeLock:
        """Hold ``[lba, lba+count)`` against every other holder of an overlapping range.

        Writes and COMPARE AND WRITE both take it, so a COMPARE AND WRITE is atomic against
        every session. The list is as long as the number of writes in flight, and waiters
        retry after any holder they overlap is gone, so the wait is bounded by those writes.
        """
        return RangeLock(self._locked_ranges, lba, lba + count)

    # -- unit attentions -------------------------------------------------------------------

    def establish_unit_attention(
        self, asc: ASC, *, nexuses: Iterable[Nexus] | None = None, exclude: Nexus | None = None
    ) -> None:
        """Queue ``asc`` for the given nexuses (default: every active nexus of the target)."""
        for nexus in self.target.active_nexuses() if nexuses is None else nexuses:
            if nexus == exclude:
                continue
            queue = self._unit_attentions.setdefault(
                nexus, deque(maxlen=MAX_UNIT_ATTENTIONS_PER_NEXUS)
            )
            if asc not in queue:
                queue.append(asc)

    def pop_unit_attention(self, nexus: Nexus) -> ASC | None:
        queue = self._unit_attentions.get(nexus)
        if not queue:
            return None
        asc = queue.popleft()
        if not queue:
            del self._unit_attentions[nexus]
        return asc

    def clear_unit_attention(self, nexus: Nexus, asc: ASC) -> None:
        queue = self._unit_attentions.get(nexus)
        if queue and asc in queue:
            queue.remove(asc)
            if not queue:
                del self._unit_attentions[nexus]

    def has_unit_attention(self, nexus: Nexus) -> bool:
        return bool(self._unit_attentions.get(nexus))

    # -- task management (SAM-5 §7) ----------------------------------------------------------

    def task_exists(self, nexus: Nexus, tag: int) -> bool:
        return (nexus, tag) in self._running

    def abort_task(self, nexus: Nexus, tag: int) -> list[asyncio.Task[object]]:
        """ABORT TASK: the task (if it runs) ends with ``TaskAborted``; await what is returned."""
        running = self._running.get((nexus, tag))
        if running is None:
            return []
        return self._abort([running], report_status=False)

    def abort_task_set(
        self, nexus: Nexus, *, sparing: int | None = None
    ) -> list[asyncio.Task[object]]:
        """ABORT TASK SET: abort every task of this nexus (but the tag ``sparing``), silently
        (SAM-5 §7.3)."""
        mine = [r for r in self._running.values() if r.nexus == nexus and r.tag != sparing]
        return self._abort(mine, report_status=False)

    def clear_task_set(self, nexus: Nexus) -> list[asyncio.Task[object]]:
        """CLEAR TASK SET: abort every task in the (shared) task set (SAM-5 §7.4)."""
        return self._abort_all(nexus)

    def logical_unit_reset(
        self, nexus: Nexus | None, asc: ASC = ASC.BUS_DEVICE_RESET_FUNCTION_OCCURRED
    ) -> list[asyncio.Task[object]]:
        """LOGICAL UNIT RESET (SAM-5 §7.7), also the per-LU part of a target reset.

        Aborts every task, drops the SPC-2 reservation and prevent-removal state, and
        establishes the reset unit attention for every nexus, the requester's included
        (SAM-5 §7.7 e); LIO does the same).
        """
        aborted = self._abort_all(nexus)
        self.scsi2_reservation = None
        self.prevent_removal.clear()
        self.establish_unit_attention(asc)
        return aborted

    def nexus_lost(self, nexus: Nexus) -> None:
        """An I_T nexus is gone: its SPC-2 reservation and pending unit attentions go too."""
        if self.scsi2_reservation == nexus:
            self.scsi2_reservation = None
        self.prevent_removal.discard(nexus)
        self._unit_attentions.pop(nexus, None)

    def _abort_all(self, requester: Nexus | None) -> list[asyncio.Task[object]]:
        mine = [r for r in self._running.values() if r.nexus == requester]
        others = [r for r in self._running.values() if r.nexus != requester]
        tasks = self._abort(mine, report_status=False)
        tasks += self._abort(others, report_status=self.mode.tas)
        if others and not self.mode.tas:
            self.establish_unit_attention(
                ASC.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR, nexuses={r.nexus for r in others}
            )
        return tasks

    def _abort(
        self, victims: list[_RunningTask], *, report_status: bool
    ) -> list[asyncio.Task[object]]:
        tasks: list[asyncio.Task[object]] = []
        for running in victims:
            if running.aborted:
                continue
            running.aborted = True
            running.report_status = report_status
            if running.task is not None and running.task is not asyncio.current_task():
                running.task.cancel()
                tasks.append(running.task)
        return tasks


class RangeLock:
    """``async with`` holder of one block range of a ``LogicalUnit`` (see ``lock_range``).

    A class rather than an ``asynccontextmanager``: mypyc compiles classes, not async
    generators, and a write takes this lock on every command.
    """

    def __init__(self, held: list[tuple[int, int, asyncio.Future[None]]], lba: int, end: int):
        self._held = held
        self._lba = lba
        self._end = end
        self._entry: tuple[int, int, asyncio.Future[None]] | None = None

    async def __aenter__(self) -> None:
        lba, end = self._lba, self._end
        while True:
            blocker = next((f for s, e, f in self._held if s < end and lba < e), None)
            if blocker is None:
                break
            await asyncio.shield(blocker)
        self._entry = (lba, end, asyncio.get_running_loop().create_future())
        self._held.append(self._entry)

    async def __aexit__(self, *exc_info: object) -> None:
        entry = self._entry
        if entry is not None:
            self._entry = None
            self._held.remove(entry)
            entry[2].set_result(None)
