"""``sanstack validate``: WSFC's storage validation tests against any iSCSI target."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sanstack.config_checks import check_name, parse_address
from sanstack.errors import ConfigError

DEFAULT_INITIATOR_BASE = "iqn.2026-11.org.sanstack:validate"


def register(commands: Any) -> None:
    validate = commands.add_parser(
        "validate",
        help="validate a target's LUNs for a failover cluster (WSFC's storage tests)",
        description=(
            "Run the storage tests of a failover cluster's validation against LUNs of any "
            "iSCSI target, as --nodes simulated nodes (each its own initiator name and ISIDs, "
            "one session per portal, a multipath device per LUN): visibility and VPD 0x83 "
            "identity, SCSI-3 persistent reservations, arbitration, failover, latency, "
            "multipath and ALUA. LUNs that carry registrations or a reservation are refused "
            "unless --force; what the tests change is put back; data is written only with "
            "--destructive. Exit status: 0 no failure, 1 a test failed, 3 refused."
        ),
    )
    validate.add_argument(
        "--portal",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a portal of the target; each node logs in through every one (repeatable)",
    )
    validate.add_argument("--iqn", required=True, help="the target's name")
    validate.add_argument(
        "--lun",
        action="append",
        type=int,
        default=[],
        metavar="N",
        help="a LUN to validate (repeatable; at least one)",
    )
    validate.add_argument(
        "--nodes", type=int, default=2, metavar="K", help="simulated nodes (default %(default)s)"
    )
    validate.add_argument(
        "--json", action="store_true", help="print the report as JSON instead of the table"
    )
    validate.add_argument(
        "--html", type=Path, metavar="FILE", help="also write a self-contained HTML report"
    )
    validate.add_argument(
        "--force",
        action="store_true",
        help="test LUNs that carry registrations or a reservation we did not make "
        "(they are removed for good)",
    )
    validate.add_argument(
        "--destructive",
        action="store_true",
        help="allow the tests that write data (the LUNs' blocks are put back, but a crash "
        "mid-test may leave test data)",
    )
    validate.add_argument(
        "--fault-proxy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="route a node of the validator's own through fault-injection proxies it runs "
        "here, to take each path away while I/O runs (the multipath test; other initiators "
        "are not touched); default: %(default)s (on)",
    )
    validate.add_argument(
        "--allow-target-restart",
        metavar="COMMAND",
        help="a command that restarts the target (e.g. 'systemctl restart tgt'), run once "
        "to see registrations made with APTPL survive",
    )
    validate.add_argument(
        "--rounds",
        type=int,
        default=5,
        metavar="N",
        help="races of the multiple arbitration test (default %(default)s)",
    )
    validate.add_argument(
        "--arbitration-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="the defence interval the arbitration tests use (WSFC's DiskArbInterval is 3; "
        "default %(default)s)",
    )
    validate.add_argument(
        "--latency-warning",
        type=float,
        default=100.0,
        metavar="MS",
        help="warn when the 99th percentile of a disk's latency is over this (default %(default)s)",
    )
    validate.add_argument(
        "--initiator-base",
        default=DEFAULT_INITIATOR_BASE,
        metavar="IQN",
        help="the nodes log in as IQN-node1, IQN-node2, ... (default %(default)s)",
    )
    validate.add_argument(
        "--test",
        action="append",
        default=[],
        metavar="ID",
        help="run only this test (repeatable; ids as the table shows them)",
    )
    validate.set_defaults(func=validate_command)


def settings_from(args: argparse.Namespace) -> Any:
    """The run's settings from the flags; ConfigError naming the flag that is wrong."""
    from sanstack.validate.catalogue import select
    from sanstack.validate.model import RunSettings

    if not args.portal:
        raise ConfigError("--portal", "at least one --portal HOST:PORT is needed")
    portals = []
    for text in args.portal:
        host, port = parse_address(text, "--portal")
        portals.append(f"{host}:{port}")
    if len(set(portals)) != len(portals):
        raise ConfigError("--portal", "a portal is given twice")
    if not args.lun:
        raise ConfigError("--lun", "at least one --lun N is needed")
    for lun in args.lun:
        if not 0 <= lun < 16384:
            raise ConfigError("--lun", f"{lun} is not a LUN number 0..16383")
    if len(set(args.lun)) != len(args.lun):
        raise ConfigError("--lun", "a LUN is given twice")
    if not 1 <= args.nodes <= 16:
        raise ConfigError("--nodes", f"{args.nodes}: give 1 to 16 nodes")
    if not 1 <= args.rounds <= 1000:
        raise ConfigError("--rounds", f"{args.rounds}: give 1 to 1000")
    if not 0.1 <= args.arbitration_interval <= 60:
        raise ConfigError("--arbitration-interval", "give 0.1 to 60 seconds")
    if not 0 < args.latency_warning <= 60000:
        raise ConfigError("--latency-warning", "give a number of milliseconds above 0")
    if args.allow_target_restart is not None and not args.allow_target_restart.strip():
        raise ConfigError("--allow-target-restart", "the command is empty")
    try:
        select(args.test)
    except ValueError as exc:
        raise ConfigError("--test", str(exc)) from None
    return RunSettings(
        target=check_name(args.iqn, "--iqn"),
        portals=tuple(portals),
        luns=tuple(args.lun),
        nodes=args.nodes,
        destructive=args.destructive,
        force=args.force,
        fault_proxy=args.fault_proxy,
        target_restart=args.allow_target_restart,
        rounds=args.rounds,
        arbitration_interval=args.arbitration_interval,
        latency_warning_ms=args.latency_warning,
    )


async def validate_command(args: argparse.Namespace) -> int:
    from sanstack.validate import render
    from sanstack.validate.runner import validate

    settings = settings_from(args)
    base = check_name(args.initiator_base, "--initiator-base")
    if args.html is not None and not args.html.parent.is_dir():
        raise ConfigError("--html", f"{args.html.parent} is not a directory")
    report = await validate(settings, initiator_base=base, only=args.test or None)
    sys.stdout.write(render.to_json(report) if args.json else render.table(report))
    sys.stdout.flush()
    if args.html is not None:
        args.html.write_text(render.to_html(report))
    return report.exit_status()
