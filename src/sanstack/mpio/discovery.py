"""Find every LUN of a target on every portal and group the paths by device identity.

A multipath host must group paths by what the device says it is (VPD page 0x83, the NAA
designator), never by LUN number or name: two portals may number the same device
differently, and a misconfigured target may show a different device under the same number.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sanstack.initiator.lun_device import ISCSIDevice
from sanstack.initiator.session import ISCSISession, LoginRefused, PathFailed
from sanstack.mpio.path_slot import PathAddress
from sanstack.scsi.codes import Status
from sanstack.scsi.lun import decode_lun
from sanstack.scsi.spc import ReportLunsCdb, SelectReport

log = logging.getLogger(__name__)

REPORT_LUNS_ALLOCATION = 64 * 1024
DISCOVERY_ISID = (0x80 << 40) | (0x5B << 32)  # apart from every data session's ISID
DISCOVERY_TIMEOUT = 30.0


@dataclass(slots=True)
class DiscoveredDevice:
    """One device (one NAA) and the LUN number it has behind each path that reaches it."""

    naa: str
    luns: dict[PathAddress, int] = field(default_factory=dict)

    @property
    def lun(self) -> int:
        """The LUN number when every path agrees (the usual case)."""
        numbers = set(self.luns.values())
        if len(numbers) != 1:
            raise ValueError(f"device {self.naa} has different LUN numbers on its paths")
        return numbers.pop()


async def discover_devices(
    addresses: Sequence[PathAddress], target_name: str, *, initiator_name: str
) -> list[DiscoveredDevice]:
    """Every device of ``target_name`` reachable through ``addresses``, grouped by NAA."""
    found = await asyncio.gather(
        *(_luns_on(address, target_name, initiator_name) for address in addresses)
    )
    devices: dict[str, DiscoveredDevice] = {}
    for address, by_naa in zip(addresses, found, strict=True):
        for naa, lun in by_naa.items():
            devices.setdefault(naa, DiscoveredDevice(naa)).luns[address] = lun
    return sorted(devices.values(), key=lambda d: min(d.luns.values()))


async def report_luns(session: ISCSISession) -> list[int] | None:
    """The LUN numbers REPORT LUNS gives through ``session``; None when it fails (raises
    ``PathFailed`` when the session does)."""
    cdb = ReportLunsCdb(SelectReport.ALL_LOGICAL_UNITS, REPORT_LUNS_ALLOCATION).encode()
    result = await session.command(0, cdb, read_length=REPORT_LUNS_ALLOCATION)
    if result.status != Status.GOOD:
        return None
    data = bytes(result.data)
    length = int.from_bytes(data[:4], "big")
    return [
        decode_lun(int.from_bytes(data[8 + i : 16 + i], "big"))
        for i in range(0, min(length, len(data) - 8), 8)
    ]


async def _luns_on(address: PathAddress, target_name: str, initiator_name: str) -> dict[str, int]:
    """NAA -> LUN number through one portal; an unreachable portal contributes nothing."""
    try:
        session = await asyncio.wait_for(
            ISCSISession.connect(
                address.host,
                address.port,
                target_name,
                initiator_name=initiator_name,
                isid=DISCOVERY_ISID | (address.port & 0xFFFF),
            ),
            DISCOVERY_TIMEOUT,
        )
    except (PathFailed, LoginRefused, TimeoutError) as exc:
        log.warning("discovery through %s failed: %s", address, str(exc))
        return {}
    try:
        numbers = await report_luns(session)
        if numbers is None:
            log.warning("REPORT LUNS through %s failed", address)
            return {}
        out: dict[str, int] = {}
        for lun in numbers:
            device = await ISCSIDevice.open(session, lun)
            out[device.identity.naa.hex()] = lun
        return out
    except PathFailed as exc:  # ISCSIDevice.open's other errors are about the LUN: raised
        log.warning("discovery through %s failed: %s", address, str(exc))
        return {}
    finally:
        try:
            await asyncio.wait_for(session.logout(), 5)
        except TimeoutError:  # logout bounds itself and never raises PathFailed
            session.abort()
