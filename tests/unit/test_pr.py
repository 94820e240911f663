"""Scenarios for the persistent reservation engine ``sanstack.scsi.pr``: every PERSISTENT
RESERVE OUT service action, the access and ownership each reservation type gives, and
PERSISTENT RESERVE IN. Conflicts with other commands are in test_pr_conflicts.py, APTPL
persistence in test_pr_persistence.py.

The access and ownership expectations mirror libiscsi's iscsi-test-cu suites
(test_prout_reserve_access.c, test_prout_reserve_ownership.c, test_prout_register_simple.c,
test_prout_clear_simple.c, test_prout_preempt.c, test_prin_read_keys_truncate.c,
test_prin_report_caps.c, test_prin_serviceaction_range.c); the fencing flow is fence_scsi's.
"""

from __future__ import annotations

import pytest
from tests.support.pr_harness import (
    EA,
    EAAR,
    EARO,
    LU,
    NODE_A,
    NODE_B,
    NODE_C,
    SA,
    WE,
    WEAR,
    WERO,
    A,
    B,
    C,
    at,
    conflict,
    good,
)

from sanstack.scsi.codes import ASC, SenseKey
from sanstack.scsi.pr import ITNexus, PersistentReservations, Registration, Reservation
from sanstack.scsi.pr_codec import (
    FullStatusDescriptor,
    PRInCdb,
    PRInServiceAction,
    PROutCdb,
    PROutParameters,
    PRType,
    ReadFullStatusData,
    ReadKeysData,
    ReadReservationData,
    RegisterAndMoveParameters,
    ReportCapabilitiesData,
    TransportID,
)
from sanstack.scsi.sense import CheckCondition, field_pointer

# -- REGISTER ----------------------------------------------------------------------------


def test_register_simple() -> None:
    """ProutRegister.Simple: register, re-register with the wrong key conflicts, unregister."""
    lu = LU()
    lu.register(A, 0x1111)
    assert lu.keys().reservation_keys == (0x1111,)
    conflict(lu.out(A, SA.REGISTER, 0, 0x1112))  # RESERVATION KEY 0 is not the registered one
    good(lu.out(A, SA.REGISTER, 0x1111, 0))
    assert lu.keys().reservation_keys == ()


def test_register_rules() -> None:
    lu = LU()
    conflict(lu.out(A, SA.REGISTER, 5, 6))  # unregistered with a non-zero RESERVATION KEY
    good(lu.out(A, SA.REGISTER, 0, 0))  # unregistered, key zero: GOOD, nothing registered
    assert lu.keys() == ReadKeysData(1)
    good(lu.out(A, SA.REGISTER, 0, 6))
    good(lu.out(A, SA.REGISTER, 6, 7))  # change the key
    good(lu.out(A, SA.REGISTER_AND_IGNORE_EXISTING_KEY, 99, 8))  # RESERVATION KEY ignored
    assert lu.keys() == ReadKeysData(4, (8,))
    assert lu.pr.registration_of(A) == Registration(ITNexus(NODE_A, 1, 1), 8)


def test_a_new_isid_is_a_new_nexus() -> None:
    lu = LU()
    lu.register(A, 1)
    good(lu.out(A, SA.RESERVE, 1, 0, EA))
    relogin = at(NODE_A, 0x2)
    assert lu.pr.registration_of(relogin) is None
    assert not lu.can_read(relogin) and lu.can_read(A)
    conflict(lu.out(relogin, SA.RELEASE, 1, 0, EA))


def test_names_compare_without_case() -> None:
    lu = LU()
    lu.register(A, 1)
    assert lu.pr.registration_of(at(NODE_A.upper(), 0x1)) is not None


def test_insufficient_registration_resources() -> None:
    lu = LU(pr=PersistentReservations(max_registrations=2))
    lu.register(A, 1)
    lu.register(B, 2)
    with pytest.raises(CheckCondition) as caught:
        lu.out(C, SA.REGISTER, 0, 3)
    assert caught.value.asc is ASC.INSUFFICIENT_REGISTRATION_RESOURCES
    assert lu.keys().reservation_keys == (1, 2)


# -- generation ----------------------------------------------------------------------------


