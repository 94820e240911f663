"""The snapshot layer's service API: the volumes one process holds, as JSON-able values.

A volume is opened by one process at a time (its exclusive lock), so every user inside
that process must share one ``SnapshotVolume``: the target's volume LUN, its snapshot LUNs
and the control plane's requests. ``VolumeService`` is that process-wide registry, keyed by
``os.path.realpath`` of the file and reference-counted: ``acquire_volume`` opens on first
use, ``release_volume`` closes on last. A LUN holds its reference through a
``VolumeLease`` (a ``BlockDevice``), so the target's ordinary LUN teardown (``lun-remove``,
shutdown) is what releases it; a control request holds one only while it runs.

Every method the control plane serves (its routes: ``snapshot/routes.py``) returns plain
JSON-able values (the model's ``to_dict`` shapes, plus ``path``) and refuses with
``ServiceError(status, "field: why")``: 404 no such snapshot or file, 409 held, busy or
refused, 400 bad input. The CLI runs these same methods when it opens a volume itself, so
``--json`` looks the same either way.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sanstack.block.device import BlockDevice, DeviceNotReady, DeviceReadOnly, LBAExtent
from sanstack.errors import ServiceError
from sanstack.snapshot.model import (
    Holder,
    NotAVolume,
    OnFull,
    Schedule,
    SnapshotExists,
    SnapshotNotFound,
    SnapshotRefused,
    SpacePolicy,
    VolumeBusy,
    VolumeError,
    VolumeHeld,
    check_snapshot_name,
)

if TYPE_CHECKING:
    from sanstack.snapshot.volume import SnapshotVolume

log = logging.getLogger(__name__)

MAX_WEIGHT = 255
Opener = Callable[[str, Holder], Awaitable["SnapshotVolume"]]


async def _open_file(path: str, holder: Holder) -> SnapshotVolume:
    from sanstack.snapshot.files import open_volume_file

    return await open_volume_file(path, holder=holder)


def describe_holder(path: str, holder: Holder | None) -> str:
    """``path: FILE is held by pid N on HOST (control socket S)``, one line."""
    if holder is None:
        return f"path: {path} is held by another process"
    control = f" (control socket {holder.control})" if holder.control else ""
    return f"path: {path} is held by pid {holder.pid} on {holder.host}{control}"


def naming(path: str, exc: Exception) -> str:
    """The error's message, saying which file unless it already does."""
    message = str(exc)
    return message if path in message else f"{path}: {message}"


def service_error(exc: VolumeError, path: str) -> ServiceError:
    """The HTTP-like refusal for a volume error, its message prefixed by the field at fault."""
    if isinstance(exc, SnapshotNotFound):
        return ServiceError(404, f"name: {exc}")
    if isinstance(exc, SnapshotExists | SnapshotRefused):
        return ServiceError(409, f"name: {exc}")
    if isinstance(exc, VolumeHeld):
        return ServiceError(409, describe_holder(path, exc.holder))
    if isinstance(exc, VolumeBusy):
        return ServiceError(409, f"path: {exc}")
    if isinstance(exc, NotAVolume):
        return ServiceError(400, f"path: {naming(path, exc)}")
    return ServiceError(400, str(exc))


def _os_error(exc: OSError, path: str) -> ServiceError:
    status = 404 if exc.errno == errno.ENOENT else 409
    return ServiceError(status, f"path: cannot open {path}: {exc.strerror or exc}")


# -- checked request values (the control plane's JSON bodies and the CLI's options) ----------


def check_weight(value: object, field: str = "weight") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_WEIGHT:
        raise ServiceError(400, f"{field}: {value!r} is not an integer 0..{MAX_WEIGHT}")
    return value


