"""A stand-in for ``SnapshotVolume`` with the same service-facing API, for the tests of the
layers above it (the service, the control plane, the CLI, the target's LUNs).

It keeps snapshots as whole copies of a small memory device: enough to check who opened
what, how often, and what each view returns, without the real on-disk core.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, cast

from sanstack.block.device import BlockDevice, DeviceIdentity
from sanstack.block.memory import MemoryDevice
from sanstack.snapshot.model import (
    Holder,
    Progress,
    Schedule,
    SnapshotExists,
    SnapshotInfo,
    SnapshotNotFound,
    SpacePolicy,
    VolumeHeld,
    VolumeInfo,
)

if TYPE_CHECKING:
    from sanstack.snapshot.volume import SnapshotVolume

BLOCKS = 2048


class FakeVolume(MemoryDevice):
    def __init__(self, path: str) -> None:
        super().__init__(BLOCKS, identity=DeviceIdentity.from_seed(f"fake-volume:{path}"))
        self.path = path
        self.opens = 0
        self.closes = 0
        self.holder: Holder | None = None
        self.snaps: dict[str, SnapshotInfo] = {}
        self.data: dict[str, bytes] = {}
        self.policy = SpacePolicy()
        self.schedule: Schedule | None = None
        self.background: list[Progress] = []
        self.open_snapshots = 0

    def reopen(self, holder: Holder) -> FakeVolume:
        self._closed = False
        self.opens += 1
        self.holder = holder
        return self

    async def close(self) -> None:
        if not self._closed:
            self.closes += 1
            self.holder = None
        await super().close()

    def info(self) -> VolumeInfo:
        return VolumeInfo(
            uuid="00000000-0000-0000-0000-000000000001",
            size_bytes=self.capacity_bytes,
            block_size=self.block_size,
            chunk_size=4096,
            reserve_bytes=1 << 20,
            snapshot_used_bytes=4096 * len(self.snaps),
            snapshot_used_percent=0.4 * len(self.snaps),
            free_bytes=(1 << 20) - 4096 * len(self.snaps),
            snapshots=len(self.snaps),
            max_snapshots=4096,
            policy=self.policy,
            schedule=self.schedule,
            holder=self.holder,
            background=list(self.background),
        )

    def snapshots(self) -> list[SnapshotInfo]:
        return sorted(self.snaps.values(), key=lambda s: s.id)

    async def create_snapshot(
        self, name: str, *, weight: int = 1, keep: bool = False
    ) -> SnapshotInfo:
        if name in self.snaps:
            raise SnapshotExists(f"snapshot {name!r} exists already")
        info = SnapshotInfo(
            name=name,
            id=len(self.snaps) + 1,
            created=time.time(),
            epoch=len(self.snaps) + 1,
            weight=weight,
            keep=keep,
            scheduled=False,
            state="ready",
            size_bytes=self.capacity_bytes,
            used_bytes=4096,
        )
        self.snaps[name] = info
        self.data[name] = bytes(await self.read(0, BLOCKS))
        return info

    def _get(self, name: str) -> SnapshotInfo:
        if name not in self.snaps:
            raise SnapshotNotFound(f"no snapshot named {name!r}")
        return self.snaps[name]

    async def delete_snapshot(self, name: str) -> None:
        self._get(name)
        del self.snaps[name]

    async def set_snapshot(
        self, name: str, *, weight: int | None = None, keep: bool | None = None
    ) -> SnapshotInfo:
        info = self._get(name)
        info = replace(
            info,
            weight=info.weight if weight is None else weight,
            keep=info.keep if keep is None else keep,
        )
        self.snaps[name] = info
        return info

    async def restore(self, name: str) -> None:
        self._get(name)
        await self.write(0, self.data[name])
        self.background = [Progress("restore", 1, 2)]

    def open_snapshot(self, name: str) -> BlockDevice:
        self._get(name)
        volume = self
        volume.open_snapshots += 1

        class _Snapshot(MemoryDevice):
            async def close(self) -> None:
                if not self._closed:
                    volume.open_snapshots -= 1
                await super().close()

        device = _Snapshot(
            BLOCKS, identity=DeviceIdentity.from_seed(f"fake:{name}"), read_only=True
        )
        device._blocks = {
            lba: self.data[name][lba * 512 : (lba + 1) * 512] for lba in range(BLOCKS)
        }
        return device

    async def set_policy(self, policy: SpacePolicy) -> None:
        self.policy = policy

    async def set_schedule(self, schedule: Schedule | None) -> None:
        self.schedule = schedule


@dataclass
class FakeFiles:
    """The opener a ``VolumeService`` uses, over fake volumes kept per path."""

    volumes: dict[str, FakeVolume] = field(default_factory=dict)
    held_by: dict[str, Holder] = field(default_factory=dict)  # as if another process held it
    opened: list[str] = field(default_factory=list)

    async def __call__(self, path: str, holder: Holder) -> SnapshotVolume:
        if path in self.held_by:
            raise VolumeHeld(f"{path} is held", self.held_by[path])
        self.opened.append(path)
        volume = self.volumes.setdefault(path, FakeVolume(path))
        if volume.holder is not None:
            raise VolumeHeld(f"{path} is open twice", volume.holder)
        # The service uses only what FakeVolume has; typed as the real thing for mypy.
        return cast("SnapshotVolume", volume.reopen(holder))
