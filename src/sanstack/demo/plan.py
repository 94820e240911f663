"""What the demo runs, sans-IO: where each file lives in its directory, the target's and the
cluster's configuration, the table of processes, and what it prints.

The table (``process_table``) is the one place that says which processes make the demo:
each a ``ProcessSpec`` with its command line, the line on its stdout that says it is up,
its log file and the stage it starts in. The supervisor (``supervisor.py``) starts the
stages in order, waits for each one's ready lines, and stops them in reverse order.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IQN = "iqn.2026-11.org.sanstack:demo"
CLUSTER = "sanstack-demo"
NODES = ("n1", "n2", "n3")
HOST = "127.0.0.1"

# The target's LUNs, in order (LUN 0, 1, 2): the witness, g1's plain disk, g2's disk that
# carries a snapshot volume. Sparse files, so their sizes cost nothing until written.
WITNESS = "witness"
PLAIN_DISK = "disk1"
VOLUME_DISK = "vol1"
LUN_SIZES = {WITNESS: 16 << 20, PLAIN_DISK: 256 << 20, VOLUME_DISK: 256 << 20}
LUNS = tuple(LUN_SIZES)
PLAIN_GROUP = "g1"
VOLUME_GROUP = "g2"
GROUPS = (PLAIN_GROUP, VOLUME_GROUP)
SCHEDULE_SECONDS = 30
SCHEDULE_KEEP = 10
SCHEDULE_PREFIX = "demo"

# Seconds: quick enough to watch a failover (a node is down 1 s after its last heartbeat).
TIMINGS = {
    "heartbeat_interval": 0.2,
    "missed_heartbeats": 5,
    "arbitration_interval": 1.0,
    "pending_timeout": 10.0,
    "quorum_loss_stop": 5.0,
    "storage_loss_stop": 10.0,
}

# The stages, started in this order and stopped in the reverse one.
TARGET_STAGE = 0
NODE_STAGE = 1  # then the demo waits until the cluster has quorum and both groups online
LOAD_STAGE = 2
DASHBOARD_STAGE = 3  # over the running cluster: starts once the loads run, stops first

# The ports tried first; one in use is replaced by a free one, and what a run chose is
# tried first by the next (the ISIDs kept per portal stay the same).
DEFAULT_PORTS: dict[str, int] = {
    "portal1": 3260,
    "portal2": 3261,
    **{f"heartbeat-{n}": 7410 + i for i, n in enumerate(NODES)},
    f"export-{PLAIN_GROUP}": 10809,
    f"export-{VOLUME_GROUP}": 10810,
    "dashboard": 8080,
}
UDP_PORTS = frozenset(f"heartbeat-{n}" for n in NODES)


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a demo keeps everything, under one directory that a second run reuses."""

    root: Path

    @property
    def luns(self) -> Path:
        return self.root / "luns"

    def lun(self, name: str) -> Path:
        return self.luns / f"{name}.img"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, name: str) -> Path:
        return self.logs / f"{name.replace(' ', '-')}.log"

    @property
    def sockets(self) -> Path:
        return self.root / "run"

    @property
    def target_control(self) -> Path:
        return self.sockets / "target.sock"

    def node_control(self, node: str) -> Path:
        return self.sockets / f"{node}.sock"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def cluster_config(self) -> Path:
        return self.root / "cluster.toml"

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"

    @property
    def run_file(self) -> Path:
        """What runs now (``describe``): for scripts and tests."""
        return self.root / "demo.json"

    def directories(self) -> list[Path]:
        return [self.luns, self.logs, self.sockets, self.state]


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """One process of the demo (see the module docstring)."""

    name: str  # "target", "node n1", "load g1": what the reports call it
    argv: tuple[str, ...]
    ready: str  # a line on its stdout that starts with this says it is up
    log: Path  # its stdout and stderr
    stage: int
    ready_within: float = 60.0
    stop_within: float = 20.0  # after SIGTERM; then SIGKILL


def portals(ports: Mapping[str, int]) -> list[str]:
    return [f"{HOST}:{ports['portal1']}", f"{HOST}:{ports['portal2']}"]


def export_address(ports: Mapping[str, int], group: str) -> str:
    return f"{HOST}:{ports[f'export-{group}']}"


