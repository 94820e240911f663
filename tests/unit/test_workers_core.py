"""The coordinator's book and logical units, and the workers' replicas
(``target/workers_core.py``), without processes."""

from __future__ import annotations

import asyncio

from sanstack.block.memory import MemoryDevice
from sanstack.scsi.alua_codec import ALUAState, ALUAStatus
from sanstack.scsi.codes import ASC, Opcode, Status
from sanstack.scsi.command import Command, Nexus
from sanstack.scsi.logical_unit import LogicalUnit
from sanstack.scsi.pr_codec import PROutCdb, PROutParameters, PROutServiceAction, PRScope, PRType
from sanstack.target.model import Portal, PortalGroup, Target
from sanstack.target.workers_core import (
    ATOMIC_COMMANDS,
    FORWARDED_COMMANDS,
    CoordinatorBook,
    CoordinatorUnit,
    Effects,
    alua_states,
    apply_alua_states,
    apply_lun_state,
    lun_state,
)
from sanstack.target.workers_protocol import AbortSets, UnitAttentionFor

TARGET = "iqn.2026-11.org.sanstack:workers"
A = Nexus("iqn.a", 1, TARGET, 1, 1)
B = Nexus("iqn.b", 2, TARGET, 1, 1)


# -- the book --------------------------------------------------------------------------------


def test_connections_go_to_the_live_worker_with_fewest_then_lowest_index() -> None:
    book = CoordinatorBook(3)
    assert book.place() is None
    for index in range(3):
        book.worker_up(index, 100 + index)
    placed = []
    for _ in range(4):
        chosen = book.place()
        assert chosen is not None
        book.connection_placed(chosen, book.next_connection_id())
        placed.append(chosen)
    assert placed == [0, 1, 2, 0]
    book.connection_ended(1, 2)
    assert book.place() == 1
    book.worker_down(1)
    assert book.place() == 2


def test_a_login_of_a_nexus_held_by_another_worker_reinstates_it_there() -> None:
    book = CoordinatorBook(2)
    assert book.session_up(0, 1, A) is None
    assert book.owner_of(A) == 0
    assert book.session_up(1, 2, A) == 0  # moved: worker 0 closes its session
    assert book.owner_of(A) == 1
    assert book.session_down(0, 1) == A  # the old session's end still ends one session
    assert book.owner_of(A) == 1
    assert book.session_up(1, 3, A) is None  # same worker: its own registry reinstates
    assert book.session_down(9, 9) is None


def test_a_dead_worker_ends_each_of_its_sessions_once() -> None:
    book = CoordinatorBook(2)
    for index in range(2):
        book.worker_up(index, 10 + index)
    book.connection_placed(0, 1)
    book.session_up(0, 1, A)
    book.session_up(1, 2, B)
    assert book.worker_down(0) == [A]
    assert book.owner_of(A) is None
    assert book.workers[0].connections == set()
    assert book.session_down(0, 1) is None  # a late SessionDown changes nothing


def test_unit_attentions_go_to_the_worker_holding_each_nexus() -> None:
    book = CoordinatorBook(2)
    book.session_up(0, 1, A)
    book.session_up(1, 2, B)
    gone = Nexus("iqn.c", 3, TARGET, 1, 1)
    notes = [UnitAttentionFor(TARGET, 0, n, ASC.RESERVATIONS_PREEMPTED) for n in (A, B, gone)]
    assert book.route(notes) == {0: [notes[0]], 1: [notes[1]]}


# -- the coordinator's logical units -----------------------------------------------------------


def _target(effects: Effects) -> Target:
    target = Target(TARGET, [PortalGroup(1, [Portal("127.0.0.1", 3260)])])
    device = MemoryDevice(2048, 512)
    target.luns[0] = CoordinatorUnit(0, device, target.info, effects)
    target.nexus_up(A)
    target.nexus_up(B)
    return target


def _prout(
    lu: LogicalUnit,
    nexus: Nexus,
    action: PROutServiceAction,
    tag: int,
    *,
    reservation_key: int = 0,
    service_action_reservation_key: int = 0,
    pr_type: int = 0,
) -> Status:
    parameters = PROutParameters(
        reservation_key=reservation_key,
        service_action_reservation_key=service_action_reservation_key,
    ).encode()
    cdb = PROutCdb(action, PRScope.LU_SCOPE, pr_type, len(parameters)).encode()
    result = asyncio.run(lu.execute(Command(nexus, 0, cdb, tag, data_out=parameters)))
    return result.status


