"""The reservation key of each map, kept in the host's state directory (multipathd's prkeys).

A persistent reservation registration belongs to an I_T nexus, and the host keeps its nexuses
across restarts (``host/isids.py``): the target still holds the key after the host is
killed and started again. The host must know that key too, or it shows no key for the map
and a path that comes back (a reconnect) is not brought to the key before it carries I/O.
So, as multipath-tools keeps ``/etc/multipath/prkeys`` (a key per WWID), the host keeps
``prkeys.json``: per map WWID (``naa.<hex>``, the identity, never a name or number) the key
registered through it and its APTPL bit. A key is written after the target took it (a
REGISTER that failed never reaches the file) and taken out when the map unregisters (key 0).

At start each map whose WWID has a key holds it again before it is exported: its paths are
registered with it (a nexus that still holds it answers GOOD; one the target forgot, after
its own restart without APTPL, takes it again), and every path that comes back later is
brought to it first, as for a key registered since the start.

The table is sans-IO (``PrKeyTable``); ``PrKeyStore`` keeps it in ``prkeys.json`` through
``edge/state_file.py`` (temporary file, fsync, rename, fsync the directory; CRC32C). Writes
are the caller's to order: ``change`` gives a version, ``snapshot`` the table and the version
it holds, ``write`` puts a snapshot on disk and ``saved`` says which version is there, so
many keys changed at once (a cluster node registering on every map) cost one write each time
the previous one ends, never one per key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sanstack.edge.state_file import StateFileError, load_state, save_state

STATE_FILE = "prkeys.json"
MAX_KEY = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class MapKey:
    key: int
    aptpl: bool = False


class PrKeyTable:
    """WWID -> key (sans-IO): what ``prkeys.json`` holds."""

    def __init__(self) -> None:
        self.keys: dict[str, MapKey] = {}

    def set(self, wwid: str, key: int, aptpl: bool = False) -> bool:
        """Remember ``key`` for ``wwid`` (0: forget it); True when the table changed."""
        if not 0 <= key <= MAX_KEY:
            raise ValueError(f"{key} is not a 64-bit reservation key")
        before = self.keys.get(wwid)
        if key == 0:
            self.keys.pop(wwid, None)
        else:
            self.keys[wwid] = MapKey(key, aptpl)
        return self.keys.get(wwid) != before

    def get(self, wwid: str) -> MapKey | None:
        return self.keys.get(wwid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "keys": [
                {"wwid": wwid, "key": f"0x{entry.key:x}", "aptpl": entry.aptpl}
                for wwid, entry in sorted(self.keys.items())
            ]
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> PrKeyTable:
        table = cls()
        for entry in state["keys"]:
            wwid = str(entry["wwid"])
            key = int(str(entry["key"]), 16)
            if key == 0 or wwid in table.keys:
                raise ValueError(f"{wwid}: a zero key, or the WWID given twice")
            table.set(wwid, key, bool(entry["aptpl"]))
        return table


class PrKeyStore:
    """The host's keys, kept in ``state_dir/prkeys.json`` (memory only without a directory).

    Loading a damaged file raises ``StateFileError``: starting without the keys would let a
    returning path carry I/O unregistered, so the operator must decide.
    """

    def __init__(self, state_dir: Path | None) -> None:
        self.path = None if state_dir is None else state_dir / STATE_FILE
        self.table = self._load()
        self.version = 0  # bumped by every change
        self.saved = 0  # the version on disk

    def _load(self) -> PrKeyTable:
        state = None if self.path is None else load_state(self.path)
        if state is None:
            return PrKeyTable()
        try:
            return PrKeyTable.from_dict(state)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateFileError(f"{self.path}: unusable reservation keys ({exc})") from None

    def get(self, wwid: str) -> MapKey | None:
        return self.table.get(wwid)

    def change(self, wwid: str, key: int, aptpl: bool = False) -> int:
        """Remember (0: forget) ``wwid``'s key in memory; the version that holds it."""
        if self.table.set(wwid, key, aptpl):
            self.version += 1
        return self.version

    def snapshot(self) -> tuple[dict[str, Any], int]:
        return self.table.to_dict(), self.version

    def write(self, state: dict[str, Any], version: int) -> None:
        """Put a ``snapshot`` on disk (blocking: fsync); ``saved`` is its version after."""
        if self.path is not None:
            save_state(self.path, state)
        self.saved = max(self.saved, version)
