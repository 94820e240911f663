"""Who owns each cluster disk, asked of the target itself (its own PR state, through its
control socket: no node's word in it) and cross-checked with ``sanstack cluster status``;
and the reads that check every acknowledged write of a ``cluster_writer`` at the end.

"Owned by exactly one node": the LUN's reservation is held by one I_T nexus, whose key is a
live node's, and every disk of a group is held by the same node, which ``cluster status``
names as the group's owner with the group online and the disk held by that node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.cluster_nodes import WriterLog
from tests.support.cluster_writer import pattern
from tests.support.nbd_socket import NBDSocketClient

from sanstack.control.client import call

POLL = 0.25  # each poll asks the target for every LUN's state: not every 20 ms


@dataclass(frozen=True)
class LunReservation:
    """One LUN's PR state as the target has it: the holder's key and the registered keys."""

    holder: int | None
    keys: frozenset[int]


def target_reservations(control: Path, iqn: str, luns: Iterable[int]) -> dict[int, LunReservation]:
    """Every LUN's reservation holder and registered keys, from the target's control socket
    (``GET /v1/targets/IQN/luns/N/pr``)."""
    out: dict[int, LunReservation] = {}
    for lun in luns:
        state = call(control, "GET", f"/v1/targets/{iqn}/luns/{lun}/pr")
        holders = {int(r["key"], 16) for r in state["registrations"] if r["holder"]}
        assert len(holders) <= 1, f"LUN {lun}: more than one holder: {state}"
        out[lun] = LunReservation(
            next(iter(holders), None), frozenset(int(r["key"], 16) for r in state["registrations"])
        )
    return out


@dataclass(frozen=True)
class Layout:
    """The cluster as a test built it: disk -> LUN, group -> disks, node -> key."""

    iqn: str
    disks: Mapping[str, int]
    groups: Mapping[str, Sequence[str]]
    keys: Mapping[str, int]

    def node_of(self, key: int | None) -> str | None:
        return next((n for n, k in self.keys.items() if k == key), None)


def ownership(
    layout: Layout, state: Mapping[int, LunReservation], live: Iterable[str]
) -> tuple[dict[str, str], list[str]]:
    """group -> the node holding all its disks, and what is wrong (a disk held by nobody or
    by a node not live, a group's disks held by several nodes)."""
    alive = set(live)
    owners: dict[str, str] = {}
    problems: list[str] = []
    for group, disks in layout.groups.items():
        holders = {d: layout.node_of(state[layout.disks[d]].holder) for d in disks}
        for disk, node in holders.items():
            if node is None or node not in alive:
                problems.append(f"{group}/{disk}: held by {node or 'nobody'}")
        nodes = set(holders.values())
        only = next(iter(nodes)) if len(nodes) == 1 else None
        if only is not None:
            owners[group] = only
        else:
            problems.append(f"{group}: disks held by {sorted(str(n) for n in nodes)}")
    return owners, problems


def poll(check: Callable[[], bool], within: float, what: Callable[[], str]) -> None:
    """``wait_until`` with a slower poll (``POLL``): each check asks many LUNs."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() >= deadline:
            pytest.fail(f"not within {within}s: {what()}")
        time.sleep(POLL)


def wait_owned(
    target_control: Path,
    layout: Layout,
    live: Iterable[str],
    within: float,
    *,
    expect: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], dict[int, LunReservation]]:
    """Until every disk is owned by exactly one live node by the target's PR state (and
    each group by the node ``expect`` names, if given); the owners and that state."""
    alive = set(live)
    seen: list[Any] = [None, None, ["not asked yet"]]

    def owned() -> bool:
        state = target_reservations(target_control, layout.iqn, layout.disks.values())
        owners, problems = ownership(layout, state, alive)
        if expect is not None:
            problems += [
                f"{g}: owned by {owners.get(g)}, not {n}"
                for g, n in expect.items()
                if owners.get(g) != n
            ]
        seen[:] = [owners, state, problems]
        return not problems

    poll(owned, within, lambda: f"every disk owned by one live node: {seen[2][:8]}")
    return seen[0], seen[1]


def status_disagrees(
    status: Mapping[str, Any], owners: Mapping[str, str], layout: Layout
) -> list[str]:
    """Where ``cluster status`` does not name each group's owner as the target does (with
    the group online) or a disk's holder as that owner."""
    problems = []
    groups = {g["name"]: g for g in status["groups"]}
    for group, owner in owners.items():
        entry = groups[group]
        if (entry["owner"], entry["state"]) != (owner, "online"):
            problems.append(f"{group}: {entry['state']} on {entry['owner']}, not online on {owner}")
    disks = {d["name"]: d for d in status["disks"]}
    for group, members in layout.groups.items():
        if group not in owners:
            problems.append(f"{group}: not held by one node at the target")
            continue
        for disk in members:
            if disks[disk]["holder"] != owners[group]:
                problems.append(f"{disk}: held by {disks[disk]['holder']}, not {owners[group]}")
    return problems


def wait_status_agrees(
    status: Callable[[], Mapping[str, Any]],
    owners: Mapping[str, str] | Callable[[], Mapping[str, str]],
    layout: Layout,
    within: float,
) -> None:
    """Until ``status()`` (a node's ``cluster status``) agrees with ``owners`` (a group's
    claim of online reaches the other nodes with the next heartbeat). ``owners`` may be a
    function asked on every poll (the target's ownership as it is now), for a cluster in
    which a group may still move (a group that failed to start where it was placed)."""
    seen: list[str] = ["not asked yet"]

    def agrees() -> bool:
        expected = owners() if callable(owners) else owners
        seen[:] = status_disagrees(status(), expected, layout)
        return not seen

    poll(agrees, within, lambda: f"cluster status agrees with the target: {seen[:8]}")


def check_reads_back(writer: WriterLog, export: tuple[str, int], name: str = "") -> int:
    """Every acknowledged write's block holds the last acknowledged write to it, read
    through ``export``; returns how many blocks were checked."""
    last: dict[int, int] = {}
    for n, offset, _when in writer.acked():
        last[offset] = n

    async def check() -> None:
        async with asyncio.timeout(60):
            client = await NBDSocketClient.connect(export[0], export[1], name)
            try:
                for offset, n in sorted(last.items()):
                    data = await client.read(offset, len(pattern(n)))
                    assert data == pattern(n), f"block at {offset}: not write {n}"
            finally:
                await client.close()

    asyncio.run(check())
    return len(last)