def test_generation_counts_register_clear_preempt_not_reserve_release() -> None:
    """ProutClear.Simple: CLEAR adds one, RESERVE does not; errors and conflicts add none."""
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    assert lu.keys().prgeneration == 2
    good(lu.out(A, SA.RESERVE, 1, 0, EA))
    good(lu.out(A, SA.RELEASE, 1, 0, EA))
    conflict(lu.out(C, SA.RESERVE, 3, 0, EA))
    with pytest.raises(CheckCondition):
        lu.out(A, SA.RESERVE, 1, 0, 2)
    assert lu.keys().prgeneration == 2
    good(lu.out(B, SA.PREEMPT, 2, 1, EA))
    assert lu.keys().prgeneration == 3
    lu.register(A, 1)
    good(lu.out(A, SA.CLEAR, 1))
    assert lu.keys() == ReadKeysData(5)


# -- RESERVE / RELEASE ---------------------------------------------------------------------


@pytest.mark.parametrize("pr_type", list(PRType))
def test_reserve_and_release_each_type(pr_type: PRType) -> None:
    """ProutReserve.Simple and PrinReportCapabilities.Simple: reserve, read it back (key zero
    for the all registrants types), release."""
    lu = LU()
    lu.register(A, 0xAA)
    good(lu.out(A, SA.RESERVE, 0xAA, 0, pr_type))
    expected_key = 0 if pr_type.all_registrants else 0xAA
    assert lu.reservation() == ReadReservationData(1, expected_key, 0, pr_type)
    good(lu.out(A, SA.RESERVE, 0xAA, 0, pr_type))  # the holder repeating itself
    good(lu.out(A, SA.RELEASE, 0xAA, 0, pr_type))
    assert lu.reservation() == ReadReservationData(1)


def test_reserve_conflicts() -> None:
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    conflict(lu.out(C, SA.RESERVE, 0, 0, WE))  # not registered
    conflict(lu.out(A, SA.RESERVE, 2, 0, WE))  # not its key
    good(lu.out(A, SA.RESERVE, 1, 0, WE))
    conflict(lu.out(A, SA.RESERVE, 1, 0, EA))  # the holder changing the type
    conflict(lu.out(B, SA.RESERVE, 2, 0, WE))  # someone else
    assert lu.reservation().reservation_key == 1


@pytest.mark.parametrize(
    ("cdb_type", "scope", "byte", "bit"), [(2, 0, 2, 3), (9, 0, 2, 3), (1, 1, 2, 7)]
)
def test_reserve_field_errors(cdb_type: int, scope: int, byte: int, bit: int) -> None:
    lu = LU()
    lu.register(A, 1)
    with pytest.raises(CheckCondition) as caught:
        lu.out(A, SA.RESERVE, 1, 0, cdb_type, scope=scope)
    assert caught.value.asc is ASC.INVALID_FIELD_IN_CDB
    assert caught.value.sense_key_specific == field_pointer(byte, bit)


def test_release_rules() -> None:
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    good(lu.out(A, SA.RELEASE, 1, 0, WE))  # nothing reserved: GOOD
    good(lu.out(A, SA.RESERVE, 1, 0, WERO))
    conflict(lu.out(C, SA.RELEASE, 0, 0, WERO))  # not registered
    conflict(lu.out(A, SA.RELEASE, 2, 0, WERO))  # not its key
    assert good(lu.out(B, SA.RELEASE, 2, 0, WERO)).changed is False  # not the holder
    with pytest.raises(CheckCondition) as caught:
        lu.out(A, SA.RELEASE, 1, 0, WE)
    assert caught.value.key is SenseKey.ILLEGAL_REQUEST
    assert caught.value.asc is ASC.INVALID_RELEASE_OF_PERSISTENT_RESERVATION
    outcome = good(lu.out(A, SA.RELEASE, 1, 0, WERO))
    assert outcome.unit_attentions == [(B, ASC.RESERVATIONS_RELEASED)]
    assert outcome.changed


