"""``sanstack demo``: the whole stack on one machine with an embedded default.

One target with 32 LUNs on two portals of 127.0.0.1, each portal its own portal group,
so an initiator sees two paths to every LUN. The LUNs are thin (sparse files), and the last
one is a snapshot volume (formatted in the demo directory on the first run) that takes a
snapshot every minute and keeps the newest ten, run by the demo daemon that holds it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sanstack.control.client import DEFAULT_TARGET_CONTROL
from sanstack.errors import ConfigError

if TYPE_CHECKING:
    from sanstack.target.server import TargetServer

log = logging.getLogger("sanstack")

DEMO_IQN = "iqn.2026-11.org.sanstack:demo"
DEMO_HOST = "iqn.2026-11.org.sanstack:demo-host"
PREFERRED_PORTS = (3260, 3261)
VOLUME_FILE = "volume.img"
SCHEDULE_SECONDS = 60
SCHEDULE_KEEP = 10


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="run a demo target: 32 thin LUNs (one a snapshot volume) on two portals",
        description="Serve a demo target until SIGINT/SIGTERM and print how to reach it.",
    )
    demo.add_argument(
        "--dir",
        type=Path,
        default=Path("/var/tmp/sanstack-demo"),
        help="where the LUN files and the snapshot volume live (default %(default)s)",
    )
    demo.add_argument(
        "--luns",
        type=int,
        default=32,
        metavar="N",
        help="number of LUNs, 1..1024; the last is the snapshot volume (default %(default)s)",
    )
    demo.add_argument(
        "--size", default="1G", help="size of each thin LUN, like 64M or 1G (default %(default)s)"
    )
    demo.add_argument(
        "--control",
        type=Path,
        default=DEFAULT_TARGET_CONTROL,
        metavar="SOCKET",
        help="the target's control socket (default %(default)s)",
    )
    demo.add_argument(
        "--nbd-port",
        type=int,
        default=10809,
        metavar="PORT",
        help="NBD port of the multipath export of LUN 0; another if taken (default %(default)s)",
    )
    demo.add_argument(
        "--mpio-control",
        type=Path,
        default=Path("/run/sanstack/mpio.sock"),
        metavar="SOCKET",
        help="control socket of the demo's host (one map, LUN 0), for 'sanstack host "
        "status|maps|paths --control SOCKET' (default %(default)s)",
    )
    demo.set_defaults(func=demo_command)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _own_command() -> str:
    """How to run this sanstack from another shell: the virtualenv's script if not on PATH."""
    beside = Path(sys.executable).parent / "sanstack"
    on_path = shutil.which("sanstack")
    if on_path and Path(on_path).resolve() == beside.resolve():
        return "sanstack"
    return str(beside) if beside.exists() else "sanstack"


def choose_ports() -> list[int]:
    """3260 and 3261 when free; otherwise ports the kernel picks (0)."""
    return [port if _port_is_free(port) else 0 for port in PREFERRED_PORTS]