def test_preempt_and_abort_collects_unit_attentions_and_task_sets_for_the_workers() -> None:
    effects = Effects()
    target = _target(effects)
    lu = target.luns[0]
    register = PROutServiceAction.REGISTER
    assert _prout(lu, A, register, 1, service_action_reservation_key=0xA) == Status.GOOD
    assert _prout(lu, B, register, 2, service_action_reservation_key=0xB) == Status.GOOD
    we = PRType.WRITE_EXCLUSIVE
    reserve = PROutServiceAction.RESERVE
    assert _prout(lu, A, reserve, 3, reservation_key=0xA, pr_type=we) == Status.GOOD
    assert not effects
    status = _prout(
        lu,
        B,
        PROutServiceAction.PREEMPT_AND_ABORT,
        4,
        reservation_key=0xB,
        service_action_reservation_key=0xA,
        pr_type=we,
    )
    assert status == Status.GOOD
    taken = effects.take()
    assert not effects
    assert UnitAttentionFor(TARGET, 0, A, ASC.REGISTRATIONS_PREEMPTED) in taken.unit_attentions
    assert taken.aborts == [AbortSets(TARGET, 0, (A,), B, -1)]
    # Nothing stayed queued here: the coordinator's units hold no nexus's unit attentions.
    assert not lu.has_unit_attention(A)


def test_an_operator_alua_change_reaches_every_nexus_through_the_effects() -> None:
    effects = Effects()
    target = _target(effects)
    assert target.set_alua_state(1, ALUAState.STANDBY)
    asc = ASC.ASYMMETRIC_ACCESS_STATE_CHANGED
    assert sorted(effects.take().unit_attentions, key=lambda u: u.nexus.isid) == [
        UnitAttentionFor(TARGET, 0, A, asc),
        UnitAttentionFor(TARGET, 0, B, asc),
    ]


# -- replicas ----------------------------------------------------------------------------------


def test_a_replica_takes_the_reservations_and_the_alua_state() -> None:
    effects = Effects()
    source = _target(effects)
    lu = source.luns[0]
    register = PROutServiceAction.REGISTER
    _prout(lu, A, register, 1, service_action_reservation_key=0xA)
    ea = PRType.EXCLUSIVE_ACCESS
    _prout(lu, A, PROutServiceAction.RESERVE, 2, reservation_key=0xA, pr_type=ea)
    lu.scsi2_reservation = B
    lu.mode.tas = True
    lu.mode.d_sense = True
    source.set_alua_state(1, ALUAState.ACTIVE_NON_OPTIMIZED)

    replica = Target(TARGET, [PortalGroup(1, [Portal("127.0.0.1", 3260)])])
    copy = replica.add_lun(0, MemoryDevice(2048, 512))
    apply_lun_state(copy, lun_state(TARGET, lu))
    apply_alua_states(replica.alua, alua_states(TARGET, source.alua))

    read = bytes([Opcode.READ_10]) + bytes(9)
    assert copy.pr.conflict(B, read)
    assert not copy.pr.conflict(A, read)
    assert copy.pr.generation == lu.pr.generation
    assert copy.scsi2_reservation == B
    assert (copy.mode.tas, copy.mode.d_sense, copy.mode.wce) == (True, True, lu.mode.wce)
    group = replica.alua.group(1)
    assert (group.state, group.status) == (
        ALUAState.ACTIVE_NON_OPTIMIZED,
        ALUAStatus.CHANGED_IMPLICITLY,
    )


def test_the_forwarded_commands_are_all_in_the_command_table() -> None:
    from sanstack.scsi.command_table import command_table

    table = command_table()
    assert {table[key].name for key in ATOMIC_COMMANDS} == {"COMPARE AND WRITE"}
    assert {table[key].name for key in FORWARDED_COMMANDS} == {
        "PERSISTENT RESERVE IN",
        "PERSISTENT RESERVE OUT",
        "RESERVE(6)",
        "RELEASE(6)",
        "RESERVE(10)",
        "RELEASE(10)",
        "SET TARGET PORT GROUPS",
        "MODE SELECT(6)",
        "MODE SELECT(10)",
    }
