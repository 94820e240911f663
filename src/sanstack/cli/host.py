"""``sanstack host ...``: the host daemon (iscsid plus multipathd) and what it shows."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sanstack.config_checks import parse_address
from sanstack.control.client import call, emit, render_table, socket_in_use
from sanstack.errors import ConfigError, ServiceError

if TYPE_CHECKING:
    from sanstack.control.server import RouteRow
    from sanstack.host.host import Host

log = logging.getLogger("sanstack")
DEFAULT_HOST_CONTROL = Path("/run/sanstack/host.sock")
NAME_PREFIX = "iqn.2026-11.org.sanstack.host:"
_SIMPLE_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")


def initiator_name(name: str) -> str:
    """``--name``: an iSCSI name as given, or a short host name an IQN is derived from."""
    from sanstack.config_checks import check_name

    if name.lower().startswith(("iqn.", "eui.", "naa.")):
        return check_name(name, "--name")
    if not _SIMPLE_NAME.match(name.lower()):
        raise ConfigError("--name", f"{name!r} is neither an iSCSI name nor a short host name")
    return NAME_PREFIX + name.lower()


def register(commands: Any) -> None:
    host = commands.add_parser("host", help="the host: shared sessions and multipath maps")
    sub = host.add_subparsers(dest="host_command", metavar="COMMAND")
    sub.required = True
    run = sub.add_parser(
        "run",
        help="log in to every target on the portals and export every LUN over NBD",
        description=(
            "Discover targets on every --portal (SendTargets), log in once per (target, "
            "portal), build one multipath map per LUN identity (VPD 0x83 NAA) and serve "
            "every map over one NBD server as naa.<hex> and IQN/LUN, until SIGINT/SIGTERM."
        ),
    )
    run.add_argument("--name", required=True, help="host name, or the initiator's iSCSI name")
    run.add_argument(
        "--portal",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a portal to discover targets on and log in through (repeatable; at least one)",
    )
    run.add_argument(
        "--iqn",
        action="append",
        default=[],
        metavar="IQN",
        help="use only this target (repeatable; default: every discovered target)",
    )
    run.add_argument("--nbd", required=True, metavar="HOST:PORT", help="address to serve NBD on")
    run.add_argument(
        "--control",
        type=Path,
        default=DEFAULT_HOST_CONTROL,
        metavar="SOCKET",
        help="control socket for 'sanstack host status|maps|paths|rescan' (default %(default)s)",
    )
    run.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the host keeps its ISIDs and reservation keys across restarts "
        "(default: none, memory only)",
    )
    run.add_argument(
        "--no-path-queue",
        default="30",
        metavar="SECONDS",
        help="with every path of a map down: queue its I/O this long, then fail it "
        "('queue' = forever, 0 or 'fail' = fail at once; default %(default)s)",
    )
    run.add_argument(
        "--rescan-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="rescan every target this often for LUNs added or removed, besides on REPORTED "
        "LUNS DATA HAS CHANGED and 'sanstack host rescan' (0 = no timer; default %(default)s)",
    )
    run.set_defaults(func=_run)
    for name, what in (
        ("status", "sessions: portal, ISID, TSIH, state, digests; counts"),
        ("maps", "maps: WWID, alias, size, exports, paths by state, selector, queued, PR key"),
        ("paths", "every path of every map: state, ALUA, in flight, failures"),
    ):
        show = sub.add_parser(name, help=what)
        show.add_argument(
            "--control",
            type=Path,
            default=DEFAULT_HOST_CONTROL,
            metavar="SOCKET",
            help="the host daemon's control socket (default %(default)s)",
        )
        show.add_argument("--json", action="store_true", help="print JSON for scripts")
        show.set_defaults(func=_SHOW[name])
    rescan = sub.add_parser(
        "rescan",
        help="REPORT LUNS now: new LUNs become maps and exports, removed ones go away",
    )
    rescan.add_argument(
        "--iqn",
        action="append",
        default=[],
        metavar="IQN",
        help="rescan only this target (repeatable; default: every target of the host)",
    )
    rescan.add_argument(
        "--control",
        type=Path,
        default=DEFAULT_HOST_CONTROL,
        metavar="SOCKET",
        help="the host daemon's control socket (default %(default)s)",
    )
    rescan.add_argument("--json", action="store_true", help="print JSON for scripts")
    rescan.set_defaults(func=_rescan)
    pr = sub.add_parser("pr", help="persistent reservations through a map, on every path")
    pr_sub = pr.add_subparsers(dest="pr_command", metavar="ACTION")
    pr_sub.required = True
    register = pr_sub.add_parser(
        "register", help="REGISTER a key on every path (I_T nexus) of a map; 0 unregisters"
    )
    register.add_argument("map", help="the map's WWID (naa.…) or alias (IQN/LUN)")
    register.add_argument("key", help="the reservation key, e.g. 0x1234 (0 = unregister)")
    register.add_argument(
        "--control",
        type=Path,
        default=DEFAULT_HOST_CONTROL,
        metavar="SOCKET",
        help="the host daemon's control socket (default %(default)s)",
    )
    register.add_argument("--json", action="store_true", help="print JSON for scripts")
    register.set_defaults(func=_pr_register)


async def _run(args: argparse.Namespace) -> int:
    from sanstack.cli.common import StopSignals
    from sanstack.config_checks import check_name
    from sanstack.control.server import ControlServer, bind_routes
    from sanstack.host.host import Host, HostConfig
    from sanstack.mpio.no_path import NoPathRetry
    from sanstack.mpio.path_slot import (
        MultipathOptions,
        PathAddress,
    )
    from sanstack.nbd.server import NBDServer

    if not args.portal:
        raise ConfigError("--portal", "at least one --portal HOST:PORT is needed")
    portals = [PathAddress(*parse_address(p, f"--portal {p}")) for p in args.portal]
    nbd_host, nbd_port = parse_address(args.nbd, "--nbd", any_port=True)
    name = initiator_name(args.name)
    iqns = [check_name(i, "--iqn") for i in args.iqn]
    maps = MultipathOptions(
        initiator_name=name, no_path_retry=NoPathRetry.parse(args.no_path_queue)
    )
    if args.rescan_interval < 0:
        raise ConfigError("--rescan-interval", "must be 0 (no timer) or more seconds")
    if socket_in_use(args.control):
        raise ConfigError("--control", f"another daemon is serving {args.control}")
    stop = StopSignals()
    config = HostConfig(
        name, portals, iqns, args.state_dir, maps=maps, rescan_interval=args.rescan_interval
    )
    host = Host(config)
    try:
        await host.start()
        exports = host.exports()
        if not exports:
            raise ConfigError("--portal", "no LUN found on any portal")
        server = NBDServer(exports, nbd_host, nbd_port)
        control = ControlServer(args.control, bind_routes(host, HOST_ROUTES))
        try:
            await server.start()
            await control.start()
        except OSError as exc:
            raise ConfigError("--nbd", f"cannot listen: {exc.strerror or exc}") from None
        host.attach(server)
    except BaseException:
        await host.close()
        raise
    print(f"ready nbd://{nbd_host}:{server.port} maps {len(host.maps)}", flush=True)
    try:
        await stop.wait()
    finally:
        await control.close()
        await server.stop()
        await host.close()
    return 0


async def _status(host: Host, _m: dict[str, str], _b: Any) -> Any:
    return host.status()


async def _maps(host: Host, _m: dict[str, str], _b: Any) -> Any:
    return host.map_list()


async def _paths(host: Host, _m: dict[str, str], _b: Any) -> Any:
    return host.path_list()


async def _rescan_route(host: Host, _m: dict[str, str], body: Any) -> Any:
    targets = (body or {}).get("targets") or []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ServiceError(400, "targets: a list of target names")
    return await host.rescan(targets)


async def _pr_register_route(host: Host, _m: dict[str, str], body: Any) -> Any:
    body = body or {}
    name, key = body.get("map"), body.get("key")
    if not isinstance(name, str) or not isinstance(key, int) or isinstance(key, bool):
        raise ServiceError(400, "body: {'map': WWID or alias, 'key': integer}")
    return await host.pr_register(name, key)


HOST_ROUTES: list[RouteRow[Host]] = [
    ("GET", r"^/v1/status$", _status),
    ("GET", r"^/v1/maps$", _maps),
    ("GET", r"^/v1/paths$", _paths),
    ("POST", r"^/v1/rescan$", _rescan_route),
    ("POST", r"^/v1/pr/register$", _pr_register_route),
]

_SESSION_COLUMNS = [
    ("target", "TARGET"),
    ("portal", "PORTAL"),
    ("isid", "ISID"),
    ("tsih", "TSIH"),
    ("state", "STATE"),
    ("header_digest", "HDIGEST"),
    ("data_digest", "DDIGEST"),
    ("logins", "LOGINS"),
    ("failures", "FAILURES"),
    ("listeners", "MAPS"),
]
_MAP_COLUMNS = [
    ("wwid", "WWID"),
    ("alias", "ALIAS"),
    ("size_bytes", "SIZE"),
    ("paths", "PATHS"),
    ("selector", "SELECTOR"),
    ("queued", "QUEUED"),
    ("pr_key", "PR KEY"),
]
_PATH_COLUMNS = [
    ("map", "MAP"),
    ("path", "SESSION"),
    ("alua", "ALUA"),
    ("state", "STATE"),
    ("in_flight", "IN FLIGHT"),
    ("completed", "DONE"),
    ("failures", "FAILURES"),
]


async def _show_status(args: argparse.Namespace) -> int:
    status = call(args.control, "GET", "/v1/status")
    counts = status["counts"]
    head = (
        f"{status['initiator']}  sessions {counts['sessions_up']}/{counts['sessions']} up  "
        f"maps {counts['maps']}"
    )
    emit(
        status,
        as_json=args.json,
        table=head + "\n" + render_table(status["sessions"], _SESSION_COLUMNS),
    )
    return 0


async def _show_maps(args: argparse.Namespace) -> int:
    maps = call(args.control, "GET", "/v1/maps")
    rows = [
        {
            **m,
            "paths": " ".join(f"{k}={v}" for k, v in m["paths"].items()),
            "pr_key": m["pr_key"] or "-",
        }
        for m in maps
    ]
    emit(maps, as_json=args.json, table=render_table(rows, _MAP_COLUMNS))
    return 0


async def _show_paths(args: argparse.Namespace) -> int:
    paths = call(args.control, "GET", "/v1/paths")
    emit(paths, as_json=args.json, table=render_table(paths, _PATH_COLUMNS))
    return 0


_RESCAN_COLUMNS = [
    ("target", "TARGET"),
    ("sessions", "SESSIONS"),
    ("added", "ADDED"),
    ("removed", "REMOVED"),
    ("maps", "MAPS"),
    ("seconds", "SECONDS"),
]


async def _rescan(args: argparse.Namespace) -> int:
    results = call(args.control, "POST", "/v1/rescan", {"targets": args.iqn})
    rows = [
        {
            **r,
            "sessions": f"{r['answered']}/{r['sessions']}",
            "added": " ".join(m["alias"] for m in r["added"]) or "-",
            "removed": " ".join(m["alias"] for m in r["removed"]) or "-",
        }
        for r in results
    ]
    emit(results, as_json=args.json, table=render_table(rows, _RESCAN_COLUMNS))
    return 0


async def _pr_register(args: argparse.Namespace) -> int:
    try:
        key = int(args.key, 0)
    except ValueError:
        raise ConfigError("key", f"{args.key!r} is not a number (e.g. 0x1234)") from None
    result = call(args.control, "POST", "/v1/pr/register", {"map": args.map, "key": key})
    text = f"{result['alias']} ({result['wwid']}): key {result['pr_key'] or 'none'}"
    emit(result, as_json=args.json, table=text)
    return 0


_SHOW = {"status": _show_status, "maps": _show_maps, "paths": _show_paths}
