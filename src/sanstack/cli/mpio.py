"""``sanstack mpio ...``: a multipath device per LUN, exported over NBD, and its status."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sanstack.config_checks import parse_address
from sanstack.control.client import call, emit, render_table, socket_in_use
from sanstack.errors import ConfigError
from sanstack.mpio.paths import FailbackPolicy

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sanstack.control.server import RouteRow
    from sanstack.host.host import Host
    from sanstack.mpio.device import MultipathDevice
    from sanstack.mpio.path_slot import MultipathOptions, PathAddress

log = logging.getLogger("sanstack")
DEFAULT_MPIO_CONTROL = Path("/run/sanstack/mpio.sock")
DEFAULT_INITIATOR = "iqn.2026-11.org.sanstack:initiator"


def register(commands: Any) -> None:
    mpio = commands.add_parser("mpio", help="multipath I/O: one device per LUN over every path")
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
        help="control socket for 'sanstack mpio status' (default %(default)s)",
    )
    export.set_defaults(func=_export)
    status = sub.add_parser("status", help="devices, paths, states, ALUA groups, I/O counts")
    status.add_argument(
        "--control",
        type=Path,
        default=DEFAULT_MPIO_CONTROL,
        metavar="SOCKET",
        help="the multipath daemon's control socket (default %(default)s)",
    )
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.set_defaults(func=_status)


def _failback(text: str) -> tuple[FailbackPolicy, float]:
    if text in ("immediate", "manual"):
        return FailbackPolicy(text), 0.0
    try:
        seconds = float(text)
    except ValueError:
        raise ConfigError("--failback", f"{text!r} is not immediate, manual or seconds") from None
    if not 0 < seconds <= 3600:
        raise ConfigError("--failback", "seconds must be in (0, 3600]")
    return FailbackPolicy.DEFERRED, seconds


async def _export(args: argparse.Namespace) -> int:
    from sanstack.cli.common import StopSignals
    from sanstack.config_checks import check_name
    from sanstack.control.server import ControlServer, bind_routes
    from sanstack.mpio.no_path import NoPathRetry
    from sanstack.mpio.path_slot import MultipathOptions, PathAddress
    from sanstack.mpio.selectors import make_selector
    from sanstack.nbd.server import NBDServer

    if not args.portal:
        raise ConfigError("--portal", "at least one --portal HOST:PORT is needed")
    addresses = [PathAddress(*parse_address(p, f"--portal {p}")) for p in args.portal]
    nbd_host, nbd_port = parse_address(args.nbd, "--nbd", any_port=True)
    iqn = check_name(args.iqn, "--iqn")
    initiator = check_name(args.initiator_name, "--initiator-name")
    if not 0 <= args.lun < 16384:
        raise ConfigError("--lun", f"{args.lun} is not a LUN number 0..16383")
    make_selector(args.selector)
    policy, delay = _failback(args.failback)
    options = MultipathOptions(
        initiator_name=initiator,
        selector=args.selector,
        no_path_retry=NoPathRetry.parse(args.no_path_queue),
        failback=policy,
        failback_delay=delay,
    )
    if socket_in_use(args.control):
        raise ConfigError("--control", f"another daemon is serving {args.control}")
    stop = StopSignals()
    host, device = await open_export(iqn, args.lun, addresses, options, args.state_dir)
    exports = {"": device, **host.exports()}
    server = NBDServer(exports, nbd_host, nbd_port)
    control = ControlServer(args.control, bind_routes(MpioService([device]), MPIO_ROUTES))
    try:
        await server.start()
        await control.start()
    except OSError as exc:
        await host.close()
        raise ConfigError("--nbd", f"cannot listen: {exc.strerror or exc}") from None
    print(f"ready nbd://{nbd_host}:{server.port}", flush=True)
    try:
        await stop.wait()
    finally:
        await control.close()
        await server.stop()
        await host.close()
    return 0


async def open_export(
    iqn: str,
    lun: int,
    addresses: Sequence[PathAddress],
    options: MultipathOptions,
    state_dir: Path | None = None,
) -> tuple[Host, MultipathDevice]:
    """A host with one map: LUN ``lun`` of ``iqn`` over one shared session per portal
    (``sanstack mpio export`` and the demo). Raises ``DeviceNotReady`` when no path
    reaches it; the host is closed then."""
    from sanstack.block.device import DeviceNotReady
    from sanstack.host.host import Host, HostConfig

    host = Host(
        HostConfig(
            initiator_name=options.initiator_name,
            portals=list(addresses),
            iqns=[iqn],
            luns=[lun],
            state_dir=state_dir,
            maps=options,
        )
    )
    try:
        await host.start()
    except BaseException:
        await host.close()
        raise
    alias = f"{iqn}/{lun}"
    found = next((m.device for m in host.maps.values() if m.alias == alias), None)
    if found is None:
        await host.close()
        raise DeviceNotReady(f"no path to {iqn} LUN {lun} could log in")
    return host, found


class MpioService:
    """The multipath daemon's service API (what ``sanstack mpio status`` shows)."""

    def __init__(self, devices: list[Any]) -> None:
        self.devices = devices

    def status(self) -> list[dict[str, Any]]:
        return [device.status() for device in self.devices]


async def _devices(service: MpioService, _m: dict[str, str], _b: Any) -> Any:
    return service.status()


MPIO_ROUTES: list[RouteRow[MpioService]] = [("GET", r"^/v1/devices$", _devices)]

_PATH_COLUMNS = [
    ("device", "DEVICE"),
    ("path", "PATH"),
    ("state", "STATE"),
    ("alua", "ALUA"),
    ("active_group", "ACTIVE GROUP"),
    ("in_flight", "IN FLIGHT"),
    ("completed", "DONE"),
    ("failures", "FAILURES"),
]


async def _status(args: argparse.Namespace) -> int:
    devices = call(args.control, "GET", "/v1/devices")
    lines = []
    rows = []
    for device in devices:
        name = f"{device['target']}/{device['lun']}"
        lines.append(
            f"{name}  naa {device['naa']}  selector {device['selector']}  "
            f"no_path_retry {device['no_path_retry']}  queued {device['queued']}"
        )
        rows += [{**path, "device": name} for path in device["paths"]]
    table = "\n".join(lines) + "\n" + render_table(rows, _PATH_COLUMNS)
    emit(devices, as_json=args.json, table=table)
    return 0
