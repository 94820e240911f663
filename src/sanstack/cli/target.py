"""``sanstack target ...``: serve targets."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sanstack import native
from sanstack.cli.common import add_metrics_flag, metrics_address
from sanstack.control.client import (
    DEFAULT_TARGET_CONTROL,
    call,
    emit,
    render_table,
    socket_in_use,
)
from sanstack.errors import ConfigError

if TYPE_CHECKING:
    from sanstack.iscsi.target_events import ConnectionSettings
    from sanstack.target.config import TargetSpec
    from sanstack.target.server import TargetServer

log = logging.getLogger("sanstack")
DEFAULT_STATE_DIR = Path("/var/lib/sanstack")
MAX_WORKERS = 256


def register(commands: Any) -> None:
    target = commands.add_parser("target", help="run and inspect iSCSI targets")
    sub = target.add_subparsers(dest="target_command", metavar="COMMAND")
    sub.required = True
    serve = sub.add_parser(
        "serve",
        help="serve targets until SIGINT/SIGTERM",
        description=(
            "Serve iSCSI targets from a TOML config file (--config), or one target in the "
            "quick form: --iqn IQN --portal HOST:PORT [--portal ...] --lun FILE:SIZE [--lun ...]. "
            "In the quick form each portal is its own portal group (TPGT 1, 2, ...) and LUNs "
            "are numbered from 0 in the order given; a missing FILE is created sparse. "
            "volume:FILE serves a snapshot volume (sanstack volume format), snapshot:FILE@NAME "
            "one of its snapshots read-only; LUNs of one volume file share one open volume."
        ),
    )
    serve.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML file of targets, portal groups, LUNs, ACLs and CHAP (format in README.md)",
    )
    serve.add_argument("--iqn", help="target name, e.g. iqn.2026-11.org.sanstack:disk")
    serve.add_argument(
        "--portal",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="address to listen on; each is its own portal group (repeatable)",
    )
    serve.add_argument(
        "--lun",
        action="append",
        default=[],
        metavar="SPEC",
        help="FILE:SIZE (SIZE like 64M or 1G), memory:SIZE, volume:FILE or snapshot:FILE@NAME "
        "(repeatable)",
    )
    serve.add_argument(
        "--control",
        type=Path,
        default=DEFAULT_TARGET_CONTROL,
        metavar="SOCKET",
        help="control socket for the other target commands (default %(default)s)",
    )
    serve.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help="where persistent reservations (APTPL) are kept (default %(default)s)",
    )
    serve.add_argument(
        "--nop-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="silence before pinging an initiator with NOP-In, 0 for never (default %(default)s)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve from N worker processes behind one coordinator that owns the portals, "
        "the control socket and the shared reservation and ALUA state (file LUNs only; "
        "default %(default)s: one process)",
    )
    add_metrics_flag(serve)
    serve.set_defaults(func=serve_command)
    _register_queries(sub)


async def serve_command(args: argparse.Namespace) -> int:
    from sanstack.iscsi.target_events import ConnectionSettings
    from sanstack.target.config import load_config, quick_target

    if args.config is not None:
        if args.iqn or args.portal or args.lun:
            raise ConfigError("--config", "use either --config or --iqn/--portal/--lun")
        specs = load_config(args.config)
    else:
        if not args.iqn:
            raise ConfigError("--iqn", "needed without --config")
        if not args.lun:
            raise ConfigError("--lun", "at least one --lun FILE:SIZE is needed")
        specs = [quick_target(args.iqn, args.portal, args.lun)]
    if args.nop_interval < 0:
        raise ConfigError("--nop-interval", "must be >= 0")
    if not 1 <= args.workers <= MAX_WORKERS:
        raise ConfigError("--workers", f"must be 1..{MAX_WORKERS}")
    settings = ConnectionSettings(nop_in_interval=args.nop_interval or None)
    if args.workers > 1:
        return await run_coordinated_daemon(
            specs,
            settings,
            args.control,
            workers=args.workers,
            state_dir=args.state_dir,
            metrics=metrics_address(args.metrics),
        )
    return await run_target_daemon(
        specs,
        settings,
        args.control,
        announce=lambda _s: "ready",
        state_dir=args.state_dir,
        metrics=metrics_address(args.metrics),
    )


async def run_target_daemon(
    specs: list[TargetSpec],
    settings: ConnectionSettings,
    control_path: Path,
    announce: Callable[[TargetServer], str],
    *,
    state_dir: Path | None = None,
    metrics: tuple[str, int] | None = None,
) -> int:
    """Serve ``specs`` with a control socket until SIGINT/SIGTERM, then shut down cleanly.

    ``announce`` makes the text printed on stdout once every portal listens. ``metrics``:
    where to serve ``/metrics`` (None: not at all), added to the ready line.
    """
    from sanstack.cli.common import StopSignals, ready_with_metrics, start_metrics
    from sanstack.control.server import ControlServer, bind_routes
    from sanstack.snapshot.routes import VOLUME_ROUTES
    from sanstack.snapshot.service import VolumeService
    from sanstack.target.build import build_registry
    from sanstack.target.metrics import TargetCollector
    from sanstack.target.routes import TARGET_ROUTES
    from sanstack.target.server import TargetServer
    from sanstack.target.service import TargetService

    stop = StopSignals()
    if socket_in_use(control_path):
        raise ConfigError("--control", f"another daemon is serving {control_path}")
    if state_dir is not None:
        try:
            await asyncio.to_thread(state_dir.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("--state-dir", f"cannot create {state_dir}: {exc.strerror}") from None
    # The volumes record this socket as their holder's, so the CLI can find this daemon.
    volumes = VolumeService(control_path)
    registry = await build_registry(specs, state_dir, volumes)
    server = TargetServer(registry, settings)
    control = ControlServer(
        control_path,
        bind_routes(TargetService(server, volumes), TARGET_ROUTES)
        + bind_routes(volumes, VOLUME_ROUTES),
    )
    try:
        await server.start()
    except OSError as exc:
        await server.stop(grace=0)
        await volumes.close()
        raise ConfigError("--portal", f"cannot listen: {exc.strerror or exc}") from None
    try:
        await control.start()
    except OSError as exc:
        await server.stop(grace=0)
        await volumes.close()
        raise ConfigError("--control", f"cannot serve {control_path}: {exc.strerror}") from None
    try:
        exporter = await start_metrics(
            metrics, "target", [TargetCollector(registry, volumes)], "--metrics"
        )
    except ConfigError:
        await control.close()
        await server.stop(grace=0)
        await volumes.close()
        raise
    log.info("%s", native.status().summary())
    for target in registry.targets.values():
        log.info("serving %s with %d LUNs", target.name, len(target.luns))
    for host, port, tpgt in server.portals:
        log.info("listening on %s:%d (portal group %d)", host, port, tpgt)
    log.info("control socket %s", control_path)
    print(ready_with_metrics(announce(server), exporter), flush=True)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        if exporter is not None:
            await exporter.close()
        await control.close()
        await server.stop()  # closes every LUN, which releases the volumes they hold
        await volumes.close()
    return 0


async def run_coordinated_daemon(
    specs: list[TargetSpec],
    settings: ConnectionSettings,
    control_path: Path,
    *,
    workers: int,
    state_dir: Path | None = None,
    metrics: tuple[str, int] | None = None,
) -> int:
    """``run_target_daemon`` with ``workers`` worker processes behind a coordinator
    (``target/coordinator.py``); the ready line is printed once every worker is up."""
    from sanstack.cli.common import StopSignals, ready_with_metrics, start_metrics
    from sanstack.control.server import ControlServer, bind_routes
    from sanstack.snapshot.routes import VOLUME_ROUTES
    from sanstack.snapshot.service import VolumeService
    from sanstack.target.coordinator import Coordinator, build_coordinator_registry
    from sanstack.target.coordinator_service import COORDINATOR_ROUTES, CoordinatorService
    from sanstack.target.metrics import TargetCollector
    from sanstack.target.workers_core import Effects, WorkerSetup

    stop = StopSignals()
    if socket_in_use(control_path):
        raise ConfigError("--control", f"another daemon is serving {control_path}")
    if state_dir is not None:
        try:
            await asyncio.to_thread(state_dir.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("--state-dir", f"cannot create {state_dir}: {exc.strerror}") from None
    effects = Effects()
    registry, files = await build_coordinator_registry(specs, state_dir, effects)
    level = logging.getLogger().getEffectiveLevel()
    setup = WorkerSetup(specs, settings, workers, level, files)
    coordinator = Coordinator(registry, effects, setup)
    volumes = VolumeService(control_path)
    control = ControlServer(
        control_path,
        bind_routes(CoordinatorService(coordinator, volumes), COORDINATOR_ROUTES)
        + bind_routes(volumes, VOLUME_ROUTES),
    )
    try:
        await coordinator.start()
    except OSError as exc:
        await volumes.close()
        raise ConfigError("--portal", f"cannot listen: {exc.strerror or exc}") from None
    except BaseException:
        await volumes.close()
        raise
    try:
        await control.start()
        exporter = await start_metrics(
            metrics, "target", [TargetCollector(registry, volumes)], "--metrics"
        )
    except (OSError, ConfigError) as exc:
        await control.close()
        await coordinator.stop(grace=0)
        await volumes.close()
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError("--control", f"cannot serve {control_path}: {exc.strerror}") from None
    for host, port, tpgt in coordinator.portals:
        log.info("listening on %s:%d (portal group %d)", host, port, tpgt)
    log.info("control socket %s; %d workers", control_path, workers)
    print(ready_with_metrics("ready", exporter), flush=True)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        if exporter is not None:
            await exporter.close()
        await control.close()
        await coordinator.stop()
        await volumes.close()
    return 0


# -- queries and changes through a running daemon's control socket ---------------------------


def _common(parser: Any) -> None:
    parser.add_argument(
        "--control",
        type=Path,
        default=DEFAULT_TARGET_CONTROL,
        metavar="SOCKET",
        help="the daemon's control socket (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _register_queries(sub: Any) -> None:
    status = sub.add_parser("status", help="show a running target daemon's summary")
    _common(status)
    status.set_defaults(func=_status)
    listing = sub.add_parser("list", help="list targets and their portal groups")
    _common(listing)
    listing.set_defaults(func=_list)
    sessions = sub.add_parser("sessions", help="list connections and their I_T nexuses")
    _common(sessions)
    sessions.set_defaults(func=_sessions)
    luns = sub.add_parser("luns", help="list the LUNs of a target")
    luns.add_argument("target", help="target name (IQN)")
    _common(luns)
    luns.set_defaults(func=_luns)
    portal = sub.add_parser(
        "portal-group",
        help="take a portal group down (connections drop, as a pulled cable) or up",
    )
    portal.add_argument("target", help="target name (IQN)")
    portal.add_argument("tag", type=int, help="portal group tag (TPGT)")
    portal.add_argument(
        "state", choices=["up", "down"], help="down drops its connections and refuses new ones"
    )
    _common(portal)
    portal.set_defaults(func=_portal_group)
    pr = sub.add_parser("pr", help="show a LUN's persistent reservations")
    pr.add_argument("target", help="target name (IQN)")
    pr.add_argument("lun", type=int, help="LUN number")
    _common(pr)
    pr.set_defaults(func=_pr)
    alua = sub.add_parser(
        "alua", help="set a portal group's ALUA access state (an implicit transition)"
    )
    alua.add_argument("target", help="target name (IQN)")
    alua.add_argument("tag", type=int, help="portal group tag (TPGT)")
    alua.add_argument(
        "state",
        choices=[
            "active-optimized",
            "active-non-optimized",
            "standby",
            "unavailable",
            "transitioning",
            "offline",
        ],
        metavar="STATE",
        help="active-optimized, active-non-optimized, standby, unavailable, transitioning or "
        "offline",
    )
    _common(alua)
    alua.set_defaults(func=_alua)
    lun_add = sub.add_parser("lun-add", help="add a LUN to a running target")
    lun_add.add_argument("target", help="target name (IQN)")
    lun_add.add_argument(
        "spec",
        help="FILE:SIZE, FILE (existing), memory:SIZE, volume:FILE or snapshot:FILE@NAME "
        "(read-only; e.g. to copy a snapshot out for a backup)",
    )
    lun_add.add_argument("--number", type=int, help="LUN number (default: lowest free)")
    _common(lun_add)
    lun_add.set_defaults(func=_lun_add)
    lun_remove = sub.add_parser("lun-remove", help="remove a LUN from a running target")
    lun_remove.add_argument("target", help="target name (IQN)")
    lun_remove.add_argument("number", type=int, help="LUN number")
    _common(lun_remove)
    lun_remove.set_defaults(func=_lun_remove)


_TARGET_COLUMNS = [
    ("name", "TARGET"),
    ("luns", "LUNS"),
    ("nexuses", "NEXUSES"),
    ("groups", "PORTAL GROUPS"),
]
_LUN_COLUMNS = [
    ("lun", "LUN"),
    ("backstore", "BACKSTORE"),
    ("size", "SIZE"),
    ("block_size", "BLOCK"),
    ("thin", "THIN"),
    ("health", "HEALTH"),
    ("path", "PATH"),
]
_SESSION_COLUMNS = [
    ("peer", "PEER"),
    ("target", "TARGET"),
    ("portal_group", "TPGT"),
    ("initiator_port", "INITIATOR PORT"),
    ("outstanding_commands", "IN FLIGHT"),
]


async def _status(args: argparse.Namespace) -> int:
    result = call(args.control, "GET", "/v1/status")
    table = "\n".join(f"{key:12} {value}" for key, value in result.items())
    emit(result, as_json=args.json, table=table)
    return 0


def _groups(target: dict[str, Any]) -> str:
    parts = []
    for group in target["portal_groups"]:
        portals = ",".join(p["address"] for p in group["portals"])
        down = "" if group["enabled"] else ",down"
        parts.append(f"{group['tag']}:{portals}({group['alua_state']}{down})")
    return " ".join(parts)


async def _list(args: argparse.Namespace) -> int:
    result = call(args.control, "GET", "/v1/targets")
    rows = [{**t, "groups": _groups(t)} for t in result]
    emit(result, as_json=args.json, table=render_table(rows, _TARGET_COLUMNS))
    return 0


async def _sessions(args: argparse.Namespace) -> int:
    result = call(args.control, "GET", "/v1/sessions")
    # A target with --workers names the worker process of each session.
    columns = _SESSION_COLUMNS + (
        [("worker", "WORKER")] if any("worker" in r for r in result) else []
    )
    emit(result, as_json=args.json, table=render_table(result, columns))
    return 0


def _human(size: int) -> str:
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return str(size)


async def _luns(args: argparse.Namespace) -> int:
    result = call(args.control, "GET", f"/v1/targets/{args.target}/luns")
    rows = [{**lun, "size": _human(lun["size_bytes"])} for lun in result]
    emit(result, as_json=args.json, table=render_table(rows, _LUN_COLUMNS))
    return 0


async def _portal_group(args: argparse.Namespace) -> int:
    body = {"enabled": args.state == "up"}
    result = call(args.control, "PUT", f"/v1/targets/{args.target}/portal-groups/{args.tag}", body)
    emit(
        result, as_json=args.json, table=f"portal group {args.tag} of {args.target} is {args.state}"
    )
    return 0


_REGISTRATION_COLUMNS = [
    ("initiator", "INITIATOR"),
    ("isid", "ISID"),
    ("relative_target_port", "PORT"),
    ("key", "KEY"),
    ("all_tg_pt", "ALL_TG_PT"),
    ("holder", "HOLDER"),
]


async def _pr(args: argparse.Namespace) -> int:
    result = call(args.control, "GET", f"/v1/targets/{args.target}/luns/{args.lun}/pr")
    reservation = result["reservation"]
    held = (
        "none"
        if reservation is None
        else f"{reservation['type']} held by "
        + (
            reservation["holder"]
            if isinstance(reservation["holder"], str)
            else f"{reservation['holder']['initiator']} ({reservation['holder']['isid']})"
        )
    )
    table = (
        f"generation {result['generation']}  aptpl {result['aptpl']}  reservation: {held}\n"
        + render_table(result["registrations"], _REGISTRATION_COLUMNS)
    )
    emit(result, as_json=args.json, table=table)
    return 0


async def _alua(args: argparse.Namespace) -> int:
    resource = f"/v1/targets/{args.target}/portal-groups/{args.tag}/alua"
    result = call(args.control, "PUT", resource, {"state": args.state})
    table = f"portal group {args.tag} of {args.target} is {args.state}"
    emit(result, as_json=args.json, table=table)
    return 0


async def _lun_add(args: argparse.Namespace) -> int:
    from sanstack.target.config import parse_lun_argument

    spec = parse_lun_argument(args.spec, args.number or 0, "spec")
    body: dict[str, Any] = {"backstore": spec.backstore, "size": spec.size}
    if spec.path is not None:
        body["path"] = str(spec.path.resolve())
    if spec.snapshot is not None:
        body["snapshot"] = spec.snapshot
    if args.number is not None:
        body["number"] = args.number
    result = call(args.control, "POST", f"/v1/targets/{args.target}/luns", body)
    emit(
        result,
        as_json=args.json,
        table=render_table([{**result, "size": _human(result["size_bytes"])}], _LUN_COLUMNS),
    )
    return 0


async def _lun_remove(args: argparse.Namespace) -> int:
    result = call(args.control, "DELETE", f"/v1/targets/{args.target}/luns/{args.number}")
    emit(result, as_json=args.json, table=f"LUN {args.number} removed from {args.target}")
    return 0
