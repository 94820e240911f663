"""``sanstack volume ...`` and ``sanstack snapshot ...``: snapshot volumes on a device path.

A command opens FILE itself, acts and closes it, unless another process holds the volume
(its exclusive lock; the superblock records who): then, if that holder is a daemon on this
host, the command goes to the daemon's control socket instead, so a volume served as a
LUN is changed by the one process that has it open. Both ways run the same
``VolumeService`` methods, so ``--json`` prints the same shapes. Long work (format,
restore, space reclaim) shows its progress on stderr (``cli/progress.py``: one line
rewritten on a terminal, plain lines otherwise, none with ``--json`` unless ``--progress``);
stdout stays clean for ``--json``.

With ``--cluster-control SOCKET`` (any cluster node's control socket) FILE is a clustered
volume, ``GROUP/DISK``: the node forwards the request to the node that runs the group,
which acts on its open volume (``cluster/snapshots.py``); the answers are the same shapes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sanstack.cli.progress import ProgressLine, progress_for
from sanstack.cli.volume_tables import (
    human_bytes,
    info_table,
    policy_text,
    schedule_text,
    snapshot_table,
)
from sanstack.control.client import call, emit, socket_in_use
from sanstack.errors import ConfigError, ServiceError
from sanstack.snapshot.model import (
    FormatOptions,
    Holder,
    NotAVolume,
    VolumeError,
    VolumeHeld,
    check_snapshot_name,
)

if TYPE_CHECKING:
    from sanstack.snapshot.service import VolumeService

POLL_SECONDS = 0.25
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def register(commands: Any) -> None:
    _register_volume(commands)
    _register_snapshot(commands)


def _file(parser: Any, *, cluster: bool = True) -> None:
    if not cluster:
        parser.add_argument("file", metavar="FILE", type=Path, help="the volume's file or device")
        return
    parser.add_argument(
        "file",
        metavar="FILE",
        type=Path,
        help="the volume's file or device; with --cluster-control, GROUP/DISK",
    )
    parser.add_argument(
        "--cluster-control",
        type=Path,
        metavar="SOCKET",
        help="FILE is a clustered volume GROUP/DISK, reached through this cluster node's "
        "control socket (any node: it forwards to the group's owner)",
    )


def _output(parser: Any, *, progress: bool = False) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    if progress:
        parser.add_argument(
            "--progress",
            action="store_true",
            help="show every percent on stderr, also with --json (default: one line "
            "rewritten on a terminal, every 10%% otherwise, nothing with --json)",
        )


def _register_volume(commands: Any) -> None:
    defaults = FormatOptions()
    volume = commands.add_parser("volume", help="snapshot volumes: format, info, schedule, policy")
    sub = volume.add_subparsers(dest="volume_command", metavar="COMMAND")
    sub.required = True
    fmt = sub.add_parser(
        "format",
        help="make FILE a snapshot volume (destroys what it holds)",
        description=(
            "Format FILE as a snapshot volume: after the metadata (about 0.6%), "
            "--reserve-percent of the space is kept for snapshot data and the rest is the "
            "volume. A missing FILE is created (sparse) "
            "with --size; an existing one is extended to --size if given."
        ),
    )
    _file(fmt, cluster=False)
    fmt.add_argument("--size", help="size of FILE, like 64M or 1T (default: its current size)")
    fmt.add_argument(
        "--reserve-percent",
        type=int,
        metavar="PERCENT",
        default=defaults.reserve_percent,
        help="percent of the space after the metadata kept for snapshot data, 1..90 "
        "(default %(default)s)",
    )
    fmt.add_argument(
        "--block-size",
        type=int,
        metavar="BYTES",
        default=defaults.block_size,
        help="the volume's logical block size: 512, 1024, 2048 or 4096 (default %(default)s)",
    )
    fmt.add_argument(
        "--chunk-size",
        metavar="SIZE",
        default=human_bytes(defaults.chunk_size),
        help="copy-on-write unit, a power of two from the block size to 1M, like 4K or 64K "
        "(default %(default)s)",
    )
    fmt.add_argument(
        "--max-snapshots",
        type=int,
        metavar="N",
        default=defaults.max_snapshots,
        help="how many snapshots the volume can hold, 16..65536 (default %(default)s)",
    )
    fmt.add_argument("--force", action="store_true", help="format over an existing volume")
    _output(fmt, progress=True)
    fmt.set_defaults(func=_format)
    info = sub.add_parser("info", help="size, snapshot space, policy, schedule, background work")
    _file(info)
    _output(info)
    info.set_defaults(func=_info)
    schedule = sub.add_parser(
        "schedule",
        help="take a snapshot every interval, keep the newest N (run by the volume's holder)",
    )
    _file(schedule)
    schedule.add_argument(
        "--every",
        metavar="INTERVAL",
        help="take a snapshot every INTERVAL: 90s, 15m, 1h, 1d or a number of seconds",
    )
    schedule.add_argument(
        "--keep", type=int, metavar="N", help="keep the newest N scheduled snapshots"
    )
    schedule.add_argument(
        "--weight",
        type=int,
        metavar="WEIGHT",
        default=1,
        help="weight of the scheduled snapshots, 0..255; low goes first when space runs out "
        "(default %(default)s)",
    )
    schedule.add_argument(
        "--prefix",
        default="auto",
        help="scheduled snapshots are named PREFIX-YYYYmmddTHHMMSSZ (default %(default)s)",
    )
    schedule.add_argument("--off", action="store_true", help="stop taking scheduled snapshots")
    _output(schedule)
    schedule.set_defaults(func=_schedule)
    policy = sub.add_parser(
        "policy", help="what happens as the snapshot space fills (only given fields change)"
    )
    _file(policy)
    policy.add_argument(
        "--warn-percent",
        type=int,
        metavar="PERCENT",
        help="refuse new snapshots once the snapshot space is this full, 1..100 "
        "(a new volume has 80)",
    )
    policy.add_argument(
        "--delete-percent",
        type=int,
        metavar="PERCENT",
        help="once the snapshot space is this full, delete snapshots in the background (lowest "
        "weight, then oldest; never kept ones), 1..100 (a new volume has 90)",
    )
    policy.add_argument(
        "--on-full",
        choices=["delete", "fail-writes"],
        help="when the snapshot space is full: delete snapshots to make room for a write, or "
        "fail the writes that need space (a new volume has delete)",
    )
    _output(policy)
    policy.set_defaults(func=_policy)


def _register_snapshot(commands: Any) -> None:
    snapshot = commands.add_parser("snapshot", help="create, list, delete and restore snapshots")
    sub = snapshot.add_subparsers(dest="snapshot_command", metavar="COMMAND")
    sub.required = True
    create = sub.add_parser("create", help="take a snapshot now")
    _file(create)
    create.add_argument(
        "name", metavar="NAME", help="the new snapshot's name: letters, digits and ._:+-"
    )
    create.add_argument(
        "--weight",
        type=int,
        default=1,
        help="0..255; low goes first when space runs out (default %(default)s)",
    )
    create.add_argument("--keep", action="store_true", help="never delete it to make space")
    _output(create)
    create.set_defaults(func=_create)
    listing = sub.add_parser("list", help="snapshots with creation time, size and space used")
    _file(listing)
    _output(listing)
    listing.set_defaults(func=_list)
    delete = sub.add_parser("delete", help="delete a snapshot (space comes back in background)")
    _file(delete)
    delete.add_argument("name", metavar="NAME", help="the snapshot to delete")
    delete.add_argument("--wait", action="store_true", help="wait until the space is back")
    _output(delete, progress=True)
    delete.set_defaults(func=_delete)
    restore = sub.add_parser(
        "restore", help="bring the volume back to a snapshot, online; others stay valid"
    )
    _file(restore)
    restore.add_argument("name", metavar="NAME", help="the snapshot to bring the volume back to")
    restore.add_argument("--wait", action="store_true", help="wait until the data is back")
    _output(restore, progress=True)
    restore.set_defaults(func=_restore)
    change = sub.add_parser("set", help="change a snapshot's weight or keep mark")
    _file(change)
    change.add_argument("name", metavar="NAME", help="the snapshot to change")
    change.add_argument(
        "--weight", type=int, help="its new weight, 0..255; low goes first when space runs out"
    )
    change.add_argument(
        "--keep",
        action=argparse.BooleanOptionalAction,
        help="never delete it to make space (--keep), or allow it again (--no-keep)",
    )
    _output(change)
    change.set_defaults(func=_set)


# -- where a command's requests go ----------------------------------------------------------


def local_service() -> VolumeService:
    """This process's own service (tests replace it); it holds the volume with no control."""
    from sanstack.snapshot.service import VolumeService

    return VolumeService()


