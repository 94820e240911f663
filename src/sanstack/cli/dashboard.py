"""``sanstack dashboard``: the failover cluster's web page, served by one process that asks
the nodes' control sockets (``dashboard/server.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sanstack.config_checks import parse_address

DEFAULT_LISTEN = "127.0.0.1:8080"


def register(commands: Any) -> None:
    dashboard = commands.add_parser(
        "dashboard",
        help="the cluster's web dashboard: nodes, groups, disks, snapshots, I/O, events",
        description=(
            "Serve the failover cluster's web page: nodes and quorum, groups and owners, "
            "disks and reservations, each node's paths, snapshot volumes, the target's "
            "sessions and LUNs, I/O per group and the cluster log, live; move a group, "
            "pause or resume a node, create or delete a snapshot. It asks the nodes' control "
            "sockets named in the config (any live node), so it outlives any one node."
        ),
    )
    dashboard.add_argument(
        "--config", type=Path, required=True, metavar="FILE", help="the cluster's TOML file"
    )
    dashboard.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help="where to serve the page (default %(default)s; port 0: any free port); "
        "an address other than loopback needs --token",
    )
    dashboard.add_argument(
        "--target-control",
        type=Path,
        metavar="SOCKET",
        help="the target's control socket, to show its sessions and LUNs",
    )
    dashboard.add_argument(
        "--token",
        metavar="TOKEN",
        help="required of every browser and API client (open /?token=TOKEN once, or send "
        "Authorization: Bearer TOKEN); needed to listen beyond loopback",
    )
    dashboard.set_defaults(func=_run)


async def _run(args: argparse.Namespace) -> int:
    from sanstack.cli.common import StopSignals
    from sanstack.cluster.config import load_config
    from sanstack.dashboard.server import Dashboard, DashboardOptions

    host, port = parse_address(args.listen, "--listen", any_port=True)
    options = DashboardOptions(
        config=load_config(args.config),
        host=host,
        port=port,
        target_control=args.target_control,
        token=args.token,
    )
    dashboard = Dashboard(options)
    stop = StopSignals()
    url = await dashboard.start()
    try:
        print(f"dashboard {url}", flush=True)
        await stop.wait()
    finally:
        await dashboard.close()
    return 0