def cluster_toml(layout: Layout, ports: Mapping[str, int]) -> str:
    """The cluster's file: three nodes, a disk witness, two groups (``cluster/config.py``)."""
    lines = [
        "[cluster]",
        f'name = "{CLUSTER}"',
        'quorum = "node-and-disk"',
        f'witness = "{WITNESS}"',
        "",
        "[timings]",
        *(f"{key} = {value}" for key, value in TIMINGS.items()),
        "",
        "[storage]",
        f"portals = {json.dumps(portals(ports))}",
        f"targets = {json.dumps([IQN])}",
    ]
    for node in NODES:
        lines += [
            "",
            "[[node]]",
            f'name = "{node}"',
            f'address = "{HOST}:{ports[f"heartbeat-{node}"]}"',
            f"control = {json.dumps(str(layout.node_control(node)))}",
            f"state_dir = {json.dumps(str(layout.state / node))}",
        ]
    lines += ["", "[disks]", *(f'{disk} = "{IQN}/{lun}"' for lun, disk in enumerate(LUNS))]
    for group, disk, volumes, preferred in (
        (PLAIN_GROUP, PLAIN_DISK, [], ["n1", "n2"]),
        (VOLUME_GROUP, VOLUME_DISK, [VOLUME_DISK], ["n2", "n3"]),
    ):
        lines += [
            "",
            "[[group]]",
            f'name = "{group}"',
            f"disks = {json.dumps([disk])}",
            f"volumes = {json.dumps(volumes)}",
            f'export = "{export_address(ports, group)}"',
            f"preferred_owners = {json.dumps(preferred)}",
        ]
    return "\n".join(lines) + "\n"


def process_table(
    layout: Layout, ports: Mapping[str, int], sanstack: Sequence[str], python: str
) -> list[ProcessSpec]:
    """Every process of the demo; ``sanstack`` runs this sanstack, ``python`` its Python."""
    target_argv = [
        *sanstack,
        "target",
        "serve",
        "--iqn",
        IQN,
        *(arg for portal in portals(ports) for arg in ("--portal", portal)),
        *(arg for name in LUNS for arg in ("--lun", f"{layout.lun(name)}:{LUN_SIZES[name]}")),
        "--control",
        str(layout.target_control),
        "--state-dir",
        str(layout.state / "target"),
    ]
    table = [ProcessSpec("target", tuple(target_argv), "ready", layout.log("target"), 0)]
    for node in NODES:
        argv = [*sanstack, "cluster", "node", "--config", str(layout.cluster_config)]
        table.append(
            ProcessSpec(
                f"node {node}",
                (*argv, "--name", node),
                "ready node",
                layout.log(f"node {node}"),
                NODE_STAGE,
                stop_within=30.0,  # it offlines its groups and releases their disks first
            )
        )
    for group, disk in ((PLAIN_GROUP, PLAIN_DISK), (VOLUME_GROUP, VOLUME_DISK)):
        argv = [python, "-m", "sanstack.demo.load", export_address(ports, group), disk, group]
        table.append(
            ProcessSpec(
                f"load {group}",
                tuple(argv),
                "ready",
                layout.log(f"load {group}"),
                LOAD_STAGE,
                stop_within=5.0,
            )
        )
    # The summary shows its pid, log and ready line, which is its URL.
    dashboard = [
        *sanstack,
        "dashboard",
        "--config",
        str(layout.cluster_config),
        "--listen",
        f"{HOST}:{ports['dashboard']}",
        "--target-control",
        str(layout.target_control),
    ]
    table.append(
        ProcessSpec(
            "dashboard",
            tuple(dashboard),
            "dashboard http://",
            layout.log("dashboard"),
            DASHBOARD_STAGE,
            stop_within=10.0,
        )
    )
    return table


def describe(
    layout: Layout, ports: Mapping[str, int], pids: Mapping[str, int], table: Sequence[ProcessSpec]
) -> dict[str, Any]:
    """The run as JSON (``Layout.run_file``): processes, sockets, exports."""
    return {
        "dir": str(layout.root),
        "iqn": IQN,
        "cluster": CLUSTER,
        "portals": portals(ports),
        "target_control": str(layout.target_control),
        "cluster_config": str(layout.cluster_config),
        "nodes": {node: str(layout.node_control(node)) for node in NODES},
        "exports": {g: export_address(ports, g) for g in GROUPS},
        "processes": [
            {"name": spec.name, "pid": pids.get(spec.name), "log": str(spec.log)} for spec in table
        ],
    }