@pytest.mark.parametrize(("pr_type", "tells_others"), [(t, t not in (WE, EA)) for t in PRType])
def test_release_unit_attention_by_type(pr_type: PRType, tells_others: bool) -> None:
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    good(lu.out(A, SA.RESERVE, 1, 0, pr_type))
    outcome = good(lu.out(A, SA.RELEASE, 1, 0, pr_type))
    assert outcome.unit_attentions == ([(B, ASC.RESERVATIONS_RELEASED)] if tells_others else [])


# -- access (ProutReserve.Access*) ----------------------------------------------------------

# reservation type -> (registered I2 reads, writes, unregistered I2 reads, writes)
ACCESS = {
    EA: (False, False, False, False),
    WE: (True, False, True, False),
    EARO: (True, True, False, False),
    WERO: (True, True, True, False),
    EAAR: (True, True, False, False),
    WEAR: (True, True, True, False),
}


@pytest.mark.parametrize("pr_type", list(PRType))
def test_access(pr_type: PRType) -> None:
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    good(lu.out(A, SA.RESERVE, 1, 0, pr_type))
    assert lu.can_read(A) and lu.can_write(A)
    reg_read, reg_write, unreg_read, unreg_write = ACCESS[pr_type]
    assert (lu.can_read(B), lu.can_write(B)) == (reg_read, reg_write)
    outcome = good(lu.out(B, SA.REGISTER, 2, 0))
    assert outcome.unit_attentions == []  # so B's next READ is not a UNIT ATTENTION
    assert (lu.can_read(B), lu.can_write(B)) == (unreg_read, unreg_write)
    good(lu.out(A, SA.RELEASE, 1, 0, pr_type))
    good(lu.out(A, SA.REGISTER, 1, 0))
    assert lu.can_write(B)


# -- ownership (ProutReserve.Ownership*) ------------------------------------------------------


@pytest.mark.parametrize("pr_type", list(PRType))
def test_ownership_when_the_holder_unregisters(pr_type: PRType) -> None:
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    good(lu.out(A, SA.RESERVE, 1, 0, pr_type))
    outcome = good(lu.out(A, SA.REGISTER, 1, 0))
    # The unregistering I_T nexus never gets a unit attention: its next PRIN must be GOOD.
    assert all(nexus != A for nexus, _ in outcome.unit_attentions)
    if pr_type.all_registrants:
        # LIO "Avoid dropping AllRegistrants reservation during unregister".
        assert lu.reservation() == ReadReservationData(3, 0, 0, pr_type)
        assert outcome.unit_attentions == []
        good(lu.out(B, SA.RELEASE, 2, 0, pr_type))
    else:
        assert lu.reservation() == ReadReservationData(3)
        expected = [(B, ASC.RESERVATIONS_RELEASED)] if pr_type.registrants_only else []
        assert outcome.unit_attentions == expected
    good(lu.out(B, SA.REGISTER, 2, 0))
    assert lu.pr.registrations == ()


def test_all_registrants_reservation_ends_with_its_last_registrant() -> None:
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    good(lu.out(B, SA.RESERVE, 2, 0, EAAR))
    good(lu.out(B, SA.REGISTER, 2, 0))
    assert lu.pr.is_holder(A) and not lu.pr.is_holder(B)
    assert not lu.can_read(B)
    good(lu.out(A, SA.REGISTER, 1, 0))
    assert lu.pr.reservation is None
    assert lu.can_read(B)


# -- CLEAR, PREEMPT ------------------------------------------------------------------------


def test_clear() -> None:
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    good(lu.out(A, SA.RESERVE, 1, 0, EA))
    conflict(lu.out(C, SA.CLEAR, 3))
    conflict(lu.out(B, SA.CLEAR, 1))
    outcome = good(lu.out(B, SA.CLEAR, 2))
    assert outcome.unit_attentions == [(A, ASC.RESERVATIONS_PREEMPTED)]
    assert lu.reservation() == ReadReservationData(3)
    assert lu.keys().reservation_keys == ()


def test_preempt_removes_registrations_without_a_reservation() -> None:
    """ProutPreempt.RemoveRegistration: k2 preempts k1; generation +1; k2 remains."""
    lu = LU()
    lu.register(A, 0x11)
    lu.register(B, 0x22)
    outcome = good(lu.out(B, SA.PREEMPT, 0x22, 0x11, EA))
    assert outcome.unit_attentions == [(A, ASC.REGISTRATIONS_PREEMPTED)]
    assert lu.keys() == ReadKeysData(3, (0x22,))
    assert lu.pr.reservation is None


