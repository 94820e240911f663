"""``cluster/reconcile.py``'s two rules for many disks: when a node registers its key on every
disk again (not on every new view), and when a disk a member holds is worth reading again."""

from __future__ import annotations

from sanstack.cluster.heartbeat import ClaimState
from sanstack.cluster.reconcile import holder_may_have_released, register_again


def test_the_key_is_registered_again_after_no_quorum_or_missed_views_only() -> None:
    assert register_again(False, 4, 4)  # no quorum (a minority, outside its own view)
    assert register_again(True, 0, 3)  # the node's first view (a restart joining others)
    assert register_again(True, 4, 7)  # views it never installed (it was stopped)
    assert not register_again(True, 4, 5)  # a peer left or joined: our key is untouched
    assert not register_again(True, 5, 5)  # the same view


def test_a_held_disk_is_read_again_once_its_holder_may_have_released_it() -> None:
    for holding in (ClaimState.ONLINE, ClaimState.ONLINING, ClaimState.OFFLINING):
        assert not holder_may_have_released(holding)
    for gone in (None, ClaimState.FAILED, ClaimState.STOPPING):
        assert holder_may_have_released(gone)
