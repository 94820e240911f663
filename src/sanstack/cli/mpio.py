"""``sanstack mpio export``: one LUN through every portal as one multipath device, over NBD.

It is a host with one map (``open_export``), and its control socket serves the host's
routes: ``sanstack host status|maps|paths --control SOCKET`` show it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sanstack.cli.common import add_metrics_flag, metrics_address
from sanstack.config_checks import parse_address
from sanstack.control.client import socket_in_use
from sanstack.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sanstack.host.host import Host
    from sanstack.mpio.device import MultipathDevice
    from sanstack.mpio.path_slot import MultipathOptions, PathAddress

log = logging.getLogger("sanstack")
DEFAULT_MPIO_CONTROL = Path("/run/sanstack/mpio.sock")
DEFAULT_INITIATOR = "iqn.2026-11.org.sanstack:initiator"


def register(commands: Any) -> None:
    mpio = commands.add_parser("mpio", help="multipath I/O: one LUN over every path, over NBD")
    sub = mpio.add_subparsers(dest="mpio_command", metavar="COMMAND")
    sub.required = True
    export = sub.add_parser(
        "export",
        help="serve one LUN through all given portals as an NBD export until SIGINT/SIGTERM",
        description=(
            "A host with one map: log in to IQN once through every --portal, build the "
            "multipath device of LUN N (paths grouped by VPD 0x83 identity, ALUA-aware, "
            "failover and failback), and serve it over NBD (nbd://HOST:PORT, also under its "
            "WWID and IQN/N) until SIGINT/SIGTERM."
        ),
    )
    export.add_argument(
        "--portal",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a portal of the target, one path each (repeatable; at least one)",
    )
    export.add_argument("--iqn", required=True, help="the target's name")
    export.add_argument("--lun", type=int, required=True, metavar="N", help="the LUN to serve")
    export.add_argument("--nbd", required=True, metavar="HOST:PORT", help="address to serve NBD on")
    export.add_argument(
        "--no-path-queue",
        default="30",
        metavar="SECONDS",
        help="with every path down: queue I/O this long, then fail it ('queue' = forever, "
        "0 or 'fail' = fail at once; default %(default)s)",
    )
    export.add_argument(
        "--selector",
        default="service-time",
        metavar="NAME",
        help="path selector: service-time, round-robin, least-queue-depth, failover or "
        "weighted (default %(default)s)",
    )
    export.add_argument(
        "--failback",
        default="immediate",
        metavar="WHEN",
        help="when a better path that came back takes the I/O again: immediate, manual, or "
        "after SECONDS (default %(default)s)",
    )
    export.add_argument(
        "--initiator-name",
        default=DEFAULT_INITIATOR,
        metavar="IQN",
        help="the iSCSI name we log in with (default %(default)s)",
    )
    export.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the host keeps its ISIDs, so a restart is the same I_T nexus "
        "(default: none, new ISIDs every run)",
    )
    export.add_argument(
        "--control",
        type=Path,
        default=DEFAULT_MPIO_CONTROL,
        metavar="SOCKET",
        help="control socket for 'sanstack host status|maps|paths --control SOCKET' "
        "(default %(default)s)",
    )
    add_metrics_flag(export)
    export.set_defaults(func=_export)


async def _export(args: argparse.Namespace) -> int:
    from sanstack.cli.common import StopSignals, ready_with_metrics, start_metrics
    from sanstack.config_checks import check_name
    from sanstack.control.server import ControlServer, bind_routes
    from sanstack.host.config import parse_failback, parse_no_path_retry, parse_selector
    from sanstack.host.metrics import HostCollector
    from sanstack.host.routes import HOST_ROUTES
    from sanstack.mpio.path_slot import MultipathOptions, PathAddress
    from sanstack.nbd.server import NBDServer

    if not args.portal:
        raise ConfigError("--portal", "at least one --portal HOST:PORT is needed")
    addresses = [PathAddress(*parse_address(p, f"--portal {p}")) for p in args.portal]
    nbd_host, nbd_port = parse_address(args.nbd, "--nbd", any_port=True)
    metrics = metrics_address(args.metrics)
    iqn = check_name(args.iqn, "--iqn")
    initiator = check_name(args.initiator_name, "--initiator-name")
    if not 0 <= args.lun < 16384:
        raise ConfigError("--lun", f"{args.lun} is not a LUN number 0..16383")
    policy, delay = parse_failback(args.failback, "--failback")
    options = MultipathOptions(
        selector=parse_selector(args.selector, "--selector"),
        no_path_retry=parse_no_path_retry(args.no_path_queue, "--no-path-queue"),
        failback=policy,
        failback_delay=delay,
    )
    if socket_in_use(args.control):
        raise ConfigError("--control", f"another daemon is serving {args.control}")
    stop = StopSignals()
    host, device = await open_export(
        iqn, args.lun, addresses, options, initiator_name=initiator, state_dir=args.state_dir
    )
    exports = {"": device, **host.exports()}
    server = NBDServer(exports, nbd_host, nbd_port)
    control = ControlServer(args.control, bind_routes(host, HOST_ROUTES))
    try:
        await server.start()
        await control.start()
    except OSError as exc:
        await host.close()
        raise ConfigError("--nbd", f"cannot listen: {exc.strerror or exc}") from None
    try:
        exporter = await start_metrics(
            metrics, "mpio-export", [HostCollector(host, server)], "--metrics"
        )
    except ConfigError:
        await control.close()
        await server.stop()
        await host.close()
        raise
    print(ready_with_metrics(f"ready nbd://{nbd_host}:{server.port}", exporter), flush=True)
    try:
        await stop.wait()
    finally:
        if exporter is not None:
            await exporter.close()
        await control.close()
        await server.stop()
        await host.close()
    return 0


async def open_export(
    iqn: str,
    lun: int,
    addresses: Sequence[PathAddress],
    options: MultipathOptions,
    *,
    initiator_name: str,
    state_dir: Path | None = None,
) -> tuple[Host, MultipathDevice]:
    """A host with one map: LUN ``lun`` of ``iqn`` over one shared session per portal
    (``sanstack mpio export`` and the demo); its LUN filter names that LUN alone, so no
    other is probed. Raises ``DeviceNotReady`` when no path reaches it; the host is closed
    then."""
    from sanstack.block.device import DeviceNotReady
    from sanstack.host.config import HostConfig, LunFilter, lun_entry
    from sanstack.host.host import Host

    alias = f"{iqn}/{lun}"
    host = Host(
        HostConfig(
            initiator_name=initiator_name,
            portals=list(addresses),
            iqns=[iqn],
            luns=LunFilter(include=(lun_entry(alias, "--lun"),)),
            state_dir=state_dir,
            maps=options,
        )
    )
    try:
        await host.start()
    except BaseException:
        await host.close()
        raise
    found = next((m.device for m in host.maps.values() if m.alias == alias), None)
    if found is None:
        await host.close()
        raise DeviceNotReady(f"no path to {iqn} LUN {lun} could log in")
    return host, found