def test_preempt_rules() -> None:
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    lu.register(C, 2)
    conflict(lu.out(A, SA.PREEMPT, 1, 9, WE))  # nobody holds key 9
    conflict(lu.out(A, SA.PREEMPT, 5, 2, WE))  # not the sender's key
    with pytest.raises(CheckCondition) as caught:
        lu.out(A, SA.PREEMPT, 1, 0, WE)  # zero without an all registrants reservation
    assert caught.value.asc is ASC.INVALID_FIELD_IN_PARAMETER_LIST
    assert caught.value.sense_key_specific == field_pointer(8, in_cdb=False)
    good(lu.out(B, SA.RESERVE, 2, 0, WE))
    # Preempting the holder's key: every other I_T nexus with key 2 goes, A takes over.
    outcome = good(lu.out(A, SA.PREEMPT, 1, 2, EARO))
    assert sorted(outcome.unit_attentions, key=str) == [
        (B, ASC.REGISTRATIONS_PREEMPTED),
        (C, ASC.REGISTRATIONS_PREEMPTED),
    ]
    assert lu.reservation() == ReadReservationData(4, 1, 0, EARO)


def test_self_preempt_changes_the_type_and_tells_the_others() -> None:
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    good(lu.out(A, SA.RESERVE, 1, 0, WE))
    outcome = good(lu.out(A, SA.PREEMPT, 1, 1, EA))
    assert outcome.unit_attentions == [(B, ASC.RESERVATIONS_RELEASED)]
    assert lu.reservation() == ReadReservationData(3, 1, 0, EA)
    assert lu.keys().reservation_keys == (1, 2)
    same = good(lu.out(A, SA.PREEMPT, 1, 1, EA))
    assert same.unit_attentions == []


def test_preempt_of_a_non_holder_key_keeps_the_reservation() -> None:
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    lu.register(C, 3)
    good(lu.out(A, SA.RESERVE, 1, 0, WERO))
    outcome = good(lu.out(B, SA.PREEMPT, 2, 3, EA))  # SCOPE and TYPE ignored here
    assert outcome.unit_attentions == [(C, ASC.REGISTRATIONS_PREEMPTED)]
    assert lu.reservation() == ReadReservationData(4, 1, 0, WERO)


def test_preempt_all_registrants_with_key_zero() -> None:
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    lu.register(C, 3)
    good(lu.out(A, SA.RESERVE, 1, 0, WEAR))
    outcome = good(lu.out(B, SA.PREEMPT_AND_ABORT, 2, 0, WE))
    assert sorted(outcome.unit_attentions, key=str) == [
        (A, ASC.REGISTRATIONS_PREEMPTED),
        (C, ASC.REGISTRATIONS_PREEMPTED),
    ]
    assert set(outcome.abort_nexuses) == {A, B, C}  # every registered I_T nexus
    assert lu.reservation() == ReadReservationData(4, 2, 0, WE)
    assert lu.keys().reservation_keys == (2,)


def test_preempt_all_registrants_with_a_key_removes_only_it() -> None:
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    good(lu.out(A, SA.RESERVE, 1, 0, EAAR))
    good(lu.out(A, SA.PREEMPT, 1, 2, EAAR))
    assert lu.reservation() == ReadReservationData(3, 0, 0, EAAR)
    good(lu.out(A, SA.PREEMPT, 1, 1, EAAR))  # itself, the last registrant
    assert lu.pr.reservation is None and lu.pr.registrations == ()


