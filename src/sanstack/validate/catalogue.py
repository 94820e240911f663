"""The validation suite as a table: each test's id, title, WSFC counterpart, what it needs,
whether it changes the LUNs' reservations (the runner cleans them before and after), and
the function that runs it. Order is run order, WSFC's: disks first, then reservations,
then arbitration and failover, latency and multipath last."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sanstack.validate import checks_arbitration as arb
from sanstack.validate import checks_pr as pr
from sanstack.validate import checks_storage as disk
from sanstack.validate.model import Need, RunSettings, TestRun
from sanstack.validate.nodes import Validation

Check = Callable[[Validation, TestRun], Awaitable[None]]

_WSFC_PR = "Validate SCSI-3 Persistent Reservation"
_TWO_NODES = frozenset({Need.TWO_NODES})


@dataclass(frozen=True, slots=True)
class TestSpec:
    __test__ = False  # not a pytest class

    test_id: str
    title: str
    wsfc: str
    needs: frozenset[Need]
    touches_pr: bool
    run: Check


# fmt: off
CATALOGUE: tuple[TestSpec, ...] = (
    TestSpec("disks-visible", "Disks visible to every node through every portal",
             "List Potential Cluster Disks", frozenset(), False, disk.check_disks_visible),
    TestSpec("vpd-identity", "VPD page 0x83 identity: the same everywhere, unique per LUN",
             "Validate SCSI device Vital Product Data (VPD)", frozenset(), False,
             disk.check_vpd_identity),
    TestSpec("pr-register", "PR: REGISTER and REGISTER AND IGNORE from every node and path",
             _WSFC_PR, frozenset(), True, pr.check_register),
    TestSpec("pr-read", "PR: READ KEYS and READ RESERVATION agree on every node and path",
             _WSFC_PR, frozenset(), True, pr.check_read_consistency),
    TestSpec("pr-reserve-types", "PR: RESERVE of each type clusters use",
             _WSFC_PR, frozenset(), True, pr.check_reserve_types),
    TestSpec("pr-release", "PR: RELEASE by the holder and by another registrant",
             _WSFC_PR, frozenset(), True, pr.check_release),
    TestSpec("pr-clear", "PR: CLEAR by another node", _WSFC_PR, _TWO_NODES, True,
             pr.check_clear),
    TestSpec("pr-preempt", "PR: PREEMPT fences the holder on every path", _WSFC_PR,
             _TWO_NODES, True, pr.check_preempt),
    TestSpec("pr-preempt-abort", "PR: PREEMPT AND ABORT fences the holder on every path",
             _WSFC_PR, _TWO_NODES, True, pr.check_preempt_abort),
    TestSpec("pr-reconnect", "PR: registrations survive a reconnect with the same ISID",
             _WSFC_PR, frozenset(), True, pr.check_reconnect),
    TestSpec("pr-aptpl", "PR: registrations persist through a target restart (APTPL)",
             _WSFC_PR, frozenset(), True, pr.check_aptpl),
    TestSpec("disk-arbitration", "Disk arbitration: the owner keeps the disk it defends",
             "Validate Disk Arbitration", _TWO_NODES, True, arb.check_disk_arbitration),
    TestSpec("multiple-arbitration", "Multiple arbitration: exactly one node wins each race",
             "Validate Multiple Arbitration", _TWO_NODES, True,
             arb.check_multiple_arbitration),
    TestSpec("disk-failover", "Disk failover within the arbitration bound",
             "Validate Disk Failover", _TWO_NODES, True, arb.check_disk_failover),
    TestSpec("simultaneous-failover", "Simultaneous failover of every LUN",
             "Validate Simultaneous Failover", _TWO_NODES, True,
             arb.check_simultaneous_failover),
    TestSpec("latency", "Disk access latency", "Validate Disk Access Latency", frozenset(),
             False, disk.check_latency),
    TestSpec("multipath", "Multipath: I/O survives losing a path",
             "Validate Microsoft MPIO-based disks",
             frozenset({Need.FAULT_PROXY, Need.TWO_PORTALS}), False, disk.check_multipath),
    TestSpec("alua", "ALUA: target port groups reported alike to every node",
             "Validate Microsoft MPIO-based disks", frozenset(), False, disk.check_alua),
)
# fmt: on


def missing_need(needs: frozenset[Need], settings: RunSettings) -> Need | None:
    """The first need the run's settings do not meet (the test is then skipped)."""
    have = {
        Need.TWO_NODES: settings.nodes >= 2,
        Need.TWO_PORTALS: len(settings.portals) >= 2,
        Need.DESTRUCTIVE: settings.destructive,
        Need.FAULT_PROXY: settings.fault_proxy,
    }
    for need in Need:
        if need in needs and not have[need]:
            return need
    return None


def select(only: list[str] | None) -> tuple[TestSpec, ...]:
    """The tests named in ``only`` (all when None); ValueError naming an unknown one."""
    if not only:
        return CATALOGUE
    known = {spec.test_id for spec in CATALOGUE}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise ValueError(f"unknown test {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return tuple(spec for spec in CATALOGUE if spec.test_id in only)
