"""A Hypothesis state machine drives the persistent reservation engine with random PERSISTENT
RESERVE OUT and IN commands from a few I_T nexuses and keys, against a small reference model
written straight from SPC-4 §5.13 (one registration per I_T nexus, no SPEC_I_PT/ALL_TG_PT).

After every step: the statuses, sense codes and unit attentions agree with the model; the
reservation holder is registered (or the reservation is an all registrants one with a
registrant); PRgeneration never decreases; READ KEYS and READ RESERVATION report exactly the
model's state; READ and WRITE conflict exactly as the model says; and ``to_dict`` survives
``from_dict``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sanstack.scsi.codes import ASC, Opcode
from sanstack.scsi.command import Nexus
from sanstack.scsi.pr import PersistentReservations, TargetPort
from sanstack.scsi.pr_codec import (
    PRInCdb,
    PRInServiceAction,
    PROutCdb,
    PROutParameters,
    PROutServiceAction,
    PRType,
    ReadKeysData,
    ReadReservationData,
)
from sanstack.scsi.sense import CheckCondition

TARGET = "iqn.2024-01.org.sanstack:disk"
PORTS = (TargetPort(1, TARGET, 1), TargetPort(2, TARGET, 2))
NEXUSES = (
    Nexus("iqn.2024-01.org.example:a", 1, TARGET, 1, 1),
    Nexus("iqn.2024-01.org.example:a", 1, TARGET, 2, 2),  # the same initiator port, port 2
    Nexus("iqn.2024-01.org.example:a", 2, TARGET, 1, 1),  # a second session of node a
    Nexus("iqn.2024-01.org.example:b", 1, TARGET, 1, 1),
)
READ10 = bytes([Opcode.READ_10, 0, 0, 0, 0, 0, 0, 0, 1, 0])
WRITE10 = bytes([Opcode.WRITE_10, 0, 0, 0, 0, 0, 0, 0, 1, 0])

nexuses = st.sampled_from(NEXUSES)
keys = st.sampled_from([0, 1, 2, 3])
types = st.sampled_from(list(PRType))

Result = str | ASC  # "GOOD", "CONFLICT", or the ASC of a CHECK CONDITION
Attentions = set[tuple[Nexus, ASC]]


@dataclass
class Model:
    """SPC-4 §5.13 for I_T nexuses that each register alone."""

    registrations: dict[Nexus, int] = field(default_factory=dict)
    holder: Nexus | None = None  # None with a reservation: all registrants
    pr_type: PRType | None = None
    generation: int = 0

    def holds(self, nexus: Nexus) -> bool:
        if self.pr_type is None or nexus not in self.registrations:
            return False
        return self.pr_type.all_registrants or self.holder == nexus

    def others(self, nexus: Nexus, among: object, asc: ASC) -> Attentions:
        assert isinstance(among, dict | list)
        return {(n, asc) for n in among if n != nexus}

    def drop_reservation(self) -> None:
        self.holder, self.pr_type = None, None

    def register(
        self, nexus: Nexus, key: int, new_key: int, ignore: bool
    ) -> tuple[Result, Attentions]:
        current = self.registrations.get(nexus)
        if not ignore and key != (current or 0):
            return "CONFLICT", set()
        attentions: Attentions = set()
        if new_key:
            self.registrations[nexus] = new_key
        elif current is not None:
            held = self.holds(nexus)
            del self.registrations[nexus]
            if self.pr_type is not None and self.pr_type.all_registrants:
                if not self.registrations:
                    self.drop_reservation()
            elif held:
                assert self.pr_type is not None
                if self.pr_type.registrants_only:
                    attentions = self.others(nexus, self.registrations, ASC.RESERVATIONS_RELEASED)
                self.drop_reservation()
        self.generation += 1
        return "GOOD", attentions

    def registered(self, nexus: Nexus, key: int) -> bool:
        return self.registrations.get(nexus) == key

    def reserve(self, nexus: Nexus, key: int, pr_type: PRType) -> tuple[Result, Attentions]:
        if not self.registered(nexus, key):
            return "CONFLICT", set()
        if self.pr_type is None:
            self.pr_type = pr_type
            self.holder = None if pr_type.all_registrants else nexus
            return "GOOD", set()
        if self.holds(nexus) and self.pr_type == pr_type:
            return "GOOD", set()
        return "CONFLICT", set()

    def release(self, nexus: Nexus, key: int, pr_type: PRType) -> tuple[Result, Attentions]:
        if not self.registered(nexus, key):
            return "CONFLICT", set()
        if not self.holds(nexus):
            return "GOOD", set()
        old = self.pr_type
        assert old is not None
        if old != pr_type:
            return ASC.INVALID_RELEASE_OF_PERSISTENT_RESERVATION, set()
        self.drop_reservation()
        if old.registrants_only or old.all_registrants:
            return "GOOD", self.others(nexus, self.registrations, ASC.RESERVATIONS_RELEASED)
        return "GOOD", set()

    def clear(self, nexus: Nexus, key: int) -> tuple[Result, Attentions]:
        if not self.registered(nexus, key):
            return "CONFLICT", set()
        attentions = self.others(nexus, self.registrations, ASC.RESERVATIONS_PREEMPTED)
        self.registrations.clear()
        self.drop_reservation()
        self.generation += 1
        return "GOOD", attentions

    def preempt(
        self, nexus: Nexus, key: int, victim: int, pr_type: PRType
    ) -> tuple[Result, Attentions]:
        if not self.registered(nexus, key):
            return "CONFLICT", set()
        old = self.pr_type
        regs = self.registrations
        if old is not None and old.all_registrants and victim == 0:
            removed, takes = [n for n in regs if n != nexus], True
        elif old is not None and self.holder is not None and regs[self.holder] == victim:
            removed, takes = [n for n, k in regs.items() if k == victim and n != nexus], True
        else:
            if victim == 0:
                return ASC.INVALID_FIELD_IN_PARAMETER_LIST, set()
            removed, takes = [n for n, k in regs.items() if k == victim], False
            if not removed:
                return "CONFLICT", set()
        for n in removed:
            del regs[n]
        attentions = self.others(nexus, removed, ASC.REGISTRATIONS_PREEMPTED)
        if takes:
            self.pr_type = pr_type
            self.holder = None if pr_type.all_registrants else nexus
            if old != pr_type:
                attentions |= self.others(nexus, regs, ASC.RESERVATIONS_RELEASED)
        elif old is not None and old.all_registrants and not regs:
            self.drop_reservation()
        self.generation += 1
        return "GOOD", attentions

    def may_read(self, nexus: Nexus) -> bool:
        pr_type = self.pr_type
        if pr_type is None or self.holds(nexus):
            return True
        if pr_type is PRType.WRITE_EXCLUSIVE:
            return True
        rr = pr_type.registrants_only or pr_type.all_registrants
        return rr and (nexus in self.registrations or pr_type.write_exclusive)

    def may_write(self, nexus: Nexus) -> bool:
        pr_type = self.pr_type
        if pr_type is None or self.holds(nexus):
            return True
        rr = pr_type.registrants_only or pr_type.all_registrants
        return rr and nexus in self.registrations


class PersistentReservationMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pr = PersistentReservations()
        self.model = Model()
        self.last_generation = 0

    def send(
        self,
        nexus: Nexus,
        action: PROutServiceAction,
        parameters: PROutParameters,
        pr_type: int = 0,
    ) -> tuple[Result, Attentions]:
        data = parameters.encode()
        cdb = PROutCdb(action, 0, pr_type, len(data)).encode()
        try:
            outcome = self.pr.persistent_reserve_out(
                nexus, cdb, data, target_ports=PORTS, active_nexuses=NEXUSES
            )
        except CheckCondition as error:
            return error.asc, set()
        if outcome.status == 0:
            return "GOOD", set(outcome.unit_attentions)
        return "CONFLICT", set(outcome.unit_attentions)

    @rule(nexus=nexuses, key=keys, new_key=keys, ignore=st.booleans())
    def register(self, nexus: Nexus, key: int, new_key: int, ignore: bool) -> None:
        action = (
            PROutServiceAction.REGISTER_AND_IGNORE_EXISTING_KEY
            if ignore
            else PROutServiceAction.REGISTER
        )
        got = self.send(nexus, action, PROutParameters(key, new_key))
        assert got == self.model.register(nexus, key, new_key, ignore)

    @rule(nexus=nexuses, key=keys, pr_type=types)
    def reserve(self, nexus: Nexus, key: int, pr_type: PRType) -> None:
        got = self.send(nexus, PROutServiceAction.RESERVE, PROutParameters(key), pr_type)
        assert got == self.model.reserve(nexus, key, pr_type)

    @rule(nexus=nexuses, key=keys, pr_type=types)
    def release(self, nexus: Nexus, key: int, pr_type: PRType) -> None:
        got = self.send(nexus, PROutServiceAction.RELEASE, PROutParameters(key), pr_type)
        assert got == self.model.release(nexus, key, pr_type)

    @rule(nexus=nexuses, key=keys)
    def clear(self, nexus: Nexus, key: int) -> None:
        got = self.send(nexus, PROutServiceAction.CLEAR, PROutParameters(key))
        assert got == self.model.clear(nexus, key)

    @rule(nexus=nexuses, key=keys, victim=keys, pr_type=types, abort=st.booleans())
    def preempt(self, nexus: Nexus, key: int, victim: int, pr_type: PRType, abort: bool) -> None:
        action = PROutServiceAction.PREEMPT_AND_ABORT if abort else PROutServiceAction.PREEMPT
        got = self.send(nexus, action, PROutParameters(key, victim), pr_type)
        assert got == self.model.preempt(nexus, key, victim, pr_type)

    def prin(self, action: PRInServiceAction) -> bytes:
        return self.pr.persistent_reserve_in(PRInCdb(action, 0xFFFF).encode())

    @invariant()
    def holder_is_registered(self) -> None:
        assert self.pr.invariant_violation() is None
        reservation = self.pr.reservation
        if reservation is not None:
            assert any(r.nexus == reservation.holder for r in self.pr.registrations) or (
                reservation.holder is None and self.pr.registrations
            )

    @invariant()
    def generation_never_decreases(self) -> None:
        assert self.pr.generation >= self.last_generation
        assert self.pr.generation == self.model.generation
        self.last_generation = self.pr.generation

    @invariant()
    def read_keys_and_reservation_match_the_model(self) -> None:
        model = self.model
        read_keys = ReadKeysData.decode(self.prin(PRInServiceAction.READ_KEYS))
        assert read_keys == ReadKeysData(model.generation, tuple(model.registrations.values()))
        reservation = ReadReservationData.decode(self.prin(PRInServiceAction.READ_RESERVATION))
        if model.pr_type is None:
            assert reservation == ReadReservationData(model.generation)
        else:
            key = 0 if model.holder is None else model.registrations[model.holder]
            assert reservation == ReadReservationData(model.generation, key, 0, model.pr_type)

    @invariant()
    def access_matches_the_model(self) -> None:
        for nexus in NEXUSES:
            assert self.pr.conflict(nexus, READ10) is not self.model.may_read(nexus)
            assert self.pr.conflict(nexus, WRITE10) is not self.model.may_write(nexus)

    @invariant()
    def json_round_trips(self) -> None:
        text = json.dumps(self.pr.to_dict())
        restored = PersistentReservations.from_dict(json.loads(text))
        assert json.dumps(restored.to_dict()) == text
        assert restored.registrations == self.pr.registrations


PersistentReservationMachine.TestCase.settings = settings(settings.default, stateful_step_count=30)
TestPersistentReservations = PersistentReservationMachine.TestCase
