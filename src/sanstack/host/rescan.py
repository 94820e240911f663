"""What a rescan changes, from the REPORT LUNS answers of a target's sessions (sans-IO).

A rescan of a target (on REPORTED LUNS DATA HAS CHANGED, on the host's timer, on ``sanstack
host rescan``) asks REPORT LUNS through every session of the target that is up. Two pure
steps turn those answers into work, so a unit test reads them without a socket:

1. ``plan_scan``: which (session, LUN number) pairs are new (reported, and a path of no
   map: their identity must be read, VPD 0x83), and which maps are gone. A target's LUN
   list is the union of what its answering sessions report (a LUN map is per target, and a
   session that lags behind must not remove a LUN another still shows); a map is gone when
   every one of its paths is on a target that answered and its LUN is in none of that
   target's lists. A session that did not answer (down, timed out) says nothing: with no
   answer from a target, none of its maps is touched. A map that lost some of its paths
   but not all (the same device on two targets, one of which dropped it) is reported in
   ``stale_paths`` and kept.
2. ``group_new``: the identities read for the new pairs, grouped by NAA (never by number or
   name) into new maps, each over every session that reported it and every session of the
   same target that is down now, at the same number (the map verifies the device when that
   session comes up, and drops the path if it is another one), when the target gives the
   device one number; pairs whose NAA is a map
   already are returned apart (a new path to a known device).

A third step keeps a known path honest. A LUN removed and another added under the same
number between two rescans looks, to REPORT LUNS, as if nothing happened; a map whose path
still points at that number would then reach another device. So every rescan also reads
VPD 0x83 again through each known (session, LUN number) that is still reported, and
``check_identities`` decides from those reads: a path whose identity is no longer its
map's leaves the map (and so does each path of the map on the same target at the same
number whose identity could not be read now: a target's LUN map is per target, and such a
path would re-bind to the new device when its session returns); a map left with no path is
closed, like a gone one. The paths that left are no longer known, so ``plan_scan`` probes
them as new LUNs: the new device gets its own map.

Session keys are opaque (``S``): the host passes its ``SharedSession`` objects.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

S = TypeVar("S", bound=Hashable)


@dataclass(frozen=True, slots=True)
class ScanPlan(Generic[S]):
    probe: list[tuple[S, int]] = field(default_factory=list)  # read these LUNs' identity
    gone: list[str] = field(default_factory=list)  # maps (by key) to take away
    stale_paths: dict[str, list[tuple[S, int]]] = field(default_factory=dict)  # kept, noted


@dataclass(frozen=True, slots=True)
class NewMaps(Generic[S]):
    maps: dict[str, list[tuple[S, int]]] = field(default_factory=dict)  # NAA -> paths
    known: dict[str, list[tuple[S, int]]] = field(default_factory=dict)  # new paths, old NAA


@dataclass(frozen=True, slots=True)
class IdentityCheck(Generic[S]):
    leave: dict[str, list[tuple[S, int]]] = field(default_factory=dict)  # map -> paths to drop
    closed: list[str] = field(default_factory=list)  # maps whose every path left


def lun_changes(before: Iterable[int], after: Iterable[int]) -> tuple[list[int], list[int]]:
    """(added, removed) LUN numbers between two REPORT LUNS answers, each sorted."""
    old, new = set(before), set(after)
    return sorted(new - old), sorted(old - new)


def plan_scan(
    maps: Mapping[str, Sequence[tuple[S, int]]],
    reported: Mapping[S, Iterable[int] | None],
    target_of: Callable[[S], str],
) -> ScanPlan[S]:
    """What ``reported`` (each scanned session's LUN numbers; None: no answer) changes for
    ``maps`` (each map's paths, as (session, LUN number))."""
    listed: dict[str, set[int]] = {}
    for session, numbers in reported.items():
        if numbers is not None:
            listed.setdefault(target_of(session), set()).update(numbers)
    known = {path for paths in maps.values() for path in paths}
    probe = sorted(
        (
            (session, number)
            for session, numbers in reported.items()
            if numbers is not None
            for number in set(numbers)
            if (session, number) not in known
        ),
        key=lambda p: p[1],
    )

    def absent(path: tuple[S, int]) -> bool:
        numbers = listed.get(target_of(path[0]))
        return numbers is not None and path[1] not in numbers

    gone: list[str] = []
    stale: dict[str, list[tuple[S, int]]] = {}
    for key, paths in maps.items():
        missing = [p for p in paths if absent(p)]
        if missing and len(missing) == len(paths):
            gone.append(key)
        elif missing:
            stale[key] = missing
    return ScanPlan(probe, gone, stale)


def group_new(
    identified: Iterable[tuple[S, int, str]],
    existing: Iterable[str],
    down: Mapping[str, Sequence[S]],
    target_of: Callable[[S], str],
) -> NewMaps[S]:
    """Group probed pairs (session, LUN number, NAA) into new maps by NAA; ``down`` holds,
    per target, its sessions that are not up now (each gets a path at the same number)."""
    existing = set(existing)
    result: NewMaps[S] = NewMaps()
    for session, number, naa in identified:
        into = result.known if naa in existing else result.maps
        paths = into.setdefault(naa, [])
        if (session, number) not in paths:
            paths.append((session, number))
    for paths in result.maps.values():
        numbers: dict[str, set[int]] = {}
        for session, number in paths:
            numbers.setdefault(target_of(session), set()).add(number)
        for target, seen in numbers.items():
            if len(seen) == 1:  # one number on this target: its down sessions get it too
                (number,) = seen
                paths.extend((other, number) for other in down.get(target, ()))
    return result


def check_identities(
    maps: Mapping[str, Sequence[tuple[S, int]]],
    read: Mapping[tuple[S, int], str | None],
    target_of: Callable[[S], str],
) -> IdentityCheck[S]:
    """Which known paths reach another device now. ``maps``: each map's key (its NAA) and
    paths; ``read``: the NAA read again through a path (None or absent: not known now)."""
    result: IdentityCheck[S] = IdentityCheck()
    for key, paths in maps.items():
        moved = [p for p in paths if read.get(p) not in (None, key)]
        if not moved:
            continue
        numbers = {(target_of(s), n) for s, n in moved}
        leave = [
            p
            for p in paths
            if p in moved or (read.get(p) is None and (target_of(p[0]), p[1]) in numbers)
        ]
        result.leave[key] = leave
        if len(leave) == len(paths):
            result.closed.append(key)
    return result
