"""A child process for tests/interop/test_snapshot_crash.py: random operations on a volume
file until it is killed with SIGKILL.

    python tests/support/snapshot_crash_worker.py VOLUME LOG SEED MODE [TARGET]

Before each operation it appends a ``begin`` line to LOG (JSON: the operation and what it
needs to be replayed: a write carries the seed of its data), and once the volume has
acknowledged it, an ``ack`` line; each line is written with one ``write`` and fsync'd
before the next step. So the parent knows every acknowledged operation, and the few that
were in flight when the process died.

MODE ``random``: the parent kills the process at a random moment after it prints
``started`` (it then opens the volume, so a kill may land in recovery too). MODE
``create``, ``restore``, ``delete`` or ``write``: when the first such operation begins
(after a few others), the process counts the writes it makes to the volume file from then
on (the operation's own, and the background work it starts: a restore's merge, a delete's
reclaim) and kills itself at the TARGET-th, after writing a random number of whole 4 KiB
pages of it, as a kill in the middle of a ``pwrite`` may leave it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from typing import Any

from sanstack.block.device import BlockDevice
from sanstack.block.file import FileDevice
from sanstack.snapshot.files import open_volume_file
from sanstack.snapshot.volume import SnapshotVolume

BLOCK = 512
CHUNK = 4096
PER = CHUNK // BLOCK
REGION = 192  # chunks written at the start of the volume
REGION_BLOCKS = REGION * PER
MAX_SNAPSHOTS = 6
PAGE = 4096


def payload(seed: int, blocks: int) -> bytes:
    """The data of a write, from its seed (the parent regenerates it the same way)."""
    return random.Random(seed).randbytes(blocks * BLOCK)


class Trap:
    """Kill this process at the ``target``-th volume-file write once armed."""

    def __init__(self, target: int, seed: int) -> None:
        self.armed = False
        self.count = 0
        self.target = target
        self.rng = random.Random(seed)

    def install(self) -> None:
        original = FileDevice.write
        trap = self

        async def write(self: FileDevice, lba: int, data: bytes | memoryview) -> None:
            if trap.armed:
                trap.count += 1
                if trap.count >= trap.target:
                    view = memoryview(data)
                    pages = trap.rng.randrange(len(view) // PAGE + 1)
                    if pages:
                        await original(self, lba, view[: pages * PAGE])
                    os.kill(os.getpid(), signal.SIGKILL)
            await original(self, lba, data)

        FileDevice.write = write  # type: ignore[method-assign]


class Log:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.next_id = 0

    def line(self, record: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(record) + "\n").encode())
        os.fsync(self.fd)

    def begin(self, op: str, **fields: Any) -> int:
        self.next_id += 1
        self.line({"id": self.next_id, "phase": "begin", "op": op, **fields})
        return self.next_id

    def ack(self, op_id: int) -> None:
        self.line({"id": op_id, "phase": "ack"})


class Worker:
    def __init__(self, path: str, log: Log, seed: int, mode: str, trap: Trap | None) -> None:
        self.path = path
        self.log = log
        self.rng = random.Random(seed)
        self.seed = seed
        self.mode = mode
        self.trap = trap
        self.volume: SnapshotVolume | None = None
        self.held: list[BlockDevice] = []
        self.created = 0
        self.step = 0
        self.warmup = self.rng.randrange(3, 12)
        # Some runs flush all the time: each FLUSH seals a journal page, so the ring fills,
        # checkpoints run (and get killed) and the ring wraps.
        self.flushes = self.rng.choice([1, 1, 20])

    @property
    def vol(self) -> SnapshotVolume:
        assert self.volume is not None
        return self.volume

    def ready(self) -> list[str]:
        return [s.name for s in self.vol.snapshots() if s.state == "ready"]

    def arm(self, op: str) -> None:
        """The operation ``op`` begins: spring the trap if it waits for this one."""
        trap = self.trap
        if trap is not None and op == self.mode and self.step > self.warmup:
            trap.armed = True

    async def run(self) -> None:
        self.volume = await open_volume_file(self.path)
        self.log.line({"phase": "opened"})
        while True:
            self.step += 1
            ops = ["write"] * 8 + ["batch"] * 3 + ["unmap"] * 2 + ["create"] * 3
            ops += ["delete"] * 2 + ["restore"] + ["hold", "release", "reopen"]
            ops += ["flush"] * self.flushes
            if self.trap is not None and self.step > self.warmup and not self.trap.armed:
                ops = [self.mode] * 4 + ops
            await self.one(self.rng.choice(ops))
            if self.rng.random() < 0.3:
                await asyncio.sleep(0)

    async def one(self, op: str) -> None:
        rng, log, volume = self.rng, self.log, self.vol
        if op == "write":
            lba = rng.randrange(REGION_BLOCKS)
            blocks = rng.randint(1, min(3 * PER, REGION_BLOCKS - lba))
            seed = rng.randrange(1 << 62)
            self.arm("write")
            op_id = log.begin("write", lba=lba, blocks=blocks, seed=seed)
            await volume.write(lba, payload(seed, blocks))
            log.ack(op_id)
        elif op == "batch":  # concurrent writes to disjoint ranges: one group commit
            slots = rng.sample(range(REGION // 4), rng.randint(2, 6))
            self.arm("write")

            async def one_write(slot: int) -> None:
                lba = slot * 4 * PER + rng.randrange(2 * PER)
                blocks = rng.randint(1, 2 * PER)
                seed = rng.randrange(1 << 62)
                op_id = log.begin("write", lba=lba, blocks=blocks, seed=seed)
                await volume.write(lba, payload(seed, blocks))
                log.ack(op_id)

            await asyncio.gather(*(one_write(s) for s in slots))
        elif op == "unmap":
            lba = rng.randrange(REGION_BLOCKS)
            blocks = rng.randint(1, min(3 * PER, REGION_BLOCKS - lba))
            op_id = log.begin("unmap", lba=lba, blocks=blocks)
            await volume.unmap(lba, blocks)
            log.ack(op_id)
        elif op == "create":
            if volume.state.restore_snapshot_id or len(volume.state.snapshots) >= MAX_SNAPSHOTS:
                return
            self.created += 1
            name = f"w{self.seed % 100000}-{self.created}"
            self.arm("create")
            op_id = log.begin("create", name=name)
            await volume.create_snapshot(name)
            log.ack(op_id)
        elif op == "delete":
            names = self.ready()
            if not names:
                return
            name = rng.choice(names)
            self.arm("delete")
            op_id = log.begin("delete", name=name)
            await volume.delete_snapshot(name)
            log.ack(op_id)
        elif op == "restore":
            names = self.ready()
            if not names or volume.state.restore_snapshot_id:
                return
            name = rng.choice(names)
            self.arm("restore")
            op_id = log.begin("restore", name=name)
            await volume.restore(name)  # returns once it is recorded; the merge goes on
            log.ack(op_id)
        elif op == "hold":  # a backup keeps a snapshot open: its delete only marks it
            names = self.ready()
            if names:
                device = volume.open_snapshot(rng.choice(names))
                await device.read(0, PER)
                self.held.append(device)
        elif op == "release":
            if self.held:
                await self.held.pop(rng.randrange(len(self.held))).close()
        elif op == "flush":
            await volume.flush()
        elif op == "reopen":
            self.held = []
            await volume.close()
            self.volume = await open_volume_file(self.path)
            self.log.line({"phase": "opened"})


def main() -> None:
    path, log_path, seed_text, mode = sys.argv[1:5]
    target = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    seed = int(seed_text)
    trap = None
    if mode != "random":
        trap = Trap(target, seed)
        trap.install()
    print("started", flush=True)  # the parent's random instant to kill counts from here
    asyncio.run(Worker(path, Log(log_path), seed, mode, trap).run())


if __name__ == "__main__":
    main()
