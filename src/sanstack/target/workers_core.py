"""The state a target's coordinator and workers share, without I/O (``workers_protocol.py``).

``CoordinatorBook`` is the coordinator's table of workers, connections and sessions: where
the next connection goes (the live worker with the fewest, the lowest index on a tie, so a
test knows where each session lands), which worker holds each I_T nexus (so a unit attention
reaches it, and a login that reinstates a nexus held by another worker closes the old
session there), and which sessions end when a worker dies.

``CoordinatorUnit`` is the coordinator's logical unit: it runs the PR and SPC-2 reservation
and STPG commands the workers forward, with the same code as a single process, but the unit
attentions and PREEMPT AND ABORT's task sets it would act on are collected (``Effects``) to
be carried out by the workers that hold those nexuses. ``lun_state``/``apply_lun_state`` and
``alua_states``/``apply_alua_states`` copy the shared state to a worker's replica.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from sanstack.block.device import BlockDevice
from sanstack.iscsi.target_events import ConnectionSettings
from sanstack.scsi.alua import ALUAGroups
from sanstack.scsi.alua_codec import ALUAState, ALUAStatus
from sanstack.scsi.codes import ASC, MaintenanceOut, Opcode
from sanstack.scsi.command import Nexus
from sanstack.scsi.logical_unit import LogicalUnit, ReservationStore, TargetInfo
from sanstack.scsi.mode import ModeParameters
from sanstack.scsi.pr import PersistentReservations
from sanstack.target.config import TargetSpec
from sanstack.target.workers_protocol import (
    AbortSets,
    AluaGroupState,
    LunState,
    UnitAttentionFor,
)

# The commands of the state every worker must agree on (reservations, ALUA, mode pages),
# by (opcode, service action) as the command table keys them: they run in the coordinator.
FORWARDED_COMMANDS: frozenset[tuple[int, int | None]] = frozenset(
    {
        (Opcode.PERSISTENT_RESERVE_IN, None),
        (Opcode.PERSISTENT_RESERVE_OUT, None),
        (Opcode.RESERVE_6, None),
        (Opcode.RELEASE_6, None),
        (Opcode.RESERVE_10, None),
        (Opcode.RELEASE_10, None),
        (Opcode.MAINTENANCE_OUT, MaintenanceOut.SET_TARGET_PORT_GROUPS),
        (Opcode.MODE_SELECT_6, None),
        (Opcode.MODE_SELECT_10, None),
    }
)
# Commands that change no shared state but must be atomic against each other in every
# worker: COMPARE AND WRITE (VMware's ATS locks) runs in the coordinator under its range
# lock, outside the shared-state lock. (Against plain WRITEs in other workers it is not.)
ATOMIC_COMMANDS: frozenset[tuple[int, int | None]] = frozenset({(Opcode.COMPARE_AND_WRITE, None)})


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What a worker needs besides its sockets, pickled on its stdin by the
    coordinator (here, not in ``worker_process``, which runs as ``__main__`` there)."""

    specs: list[TargetSpec]
    settings: ConnectionSettings
    workers: int
    log_level: int
    # (target, LUN) -> the coordinator's locked descriptor of the file (``shared_files.py``).
    files: dict[tuple[str, int], int] = field(default_factory=dict)

    def to_plain(self) -> tuple[object, ...]:
        """Plain values for ``pickle``: compiled by mypyc, a frozen dataclass (this one,
        ``ConnectionSettings``) cannot be unpickled."""
        s = self.settings
        settings = (s.command_window, s.login_timeout, s.nop_in_interval, s.nop_in_timeout)
        return (self.specs, settings, self.workers, self.log_level, self.files)

    @classmethod
    def from_plain(cls, plain: object) -> WorkerSetup:
        """``to_plain``'s inverse; ValueError if ``plain`` is not what it makes."""
        try:
            fields = cast("tuple[Any, Any, Any, Any, Any]", plain)
            specs, settings, workers, log_level, files = fields
            window, login_timeout, nop_interval, nop_timeout = settings
            return cls(
                list(specs),
                ConnectionSettings(window, login_timeout, nop_interval, nop_timeout),
                int(workers),
                int(log_level),
                dict(files),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"stdin holds no worker setup ({exc})") from None


# -- the coordinator's book ------------------------------------------------------------------


@dataclass(slots=True)
class WorkerEntry:
    index: int
    alive: bool = False
    pid: int | None = None
    connections: set[int] = field(default_factory=set)


