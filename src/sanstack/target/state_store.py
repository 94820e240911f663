"""The target's reservation state files (APTPL, SPC-4 §5.13.5).

``ReservationFile`` is the target's ``ReservationStore`` (``scsi/logical_unit.py``): one
crash-safe state file per LUN (``edge/state_file.py``: temporary file, fsync, rename, fsync
the directory; CRC32C), named by the LUN's NAA so that it follows the device, not its number.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sanstack.block.device import DeviceIdentity
from sanstack.edge.state_file import StateFileError, load_state, save_state
from sanstack.scsi.pr import PersistentReservations


class ReservationFile:
    """A LUN's persistent reservations in a state file (APTPL, SPC-4 §5.13.5)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._save_lock = asyncio.Lock()

    @classmethod
    def in_directory(cls, directory: Path, identity: DeviceIdentity) -> ReservationFile:
        return cls(directory / f"pr-{identity.naa.hex()}.json")

    def load(self) -> PersistentReservations | None:
        state = load_state(self.path)
        if state is None:
            return None
        try:
            return PersistentReservations.from_dict(state)
        except (ValueError, KeyError, TypeError) as exc:
            raise StateFileError(f"{self.path}: unusable reservation state ({exc})") from None

    async def save(self, reservations: PersistentReservations) -> None:
        """Saves run one at a time and each writes the state as it is when its turn comes,
        so concurrent PR OUTs can never leave an older state on disk after a newer one."""
        async with self._save_lock:
            await asyncio.to_thread(save_state, self.path, reservations.to_dict())
