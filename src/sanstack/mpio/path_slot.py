"""The paths of a multipath map: the shared session each goes through, and that session
while the path is up in the map (asyncio edge).

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
# open-iscsi's replacement_timeout, for writes only (``MultipathDevice._settle``).
IN_DOUBT_WRITE_WAIT = 3.0


@dataclass(frozen=True, slots=True)
class PathAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class MultipathOptions:
    """A map's policy. Its paths' sessions (initiator name, NOP timings, logins) are the
    host's: ``host.config.HostConfig`` and ``host.sessions.SessionOptions``."""

    selector: str = DEFAULT_SELECTOR
    no_path_retry: NoPathRetry = field(default_factory=NoPathRetry)
    failback: FailbackPolicy = FailbackPolicy.IMMEDIATE
    failback_delay: float = 0.0
    checker_interval: float = CHECKER_INTERVAL
    # How long a write whose path failed waits for that path's I_T nexus to log in again
    # before it is re-driven on another path all the same; see ``MultipathDevice``.
    in_doubt_write_wait: float = IN_DOUBT_WRITE_WAIT


class PathSlot:
    """One path: the policy's view (``path``) and the live session and LUN, when up. The
    session is the ``provider``'s (a shared session), which this map never logs in, out
    or aborts."""

    def __init__(self, provider: SharedPath, lun: int) -> None:
        self.label = provider.name
        self.provider = provider
        self.lun = lun  # the LUN's number behind this path (two targets may differ)
        self.path = Path(self.label)
        self.session: ISCSISession | None = None
        self.device: ISCSIDevice | None = None
        self.probed: ISCSIDevice | None = None  # the LUN as first read through this path
        self.alua_refresh: asyncio.Task[None] | None = None
        self.reinstating: asyncio.Task[None] | None = None

    def drop(self) -> None:
        """Forget the session (the path is down in this map); the provider decides on the
        session's fate, and I/O in flight on it ends with its answer or its PathFailed."""
        self.session, self.device = None, None


def still_current(provider: SharedPath, session: ISCSISession) -> bool:
    """``session`` is still the provider's, and alive (it may have failed during an await)."""
    return provider.session is session and not session.closed