def test_fence_scsi_flow() -> None:
    """Two nodes, each registered through two target ports with its own key (open-iscsi
    logs in once per portal, each session with its own ISID). Node A reserves Write Exclusive
    Registrants Only; node B fences A with PREEMPT AND ABORT: A's writes conflict on every
    path, its reads still pass, and its tasks are aborted on both paths."""
    a1, a2 = at(NODE_A, 0x11, 1), at(NODE_A, 0x12, 2)
    b1, b2 = at(NODE_B, 0x21, 1), at(NODE_B, 0x22, 2)
    lu = LU(active=[a1, a2, b1, b2])
    for nexus in (a1, a2):
        lu.register(nexus, 0xA)
    for nexus in (b1, b2):
        lu.register(nexus, 0xB)
    good(lu.out(a1, SA.RESERVE, 0xA, 0, WERO))
    assert all(lu.can_write(n) for n in (a1, a2, b1, b2))
    outcome = good(lu.out(b1, SA.PREEMPT_AND_ABORT, 0xB, 0xA, WERO))
    assert outcome.abort_nexuses == [a1, a2]
    assert outcome.unit_attentions == [
        (a1, ASC.REGISTRATIONS_PREEMPTED),
        (a2, ASC.REGISTRATIONS_PREEMPTED),
    ]
    assert lu.reservation() == ReadReservationData(5, 0xB, 0, WERO)
    assert not lu.can_write(a1) and not lu.can_write(a2)
    assert lu.can_read(a1) and lu.can_read(a2)
    assert lu.can_write(b1) and lu.can_write(b2)
    # The fenced node can no longer fence back ("an ejected node cannot eject another").
    conflict(lu.out(a2, SA.PREEMPT_AND_ABORT, 0xA, 0xB, WERO))
    # It may register again (unfencing), which lets it write under WERO.
    lu.register(a1, 0xA)
    assert lu.can_write(a1) and not lu.can_write(a2)


# -- REGISTER AND MOVE -------------------------------------------------------------------------


def test_register_and_move() -> None:
    b2 = at(NODE_B, 0x2, 2)
    lu = LU(active=[A, B, C, b2])
    lu.register(A, 1)
    good(lu.out(A, SA.RESERVE, 1, 0, EA))
    outcome = good(
        lu.move(A, RegisterAndMoveParameters(1, 0xB2, 2, TransportID(NODE_B, 0x2), unreg=True))
    )
    assert outcome.unit_attentions == [] and outcome.changed
    assert lu.reservation() == ReadReservationData(2, 0xB2, 0, EA)
    assert lu.pr.registration_of(A) is None
    assert lu.pr.is_holder(b2) and not lu.pr.is_holder(B)
    assert lu.pr.reservation == Reservation(ITNexus(NODE_B, 2, 2), EA)


def test_register_and_move_onto_a_registered_nexus_keeps_the_mover() -> None:
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    good(lu.out(A, SA.RESERVE, 1, 0, WE))
    good(lu.move(A, RegisterAndMoveParameters(1, 7, 1, TransportID(NODE_B, 0x2), aptpl=True)))
    assert lu.keys().reservation_keys == (1, 7)
    assert lu.pr.is_holder(B) and lu.pr.aptpl


@pytest.mark.parametrize(
    ("parameters", "byte"),
    [
        (RegisterAndMoveParameters(1, 0, 1, TransportID(NODE_B, 2)), 8),
        (RegisterAndMoveParameters(1, 5, 3, TransportID(NODE_B, 2)), 18),
        (RegisterAndMoveParameters(1, 5, 2, TransportID(NODE_A, 1)), 24),
        (RegisterAndMoveParameters(1, 5, 2, TransportID(NODE_A)), 24),
    ],
)
def test_register_and_move_field_errors(parameters: RegisterAndMoveParameters, byte: int) -> None:
    lu = LU()
    lu.register(A, 1)
    good(lu.out(A, SA.RESERVE, 1, 0, WE))
    with pytest.raises(CheckCondition) as caught:
        lu.move(A, parameters)
    assert caught.value.asc is ASC.INVALID_FIELD_IN_PARAMETER_LIST
    assert caught.value.sense_key_specific == field_pointer(byte, in_cdb=False)


def test_register_and_move_conflicts() -> None:
    lu = LU()
    move = RegisterAndMoveParameters(1, 5, 1, TransportID(NODE_C, 3))
    conflict(lu.move(A, move))  # not registered
    lu.register(A, 1)
    lu.register(B, 2)
    conflict(lu.move(A, move))  # nothing reserved
    good(lu.out(B, SA.RESERVE, 2, 0, WE))
    conflict(lu.move(A, move))  # not the holder
    good(lu.out(B, SA.RELEASE, 2, 0, WE))
    good(lu.out(A, SA.RESERVE, 1, 0, WEAR))
    conflict(lu.move(A, move))  # an all registrants reservation cannot move


