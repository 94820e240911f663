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
        # Whether the file holds an APTPL state (None: not read yet, so unknown).
        self._file_aptpl: bool | None = None

    @classmethod
    def in_directory(cls, directory: Path, identity: DeviceIdentity) -> ReservationFile:
        return cls(directory / f"pr-{identity.naa.hex()}.json")

    def load(self) -> PersistentReservations | None:
        state = load_state(self.path)
        if state is None:
            self._file_aptpl = False
            return None
        try:
            loaded = PersistentReservations.from_dict(state)
        except (ValueError, KeyError, TypeError) as exc:
            raise StateFileError(f"{self.path}: unusable reservation state ({exc})") from None
        self._file_aptpl = loaded.aptpl
        return loaded

    async def save(self, reservations: PersistentReservations) -> None:
        """Saves run one at a time and each writes the state as it is when its turn comes,
        so concurrent PR OUTs can never leave an older state on disk after a newer one.

        Only what a power cycle would keep is worth two fsyncs: a state whose last APTPL
        was zero is gone after one (SPC-4 §5.13.5), so it is written only to replace an
        APTPL state in the file, and skipped while the file holds none. A failover's
        REGISTERs, PREEMPTs and RELEASEs (APTPL zero, as fence_scsi and sanstack's cluster
        send them) then cost no disk write on the target."""
        async with self._save_lock:
            if not reservations.aptpl and self._file_aptpl is False:
                return
            document = reservations.to_dict()
            await asyncio.to_thread(save_state, self.path, document)
            self._file_aptpl = bool(document["aptpl"])
