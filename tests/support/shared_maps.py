"""Multipath maps over a host's shared sessions, for tests that drive the maps themselves.

What the host does (``host/host.py``), without its discovery and scans: one ``SessionPool``
(one session per (target, portal), the host's stable ISIDs) and ``MultipathDevice.over``
every session for a LUN. The pool is closed (its sessions logged out, its tasks ended) when
the context ends; the maps are the caller's to close first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest

from sanstack.host.isids import IsidStore
from sanstack.host.sessions import SessionOptions, SessionPool, SharedSession
from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.path_slot import MultipathOptions, PathAddress

# The NOP timings the old per-map sessions used in these tests; a quick first re-login.
SESSION_OPTIONS = SessionOptions(nop_interval=0.5, nop_timeout=1.0, reconnect_min=0.05)


@asynccontextmanager
async def shared_sessions(
    initiator: str,
    target: str,
    portals: Sequence[PathAddress],
    options: SessionOptions = SESSION_OPTIONS,
    *,
    up_within: float | None = 10.0,
) -> AsyncIterator[list[SharedSession]]:
    """One shared session per portal to ``target``; each up within ``up_within`` seconds
    (None: not waited for)."""
    pool = SessionPool(initiator, IsidStore(None), options)
    try:
        shared = [pool.session(target, portal) for portal in portals]
        if up_within is not None:
            for session in shared:
                if not await session.wait_up(up_within):
                    pytest.fail(f"{session.name}: not logged in within {up_within}s")
        yield shared
    finally:
        await pool.close()


async def map_over(
    shared: Sequence[SharedSession], lun: int, options: MultipathOptions
) -> MultipathDevice:
    """The map of LUN ``lun`` over every one of ``shared`` (the same number behind each)."""
    return await MultipathDevice.over(
        [(s, lun) for s in shared], options, target_name=shared[0].target, lun=lun
    )