def _resource(suffix: str, key: str, cluster: bool = False) -> str:
    if cluster:
        return f"/v1/cluster/volumes/{suffix}?{urllib.parse.urlencode({'volume': key})}"
    return f"/v1/volumes/{suffix}?{urllib.parse.urlencode({'path': key})}"


@dataclass
class Volume:
    """One volume as a command sees it: opened here (``service``), held by a daemon, or a
    clustered volume (``cluster``: ``key`` is GROUP/DISK, ``control`` a node's socket)."""

    key: str
    service: VolumeService | None
    control: Path | None
    cluster: bool = False

    async def run(
        self,
        method: str,
        suffix: str,
        body: Any,
        local: Callable[[VolumeService], Awaitable[Any]],
    ) -> Any:
        if self.control is not None:
            return call(self.control, method, _resource(suffix, self.key, self.cluster), body)
        assert self.service is not None
        try:
            return await local(self.service)
        except ServiceError as exc:
            if exc.status == 400:  # bad input: exit 2, as argparse's own errors
                field, _sep, problem = str(exc).partition(": ")
                raise ConfigError(field, problem) from None
            raise

    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.run("GET", "info", None, lambda s: s.info(self.key))
        return result


def _held_elsewhere(key: str, holder: Holder | None) -> Path:
    """The holder daemon's control socket, or a one-line refusal saying who holds it."""
    if holder is None:
        raise VolumeError(f"FILE: {key} is held by another process")
    who = f"FILE: {key} is held by pid {holder.pid} on {holder.host}"
    if holder.host != socket.gethostname():
        raise VolumeError(f"{who}; run the command there")
    if not holder.control:
        raise VolumeError(f"{who}, which has no control socket; try again when it is done")
    if not socket_in_use(Path(holder.control)):
        raise VolumeError(f"{who}, but its control socket {holder.control} does not answer")
    return Path(holder.control)


