"""The SCSI commands the validation tests send down one path, and their answers in the
words an administrator reads. Each takes an ``ISCSIDevice`` (one LUN over one session).

The write probe is a WRITE(16) of zero blocks: SBC-4 says a TRANSFER LENGTH of zero moves no
data and is no error, while the reservation check of SPC-4 §5.13.1 is made on the command,
whatever its length. So "may this I_T nexus write?" is answered without touching the data,
and the PR tests need no ``--destructive``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sanstack.block.device import BlockDeviceError
from sanstack.initiator.lun_device import ISCSICommandError, ISCSIDevice, ReservationConflict
from sanstack.initiator.session import PathFailed
from sanstack.scsi.cdb import CDB16
from sanstack.scsi.codes import ASC, Opcode, SenseKey
from sanstack.scsi.inquiry import (
    Association,
    Designator,
    DesignatorType,
    InquiryCdb,
    VpdPage,
)
from sanstack.scsi.pr_codec import (
    PRInCdb,
    PRInServiceAction,
    PROutParameters,
    PROutServiceAction,
    ReadKeysData,
    ReadReservationData,
    ReportCapabilitiesData,
)
from sanstack.scsi.sense import parse_sense

PR_IN_ALLOCATION = 8192
VPD_ALLOCATION = 1024
_INQUIRY_LENGTH = 36


@dataclass(frozen=True, slots=True)
class Answer:
    """How one command ended: ``good``, or ``conflict`` (RESERVATION CONFLICT), or an error
    described in ``text``."""

    good: bool
    conflict: bool = False
    text: str = "GOOD"
    illegal_request: bool = False


GOOD = Answer(True)


def describe(error: BaseException) -> Answer:
    if isinstance(error, ReservationConflict):
        return Answer(False, conflict=True, text="RESERVATION CONFLICT")
    if isinstance(error, ISCSICommandError):
        try:
            key, asc, ascq = parse_sense(error.sense)
        except ValueError:
            return Answer(False, text=str(error))
        text = sense_text(key, asc, ascq)
        return Answer(False, text=text, illegal_request=key == SenseKey.ILLEGAL_REQUEST)
    if isinstance(error, PathFailed):
        return Answer(False, text=f"the path failed: {error}")
    return Answer(False, text=str(error) or type(error).__name__)


def sense_text(key: int, asc: int, ascq: int) -> str:
    """``ILLEGAL REQUEST, INVALID FIELD IN CDB``: the sense as SPC-4 names it."""
    try:
        name = ASC(asc << 8 | ascq).name.replace("_", " ")
    except ValueError:
        name = f"ASC {asc:02x}h/{ascq:02x}h"
    try:
        key_name = SenseKey(key).name.replace("_", " ")
    except ValueError:
        key_name = f"sense key {key:x}h"
    return f"{key_name}, {name}"


def error_text(detail: str) -> str:
    """An ``ISCSICommandError`` message (``ILLEGAL_REQUEST 24/00``) as ``sense_text`` says
    it; any other text as it is."""
    match = re.fullmatch(r"([A-Z_]+) ([0-9a-f]{2})/([0-9a-f]{2})", detail)
    if match is None or match[1] not in SenseKey.__members__:
        return detail
    return sense_text(SenseKey[match[1]], int(match[2], 16), int(match[3], 16))


async def prout(
    device: ISCSIDevice,
    action: PROutServiceAction,
    *,
    key: int = 0,
    sa_key: int = 0,
    pr_type: int = 0,
    aptpl: bool = False,
) -> Answer:
    parameters = PROutParameters(
        reservation_key=key, service_action_reservation_key=sa_key, aptpl=aptpl
    )
    try:
        await device.persistent_reserve_out(action, parameters, pr_type)
    except BlockDeviceError as exc:
        return describe(exc)
    return GOOD


async def prin(device: ISCSIDevice, action: PRInServiceAction) -> bytes:
    cdb = PRInCdb(action, PR_IN_ALLOCATION).encode()
    result = await device.execute(cdb, read_length=PR_IN_ALLOCATION, write=False)
    return bytes(result.data)


async def read_keys(device: ISCSIDevice) -> ReadKeysData:
    return ReadKeysData.decode(await prin(device, PRInServiceAction.READ_KEYS))


async def read_reservation(device: ISCSIDevice) -> ReadReservationData:
    return ReadReservationData.decode(await prin(device, PRInServiceAction.READ_RESERVATION))


async def report_capabilities(device: ISCSIDevice) -> ReportCapabilitiesData | Answer:
    """REPORT CAPABILITIES, or the error that refused it."""
    try:
        return ReportCapabilitiesData.decode(
            await prin(device, PRInServiceAction.REPORT_CAPABILITIES)
        )
    except BlockDeviceError as exc:
        return describe(exc)
    except ValueError as exc:
        return Answer(False, text=f"unreadable REPORT CAPABILITIES data: {exc}")


async def may_write(device: ISCSIDevice) -> Answer:
    """A zero-block WRITE(16) (module docstring)."""
    try:
        await device.execute(CDB16.pack(Opcode.WRITE_16, 0, 0, 0, 0, 0), write=True)
    except BlockDeviceError as exc:
        return describe(exc)
    return GOOD


async def may_read(device: ISCSIDevice) -> Answer:
    try:
        await device.read(0, 1)
    except BlockDeviceError as exc:
        return describe(exc)
    return GOOD


async def vpd(device: ISCSIDevice, page: VpdPage) -> bytes | None:
    cdb = InquiryCdb(evpd=True, page_code=page, allocation_length=VPD_ALLOCATION).encode()
    try:
        result = await device.execute(cdb, read_length=VPD_ALLOCATION, write=False)
    except ISCSICommandError:
        return None
    data = bytes(result.data)
    return data if len(data) >= 4 and data[1] == page else None


async def standard_inquiry(device: ISCSIDevice) -> bytes:
    cdb = InquiryCdb(evpd=False, page_code=0, allocation_length=_INQUIRY_LENGTH).encode()
    return bytes((await device.execute(cdb, read_length=_INQUIRY_LENGTH, write=False)).data)


def lu_designators(page83: bytes) -> list[Designator]:
    """The logical unit's designators of VPD page 83h (not the port's or the target's)."""
    try:
        found = Designator.decode_all(page83)
    except ValueError:
        return []
    return [d for d in found if d.association is Association.LOGICAL_UNIT]


def identity_text(designators: list[Designator]) -> str | None:
    """The identity a cluster matches disks by: the NAA designator, else EUI-64, else the
    T10 vendor id; None when the page has none of them."""
    for kind in (DesignatorType.NAA, DesignatorType.EUI_64, DesignatorType.T10_VENDOR_ID):
        for d in designators:
            if d.designator_type is kind and d.designator:
                return f"{kind.name.lower()}.{d.designator.hex()}"
    return None


def unit_serial(page80: bytes | None) -> str | None:
    if page80 is None or len(page80) < 4:
        return None
    return page80[4 : 4 + page80[3]].decode("ascii", "replace").strip(" \x00") or None
