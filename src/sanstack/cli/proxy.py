"""``sanstack proxy``: fault-injection TCP proxies on the paths of a multipath demo.

Each ``--listen`` pairs with the ``--to`` in the same position. Commands typed on stdin
(``reset 1``, ``blackhole 2``, ``delay 1 0.05``, ``status``, ...) break the paths while an
initiator uses them; each prints one line.
"""

from __future__ import annotations

import argparse
from typing import Any

from sanstack.cli.common import StopSignals
from sanstack.config_checks import parse_address
from sanstack.errors import ConfigError
from sanstack.tools.fault_proxy import Route, run_proxies_from_cli


def register(commands: Any) -> None:
    proxy = commands.add_parser(
        "proxy",
        help="run fault-injection TCP proxies (reset, blackhole, delay, throttle, down)",
        description=(
            "Forward each --listen HOST:PORT to the --to HOST:PORT in the same position until "
            "SIGINT/SIGTERM. Lines on stdin inject faults: reset N, blackhole N, restore N, "
            "delay N SECONDS, throttle N BYTES_PER_SEC, down N, up N, status [N] "
            "(N counts the proxies from 1; a delay or throttle of 0 clears it)."
        ),
    )
    proxy.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="address to listen on, e.g. 127.0.0.1:13260 (repeatable; port 0 picks one)",
    )
    proxy.add_argument(
        "--to",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="target address for the --listen in the same position (repeatable)",
    )
    proxy.set_defaults(func=proxy_command)


def routes_from_args(listen: list[str], to: list[str]) -> list[Route]:
    if not listen:
        raise ConfigError("--listen", "at least one --listen HOST:PORT is needed")
    if len(listen) != len(to):
        raise ConfigError(
            "--to", f"{len(to)} --to for {len(listen)} --listen; give one --to per --listen"
        )
    routes = []
    for listen_text, to_text in zip(listen, to, strict=True):
        listen_host, listen_port = parse_address(listen_text, "--listen", any_port=True)
        target_host, target_port = parse_address(to_text, "--to")
        if target_port == 0:
            raise ConfigError("--to", f"{to_text!r}: port 0 cannot be connected to")
        routes.append(Route(listen_host, listen_port, target_host, target_port))
    return routes


async def proxy_command(args: argparse.Namespace) -> int:
    routes = routes_from_args(args.listen, args.to)
    stop = StopSignals()
    return await run_proxies_from_cli(routes, stop.wait)