# -- SPEC_I_PT and ALL_TG_PT ---------------------------------------------------------------------


def test_spec_i_pt_registers_the_named_initiator_ports() -> None:
    lu = LU()
    outcome = good(
        lu.out(A, SA.REGISTER, 0, 0x55, transport_ids=(TransportID(NODE_B, 2), TransportID(NODE_C)))
    )
    assert outcome.changed
    assert [r.nexus for r in lu.pr.registrations] == [
        ITNexus(NODE_A, 1, 1),
        ITNexus(NODE_B, 2, 1),
        ITNexus(NODE_C, None, 1),
    ]
    assert lu.keys() == ReadKeysData(1, (0x55, 0x55, 0x55))
    # The device-wide TransportID registered every ISID of node C on port 1, and only there.
    assert lu.pr.registration_of(at(NODE_C, 0x77)) is not None
    assert lu.pr.registration_of(at(NODE_C, 0x77, 2)) is None
    # Its I_T nexuses act through that one registration.
    good(lu.out(at(NODE_C, 0x77), SA.RESERVE, 0x55, 0, WE))
    assert lu.pr.is_holder(C)


def test_spec_i_pt_with_all_tg_pt() -> None:
    lu = LU()
    good(lu.out(A, SA.REGISTER, 0, 9, all_tg_pt=True, transport_ids=(TransportID(NODE_B, 2),)))
    assert {r.nexus for r in lu.pr.registrations} == {
        ITNexus(NODE_A, 1, 1),
        ITNexus(NODE_A, 1, 2),
        ITNexus(NODE_B, 2, 1),
        ITNexus(NODE_B, 2, 2),
    }


def test_spec_i_pt_errors() -> None:
    lu = LU()
    lu.register(B, 2)
    with pytest.raises(CheckCondition) as caught:  # names a registered I_T nexus
        lu.out(A, SA.REGISTER, 0, 1, transport_ids=(TransportID(NODE_B, 2),))
    assert caught.value.asc is ASC.INVALID_FIELD_IN_PARAMETER_LIST
    with pytest.raises(CheckCondition):  # overlaps one: node B's device on port 1
        lu.out(A, SA.REGISTER, 0, 1, transport_ids=(TransportID(NODE_B),))
    with pytest.raises(CheckCondition) as caught:  # only REGISTER carries SPEC_I_PT
        lu.out(A, SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, 1, transport_ids=(TransportID(NODE_C),))
    assert caught.value.sense_key_specific == field_pointer(20, 3, in_cdb=False)
    with pytest.raises(CheckCondition) as caught:  # SPEC_I_PT from a registered I_T nexus
        lu.out(B, SA.REGISTER, 2, 3, transport_ids=(TransportID(NODE_C),))
    assert caught.value.sense_key_specific == field_pointer(20, 3, in_cdb=False)
    with pytest.raises(CheckCondition) as caught:  # SPEC_I_PT but no TransportID length
        lu.raw_out(C, PROutCdb(SA.REGISTER, 0, 0, 24).encode(), bytes(20) + b"\x08\0\0\0")
    assert caught.value.asc is ASC.PARAMETER_LIST_LENGTH_ERROR
    assert lu.keys() == ReadKeysData(1, (2,))


def test_all_tg_pt_registers_and_unregisters_on_every_port() -> None:
    a2 = at(NODE_A, 0x1, 2)
    lu = LU(active=[A, a2, B])
    lu.register(A, 7, all_tg_pt=True)
    assert lu.pr.registration_of(a2) == Registration(ITNexus(NODE_A, 1, 2), 7, all_tg_pt=True)
    # One ALL_TG_PT descriptor stands for the initiator port on both target ports.
    assert lu.full_status() == ReadFullStatusData(
        1, (FullStatusDescriptor(7, TransportID(NODE_A, 1), all_tg_pt=True),)
    )
    # Without the list of target ports the engine reports each I_T nexus.
    raw = lu.pr.persistent_reserve_in(PRInCdb(PRInServiceAction.READ_FULL_STATUS, 999).encode())
    assert [d.relative_target_port_id for d in ReadFullStatusData.decode(raw).descriptors] == [1, 2]
    good(lu.out(a2, SA.REGISTER, 7, 0, all_tg_pt=True))
    assert lu.pr.registrations == ()