def existing(path: Path) -> str:
    """FILE's real path (the key every process uses for it), or a one-line refusal."""
    key = os.path.realpath(path)
    if not os.path.exists(key):
        raise ConfigError("FILE", f"{path}: no such file")
    return key


def clustered(path: Path) -> str:
    """FILE as a clustered volume's GROUP/DISK, or a one-line refusal."""
    group, sep, disk = str(path).partition("/")
    if not sep or not group or not disk or "/" in disk:
        raise ConfigError("FILE", f"{path} is not GROUP/DISK (with --cluster-control)")
    return str(path)


@contextlib.asynccontextmanager
async def open_volume(path: Path, cluster: Path | None = None) -> AsyncIterator[Volume]:
    """FILE, opened here for the command's length, or through its holder's control plane;
    with ``cluster`` (a node's control socket), the clustered volume GROUP/DISK."""
    if cluster is not None:
        yield Volume(clustered(path), None, cluster, cluster=True)
        return
    key = existing(path)
    service = local_service()
    try:
        await service.acquire_volume(key)
    except VolumeHeld as exc:
        control = _held_elsewhere(key, exc.holder)
    except NotAVolume as exc:
        from sanstack.snapshot.service import naming

        raise ConfigError("FILE", naming(key, exc)) from None
    else:
        try:
            yield Volume(key, service, None)
        finally:
            await service.close()
        return
    yield Volume(key, None, control)


# -- checked options --------------------------------------------------------------------------


def _name(text: str, field: str = "NAME") -> str:
    try:
        return check_snapshot_name(text)
    except VolumeError as exc:
        raise ConfigError(field, str(exc)) from None


def _weight(value: int | None, field: str = "--weight") -> None:
    if value is not None and not 0 <= value <= 255:
        raise ConfigError(field, f"{value} is not within 0..255")


