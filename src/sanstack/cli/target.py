"""``sanstack target ...``: serve targets."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from sanstack.errors import ConfigError

log = logging.getLogger("sanstack")


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
            "are numbered from 0 in the order given; a missing FILE is created sparse."
        ),
    )
    serve.add_argument("--config", type=Path, help="TOML config file (see docs)")
    serve.add_argument("--iqn", help="target name, e.g. iqn.2026-11.org.sanstack:disk")
    serve.add_argument(
        "--portal", action="append", default=[], help="HOST:PORT to listen on (repeatable)"
    )
    serve.add_argument(
        "--lun",
        action="append",
        default=[],
        help="FILE:SIZE (SIZE like 64M or 1G) or memory:SIZE (repeatable)",
    )
    serve.add_argument(
        "--nop-interval",
        type=float,
        default=5.0,
        help="seconds of silence before pinging an initiator with NOP-In (0 = never)",
    )
    serve.set_defaults(func=serve_command)


async def serve_command(args: argparse.Namespace) -> int:
    from sanstack.aio.target_server import TargetServer
    from sanstack.cli.main import StopSignals
    from sanstack.iscsi.target_events import ConnectionSettings
    from sanstack.target.build import build_registry
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
    stop = StopSignals()
    registry = await build_registry(specs)
    settings = ConnectionSettings(nop_in_interval=args.nop_interval or None)
    server = TargetServer(registry, settings)
    try:
        await server.start()
    except OSError as exc:
        await registry.close()
        raise ConfigError("--portal", f"cannot listen: {exc.strerror or exc}") from None
    for target in registry.targets.values():
        log.info("serving %s with %d LUNs", target.name, len(target.luns))
    for host, port, tpgt in server.portals:
        log.info("listening on %s:%d (portal group %d)", host, port, tpgt)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await server.stop()
    return 0
