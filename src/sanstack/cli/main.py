"""The ``sanstack`` command line: a thin view over the daemons' service APIs.

This module builds the top-level parser from each command's ``register``; running a
command and turning its errors into one line and an exit status is in :mod:`.common`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sanstack import __version__, native
from sanstack.cli.common import CommandParser, add_log_level, run_command, setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="sanstack",
        description="sanstack: iSCSI target, multipath I/O, snapshot volumes, failover clusters.",
        epilog="Run 'sanstack COMMAND --help' for a command's options.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"sanstack {__version__}, {native.status().summary()}",
        help="print the version and whether the compiled modules are used, and exit",
    )
    add_log_level(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    commands.required = True

    from sanstack.cli import (
        cluster,
        dashboard,
        demo,
        host,
        mpio,
        nbd,
        proxy,
        target,
        validate,
        volume,
    )

    target.register(commands)
    volume.register(commands)
    demo.register(commands)
    mpio.register(commands)
    host.register(commands)
    nbd.register(commands)
    proxy.register(commands)
    cluster.register(commands)
    validate.register(commands)
    dashboard.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