def check_flag(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise ServiceError(400, f"{field}: {value!r} is not true or false")
    return value


def check_name(value: object, field: str = "name") -> str:
    try:
        return check_snapshot_name(value)
    except VolumeError as exc:
        raise ServiceError(400, f"{field}: {exc}") from None


def schedule_from_json(body: object) -> Schedule:
    """``{"interval": s, "keep": n, "weight"?: w, "prefix"?: p}`` → ``Schedule``."""
    if not isinstance(body, dict):
        raise ServiceError(400, "schedule: the body must be a JSON object {interval, keep}")
    unknown = set(body) - {"interval", "keep", "weight", "prefix"}
    if unknown:
        raise ServiceError(400, f"{sorted(unknown)[0]}: unknown schedule field")
    for key in ("interval", "keep"):
        value = body.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ServiceError(400, f"{key}: {value!r} is not an integer")
    weight = check_weight(body.get("weight", 1))
    prefix = body.get("prefix", "auto")
    try:
        return Schedule(body["interval"], body["keep"], weight, check_name(prefix, "prefix"))
    except VolumeError as exc:
        raise ServiceError(400, str(exc)) from None


def policy_changes(body: object) -> dict[str, Any]:
    """A partial policy body ``{warn_percent?, delete_percent?, on_full?}``, checked."""
    if not isinstance(body, dict):
        raise ServiceError(400, "policy: the body must be a JSON object")
    changes: dict[str, Any] = {}
    for key, value in body.items():
        if key in ("warn_percent", "delete_percent"):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100:
                raise ServiceError(400, f"{key}: {value!r} is not an integer 1..100")
            changes[key] = value
        elif key == "on_full":
            try:
                changes[key] = OnFull(value)
            except ValueError:
                choices = ", ".join(o.value for o in OnFull)
                raise ServiceError(400, f"on_full: {value!r} is not one of {choices}") from None
        else:
            raise ServiceError(400, f"{key}: unknown policy field")
    return changes


# -- a LUN's hold on a volume -----------------------------------------------------------------


class VolumeLease(BlockDevice):
    """The volume, or one snapshot of it, as one LUN sees it.

    Every I/O goes straight to the shared device; ``close`` gives the LUN's reference
    back (closing the snapshot device first), so removing a LUN or stopping the target
    releases exactly what that LUN held and the volume closes with its last user.
    """

    def __init__(
        self,
        inner: BlockDevice,
        path: str,
        snapshot: str | None,
        release: Callable[[], Awaitable[None]],
    ) -> None:
        self._inner = inner
        self._release = release
        self._closed = False
        self.snapshot = snapshot
        self.path = f"{path}@{snapshot}" if snapshot is not None else path
        self.backstore = "snapshot" if snapshot is not None else "volume"
        self.block_size = inner.block_size
        self.num_blocks = inner.num_blocks
        self.identity = inner.identity
        # A snapshot is read-only whatever its device says: DATA PROTECT, never a write.
        self.read_only = inner.read_only or snapshot is not None
        self.thin_provisioned = inner.thin_provisioned
        self.write_cache = inner.write_cache

    def _check(self) -> BlockDevice:
        if self._closed:
            raise DeviceNotReady(f"{self.path} is closed")
        return self._inner

    async def read(self, lba: int, count: int) -> bytes | memoryview:
        return await self._check().read(lba, count)

    async def write(self, lba: int, data: bytes | memoryview) -> None:
        inner = self._check()
        if self.read_only:
            raise DeviceReadOnly(f"{self.path} is read-only")
        await inner.write(lba, data)

    async def flush(self) -> None:
        await self._check().flush()

    async def unmap(self, lba: int, count: int) -> None:
        inner = self._check()
        if self.read_only:
            raise DeviceReadOnly(f"{self.path} is read-only")
        await inner.unmap(lba, count)

    async def get_lba_status(self, lba: int, max_count: int) -> list[LBAExtent]:
        return await self._check().get_lba_status(lba, max_count)

    def health(self) -> str | None:
        return "closed" if self._closed else self._inner.health()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.snapshot is not None:
                await self._inner.close()
        finally:
            await self._release()


# -- the registry -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Held:
    volume: SnapshotVolume
    users: int = 0  # every reference: LUN leases and running requests
    luns: int = 0


class VolumeService:
    """The volumes this process holds, and the operations on them.

    ``control`` is this process's control socket, recorded in each volume's superblock as
    its holder so another process's CLI knows where to send its requests ("" for none).
    ``opener`` opens a volume file (tests substitute fakes).
    """

    def __init__(
        self, control: str | os.PathLike[str] | None = None, *, opener: Opener | None = None
    ):
        where = str(Path(control).absolute()) if control else ""
        self.holder = Holder(socket.gethostname(), os.getpid(), where)
        self._opener = opener or _open_file
        self._held: dict[str, _Held] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closed = False

    def held_volumes(self) -> dict[str, SnapshotVolume]:
        """The volumes held now, by file (``key``)."""
        return {key: held.volume for key, held in self._held.items()}

    @staticmethod
    def key(path: str | os.PathLike[str]) -> str:
        return os.path.realpath(path)

    def _lock(self, key: str) -> asyncio.Lock:
        # Opening and closing one file are serialised: two opens would lock each other out.
        return self._locks.setdefault(key, asyncio.Lock())

    async def acquire_volume(self, path: str | os.PathLike[str]) -> SnapshotVolume:
        """The process's one ``SnapshotVolume`` of ``path``, opened on first use.

        Raises the core's ``VolumeError``s (``VolumeHeld`` when another process holds it)
        and ``OSError``; each successful call needs one ``release_volume``.
        """
        key = self.key(path)
        async with self._lock(key):
            if self._closed:
                raise VolumeBusy(f"{key}: this process is shutting down")
            held = self._held.get(key)
            if held is None:
                held = _Held(await self._opener(key, self.holder))
                self._held[key] = held
                log.info("volume %s opened", key)
            held.users += 1
            return held.volume

    async def release_volume(self, path: str | os.PathLike[str]) -> None:
        """Give back one reference; the last one closes the volume (and its base device)."""
        key = self.key(path)
        async with self._lock(key):
            held = self._held.get(key)
            if held is None:
                return
            held.users -= 1
            if held.users > 0:
                return
            del self._held[key]
            await held.volume.close()
            log.info("volume %s closed", key)

    async def open_lun(self, path: str | os.PathLike[str], snapshot: str | None) -> VolumeLease:
        """A LUN's device: the volume itself, or snapshot ``snapshot`` of it (read-only).

        Raises like ``acquire_volume``, and ``SnapshotNotFound``.
        """
        key = self.key(path)
        volume = await self.acquire_volume(key)
        try:
            inner: BlockDevice = volume if snapshot is None else volume.open_snapshot(snapshot)
        except BaseException:
            await self.release_volume(key)
            raise
        self._held[key].luns += 1

        async def release() -> None:
            held = self._held.get(key)
            if held is not None:
                held.luns -= 1
            await self.release_volume(key)

        return VolumeLease(inner, key, snapshot, release)

    async def close(self) -> None:
        """Close every volume still held (the daemon is stopping; its LUNs are gone)."""
        self._closed = True
        for key in list(self._held):
            async with self._lock(key):
                held = self._held.pop(key, None)
                if held is not None:
                    try:
                        await held.volume.close()
                    except Exception:
                        log.exception("closing volume %s failed", key)

    @asynccontextmanager
    async def _using(self, path: str) -> AsyncIterator[tuple[str, SnapshotVolume]]:
        """A request's reference on a volume, with the core's errors mapped to ``ServiceError``."""
        if not isinstance(path, str) or not path:
            raise ServiceError(400, "path: the volume file is needed")
        key = self.key(path)
        try:
            volume = await self.acquire_volume(key)
        except VolumeError as exc:
            raise service_error(exc, key) from None
        except OSError as exc:
            raise _os_error(exc, key) from None
        try:
            yield key, volume
        except VolumeError as exc:
            raise service_error(exc, key) from None
        finally:
            await self.release_volume(key)

    # -- the service API ------------------------------------------------------------------------

    def volumes(self) -> list[dict[str, Any]]:
        """The volumes this process holds, with their LUN and request counts."""
        return [
            {"path": key, "luns": held.luns, "users": held.users, **held.volume.info().to_dict()}
            for key, held in sorted(self._held.items())
        ]

    async def info(self, path: str) -> dict[str, Any]:
        async with self._using(path) as (key, volume):
            return {"path": key, **volume.info().to_dict()}

    async def snapshots(self, path: str) -> list[dict[str, Any]]:
        async with self._using(path) as (_key, volume):
            return [s.to_dict() for s in volume.snapshots()]

    async def create(
        self, path: str, name: str, weight: int = 1, keep: bool = False
    ) -> dict[str, Any]:
        name = check_name(name)
        weight = check_weight(weight)
        keep = check_flag(keep, "keep")
        async with self._using(path) as (_key, volume):
            return (await volume.create_snapshot(name, weight=weight, keep=keep)).to_dict()

    async def delete(self, path: str, name: str) -> dict[str, Any]:
        """Durable when it returns; the space comes back in the background (``info``)."""
        name = check_name(name)
        async with self._using(path) as (key, volume):
            await volume.delete_snapshot(name)
            return {"path": key, "deleted": name}

    async def set_snapshot(
        self, path: str, name: str, weight: int | None = None, keep: bool | None = None
    ) -> dict[str, Any]:
        name = check_name(name)
        if weight is not None:
            check_weight(weight)
        if keep is not None:
            check_flag(keep, "keep")
        async with self._using(path) as (_key, volume):
            return (await volume.set_snapshot(name, weight=weight, keep=keep)).to_dict()

    async def restore(self, path: str, name: str) -> dict[str, Any]:
        """Durable and started when it returns; ``info()["background"]`` shows progress."""
        name = check_name(name)
        async with self._using(path) as (key, volume):
            await volume.restore(name)
            return {"path": key, **volume.info().to_dict()}

    async def set_schedule(self, path: str, schedule: Schedule | None) -> dict[str, Any]:
        async with self._using(path) as (key, volume):
            await volume.set_schedule(schedule)
            return {"path": key, **volume.info().to_dict()}

    async def set_policy(
        self,
        path: str,
        *,
        warn_percent: int | None = None,
        delete_percent: int | None = None,
        on_full: OnFull | None = None,
    ) -> dict[str, Any]:
        """Change the given fields of the space policy; the others keep their values."""
        async with self._using(path) as (key, volume):
            old = volume.info().policy
            policy = SpacePolicy(
                old.warn_percent if warn_percent is None else warn_percent,
                old.delete_percent if delete_percent is None else delete_percent,
                old.on_full if on_full is None else on_full,
            )
            await volume.set_policy(policy)
            return {"path": key, **volume.info().to_dict()}