def test_all_tg_pt_key_change_follows_the_receiving_port() -> None:
    a2 = at(NODE_A, 0x1, 2)
    lu = LU(active=[A, a2])
    lu.register(A, 1)
    lu.register(a2, 2)
    conflict(lu.out(A, SA.REGISTER, 2, 3, all_tg_pt=True))  # checked on port 1 only
    good(lu.out(A, SA.REGISTER, 1, 3, all_tg_pt=True))
    assert lu.keys().reservation_keys == (3, 3)


# -- READ FULL STATUS, REPORT CAPABILITIES, truncation, PR IN errors ----------------------------


def test_read_full_status_contents() -> None:
    a2 = at(NODE_A, 0x1, 2)
    lu = LU(active=[A, a2, B, C])
    lu.register(A, 1)
    lu.register(a2, 1)
    lu.register(B, 2)
    good(lu.out(A, SA.RESERVE, 1, 0, WERO))
    assert lu.full_status() == ReadFullStatusData(
        3,
        (
            FullStatusDescriptor(1, TransportID(NODE_A, 1), 1, r_holder=True, pr_type=WERO),
            FullStatusDescriptor(1, TransportID(NODE_A, 1), 2),
            FullStatusDescriptor(2, TransportID(NODE_B, 2), 1),
        ),
    )
    good(lu.out(A, SA.PREEMPT, 1, 1, WEAR))
    assert all(d.r_holder and d.pr_type == WEAR for d in lu.full_status().descriptors)


def test_report_capabilities() -> None:
    lu = LU()
    caps = ReportCapabilitiesData.decode(lu.prin(PRInServiceAction.REPORT_CAPABILITIES))
    assert caps.crh and caps.sip_c and caps.atp_c and caps.ptpl_c and caps.tmv
    assert caps.allow_commands == 1 and caps.type_mask == frozenset(PRType)
    assert not caps.ptpl_a
    lu.register(A, 1, aptpl=True)
    assert ReportCapabilitiesData.decode(lu.prin(PRInServiceAction.REPORT_CAPABILITIES)).ptpl_a


def test_read_keys_truncate() -> None:
    """PrinReadKeys.Truncate: ALLOCATION LENGTH 8 keeps the header, whose ADDITIONAL LENGTH
    still counts every key."""
    lu = LU()
    lu.register(A, 1)
    data = lu.prin(PRInServiceAction.READ_KEYS, 8)
    assert data == bytes.fromhex("00 00 00 01 00 00 00 08")
    assert lu.prin(PRInServiceAction.READ_KEYS, 0) == b""


def test_pr_in_service_action_range() -> None:
    lu = LU()
    for action in range(4, 0x20):
        with pytest.raises(CheckCondition):
            lu.pr.persistent_reserve_in(bytes([0x5E, action, 0, 0, 0, 0, 0, 0, 8, 0]))


# -- PR OUT parameter list length --------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 23, 25, 32])
def test_parameter_list_length_must_be_24(length: int) -> None:
    lu = LU()
    cdb = PROutCdb(SA.REGISTER, 0, 0, length).encode()
    with pytest.raises(CheckCondition) as caught:
        lu.raw_out(A, cdb, PROutParameters(0, 1).encode().ljust(length, b"\0")[:length])
    assert caught.value.asc is ASC.PARAMETER_LIST_LENGTH_ERROR


def test_short_data_out_is_a_length_error() -> None:
    lu = LU()
    with pytest.raises(CheckCondition) as caught:
        lu.raw_out(A, PROutCdb(SA.REGISTER, 0, 0, 24).encode(), bytes(20))
    assert caught.value.asc is ASC.PARAMETER_LIST_LENGTH_ERROR
