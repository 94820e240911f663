"""``sanstack cluster ...``: run a failover cluster node, and look at or steer the cluster
through any node's control socket."""

from __future__ import annotations

import argparse
import asyncio
import time
import urllib.parse
from pathlib import Path
from typing import Any

from sanstack.cli.common import add_metrics_flag, metrics_address
from sanstack.control.client import call, emit, render_table, socket_in_use
from sanstack.errors import ConfigError, SanstackError

DEFAULT_CLUSTER_CONTROL = Path("/run/sanstack/cluster.sock")
MOVE_POLL = 0.2


class MoveNotDone(SanstackError):
    """``cluster move`` waited and the group is not online on the target."""


def _control(parser: Any) -> None:
    parser.add_argument(
        "--control",
        type=Path,
        default=DEFAULT_CLUSTER_CONTROL,
        metavar="SOCKET",
        help="any cluster node's control socket (default %(default)s)",
    )


def _json(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def register(commands: Any) -> None:
    cluster = commands.add_parser(
        "cluster", help="the failover cluster: nodes, quorum, groups of disks, fencing"
    )
    sub = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND")
    sub.required = True
    node = sub.add_parser(
        "node",
        help="run one node (--config, --name), or pause|resume a node",
        description=(
            "With --config and --name: run that node of the cluster (a host with its "
            "multipath maps, heartbeats, disk arbitration with persistent reservations, "
            "the groups placed on it and their exports) until SIGINT/SIGTERM, then offline "
            "its groups and release their disks. With pause|resume NAME: drain a node (its "
            "groups move away and it takes none) or let it take groups again."
        ),
    )
    node.add_argument("--config", type=Path, metavar="FILE", help="the cluster's TOML file")
    node.add_argument("--name", metavar="NAME", help="which [[node]] of the file this is")
    add_metrics_flag(node, "the node's metrics key in the file, else none")
    node.set_defaults(func=_run_node)
    actions = node.add_subparsers(dest="node_command", metavar="ACTION")
    for action, what in (
        ("pause", "drain NAME: its groups move to other nodes and it takes none"),
        ("resume", "NAME takes groups again"),
    ):
        one = actions.add_parser(action, help=what)
        one.add_argument("node", metavar="NAME", help="the node's name")
        _control(one)
        _json(one)
        one.set_defaults(func=_pause if action == "pause" else _resume)
    status = sub.add_parser(
        "status", help="nodes, view, quorum and votes, groups and owners, disks and keys"
    )
    _control(status)
    _json(status)
    status.set_defaults(func=_status)
    move = sub.add_parser(
        "move", help="move GROUP to NODE cleanly: offline and release, then online there"
    )
    move.add_argument("group", metavar="GROUP", help="the group's name")
    move.add_argument("target", metavar="NODE", help="the node to run it")
    move.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait this long for the group to be online on NODE (0: do not wait; "
        "default %(default)s)",
    )
    _control(move)
    _json(move)
    move.set_defaults(func=_move)
    events = sub.add_parser(
        "events", help="the cluster log: membership, quorum, arbitration, fencing, groups"
    )
    events.add_argument(
        "--since",
        type=int,
        default=0,
        metavar="N",
        help="only the events after event number N (default %(default)s: all kept)",
    )
    _control(events)
    _json(events)
    events.set_defaults(func=_events)


async def _run_node(args: argparse.Namespace) -> int:
    from sanstack.cli.common import StopSignals, ready_with_metrics, start_metrics
    from sanstack.cluster.config import load_config
    from sanstack.cluster.metrics import ClusterCollector
    from sanstack.cluster.node import ClusterNode
    from sanstack.host.metrics import HostCollector

    if args.config is None:
        raise ConfigError("--config", "the cluster's TOML file is needed (or pause|resume NAME)")
    if args.name is None:
        raise ConfigError("--name", "which node of the cluster this is is needed")
    flag = metrics_address(args.metrics)
    config = load_config(args.config)
    node = ClusterNode(config, args.name)
    if socket_in_use(node.spec.control):
        raise ConfigError(
            f"node[{node.index}].control", f"another daemon is serving {node.spec.control}"
        )
    stop = StopSignals()
    await node.start()
    try:
        exporter = await start_metrics(
            flag or node.spec.metrics,
            "cluster-node",
            [ClusterCollector(node), HostCollector(node.host)],
            "--metrics" if flag else f"node[{node.index}].metrics",
        )
    except ConfigError:
        await node.stop()
        raise
    address = "{}:{}".format(*node.spec.address)
    ready = (
        f"ready node {node.me} cluster {config.name} address {address} "
        f"control {node.spec.control} maps {len(node.host.maps)}"
    )
    print(ready_with_metrics(ready, exporter), flush=True)
    try:
        await stop.wait()
    finally:
        if exporter is not None:
            await exporter.close()
        await node.stop()
    return 0


_NODE_COLUMNS = [
    ("name", "NODE"),
    ("state", "STATE"),
    ("member", "MEMBER"),
    ("incarnation", "INCARNATION"),
    ("epoch", "EPOCH"),
    ("coordinator", "COORDINATOR"),
    ("key", "KEY"),
]
_GROUP_COLUMNS = [
    ("name", "GROUP"),
    ("state", "STATE"),
    ("owner", "OWNER"),
    ("preferred", "PREFERRED"),
    ("export", "EXPORT"),
    ("disks", "DISKS"),
]
_DISK_COLUMNS = [
    ("name", "DISK"),
    ("group", "GROUP"),
    ("holder", "HOLDER"),
    ("type", "TYPE"),
    ("keys", "REGISTERED"),
]
_EVENT_COLUMNS = [
    ("seq", "SEQ"),
    ("time", "TIME"),
    ("node", "NODE"),
    ("kind", "KIND"),
    ("about", "ABOUT"),
    ("reason", "REASON"),
]


def status_table(status: dict[str, Any]) -> str:
    quorum = status["quorum"]
    view = status["view"]
    witness = ""
    if quorum["witness"] is not None:
        witness = f"  witness {quorum['witness']} held by {quorum['witness_owner'] or 'nobody'}"
    head = (
        f"cluster {status['cluster']} (as {status['node']} sees it)  epoch {view['epoch']}  "
        f"coordinator {view['coordinator']}  quorum {'yes' if quorum['has'] else 'NO'} "
        f"({quorum['votes']}/{quorum['total']} votes, {quorum['needed']} needed){witness}"
    )
    if status["fenced"]:
        head += "  FENCED"
    nodes = [{**n, "member": "yes" if n["member"] else "no"} for n in status["nodes"]]
    groups = [
        {**g, "preferred": ",".join(g["preferred"]) or "-", "disks": ",".join(g["disks"])}
        for g in status["groups"]
    ]
    disks = [
        {
            **d,
            "holder": d["error"] or d["holder"] or d["holder_key"],
            "keys": _registered(d["keys"]),
        }
        for d in status["disks"]
    ]
    return "\n\n".join(
        [
            head,
            render_table(nodes, _NODE_COLUMNS),
            render_table(groups, _GROUP_COLUMNS),
            render_table(disks, _DISK_COLUMNS),
        ]
    )


def _registered(keys: list[dict[str, Any]]) -> str:
    """One entry per key, its node's name when it has one, x N for N I_T nexuses."""
    counts: dict[str, int] = {}
    for key in keys:
        name = key["node"] or key["key"]
        counts[name] = counts.get(name, 0) + 1
    return " ".join(n if c == 1 else f"{n}x{c}" for n, c in counts.items()) or "-"


async def _status(args: argparse.Namespace) -> int:
    status = call(args.control, "GET", "/v1/cluster/status")
    emit(status, as_json=args.json, table=status_table(status))
    return 0


async def _events(args: argparse.Namespace) -> int:
    if args.since < 0:
        raise ConfigError("--since", "must be 0 or more")
    answer = call(args.control, "GET", f"/v1/cluster/events?since={args.since}")
    rows = [
        {
            **e,
            "time": time.strftime("%H:%M:%S", time.localtime(e["time"]))
            + f".{int(e['time'] % 1 * 1000):03d}",
            "about": " ".join(f"{k}={e[k]}" for k in ("group", "disk", "peer", "epoch") if k in e)
            or "-",
        }
        for e in answer["events"]
    ]
    emit(answer, as_json=args.json, table=render_table(rows, _EVENT_COLUMNS))
    return 0


async def _move(args: argparse.Namespace) -> int:
    from sanstack.cli.progress import progress_for

    if args.wait < 0:
        raise ConfigError("--wait", "must be 0 or more seconds")
    answer = call(
        args.control, "POST", "/v1/cluster/move", {"group": args.group, "node": args.target}
    )
    if answer["state"] == "requested" and args.wait > 0:
        show = progress_for(args)
        started = time.monotonic()
        try:
            while True:
                status = call(args.control, "GET", "/v1/cluster/status")
                group = next(g for g in status["groups"] if g["name"] == args.group)
                show.show(
                    move_progress(status, args.group, args.target, time.monotonic() - started)
                )
                if group["owner"] == args.target and group["state"] == "online":
                    answer = {**answer, "state": "online"}
                    break
                if time.monotonic() - started >= args.wait:
                    raise MoveNotDone(
                        f"move: {args.group} is {group['state']} on "
                        f"{group['owner'] or 'no node'}, not online on {args.target} after "
                        f"{args.wait:g} s"
                    )
                await asyncio.sleep(MOVE_POLL)
        finally:
            show.finish()
    text = f"{answer['group']}: {answer['from'] or 'no node'} -> {answer['to']}: {answer['state']}"
    emit(answer, as_json=args.json, table=text)
    return 0


def move_progress(status: dict[str, Any], name: str, target: str, elapsed: float) -> str:
    """Where a moving group is, from a ``cluster status``: offlining on its owner, its disks
    released (or who still holds them), onlining and online on ``target``."""
    group = next(g for g in status["groups"] if g["name"] == name)
    holders = sorted({d["holder"] for d in status["disks"] if d["group"] == name and d["holder"]})
    where = f"{group['state']} on {group['owner']}" if group["owner"] else group["state"]
    disks = f"disks held by {','.join(holders)}" if holders else "disks released"
    return f"move {name} -> {target}: {where}, {disks} ({elapsed:.0f} s)"


async def _pause(args: argparse.Namespace) -> int:
    answer = call(args.control, "POST", f"/v1/cluster/nodes/{_quoted(args.node)}/pause")
    emit(answer, as_json=args.json, table=f"{answer['node']}: paused")
    return 0


async def _resume(args: argparse.Namespace) -> int:
    answer = call(args.control, "POST", f"/v1/cluster/nodes/{_quoted(args.node)}/resume")
    emit(answer, as_json=args.json, table=f"{answer['node']}: resumed")
    return 0


def _quoted(name: str) -> str:
    return urllib.parse.quote(name, safe="")
