"""Which live member should run each group, sans-IO (docs/cluster-design.md, "Groups").

Theory of operation. ``place`` is a pure function of the view and of what every node knows
alike (the configuration, the members in configuration order, who is paused, who runs each
group now, the groups' failure history, when each member came back, the pending move
requests) and ``now``; from the same inputs every node computes the same answer, so no
election is needed to agree on it. A node onlines a group placed on it and offlines one
placed elsewhere; the disks' reservations, not this answer, decide who may write.

For each group, in configuration order:

1. No quorum: nothing is placed (every group None): a partition without quorum stops its
   groups and onlines nothing.
2. The *candidates* are the live members that are not paused (pause drains a node: its
   groups move away), in configuration order. A group that failed ``restart_threshold``
   times within ``restart_period`` on a node is not placed there (WSFC RestartThreshold /
   RestartPeriod): the node is not *eligible* for it; nor is a node that cannot reach the
   group's disks (``unfit``: it claims NO_PATH for the group), for as long as it cannot.
3. A pending move request (``move GROUP NODE``) wins when its node is a candidate.
4. The current owner keeps the group while it is eligible, unless failback calls the group
   home: *home* is the first preferred owner that is eligible, and it calls when it comes
   before the owner in ``preferred_owners`` (or the owner is not preferred at all) and the
   group's failback is IMMEDIATE, or DELAYED and home has been alive ``failback_delay``
   seconds (``alive_since``; unknown counts as not yet). NEVER keeps the group where it is.
5. Otherwise: home, if there is one.
6. Otherwise the eligible member with the fewest groups (counting every group placed so
   far, those of steps 3-5 first), ties broken by configuration order.
7. No eligible member: None, and ``failed_everywhere`` says whether the failure history is
   why (the group is *failed*) rather than pause.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from sanstack.cluster.model import FailbackMode, GroupSpec

# group name -> node name -> when the group failed there (seconds, the caller's clock).
FailureHistory = Mapping[str, Mapping[str, Sequence[float]]]

_NO_FAILURES: Mapping[str, Sequence[float]] = {}


def recent_failures(group: GroupSpec, times: Sequence[float], now: float) -> int:
    """How many of ``times`` fall within the group's ``restart_period`` before ``now``."""
    return sum(1 for t in times if now - group.restart_period < t <= now)


def failed_on(group: GroupSpec, node: str, failures: FailureHistory, now: float) -> bool:
    """The group failed ``restart_threshold`` times within ``restart_period`` on ``node``
    (a threshold below one counts as one: a node with no failure is never excluded)."""
    times = failures.get(group.name, _NO_FAILURES).get(node, ())
    return recent_failures(group, times, now) >= max(1, group.restart_threshold)


def failed_everywhere(
    group: GroupSpec, members: Sequence[str], failures: FailureHistory, now: float
) -> bool:
    """The group is failed: every member is excluded by its failure history."""
    return bool(members) and all(failed_on(group, m, failures, now) for m in members)


def _calls_home(
    group: GroupSpec,
    owner: str,
    home: str,
    alive_since: Mapping[str, float],
    now: float,
) -> bool:
    if home == owner or group.failback is FailbackMode.NEVER:
        return False
    preferred = group.preferred_owners
    if owner in preferred and preferred.index(owner) < preferred.index(home):
        return False
    if group.failback is FailbackMode.IMMEDIATE:
        return True
    since = alive_since.get(home)
    return since is not None and now - since >= group.failback_delay


def _pinned(
    group: GroupSpec,
    candidates: Sequence[str],
    eligible: Sequence[str],
    *,
    owner: str | None,
    move: str | None,
    alive_since: Mapping[str, float],
    now: float,
) -> str | None:
    """Steps 3-5: the move request, the owner (or failback), home; None: step 6 decides."""
    if move is not None and move in candidates:
        return move
    home = next((p for p in group.preferred_owners if p in eligible), None)
    if owner is not None and owner in eligible:
        if home is not None and _calls_home(group, owner, home, alive_since, now):
            return home
        return owner
    return home


def place(
    groups: Sequence[GroupSpec],
    members: Sequence[str],
    *,
    has_quorum: bool,
    now: float,
    paused: Collection[str] = (),
    owners: Mapping[str, str] | None = None,
    failures: FailureHistory | None = None,
    alive_since: Mapping[str, float] | None = None,
    moves: Mapping[str, str] | None = None,
    unfit: Mapping[str, Collection[str]] | None = None,
) -> dict[str, str | None]:
    """The desired owner of every group (None: not placed), per the module docstring.

    ``members``: the view's live members in configuration order; ``owners``: group -> the
    node running (or onlining) it now; ``failures``: group -> node -> failure times;
    ``alive_since``: node -> when it last became a live member; ``moves``: group -> the
    node a pending move request names; ``unfit``: group -> the members that cannot reach
    its disks now.
    """
    if not has_quorum:
        return {group.name: None for group in groups}
    owners = owners or {}
    failures = failures or {}
    alive_since = alive_since or {}
    moves = moves or {}
    unfit = unfit or {}
    candidates = [m for m in dict.fromkeys(members) if m not in paused]
    rank = {name: index for index, name in enumerate(candidates)}
    placed: dict[str, str | None] = {}
    eligible_for: dict[str, list[str]] = {}
    for group in groups:
        cannot = unfit.get(group.name, ())
        fit = [c for c in candidates if c not in cannot]
        eligible = [c for c in fit if not failed_on(group, c, failures, now)]
        eligible_for[group.name] = eligible
        placed[group.name] = _pinned(
            group,
            fit,
            eligible,
            owner=owners.get(group.name),
            move=moves.get(group.name),
            alive_since=alive_since,
            now=now,
        )
    load = Counter(node for node in placed.values() if node is not None)
    for group in groups:
        eligible = eligible_for[group.name]
        if placed[group.name] is None and eligible:
            chosen = min(eligible, key=lambda node: (load[node], rank[node]))
            placed[group.name] = chosen
            load[chosen] += 1
    return placed