def _quoted(path: Path | str) -> str:
    return shlex.quote(str(path))


def summary(
    layout: Layout,
    ports: Mapping[str, int],
    pids: Mapping[str, int],
    owners: Mapping[str, str | None],
    sanstack: str,
    *,
    reused: bool,
    demo_pid: int,
    others: Sequence[tuple[ProcessSpec, int, str]] = (),
) -> str:
    """What runs where, and the commands to try (copy-pasteable, with the real addresses)."""
    s = sanstack
    n1 = _quoted(layout.node_control("n1"))
    target = _quoted(layout.target_control)
    first, second = portals(ports)
    g1_owner = owners.get(PLAIN_GROUP) or "n1"
    other = next(n for n in NODES if n != g1_owner)
    g2_export = export_address(ports, VOLUME_GROUP)
    rows = [
        f"sanstack demo in {layout.root} ({'data of an earlier run' if reused else 'new data'})",
        "",
        f"  target {IQN}  pid {pids.get('target')}",
        f"    portals {first} (portal group 1) and {second} (portal group 2)",
        f"    LUN 0 {WITNESS} (the cluster's witness disk), LUN 1 {PLAIN_DISK}, "
        f"LUN 2 {VOLUME_DISK} (a snapshot volume), files in {layout.luns}",
        f"    control {layout.target_control}",
    ]
    for node in NODES:
        rows.append(
            f"  node {node}  pid {pids.get(f'node {node}')}  control {layout.node_control(node)}"
        )
    for group, disk, what in (
        (PLAIN_GROUP, PLAIN_DISK, "a plain disk"),
        (
            VOLUME_GROUP,
            VOLUME_DISK,
            f"a snapshot volume, a snapshot every {SCHEDULE_SECONDS} s, the newest "
            f"{SCHEDULE_KEEP} kept",
        ),
    ):
        address = export_address(ports, group)
        rows += [
            f"  group {group}: {disk}, {what}; online on {owners.get(group) or 'no node yet'}",
            f"    export nbd://{address}/{disk}  load pid {pids.get(f'load {group}')}, "
            f"log {layout.log(f'load {group}')}",
        ]
    # A process added to the table after the loads: its name, pid, log and ready line (the
    # place for an address, a URL, to say).
    for spec, pid, ready in others:
        rows.append(f"  {spec.name}  pid {pid}  log {spec.log}: {ready}")
    rows += [
        f"  logs in {layout.logs}",
        "",
        "Try, from another shell:",
        f"  {s} cluster status --control {n1}",
        f"  {s} cluster events --control {n1}",
        f"  tail -f {_quoted(layout.log(f'load {PLAIN_GROUP}'))}",
        f"  kill -9 {pids.get(f'node {g1_owner}')}    # node {g1_owner}, {PLAIN_GROUP}'s owner: "
        f"{PLAIN_GROUP} comes online on another node, its load reconnects",
        f"  {s} cluster move {PLAIN_GROUP} {other} --control {n1}",
        f"  {s} target portal-group {IQN} 1 down --control {target}    # take portal {first} "
        "down: I/O goes on over the other",
        f"  {s} target portal-group {IQN} 1 up --control {target}",
        f"  {s} snapshot create --cluster-control {n1} {VOLUME_GROUP}/{VOLUME_DISK} before-upgrade",
        f"  {s} snapshot list --cluster-control {n1} {VOLUME_GROUP}/{VOLUME_DISK}",
        f"  qemu-img info nbd://{g2_export}/{VOLUME_DISK}@before-upgrade",
        f"  nbdinfo nbd://{g2_export}/{VOLUME_DISK}@before-upgrade",
        f"  qemu-img convert -p -O raw nbd://{g2_export}/{VOLUME_DISK}@before-upgrade "
        "before-upgrade.raw",
        "",
        f"  kill -USR1 {demo_pid}    # starts again every process of the demo that ended",
        "",
        "ready: Ctrl-C (or SIGTERM) stops everything",
    ]
    return "\n".join(rows)


def exit_report(spec: ProcessSpec, pid: int, returncode: int, demo_pid: int) -> str:
    """What the demo says when one of its processes ends on its own (or is killed)."""
    how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited {returncode}"
    return (
        f"sanstack demo: {spec.name} (pid {pid}) {how}; its log: {spec.log}\n"
        f"  kill -USR1 {demo_pid}    # starts it again (every process of the demo that ended)"
    )