def parse_duration(text: str, field: str) -> int:
    """``90``, ``90s``, ``15m``, ``1h``, ``1d`` → seconds."""
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ConfigError(field, f"{text!r} is not a duration (use e.g. 90s, 15m, 1h or 1d)")
    return int(match.group(1)) * _SECONDS[match.group(2).lower()]


def _format_options(args: argparse.Namespace) -> FormatOptions:
    from sanstack.target.config import parse_size

    chunk = parse_size(args.chunk_size, "--chunk-size")
    try:
        return FormatOptions(args.reserve_percent, args.block_size, chunk, args.max_snapshots)
    except VolumeError as exc:  # "reserve_percent 95 is not ..." -> --reserve-percent
        field = str(exc).split(" ", 1)[0]
        raise ConfigError("--" + field.replace("_", "-"), str(exc)) from None


async def wait_for(volume: Volume, operations: Iterable[str], show: ProgressLine) -> dict[str, Any]:
    """Poll the volume's background work until none of ``operations`` is left."""
    wanted = set(operations)
    try:
        while True:
            info = await volume.info()
            work = [p for p in info["background"] if p["operation"] in wanted]
            if not work:
                return info
            show(work[0])
            await asyncio.sleep(POLL_SECONDS)
    finally:
        show.finish()


# -- volume commands --------------------------------------------------------------------------


def _file_state(path: Path) -> tuple[str, int | None]:
    """(real path, length in bytes or None when missing)."""
    key = os.path.realpath(path)
    try:
        return key, os.stat(key).st_size
    except FileNotFoundError:
        return key, None


async def _format(args: argparse.Namespace) -> int:
    from sanstack.snapshot.files import format_volume_file, read_holder
    from sanstack.target.config import parse_size

    options = _format_options(args)
    size = parse_size(args.size, "--size") if args.size is not None else None
    path: Path = args.file
    key, length = _file_state(path)
    if length is None and size is None:
        raise ConfigError("--size", f"{path} does not exist, so a size is needed")
    if size is not None and size % 4096:
        raise ConfigError("--size", f"{size} is not a multiple of 4096 bytes")
    if length and not args.force:
        try:
            read_holder(key)  # a superblock there means a volume, held or not
        except (NotAVolume, OSError):
            pass  # not a volume: nothing to lose but what the file holds, as with mkfs
        else:
            raise VolumeError(
                f"FILE: {path} is a sanstack volume already (its snapshots would be lost; "
                "--force formats it anyway)"
            )
    show = progress_for(args)
    try:
        info = await format_volume_file(key, size, options, progress=show)
    except VolumeHeld as exc:
        _held_elsewhere(key, exc.holder)
        raise
    finally:
        show.finish()
    result = {"path": key, **info.to_dict()}
    emit(result, as_json=args.json, table=info_table(result))
    return 0


async def _info(args: argparse.Namespace) -> int:
    async with open_volume(args.file, args.cluster_control) as volume:
        result = await volume.info()
    emit(result, as_json=args.json, table=info_table(result))
    return 0


async def _schedule(args: argparse.Namespace) -> int:
    from sanstack.snapshot.model import Schedule

    schedule: Schedule | None = None
    if args.off:
        if args.every is not None or args.keep is not None:
            raise ConfigError("--off", "goes alone, without --every or --keep")
    else:
        if args.every is None:
            raise ConfigError("--every", "is needed (or --off)")
        if args.keep is None:
            raise ConfigError("--keep", "is needed with --every")
        interval = parse_duration(args.every, "--every")
        _weight(args.weight)
        prefix = _name(args.prefix, "--prefix")
        try:
            schedule = Schedule(interval, args.keep, args.weight, prefix)
        except VolumeError as exc:  # "schedule keep 0 is not within ..." -> --keep
            words = str(exc).split(" ")
            field = {"interval": "--every"}.get(words[1], f"--{words[1]}")
            raise ConfigError(field, str(exc)) from None
    async with open_volume(args.file, args.cluster_control) as volume:
        if schedule is None:
            result = await volume.run(
                "DELETE", "schedule", None, lambda s: s.set_schedule(volume.key, None)
            )
        else:
            chosen = schedule
            result = await volume.run(
                "PUT", "schedule", chosen.to_dict(), lambda s: s.set_schedule(volume.key, chosen)
            )
        local = volume.service is not None
    table = f"{result['path']}: schedule {schedule_text(result['schedule'])}"
    if local and result["schedule"] is not None:
        table += "\n(saved in the volume; it runs while a daemon serves the volume)"
    emit(result, as_json=args.json, table=table)
    return 0


