"""The paths of a multipath map: where each goes, and its live session (asyncio edge).

``PathSlot`` is the only way ``MultipathDevice`` reaches a path's session: its ``session``
is None while the path is down, so no I/O holds a session past a failure (KB963702).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sanstack.initiator.lun_device import ISCSIDevice
from sanstack.initiator.session import ISCSISession
from sanstack.mpio.no_path import NoPathRetry
from sanstack.mpio.paths import FailbackPolicy, Path
from sanstack.mpio.selectors import DEFAULT_SELECTOR
from sanstack.mpio.shared_path import SharedPath

CHECKER_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class PathAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class MultipathOptions:
    initiator_name: str
    selector: str = DEFAULT_SELECTOR
    no_path_retry: NoPathRetry = field(default_factory=NoPathRetry)
    failback: FailbackPolicy = FailbackPolicy.IMMEDIATE
    failback_delay: float = 0.0
    checker_interval: float = CHECKER_INTERVAL
    nop_interval: float = 1.0
    nop_timeout: float = 2.0


def path_isid(lun: int, path_index: int) -> int:
    """The ISID of one LUN's session on one path (RFC 7143 §10.12.5, type 10b "random").

    Unique per session, or a second LUN's login would reinstate (close) the first's; and the
    same on every re-login, so the I_T nexus, and with it the persistent reservation
    registrations, survive a reconnect (a new ISID is a new nexus).
    """
    return (0x80 << 40) | (0x5A << 32) | ((lun & 0xFFFF) << 16) | (path_index & 0xFFFF)


class PathSlot:
    """One path: the policy's view (``path``) and the live session and LUN, when up.

    Either the device's own session to ``address`` (logged in with ``isid``), or a
    ``provider``'s shared session, which this device never logs in, out or aborts."""

    def __init__(
        self,
        label: str,
        *,
        address: PathAddress | None = None,
        isid: int = 0,
        provider: SharedPath | None = None,
        lun: int = 0,
    ) -> None:
        self.label = label
        self.address = address
        self.isid = isid
        self.provider = provider
        self.lun = lun  # the LUN's number behind this path (two targets may differ)
        self.path = Path(label)
        self.session: ISCSISession | None = None
        self.device: ISCSIDevice | None = None
        self.probed: ISCSIDevice | None = None  # a shared path's LUN as first read
        self.alua_refresh: asyncio.Task[None] | None = None
        self.reinstating: asyncio.Task[None] | None = None

    @classmethod
    def owned(cls, address: PathAddress, isid: int, lun: int) -> PathSlot:
        return cls(str(address), address=address, isid=isid, lun=lun)

    def drop(self) -> None:
        """Forget the session; its in-flight I/O ends with its PathFailed. Our own session
        is dropped too; a shared one is its provider's, which decides on its fate."""
        session, self.session, self.device = self.session, None, None
        if session is not None and self.provider is None:
            session.abort()


def still_current(provider: SharedPath, session: ISCSISession) -> bool:
    """``session`` is still the provider's, and alive (it may have failed during an await)."""
    return provider.session is session and not session.closed


async def bounded_logout(session: ISCSISession) -> None:
    try:
        await asyncio.wait_for(session.logout(), 3)
    except TimeoutError:  # logout bounds itself and never raises PathFailed
        session.abort()
