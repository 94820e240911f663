"""What the persistent reservation engine (``scsi/pr.py``) keeps: the APTPL document that
survives power loss, the flag that says when to write it, and the documents it refuses."""

from __future__ import annotations

import json

import pytest
from tests.support.pr_harness import EARO, LU, NODE_C, SA, WE, WRITE10, A, B, good

from sanstack.scsi.pr import PersistentReservations
from sanstack.scsi.pr_codec import TransportID


def test_aptpl_round_trip() -> None:
    lu = LU()
    lu.register(A, 0xFFFF_FFFF_FFFF_FFFF, aptpl=True)
    good(lu.out(B, SA.REGISTER, 0, 5, aptpl=True, transport_ids=(TransportID(NODE_C),)))
    good(lu.out(A, SA.RESERVE, 0xFFFF_FFFF_FFFF_FFFF, 0, EARO))
    text = json.dumps(lu.pr.to_dict())
    restored = PersistentReservations.from_dict(json.loads(text))
    assert json.dumps(restored.to_dict()) == text
    assert restored.registrations == lu.pr.registrations
    assert restored.reservation == lu.pr.reservation
    powered = restored.after_power_on()
    assert powered.generation == 0 and powered.aptpl
    assert powered.registrations == lu.pr.registrations
    assert powered.reservation == lu.pr.reservation
    assert powered.is_holder(A) and not powered.conflict(A, WRITE10)


def test_without_aptpl_power_loss_clears_everything() -> None:
    lu = LU()
    lu.register(A, 1, aptpl=True)
    lu.register(A, 2)  # the last REGISTER's APTPL bit decides
    good(lu.out(A, SA.RESERVE, 2, 0, WE))
    powered = PersistentReservations.from_dict(lu.pr.to_dict()).after_power_on()
    assert powered.registrations == () and powered.reservation is None
    assert not powered.aptpl and powered.generation == 0


def test_changed_flag() -> None:
    lu = LU()
    assert good(lu.out(A, SA.REGISTER, 0, 1)).changed
    good(lu.out(A, SA.RESERVE, 1, 0, WE))
    assert not good(lu.out(A, SA.RESERVE, 1, 0, WE)).changed


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"format": "sanstack-persistent-reservations", "version": 2}',
        '{"format": "sanstack-persistent-reservations", "version": 1}',
        '{"format": "sanstack-persistent-reservations", "version": 1, "generation": 0,'
        ' "aptpl": false, "registrations": [], "reservation": {"holder": null, "type": 7,'
        ' "scope": 0}}',
        '{"format": "sanstack-persistent-reservations", "version": 1, "generation": 0,'
        ' "aptpl": "yes", "registrations": [], "reservation": null}',
        '{"format": "sanstack-persistent-reservations", "version": 1, "generation": 0,'
        ' "aptpl": false, "registrations": [{"initiator_port": "iqn.x", '
        '"relative_target_port_id": 1, "reservation_key": "0x0", "all_tg_pt": false}],'
        ' "reservation": null}',
    ],
)
def test_from_dict_refuses_bad_documents(text: str) -> None:
    with pytest.raises(ValueError):
        PersistentReservations.from_dict(json.loads(text))
