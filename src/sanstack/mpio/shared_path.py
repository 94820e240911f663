"""Paths a multipath map uses but does not own: a session someone else logs in and keeps.

A host logs in once per (target, portal) and every LUN of that target is reached through
that one session (open-iscsi under dm-multipath). The map of one LUN then holds no session
of its own: it is told when the shared session goes down and when it is up again, and
reaches its LUN through whatever session is current. The host's session pool
(``host/sessions.py``) provides such paths; the multipath layer sees them only through
these two Protocols, so it never imports the layer above it.

ALUA is read per shared session, not per map: the state of a target port group is the same
for every LUN behind that port, so ``read_alua`` answers every map on the session from one
REPORT TARGET PORT GROUPS (``mpio/alua_reader.py``'s ``PortGroupReader`` does the reading).
"""

from __future__ import annotations

from typing import Protocol

from sanstack.initiator.session import ISCSISession, PathFailed
from sanstack.scsi.alua_codec import ALUAState


class SharedPath(Protocol):
    """One shared session to one target port: ``session`` while logged in, else None."""

    @property
    def name(self) -> str: ...

    @property
    def session(self) -> ISCSISession | None: ...

    def add_listener(self, listener: PathListener) -> None: ...

    def remove_listener(self, listener: PathListener) -> None: ...

    async def read_alua(self, lun: int, since: float) -> ALUAState | None:
        """The ALUA state of this path's target port group, from a read of the current
        session that started at loop time ``since`` or later (shared by every map that asks;
        ``lun`` is one to send it through if a read is needed). None when unknown: no
        session, a target without ALUA, or no answer."""
        ...


class PathListener(Protocol):
    """Told, synchronously and strictly alternating, when a shared path goes down (its
    session failed: every command on it ends with ``failure``) and when it is up again
    (``path.session`` is the new session, on the same I_T nexus). One that subscribes while
    the path is up reads ``path.session`` instead of waiting for a notice."""

    def path_down(self, path: SharedPath, failure: PathFailed) -> None: ...

    def path_up(self, path: SharedPath) -> None: ...