async def demo_command(args: argparse.Namespace) -> int:
    from sanstack.cli.target import run_target_daemon
    from sanstack.iscsi.target_events import ConnectionSettings
    from sanstack.target.config import quick_target

    if not 1 <= args.luns <= 1024:
        raise ConfigError("--luns", "must be between 1 and 1024")
    try:
        args.dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--dir", f"cannot create {args.dir}: {exc.strerror}") from None
    portals = [f"127.0.0.1:{port}" for port in choose_ports()]
    volume = (args.dir / VOLUME_FILE).absolute()
    await _prepare_volume(volume, args.size)
    luns = [f"{args.dir / f'lun{i}.img'}:{args.size}" for i in range(args.luns - 1)]
    spec = quick_target(DEMO_IQN, portals, [*luns, f"volume:{volume}"])
    volume_lun = args.luns - 1

    def announce(server: TargetServer) -> str:
        bound = server.portals
        first = f"{bound[0][0]}:{bound[0][1]}"
        control = "" if args.control == DEFAULT_TARGET_CONTROL else f" --control {args.control}"
        sanstack = _own_command()
        return (
            f"sanstack demo: target {DEMO_IQN}\n"
            f"  {args.luns - 1} thin LUNs of {args.size} in {args.dir}, and LUN {volume_lun}, "
            f"a snapshot volume in {volume}\n"
            + "".join(f"  portal {h}:{p} (portal group {t})\n" for h, p, t in bound)
            + "\nTry, from another shell:\n"
            f"  iscsi-ls -s iscsi://{first}/\n"
            f"  iscsi-inq iscsi://{first}/{DEMO_IQN}/0\n"
            f"  qemu-img info iscsi://{first}/{DEMO_IQN}/0\n"
            f"  qemu-img convert -p -n -O raw some.img iscsi://{first}/{DEMO_IQN}/1\n"
            f"  {sanstack} target sessions{control}      # who is connected, through which portal\n"
            f"  {sanstack} target luns {DEMO_IQN}{control}\n"
            f"  {sanstack} target portal-group {DEMO_IQN} 1 down{control}   # pull a path\n"
            "\nCtrl-C stops the target (in-flight I/O completes, data is flushed)."
        )

    nbd_url: list[str] = []

    async def multipath_export(server: TargetServer) -> Callable[[], Awaitable[None]]:
        """LUN 0 through both portals as one multipath device (a host with one map), served
        over NBD."""
        from sanstack.cli.mpio import open_export
        from sanstack.control.server import ControlServer, bind_routes
        from sanstack.host.routes import HOST_ROUTES
        from sanstack.mpio.path_slot import MultipathOptions, PathAddress
        from sanstack.nbd.server import NBDServer

        addresses = [PathAddress(host, port) for host, port, _tag in server.portals]
        host, device = await open_export(
            DEMO_IQN,
            0,
            addresses,
            MultipathOptions(),
            initiator_name=DEMO_HOST,
            state_dir=args.dir / "host",
        )
        nbd = NBDServer(
            {"": device, **host.exports()},
            "127.0.0.1",
            args.nbd_port if _port_is_free(args.nbd_port) else 0,
        )
        await nbd.start()
        mpio_control = ControlServer(args.mpio_control, bind_routes(host, HOST_ROUTES))
        await mpio_control.start()
        nbd_url.append(f"nbd://127.0.0.1:{nbd.port}")

        async def stop() -> None:
            await mpio_control.close()
            await nbd.stop()
            await host.close()

        return stop

    return await run_target_daemon(
        [spec],
        ConnectionSettings(),
        args.control,
        lambda server: (
            announce(server)
            + _multipath_help(nbd_url[0], args, _own_command())
            + _volume_help(server, volume, volume_lun, args, _own_command())
        ),
        state_dir=args.dir / "state",
        companions=multipath_export,
    )


async def _prepare_volume(path: Path, size: str) -> None:
    """Format the demo's snapshot volume on the first run, with its schedule.

    It is formatted under a temporary name and renamed, so an interrupted first run leaves
    no half-made volume behind; later runs keep the volume and its snapshots.
    """
    from sanstack.snapshot.files import format_volume_file, open_volume_file
    from sanstack.snapshot.model import FormatOptions, Schedule
    from sanstack.target.config import parse_size

    if await asyncio.to_thread(path.exists):
        return
    partial = path.with_name(path.name + ".formatting")
    await format_volume_file(partial, parse_size(size, "--size"), FormatOptions())
    volume = await open_volume_file(partial)
    try:
        await volume.set_schedule(Schedule(SCHEDULE_SECONDS, SCHEDULE_KEEP, prefix="demo"))
    finally:
        await volume.close()
    partial.replace(path)
    log.info("formatted the demo's snapshot volume %s", path)


def _volume_help(
    server: TargetServer, volume: Path, lun: int, args: argparse.Namespace, sanstack: str
) -> str:
    host, port, _tag = server.portals[0]
    control = "" if args.control == DEFAULT_TARGET_CONTROL else f" --control {args.control}"
    return (
        f"\n\nLUN {lun} is a snapshot volume: a snapshot every {SCHEDULE_SECONDS} s, the newest "
        f"{SCHEDULE_KEEP} kept.\n"
        f"The snapshot commands find this daemon through the volume (no --control needed):\n"
        f"  {sanstack} snapshot list {volume}\n"
        f"  {sanstack} snapshot create {volume} before-upgrade\n"
        f"  {sanstack} volume info {volume}\n"
        "Copy a snapshot out: serve it as a read-only LUN, convert it, remove the LUN:\n"
        f"  {sanstack} target lun-add {DEMO_IQN} snapshot:{volume}@before-upgrade "
        f"--number {lun + 1}{control}\n"
        f"  qemu-img convert -p -O raw iscsi://{host}:{port}/{DEMO_IQN}/{lun + 1} "
        "before-upgrade.raw\n"
        f"  {sanstack} target lun-remove {DEMO_IQN} {lun + 1}{control}"
    )


def _multipath_help(url: str, args: argparse.Namespace, sanstack: str) -> str:
    control = f" --control {args.mpio_control}"
    return (
        f"\n\nLUN 0 through both portals as one multipath device, over NBD: {url}\n"
        f"  qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' {url}\n"
        f"  qemu-img bench -f raw -c 200000 -d 16 {url}     # a steady load; meanwhile:\n"
        f"  {sanstack} target portal-group {DEMO_IQN} 1 down   # pull a path: I/O carries on\n"
        f"  {sanstack} host paths{control}   # path 1 failed, I/O on path 2\n"
        f"  {sanstack} target portal-group {DEMO_IQN} 1 up     # the path is reinstated"
    )