async def _policy(args: argparse.Namespace) -> int:
    from sanstack.snapshot.model import OnFull

    body: dict[str, Any] = {}
    for field, value in (
        ("--warn-percent", args.warn_percent),
        ("--delete-percent", args.delete_percent),
    ):
        if value is not None:
            if not 1 <= value <= 100:
                raise ConfigError(field, f"{value} is not within 1..100")
            body[field[2:].replace("-", "_")] = value
    if args.on_full is not None:
        body["on_full"] = args.on_full
    changes: dict[str, Any] = {**body}
    if "on_full" in changes:
        changes["on_full"] = OnFull(changes["on_full"])
    async with open_volume(args.file, args.cluster_control) as volume:
        result = await volume.run(
            "PUT", "policy", body, lambda s: s.set_policy(volume.key, **changes)
        )
    emit(result, as_json=args.json, table=f"{result['path']}: {policy_text(result['policy'])}")
    return 0


# -- snapshot commands ------------------------------------------------------------------------


async def _create(args: argparse.Namespace) -> int:
    name = _name(args.name)
    _weight(args.weight)
    body = {"name": name, "weight": args.weight, "keep": args.keep}
    async with open_volume(args.file, args.cluster_control) as volume:
        result = await volume.run(
            "POST",
            "snapshots",
            body,
            lambda s: s.create(volume.key, name, args.weight, args.keep),
        )
    emit(result, as_json=args.json, table=snapshot_table([result]))
    return 0


async def _list(args: argparse.Namespace) -> int:
    async with open_volume(args.file, args.cluster_control) as volume:
        result = await volume.run("GET", "snapshots", None, lambda s: s.snapshots(volume.key))
    emit(result, as_json=args.json, table=snapshot_table(result))
    return 0


def _snapshot(name: str) -> str:
    return f"snapshots/{name}"  # a checked name is a URL path segment as it stands


async def _delete(args: argparse.Namespace) -> int:
    name = _name(args.name)
    async with open_volume(args.file, args.cluster_control) as volume:
        result = await volume.run(
            "DELETE", _snapshot(name), None, lambda s: s.delete(volume.key, name)
        )
        if args.wait:  # the free-space scan first, then the reclaim of what it held
            await wait_for(volume, ("scan", "reclaim"), progress_for(args))
    emit(result, as_json=args.json, table=f"snapshot {name} of {result['path']} deleted")
    return 0


async def _restore(args: argparse.Namespace) -> int:
    name = _name(args.name)
    async with open_volume(args.file, args.cluster_control) as volume:
        result = await volume.run(
            "POST", f"{_snapshot(name)}/restore", None, lambda s: s.restore(volume.key, name)
        )
        if args.wait:
            result = await wait_for(volume, ("restore",), progress_for(args))
        local = volume.service is not None
    if args.wait:
        table = f"{result['path']} is restored to {name}"
    elif local:
        table = (
            f"restore of {result['path']} to {name} started; it goes on whenever the volume "
            "is open (--wait waits here)"
        )
    else:
        where = f" --cluster-control {args.cluster_control}" if args.cluster_control else ""
        table = (
            f"restore of {result['path']} to {name} started; progress: "
            f"sanstack volume info {result['path']}{where}"
        )
    emit(result, as_json=args.json, table=table)
    return 0


async def _set(args: argparse.Namespace) -> int:
    name = _name(args.name)
    _weight(args.weight)
    if args.weight is None and args.keep is None:
        raise ConfigError("--weight", "give --weight and/or --keep/--no-keep")
    body = {k: v for k, v in (("weight", args.weight), ("keep", args.keep)) if v is not None}
    async with open_volume(args.file, args.cluster_control) as volume:
        result = await volume.run(
            "PUT",
            _snapshot(name),
            body,
            lambda s: s.set_snapshot(volume.key, name, args.weight, args.keep),
        )
    emit(result, as_json=args.json, table=snapshot_table([result]))
    return 0
