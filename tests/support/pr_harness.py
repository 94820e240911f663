"""A logical unit's view of the persistent reservation engine (``scsi/pr.py``) for the PR
tests: the target ports, three initiators' I_T nexuses, short names for the service actions
and reservation types, and ``LU``, which drives the engine through CDBs and parameter
lists as a logical unit would."""

from __future__ import annotations

from dataclasses import dataclass, field

from sanstack.scsi.codes import Opcode, Status
from sanstack.scsi.command import Nexus
from sanstack.scsi.pr import PersistentReservations, PROutOutcome, TargetPort
from sanstack.scsi.pr_codec import (
    PRInCdb,
    PRInServiceAction,
    PROutCdb,
    PROutParameters,
    PROutServiceAction,
    PRType,
    ReadFullStatusData,
    ReadKeysData,
    ReadReservationData,
    RegisterAndMoveParameters,
    TransportID,
)

TARGET = "iqn.2024-01.org.sanstack:disk"
PORTS = (TargetPort(1, TARGET, 1), TargetPort(2, TARGET, 2))
NODE_A = "iqn.2024-01.org.example:a"
NODE_B = "iqn.2024-01.org.example:b"
NODE_C = "iqn.2024-01.org.example:c"


def at(name: str, isid: int, port: int = 1) -> Nexus:
    return Nexus(name, isid, TARGET, port, port)


A = at(NODE_A, 0x1)
B = at(NODE_B, 0x2)
C = at(NODE_C, 0x3)

SA = PROutServiceAction
WE = PRType.WRITE_EXCLUSIVE
EA = PRType.EXCLUSIVE_ACCESS
WERO = PRType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
EARO = PRType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY
WEAR = PRType.WRITE_EXCLUSIVE_ALL_REGISTRANTS
EAAR = PRType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS

READ10 = bytes([Opcode.READ_10, 0, 0, 0, 0, 1, 0, 0, 1, 0])
WRITE10 = bytes([Opcode.WRITE_10, 0, 0, 0, 0, 1, 0, 0, 1, 0])


@dataclass
class LU:
    """The engine plus the I_T nexuses logged in, as a logical unit would drive it."""

    active: list[Nexus] = field(default_factory=lambda: [A, B, C])
    pr: PersistentReservations = field(default_factory=PersistentReservations)

    def out(
        self,
        nexus: Nexus,
        action: PROutServiceAction,
        key: int = 0,
        sa_key: int = 0,
        pr_type: int = 0,
        *,
        scope: int = 0,
        aptpl: bool = False,
        all_tg_pt: bool = False,
        transport_ids: tuple[TransportID, ...] = (),
    ) -> PROutOutcome:
        data = PROutParameters(
            key,
            sa_key,
            spec_i_pt=bool(transport_ids),
            all_tg_pt=all_tg_pt,
            aptpl=aptpl,
            transport_ids=transport_ids,
        ).encode()
        return self.raw_out(nexus, PROutCdb(action, scope, pr_type, len(data)).encode(), data)

    def raw_out(self, nexus: Nexus, cdb: bytes, data: bytes) -> PROutOutcome:
        return self.pr.persistent_reserve_out(
            nexus, cdb, data, target_ports=PORTS, active_nexuses=self.active
        )

    def move(self, nexus: Nexus, parameters: RegisterAndMoveParameters) -> PROutOutcome:
        data = parameters.encode()
        cdb = PROutCdb(SA.REGISTER_AND_MOVE, 0, 0, len(data)).encode()
        return self.raw_out(nexus, cdb, data)

    def register(
        self, nexus: Nexus, key: int, *, aptpl: bool = False, all_tg_pt: bool = False
    ) -> None:
        action = SA.REGISTER_AND_IGNORE_EXISTING_KEY
        outcome = self.out(nexus, action, 0, key, aptpl=aptpl, all_tg_pt=all_tg_pt)
        assert outcome.status is Status.GOOD

    def prin(self, action: PRInServiceAction, allocation_length: int = 0x4000) -> bytes:
        cdb = PRInCdb(action, allocation_length).encode()
        return self.pr.persistent_reserve_in(cdb, target_ports=PORTS)

    def keys(self) -> ReadKeysData:
        return ReadKeysData.decode(self.prin(PRInServiceAction.READ_KEYS))

    def reservation(self) -> ReadReservationData:
        return ReadReservationData.decode(self.prin(PRInServiceAction.READ_RESERVATION))

    def full_status(self) -> ReadFullStatusData:
        return ReadFullStatusData.decode(self.prin(PRInServiceAction.READ_FULL_STATUS))

    def can_read(self, nexus: Nexus) -> bool:
        return not self.pr.conflict(nexus, READ10)

    def can_write(self, nexus: Nexus) -> bool:
        return not self.pr.conflict(nexus, WRITE10)


def good(outcome: PROutOutcome) -> PROutOutcome:
    assert outcome.status is Status.GOOD
    return outcome


def conflict(outcome: PROutOutcome) -> None:
    assert outcome.status is Status.RESERVATION_CONFLICT
    assert not outcome.changed and not outcome.unit_attentions
