"""``sanstack host ...``: the host daemon (iscsid plus multipathd) and what it shows.

The daemon's configuration is ``host/config.py``'s (a TOML file, flags, or both), its
control routes ``host/routes.py``'s; this is the command line over them.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sanstack.cli.common import add_metrics_flag
from sanstack.control.client import call, emit, render_table, socket_in_use
from sanstack.errors import ConfigError
from sanstack.host.config import DEFAULT_HOST_CONTROL

if TYPE_CHECKING:
    from sanstack.host.config import HostRunConfig
    from sanstack.host.host import Host

log = logging.getLogger("sanstack")


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
    run.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a TOML file with everything below and more: CHAP, session timings, the maps' "
        "policy, which LUNs (format: docs/host.toml); flags given with it override the file",
    )
    run.add_argument("--name", help="host name, or the initiator's iSCSI name")
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
    run.add_argument("--nbd", metavar="HOST:PORT", help="address to serve NBD on")
    run.add_argument(
        "--control",
        type=Path,
        default=None,
        metavar="SOCKET",
        help="control socket for 'sanstack host status|maps|paths|rescan' "
        f"(default {DEFAULT_HOST_CONTROL})",
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
        default=None,
        metavar="SECONDS",
        help="with every path of a map down: queue its I/O this long, then fail it "
        "('queue' = forever, 0 or 'fail' = fail at once; default 30)",
    )
    run.add_argument(
        "--rescan-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="rescan every target this often for LUNs added or removed, besides on REPORTED "
        "LUNS DATA HAS CHANGED and 'sanstack host rescan' (0 = no timer; default 30)",
    )
    add_metrics_flag(run, "none, or the file's host.metrics")
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


def run_config(args: argparse.Namespace) -> HostRunConfig:
    """``--config FILE`` with the flags given over it, or the quick form (flags only)."""
    from sanstack.host.config import Flag, load_host_config, parse_host_config

    given = [
        ("name", args.name, "--name"),
        ("portals", args.portal, "--portal"),
        ("targets", args.iqn, "--iqn"),
        ("nbd", args.nbd, "--nbd"),
        ("control", args.control, "--control"),
        ("state_dir", args.state_dir, "--state-dir"),
        ("map.no_path_retry", args.no_path_queue, "--no-path-queue"),
        ("rescan_interval", args.rescan_interval, "--rescan-interval"),
        ("metrics", args.metrics, "--metrics"),
    ]
    flags = [Flag(key, value, name) for key, value, name in given if value not in (None, [])]
    if args.config is not None:
        return load_host_config(args.config, flags)
    if not args.portal:
        raise ConfigError("--portal", "at least one --portal HOST:PORT is needed")
    for value, name in ((args.name, "--name"), (args.nbd, "--nbd")):
        if value is None:
            raise ConfigError(name, "is required (or give --config FILE)")
    return parse_host_config({}, flags)


async def _run(args: argparse.Namespace) -> int:
    from sanstack.cli.common import StopSignals, ready_with_metrics, start_metrics
    from sanstack.control.server import ControlServer, bind_routes
    from sanstack.host.host import Host
    from sanstack.host.metrics import HostCollector
    from sanstack.host.routes import HOST_ROUTES
    from sanstack.nbd.server import NBDServer

    config = run_config(args)
    if socket_in_use(config.control):
        raise ConfigError(
            _named(args, "--control", "host.control"),
            f"another daemon is serving {config.control}",
        )
    nbd_host, nbd_port = config.nbd
    stop = StopSignals()
    host = Host(config.host)
    try:
        await host.start()
        exports = host.exports()
        if not exports:
            raise _nothing_found(host, _named(args, "--portal", "host.portals"))
        server = NBDServer(exports, nbd_host, nbd_port)
        control = ControlServer(config.control, bind_routes(host, HOST_ROUTES))
        try:
            await server.start()
            await control.start()
        except OSError as exc:
            where = _named(args, "--nbd", "host.nbd")
            raise ConfigError(where, f"cannot listen: {exc.strerror or exc}") from None
        host.attach(server)
        try:
            exporter = await start_metrics(
                config.metrics,
                "host",
                [HostCollector(host, server)],
                _named(args, "--metrics", "host.metrics"),
            )
        except ConfigError:
            await control.close()
            await server.stop()
            raise
    except BaseException:
        await host.close()
        raise
    ready = f"ready nbd://{nbd_host}:{server.port} maps {len(host.maps)}"
    print(ready_with_metrics(ready, exporter), flush=True)
    try:
        await stop.wait()
    finally:
        if exporter is not None:
            await exporter.close()
        await control.close()
        await server.stop()
        await host.close()
    return 0


def _named(args: argparse.Namespace, flag: str, key: str) -> str:
    """How an error names a value: by its flag, or by its key when the file gave it."""
    given = getattr(args, flag.removeprefix("--").replace("-", "_"))
    return key if args.config is not None and given in (None, []) else flag


def _nothing_found(host: Host, portals: str) -> ConfigError:
    """Why the host has no map, in one line naming where to look: a CHAP login the target
    refused, no portal that answered, no session that logged in, or no LUN (left out)."""
    from sanstack.initiator.session import LoginRefused
    from sanstack.iscsi.codes import LoginStatus

    def refused(exc: object) -> bool:
        failure = LoginStatus.AUTHENTICATION_FAILURE
        return isinstance(exc, LoginRefused) and exc.status == failure

    def hint(chap: object) -> str:
        return "check user and secret" if chap else "the target asks for CHAP; none is set"

    for portal, exc in host.discovery_errors.items():
        if refused(exc):
            why = hint(host.config.discovery_chap)
            return ConfigError(
                "host.discovery_chap", f"discovery through {portal} refused ({why}): {exc}"
            )
    sessions = list(host.pool.sessions.values())
    if not sessions:
        failed = "; ".join(f"{p}: {e or 'timed out'}" for p, e in host.discovery_errors.items())
        return ConfigError(portals, f"no target found on any portal ({failed or 'none listed'})")
    down = [s for s in sessions if s.session is None]
    if len(down) == len(sessions):
        for shared in down:
            if refused(shared.login_refused):
                why = hint(host.config.session.chap)
                return ConfigError(
                    "host.chap", f"{shared.name} refused the login ({why}): {shared.login_refused}"
                )
        more = f" (and {len(down) - 1} more)" if len(down) > 1 else ""
        why = down[0].last_failure or "not logged in"
        return ConfigError(portals, f"no session logged in: {down[0].name}: {why}{more}")
    if host.config.luns.include or host.config.luns.exclude:
        return ConfigError("host.luns", "no LUN found that the filter lets through")
    return ConfigError(portals, "no LUN found on any portal")


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