class CoordinatorBook:
    """Workers, the connections handed to each, and the I_T nexuses each holds."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("a coordinator needs at least one worker")
        self.workers = [WorkerEntry(i) for i in range(workers)]
        self._next_connection = 1
        # (worker, connection) -> nexus, one per logged-in session.
        self.sessions: dict[tuple[int, int], Nexus] = {}
        # The newest session of each nexus: where its unit attentions go.
        self._owners: dict[Nexus, tuple[int, int]] = {}

    def next_connection_id(self) -> int:
        connection = self._next_connection
        self._next_connection += 1
        return connection

    def place(self) -> int | None:
        """The live worker with the fewest connections (lowest index on a tie), or None."""
        alive = [w for w in self.workers if w.alive]
        if not alive:
            return None
        return min(alive, key=lambda w: (len(w.connections), w.index)).index

    def worker_up(self, index: int, pid: int) -> None:
        entry = self.workers[index]
        entry.alive = True
        entry.pid = pid

    def worker_down(self, index: int) -> list[Nexus]:
        """The worker is gone: its connections with it; the nexuses of its sessions, each
        once per session, are returned to be ended."""
        entry = self.workers[index]
        entry.alive = False
        entry.pid = None
        entry.connections.clear()
        ended = [key for key in self.sessions if key[0] == index]
        return [self._forget(key) for key in ended]

    def connection_placed(self, index: int, connection: int) -> None:
        self.workers[index].connections.add(connection)

    def connection_ended(self, index: int, connection: int) -> None:
        self.workers[index].connections.discard(connection)

    def session_up(self, index: int, connection: int, nexus: Nexus) -> int | None:
        """Record a login; the worker that holds the same nexus elsewhere (to be reinstated
        there, RFC 7143 §6.3.5), or None when it is new or held by this same worker (whose
        registry reinstates it itself)."""
        previous = self._owners.get(nexus)
        self.sessions[(index, connection)] = nexus
        self._owners[nexus] = (index, connection)
        if previous is not None and previous[0] != index:
            return previous[0]
        return None

    def session_down(self, index: int, connection: int) -> Nexus | None:
        """Forget a session; its nexus if it was recorded (to be ended once), else None."""
        if (index, connection) not in self.sessions:
            return None
        return self._forget((index, connection))

    def _forget(self, key: tuple[int, int]) -> Nexus:
        nexus = self.sessions.pop(key)
        if self._owners.get(nexus) == key:
            del self._owners[nexus]
        return nexus

    def owner_of(self, nexus: Nexus) -> int | None:
        owner = self._owners.get(nexus)
        return None if owner is None else owner[0]

    def route(self, notes: Iterable[UnitAttentionFor]) -> dict[int, list[UnitAttentionFor]]:
        """Unit attentions by the worker holding each nexus; those of nexuses no worker
        holds are dropped (a single process only queues them for live nexuses too)."""
        routed: dict[int, list[UnitAttentionFor]] = {}
        for note in notes:
            owner = self.owner_of(note.nexus)
            if owner is not None:
                routed.setdefault(owner, []).append(note)
        return routed


# -- the coordinator's logical units ---------------------------------------------------------


@dataclass(slots=True)
class Effects:
    """What forwarded commands established, to be carried out by the workers."""

    unit_attentions: list[UnitAttentionFor] = field(default_factory=list)
    aborts: list[AbortSets] = field(default_factory=list)

    def take(self) -> Effects:
        taken = Effects(self.unit_attentions, self.aborts)
        self.unit_attentions, self.aborts = [], []
        return taken

    def __bool__(self) -> bool:
        return bool(self.unit_attentions or self.aborts)


class CoordinatorUnit(LogicalUnit):
    """A logical unit whose unit attentions and aborted task sets are the workers' to carry
    out: it runs no data-path command and holds no nexus's tasks."""

    def __init__(
        self,
        lun: int,
        device: BlockDevice,
        target: TargetInfo,
        effects: Effects,
        reservation_store: ReservationStore | None = None,
    ) -> None:
        super().__init__(lun, device, target, reservation_store)
        self.effects = effects

    def establish_unit_attention(
        self, asc: ASC, *, nexuses: Iterable[Nexus] | None = None, exclude: Nexus | None = None
    ) -> None:
        for nexus in self.target.active_nexuses() if nexuses is None else nexuses:
            if nexus != exclude:
                note = UnitAttentionFor(self.target.target_name, self.lun, nexus, int(asc))
                self.effects.unit_attentions.append(note)

    async def abort_task_sets(
        self, nexuses: Iterable[Nexus], *, requester: Nexus, requester_tag: int | None = None
    ) -> None:
        self.effects.aborts.append(
            AbortSets(
                self.target.target_name,
                self.lun,
                tuple(nexuses),
                requester,
                -1 if requester_tag is None else requester_tag,
            )
        )


# -- replicas --------------------------------------------------------------------------------


def lun_state(target_name: str, lu: LogicalUnit) -> LunState:
    mode = {f.name: getattr(lu.mode, f.name) for f in dataclasses.fields(ModeParameters)}
    return LunState(target_name, lu.lun, lu.pr.to_dict(), lu.scsi2_reservation, mode)


def apply_lun_state(lu: LogicalUnit, state: LunState) -> None:
    """Make a worker's LUN agree with the coordinator's (ValueError for a bad document)."""
    lu.pr = PersistentReservations.from_dict(state.pr, max_registrations=lu.pr.max_registrations)
    lu.scsi2_reservation = state.scsi2
    for mode_field in dataclasses.fields(ModeParameters):
        value = state.mode.get(mode_field.name)
        current = getattr(lu.mode, mode_field.name)
        if type(value) is type(current):
            setattr(lu.mode, mode_field.name, value)


def alua_states(target_name: str, groups: ALUAGroups) -> list[AluaGroupState]:
    return [
        AluaGroupState(target_name, g.group_id, int(g.state), int(g.status), g.preferred)
        for g in groups.groups
    ]


def apply_alua_states(groups: ALUAGroups, states: Iterable[AluaGroupState]) -> None:
    """Set each named group's state, status and PREF bit (ValueError for an unknown code)."""
    for state in states:
        try:
            group = groups.group(state.group_id)
        except KeyError:
            continue  # a group the worker's configuration does not have: nothing to replicate
        group.state = ALUAState(state.state)
        group.status = ALUAStatus(state.status)
        group.preferred = state.preferred
