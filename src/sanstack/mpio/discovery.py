"""REPORT LUNS through a session: the LUN numbers a target shows (``host/host.py`` scans).

Paths are grouped into maps by what each device says it is (VPD page 0x83, the NAA
designator), never by LUN number or name (``host/rescan.py``'s ``group_new``): two portals
may number the same device differently, and a misconfigured target may show a different
device under the same number.
"""

from __future__ import annotations

from sanstack.initiator.session import ISCSISession
from sanstack.scsi.codes import Status
from sanstack.scsi.lun import decode_lun
from sanstack.scsi.spc import ReportLunsCdb, SelectReport

REPORT_LUNS_ALLOCATION = 64 * 1024


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
