"""Stable ISIDs: one per (host name, target, portal), kept in the host's state directory.

An iSCSI initiator port is the initiator name plus the ISID (RFC 7143 §4.4.1), and an I_T
nexus is that port and a target port. Persistent reservations are registered per I_T
nexus, so a host that logs in again with a new ISID is a new nexus that holds no key (and
the old nexus keeps its registration for ever). The host therefore gives each (host name,
target, portal) one ISID, remembers it across reconnects and restarts (as open-iscsi's node
records do), and never gives it to another.

Format (RFC 7143 §10.12.5). The "random" qualifier type: T = 10b, A reserved (0), B and C a
24-bit random number drawn once per host name and kept, D a 16-bit qualifier. Each (target,
portal) gets the lowest qualifier of its host that is not taken yet; qualifier 0 is kept
for discovery sessions (SendTargets), which never share an ISID with a data session. So two
sessions of one host never carry the same ISID, whatever the targets and portals.

The table is sans-IO (``IsidTable``); ``IsidStore`` keeps it in ``isids.json`` in the state
directory through ``edge/state_file.py`` (temporary file, fsync, rename, fsync the
directory), written only when a new ISID is handed out, before it is used in a login.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sanstack.edge.state_file import StateFileError, load_state, save_state

log = logging.getLogger(__name__)

ISID_TYPE_RANDOM = 0b10
DISCOVERY_QUALIFIER = 0
MAX_QUALIFIER = 0xFFFF
STATE_FILE = "isids.json"


def make_isid(random_part: int, qualifier: int) -> int:
    """The 48-bit ISID of type 10b: T (2 bits), A (6 bits, 0), B+C (24 bits), D (16 bits)."""
    if not 0 <= random_part < 1 << 24 or not 0 <= qualifier <= MAX_QUALIFIER:
        raise ValueError(f"ISID fields out of range: {random_part:#x}, {qualifier:#x}")
    return (ISID_TYPE_RANDOM << 46) | (random_part << 16) | qualifier


@dataclass(slots=True)
class HostIsids:
    """One host name's random part and its qualifiers by (target, portal)."""

    random_part: int
    qualifiers: dict[tuple[str, str], int] = field(default_factory=dict)

    def isid(self, target: str, portal: str) -> tuple[int, bool]:
        """The ISID of (target, portal), and whether it was handed out just now."""
        key = (target, portal)
        qualifier = self.qualifiers.get(key)
        if qualifier is not None:
            return make_isid(self.random_part, qualifier), False
        taken = set(self.qualifiers.values())
        qualifier = next(
            (q for q in range(DISCOVERY_QUALIFIER + 1, MAX_QUALIFIER + 1) if q not in taken), None
        )
        if qualifier is None:
            raise ValueError(f"no ISID left: {len(taken)} sessions already have one")
        self.qualifiers[key] = qualifier
        return make_isid(self.random_part, qualifier), True

    def discovery_isid(self) -> int:
        return make_isid(self.random_part, DISCOVERY_QUALIFIER)


class IsidTable:
    """Every host name's ISIDs (sans-IO): what ``isids.json`` holds."""

    def __init__(self, random_source: Callable[[], int]) -> None:
        self._random = random_source
        self.hosts: dict[str, HostIsids] = {}

    def host(self, name: str) -> HostIsids:
        found = self.hosts.get(name)
        if found is None:
            found = self.hosts[name] = HostIsids(self._random() & 0xFFFFFF)
        return found

    def isid(self, host: str, target: str, portal: str) -> tuple[int, bool]:
        """The ISID of (host, target, portal), and whether it (or the host) is new."""
        fresh = host not in self.hosts
        isid, new = self.host(host).isid(target, portal)
        return isid, new or fresh

    def to_dict(self) -> dict[str, Any]:
        return {
            "hosts": {
                name: {
                    "random": entry.random_part,
                    "sessions": [
                        {"target": t, "portal": p, "qualifier": q}
                        for (t, p), q in sorted(entry.qualifiers.items())
                    ],
                }
                for name, entry in sorted(self.hosts.items())
            }
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any], random_source: Callable[[], int]) -> IsidTable:
        table = cls(random_source)
        for name, entry in state["hosts"].items():
            host = HostIsids(int(entry["random"]))
            make_isid(host.random_part, 0)  # range check
            for session in entry["sessions"]:
                qualifier = int(session["qualifier"])
                make_isid(0, qualifier)
                key = (str(session["target"]), str(session["portal"]))
                if qualifier == DISCOVERY_QUALIFIER or qualifier in host.qualifiers.values():
                    raise ValueError(f"qualifier {qualifier} given twice or reserved")
                host.qualifiers[key] = qualifier
            table.hosts[str(name)] = host
        return table


class IsidStore:
    """The host's ISIDs, kept in ``state_dir/isids.json`` (memory only without a directory).

    Loading a damaged file raises ``StateFileError``: handing out new ISIDs would silently
    make new I_T nexuses and lose the host's reservations, so the operator must decide.
    """

    def __init__(
        self, state_dir: Path | None, *, random_source: Callable[[], int] | None = None
    ) -> None:
        self.path = None if state_dir is None else state_dir / STATE_FILE
        if random_source is None:
            rng = random.SystemRandom()
            random_source = lambda: rng.getrandbits(24)  # noqa: E731
        self._random = random_source
        self.table = self._load()

    def _load(self) -> IsidTable:
        if self.path is None:
            return IsidTable(self._random)
        state = load_state(self.path)
        if state is None:
            return IsidTable(self._random)
        try:
            return IsidTable.from_dict(state, self._random)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateFileError(f"{self.path}: unusable ISID state ({exc})") from None

    def isid(self, host: str, target: str, portal: str) -> int:
        """The ISID for a session of ``host`` to ``target`` through ``portal``; a new one is
        on disk before this returns (a blocking write, once per new session)."""
        isid, new = self.table.isid(host, target, portal)
        if new and self.path is not None:
            save_state(self.path, self.table.to_dict())
            log.info("ISID 0x%012x for %s -> %s via %s", isid, host, target, portal)
        return isid

    def discovery_isid(self, host: str) -> int:
        fresh = host not in self.table.hosts
        isid = self.table.host(host).discovery_isid()
        if fresh and self.path is not None:
            save_state(self.path, self.table.to_dict())
        return isid
