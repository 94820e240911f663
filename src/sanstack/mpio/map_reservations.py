"""Persistent reservations of a multipath map, carried down its paths (MSDSM, mpathpersist).

``MapReservations`` is the part of ``mpio.device.MultipathDevice`` that speaks PR: the
device inherits it and gives it its paths. What goes down which path is
``mpio.reservations``' policy: REGISTER (and RELEASE, whose holder's nexus is unknown) on
every path with a session at once, a path that did not take the key failed in the map;
every other service action and PR IN on one path, moving to the next only after a path
failure. The key this host holds is ``registration`` (``reservations.HostRegistration``).

One lock per map (``_registering``) orders a key change against a path's reinstatement
(``MultipathDevice._reinstate`` takes it to register the key on a returning path), so a
path that comes back while the key changes is registered with the new key, never left
with the old one. Before our key goes on a returning path, or a key registered before is
held again, READ KEYS checks that no other initiator removed it meanwhile
(``reservations.still_held``); a removed key is forgotten and ``on_key_lost`` told.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sanstack.block.device import BlockDeviceError, DeviceNotReady
from sanstack.initiator.lun_device import ISCSIDevice
from sanstack.initiator.session import PathFailed
from sanstack.mpio import reservations
from sanstack.mpio.path_slot import PathSlot
from sanstack.mpio.paths import GroupChooser, PathEvent
from sanstack.mpio.reservations import HostRegistration, Next, Outcome, Registration
from sanstack.scsi.pr_codec import (
    PRInCdb,
    PRInServiceAction,
    PROutParameters,
    PROutServiceAction,
    PRType,
    ReadKeysData,
    ReadReservationData,
)

log = logging.getLogger("sanstack.mpio.device")  # one logger for a map's messages
T = TypeVar("T")

PR_IN_ALLOCATION = 8192


class MapReservations:
    """PR commands over a map's paths; see the module docstring. The paths and how one
    fails are the map's (``MultipathDevice``)."""

    # The map's, set by MultipathDevice.
    target_name: str
    lun: int
    slots: list[PathSlot]
    chooser: GroupChooser
    _loop: asyncio.AbstractEventLoop

    def __init__(self) -> None:
        self.registration = HostRegistration()
        # Told when another initiator removed our key (the host forgets it, a cluster node
        # learns it was fenced).
        self.on_key_lost: Callable[[int], None] | None = None
        self._registering = asyncio.Lock()

    def _path_failed(self, device: ISCSIDevice, failure: PathFailed, during: str) -> None:
        raise NotImplementedError  # MultipathDevice._path_failed

    def _fail(self, slot: PathSlot, event: PathEvent, reason: str) -> None:
        raise NotImplementedError  # MultipathDevice._fail

    async def _key_still_held(self, slot: PathSlot, device: ISCSIDevice) -> bool:
        """READ KEYS down a returning path before our key goes on it (``reservations.
        still_held``); a key another initiator removed is forgotten. False: not known now."""
        if not self.registration.key:
            return True
        cdb = PRInCdb(PRInServiceAction.READ_KEYS, PR_IN_ALLOCATION).encode()
        try:
            result = await device.execute(cdb, read_length=PR_IN_ALLOCATION, write=False)
        except BlockDeviceError as exc:
            log.info("path %s: keys not read, not reinstated: %s", slot.label, exc)
            return False
        keys = ReadKeysData.decode(result.data).reservation_keys
        if not reservations.still_held(self.registration.key, keys):
            self._key_lost()
        return True

    def _key_lost(self) -> None:
        lost = self.registration.key
        log.warning(
            "%s/%d: our key 0x%x was removed by another initiator (preempted or cleared): "
            "not registered again",
            self.target_name,
            self.lun,
            lost,
        )
        self.registration.lost()
        if self.on_key_lost is not None:
            self.on_key_lost(lost)

    async def hold_again(self, key: int, *, aptpl: bool = False) -> bool:
        """A key this host registered before (a restart, a map built again): registered on
        every path if the target still has it; False, and forgotten, if another initiator
        removed it meanwhile (``reservations.still_held``)."""
        self.registration.taken(key, aptpl)
        if not reservations.still_held(key, (await self.pr_read_keys()).reservation_keys):
            self._key_lost()
            return False
        await self.pr_register(key, aptpl=aptpl)
        return True

    async def pr_register(self, key: int, *, aptpl: bool = False) -> None:
        """REGISTER ``key`` (0 unregisters) on every path with a session; the rules are
        ``mpio.reservations``'. Raises the error of a path when no path took the key."""
        async with self._registering:
            first = reservations.register(self.registration.key, key)
            await self._every_path("REGISTER", lambda d: self._register(d, first, aptpl=aptpl))
            self.registration.taken(key, aptpl)

    async def _every_path(
        self,
        what: str,
        attempt: Callable[[ISCSIDevice], Awaitable[tuple[Outcome, BlockDeviceError | None]]],
    ) -> None:
        """``attempt`` on every path with a session at once; ``every_path_verdict`` decides."""
        devices = {s: s.device for s in self.slots if s.device is not None}
        if not devices:
            raise DeviceNotReady(f"no path for {what}")
        done = await asyncio.gather(*(attempt(d) for d in devices.values()))
        outcomes = {s: outcome for s, (outcome, _) in zip(devices, done, strict=True)}
        errors = {s: error for s, (_, error) in zip(devices, done, strict=True)}
        verdict = reservations.every_path_verdict(outcomes)
        for slot in verdict.fail:
            error = errors[slot]
            if isinstance(error, PathFailed):
                self._path_failed(devices[slot], error, what)
            elif slot.device is devices[slot]:
                self._fail(slot, PathEvent.IO_PATH_ERROR, f"{what} refused: {error}")
        if not verdict.done:
            assert verdict.report is not None
            raise errors[verdict.report] or DeviceNotReady(f"{what} failed")

    async def _register(
        self, device: ISCSIDevice, step: Registration | None, *, aptpl: bool | None = None
    ) -> tuple[Outcome, BlockDeviceError | None]:
        """Carry a registration down one path, step by step; its final outcome and error."""
        outcome, error = Outcome.GOOD, None
        while step is not None:
            parameters = PROutParameters(
                reservation_key=step.reservation_key,
                service_action_reservation_key=step.service_action_key,
                aptpl=self.registration.aptpl if aptpl is None else aptpl,
            )
            outcome, error = await _attempt(device.persistent_reserve_out(step.action, parameters))
            step = reservations.next_registration(step, outcome)
        return outcome, error

    async def pr_reserve(self, pr_type: PRType) -> None:
        await self._prout_one_path(PROutServiceAction.RESERVE, pr_type=pr_type)

    async def pr_release(self, pr_type: PRType) -> None:
        """RELEASE the reservation this host holds (a failover cluster's clean hand-over),
        down every path: only the holder's nexus releases, and which one that is is unknown."""
        parameters = PROutParameters(reservation_key=self.registration.key)
        action = PROutServiceAction.RELEASE
        await self._every_path(
            action.name, lambda d: _attempt(d.persistent_reserve_out(action, parameters, pr_type))
        )

    async def pr_clear(self) -> None:
        """CLEAR every registration and the reservation, this host's included."""
        async with self._registering:
            await self._prout_one_path(PROutServiceAction.CLEAR)
            self.registration.cleared()

    async def pr_preempt(self, victim_key: int, pr_type: PRType, *, abort: bool = False) -> None:
        """PREEMPT (AND ABORT): fence the holder of ``victim_key`` (SPC-4 §5.13.11.2.6)."""
        action = PROutServiceAction.PREEMPT_AND_ABORT if abort else PROutServiceAction.PREEMPT
        await self._prout_one_path(action, pr_type=pr_type, sa_key=victim_key)

    async def pr_read_keys(self) -> ReadKeysData:
        return ReadKeysData.decode(await self._prin_one_path(PRInServiceAction.READ_KEYS))

    async def pr_read_reservation(self) -> ReadReservationData:
        data = await self._prin_one_path(PRInServiceAction.READ_RESERVATION)
        return ReadReservationData.decode(data)

    async def _prout_one_path(
        self, action: PROutServiceAction, *, pr_type: int = 0, sa_key: int = 0
    ) -> None:
        parameters = PROutParameters(
            reservation_key=self.registration.key, service_action_reservation_key=sa_key
        )
        await self._one_path(
            action.name, lambda d: d.persistent_reserve_out(action, parameters, pr_type)
        )

    async def _prin_one_path(self, action: PRInServiceAction) -> bytes:
        cdb = PRInCdb(action, PR_IN_ALLOCATION).encode()

        async def prin(device: ISCSIDevice) -> bytes:
            result = await device.execute(cdb, read_length=PR_IN_ALLOCATION, write=False)
            return bytes(result.data)

        return await self._one_path(action.name, prin)

    async def _one_path(self, what: str, command: Callable[[ISCSIDevice], Awaitable[T]]) -> T:
        """One path carries the command; ``reservations.next_after_one_path`` says what
        follows each try (MSDSM: a path failure moves it to the next path)."""
        group = self.chooser.choose([s.path for s in self.slots], self._loop.time())
        best = [s for s in self.slots if s.path in group]
        usable = [s for s in self.slots if s.path.usable]
        for slot in reservations.one_path_order(list(self.slots), best, usable):
            device = slot.device
            if device is None:
                continue
            try:
                return await command(device)
            except BlockDeviceError as error:
                match reservations.next_after_one_path(reservations.outcome_of(error)):
                    case Next.NEXT_PATH:
                        assert isinstance(error, PathFailed)
                        self._path_failed(device, error, what)
                    case _:
                        raise
        raise DeviceNotReady(f"no usable path for {what}")


async def _attempt(command: Awaitable[None]) -> tuple[Outcome, BlockDeviceError | None]:
    """Run one PERSISTENT RESERVE OUT; how it ended, as the policy reads it."""
    try:
        await command
    except BlockDeviceError as error:
        return reservations.outcome_of(error), error
    return Outcome.GOOD, None
