"""Which commands conflict with a persistent reservation (``scsi/pr.py``): spot checks of
the SPC-4 §5.13.1 and SBC-4 §4.17 rows for holders, registrants and others, and SPC-2
RESERVE/RELEASE beside persistent reservations (SPC-4 §5.13.3)."""

from __future__ import annotations

import pytest
from tests.support.pr_harness import EA, EAAR, EARO, LU, SA, WE, WEAR, WERO, WRITE10, A, B, C, good

from sanstack.scsi.codes import Opcode
from sanstack.scsi.pr import LegacyReservation, PersistentReservations
from sanstack.scsi.pr_codec import PRType


def cdb(*head: int) -> bytes:
    return bytes(head).ljust(10, b"\0")


@pytest.mark.parametrize(
    ("command", "we_unregistered", "ea_registered"),
    [
        (cdb(Opcode.INQUIRY), True, True),
        (cdb(Opcode.REPORT_LUNS), True, True),
        (cdb(Opcode.TEST_UNIT_READY), True, True),
        (cdb(Opcode.REQUEST_SENSE), True, True),
        (cdb(Opcode.READ_CAPACITY_10), True, True),
        (cdb(Opcode.SERVICE_ACTION_IN_16, 0x10), True, True),
        (cdb(Opcode.PERSISTENT_RESERVE_IN, 0), True, True),
        (cdb(Opcode.MAINTENANCE_IN, 0x0A), True, True),
        (cdb(Opcode.MODE_SENSE_6), True, False),
        (cdb(Opcode.MAINTENANCE_IN, 0x0C), True, False),
        (cdb(Opcode.SERVICE_ACTION_IN_16, 0x12), True, False),
        (cdb(Opcode.VERIFY_16), True, False),
        (cdb(Opcode.SYNCHRONIZE_CACHE_10), False, False),
        (cdb(Opcode.UNMAP), False, False),
        (cdb(Opcode.COMPARE_AND_WRITE), False, False),
        (cdb(Opcode.MODE_SELECT_10), False, False),
        (cdb(Opcode.MAINTENANCE_OUT, 0x0A), False, False),
        (cdb(Opcode.START_STOP_UNIT, 0, 0, 0, 0x01), True, True),
        (cdb(Opcode.START_STOP_UNIT, 0, 0, 0, 0x00), False, False),
        (cdb(Opcode.START_STOP_UNIT, 0, 0, 0, 0x21), False, False),
        (cdb(Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 0), True, True),
        (cdb(Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 1), False, False),
        (cdb(Opcode.PERSISTENT_RESERVE_OUT, SA.REGISTER), True, True),
        (cdb(Opcode.PERSISTENT_RESERVE_OUT, SA.CLEAR), False, True),
        (cdb(Opcode.PERSISTENT_RESERVE_OUT, SA.RESERVE), False, False),
        (cdb(0xC0), False, False),  # unknown: treated as a write
    ],
)
def test_conflict_table(command: bytes, we_unregistered: bool, ea_registered: bool) -> None:
    """Spot checks of the SPC-4 §5.13.1 and SBC-4 §4.17 rows; the holder passes them all."""
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    good(lu.out(A, SA.RESERVE, 1, 0, WE))
    assert not lu.pr.conflict(A, command)
    assert lu.pr.conflict(C, command) is not we_unregistered
    good(lu.out(A, SA.PREEMPT, 1, 1, EA))
    assert lu.pr.conflict(B, command) is not ea_registered


def test_nothing_conflicts_without_registrations() -> None:
    pr = PersistentReservations()
    assert not pr.conflict(A, WRITE10)
    assert not pr.conflict(A, cdb(Opcode.RESERVE_6))
    assert pr.legacy_reservation(A) is LegacyReservation.SPC2


@pytest.mark.parametrize(
    ("pr_type", "holder", "registered", "unregistered"),
    [
        (None, "CONFLICT", "CONFLICT", "CONFLICT"),
        (WE, "IGNORE", "CONFLICT", "CONFLICT"),
        (EA, "IGNORE", "CONFLICT", "CONFLICT"),
        (WERO, "IGNORE", "IGNORE", "CONFLICT"),
        (EARO, "IGNORE", "IGNORE", "CONFLICT"),
        (WEAR, "IGNORE", "IGNORE", "CONFLICT"),
        (EAAR, "IGNORE", "IGNORE", "CONFLICT"),
    ],
)
def test_legacy_reserve_release(
    pr_type: PRType | None, holder: str, registered: str, unregistered: str
) -> None:
    """SPC-4 §5.13.3 (CRH=1), as LIO's target_check_scsi2_reservation_conflict reads it."""
    lu = LU()
    lu.register(A, 1)
    lu.register(B, 2)
    if pr_type is not None:
        good(lu.out(A, SA.RESERVE, 1, 0, pr_type))
    # Under an all registrants type B is a holder too; the rows say IGNORE for it either way.
    for nexus, expected in ((A, holder), (B, registered), (C, unregistered)):
        assert lu.pr.legacy_reservation(nexus) is LegacyReservation[expected]
        for opcode in (Opcode.RESERVE_6, Opcode.RELEASE_10):
            assert lu.pr.conflict(nexus, cdb(opcode)) is (expected == "CONFLICT")
