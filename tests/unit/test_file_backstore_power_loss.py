"""The target's file backstore under power loss, checked crash state by crash state.

A ``LogicalUnit`` serves a ``FileDevice``; below it, every ``pwritev`` to the file and every
``fdatasync`` of it is recorded (the page cache is the volatile cache: a system call's
write may be lost, whole or in part, until an ``fdatasync`` issued after it returns). A
random workload sends WRITE(16) with and without FUA, SYNCHRONIZE CACHE(10), and MODE
SELECT turning the caching page's WCE bit off and on, framing each command with marks.
The log is replayed to crash states at every point (``Replayer.crash_states``: durable
writes plus any subset, whole or torn at 512-byte boundaries, of the others) and in each:

* every WRITE with FUA that completed is on the file;
* every WRITE that completed before a completed SYNCHRONIZE CACHE was issued is there;
* while MODE SENSE reports WCE=0, every WRITE that completed is there (the bit tells the
  truth); with WCE=1 some crash state does lose a completed write (the cache is real);
* no block holds data never written to it.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
from pathlib import Path
from typing import Any

import pytest
from tests.support.sbc_harness import BS, execute, good, make_lu, rw

from sanstack.block.file import FileDevice
from sanstack.block.log_writes import Replayer, WriteLog
from sanstack.scsi.codes import Opcode
from sanstack.scsi.logical_unit import LogicalUnit
from sanstack.scsi.mode import ModeParameters
from sanstack.scsi.mode_pages import caching_page

BLOCKS = 64
SEEDS = (1, 2, 3)
OPS = 70
PER_POINT = 8


class RecordingOS:
    """Logs the writes and syncs of one file: wraps ``os.open``, ``os.pwritev`` and
    ``os.fdatasync`` on ``os`` itself, where the backstore finds them whether it runs as
    Python or compiled (a compiled module's own ``os`` global cannot be replaced)."""

    def __init__(self, log: WriteLog, path: Path) -> None:
        self.log = log
        self.path = str(path)
        self.fd = -1
        self._open = os.open
        self._pwritev = os.pwritev
        self._fdatasync = os.fdatasync

    def install(self, patch: pytest.MonkeyPatch) -> None:
        patch.setattr(os, "open", self.open)
        patch.setattr(os, "pwritev", self.pwritev)
        patch.setattr(os, "fdatasync", self.fdatasync)

    def open(self, path: str | os.PathLike[str], flags: int, *args: int) -> int:
        fd = self._open(path, flags, *args)
        if os.fspath(path) == self.path:
            self.fd = fd
        return fd

    def pwritev(self, fd: int, buffers: list[Any], offset: int, *flags: int) -> int:
        written = self._pwritev(fd, buffers, offset, *flags)
        if fd == self.fd and written:
            data = b"".join(bytes(b) for b in buffers)[: written - written % BS]
            assert offset % BS == 0
            if data:
                # Logged once the call returned: what it wrote is in the page cache.
                self.log.end_io(self.log.begin_write(offset // BS, data))
        return written

    def fdatasync(self, fd: int) -> None:
        issued = self.log.flush_issued()
        self._fdatasync(fd)
        if fd == self.fd:
            self.log.flush_done(issued)


def payload(op: int, lba: int) -> bytes:
    return struct.pack("<II", op, lba) * (BS // 8)


async def wce_reported(lu: LogicalUnit) -> bool:
    cdb = bytes([Opcode.MODE_SENSE_6, 0x08, 0x08, 0, 255, 0])  # DBD, caching page
    page = bytes(good(await execute(lu, cdb, data_in_length=255)).data)[4:]
    return bool(page[2] & 0x04)


async def set_wce(lu: LogicalUnit, wce: bool) -> None:
    params = bytes(4) + caching_page(ModeParameters(wce=wce))
    cdb = bytes([Opcode.MODE_SELECT_6, 0x10, 0, 0, len(params), 0])
    good(await execute(lu, cdb, params))


async def workload(path: Path, seed: int, log: WriteLog) -> list[dict[str, Any]]:
    """Run the commands; each is a dict with its begin and ack log indices."""
    rng = random.Random(seed)
    device = FileDevice(path, BS, size_bytes=BLOCKS * BS, create=True)
    lu = make_lu(device)
    ops: list[dict[str, Any]] = []
    try:
        assert device.write_cache and await wce_reported(lu)  # a page cache: WCE=1
        wce = True
        for op_id in range(1, OPS + 1):
            roll = rng.random()
            op: dict[str, Any] = {"id": op_id}
            if roll < 0.7:
                lba = rng.randrange(BLOCKS - 4)
                count = rng.randint(1, 4)
                fua = rng.random() < 0.25
                op |= {"op": "write", "lba": lba, "count": count, "fua": fua, "wce": wce}
                data = b"".join(payload(op_id, lba + i) for i in range(count))
                op["begin"] = log.mark(f"begin {op_id}")
                good(await execute(lu, rw(Opcode.WRITE_16, lba, count, fua=fua), data))
            elif roll < 0.85:
                op |= {"op": "sync"}
                op["begin"] = log.mark(f"begin {op_id}")
                good(await execute(lu, bytes([Opcode.SYNCHRONIZE_CACHE_10, *bytes(9)])))
            else:
                wce = not wce
                op |= {"op": "wce", "wce": wce}
                op["begin"] = log.mark(f"begin {op_id}")
                await set_wce(lu, wce)
                assert await wce_reported(lu) == wce
            op["ack"] = log.mark(f"ack {op_id}")
            ops.append(op)
    finally:
        await device.close()
    return ops


def check(ops: list[dict[str, Any]], log: WriteLog) -> tuple[int, int]:
    """Check crash states at every point; returns (states, states losing a completed write)."""
    replayer = Replayer(log)
    states = lossy = 0
    for point in range(len(log.entries) + 1):
        sync_begin = max(
            (o["begin"] for o in ops if o["op"] == "sync" and o["ack"] < point), default=-1
        )
        history: dict[int, list[tuple[bytes, bool, bool]]] = {}  # value, issued, durable
        for o in ops:
            if o["op"] != "write" or o["begin"] >= point:
                continue
            acked = o["ack"] < point
            durable = acked and (o["fua"] or not o["wce"] or o["ack"] < sync_begin)
            for lba in range(o["lba"], o["lba"] + o["count"]):
                history.setdefault(lba, []).append((payload(o["id"], lba), acked, durable))
        for state in replayer.crash_states(point, limit=PER_POINT, seed=point):
            states += 1
            image = replayer.build(state)
            lost = False
            for lba in range(BLOCKS):
                versions = history.get(lba, [])
                got = image.get(lba, bytes(BS))
                last_durable = max((i for i, v in enumerate(versions) if v[2]), default=-1)
                allowed = [v[0] for v in versions[last_durable:]] if last_durable >= 0 else []
                if last_durable < 0:
                    allowed = [bytes(BS)] + [v[0] for v in versions]
                assert got in allowed, f"{state.describe()}: block {lba}"
                acked = [v[0] for v in versions if v[1]]
                if acked and got != acked[-1] and versions[-1][1]:
                    lost = True
            lossy += lost
    return states, lossy


@pytest.mark.parametrize("seed", SEEDS)
def test_fua_sync_cache_and_wce_hold_in_every_crash_state(tmp_path: Path, seed: int) -> None:
    log = WriteLog(BS, BLOCKS)
    with pytest.MonkeyPatch.context() as patch:
        RecordingOS(log, tmp_path / "lun.img").install(patch)
        ops = asyncio.run(workload(tmp_path / "lun.img", seed, log))
    assert log.entries, "no write of the backstore was recorded"
    states, lossy = check(ops, log)
    print(f"seed {seed}: {states} crash states, {lossy} lose a completed write")
    assert states > 500
    assert lossy > 0  # with WCE=1 a completed write without FUA or SYNC CACHE may be lost


def test_the_check_fails_on_a_target_that_ignores_fua_and_wce(tmp_path: Path) -> None:
    from sanstack.scsi import sbc_rw

    async def never(lu: LogicalUnit, fua: bool) -> None:
        return None

    log = WriteLog(BS, BLOCKS)
    with pytest.MonkeyPatch.context() as patch:
        RecordingOS(log, tmp_path / "lun.img").install(patch)
        patch.setattr(sbc_rw, "flush_if_needed", never)
        ops = asyncio.run(workload(tmp_path / "lun.img", SEEDS[0], log))
    assert log.entries, "no write of the backstore was recorded"
    with pytest.raises(AssertionError, match="block"):
        check(ops, log)
