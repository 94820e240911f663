"""Architecture rules that a test, not a reviewer, keeps (ARCHITECTURE.md "Layout").

1. Sans-IO: a module imports no asyncio, sockets, clocks, threads or processes unless it is
   on the allowlist of edge modules below. A new edge is a deliberate choice made here.
2. Layers: a module imports only from its own layer or a lower one. Going back up a layer is
   done through a Protocol the lower layer defines, never by importing the upper one, not
   even under ``TYPE_CHECKING``.
3. Every package imports alone (``python -c "import sanstack.<package>"``).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sanstack.native import PURE_PYTHON_ENV

SRC = Path(__file__).resolve().parents[2] / "src" / "sanstack"
FORBIDDEN = {
    "asyncio",
    "socket",
    "time",
    "threading",
    "selectors",
    "uvloop",
    "concurrent",
    "subprocess",
    "signal",
    "aiohttp",
}

# The asyncio edges, each beside the sans-IO core it drives (module -> why it does I/O).
EDGE_MODULES = {
    "block/file.py": "file backstore: preadv/pwritev on the loop and a thread pool",
    "cli/cluster.py": "runs a cluster node; polls the cluster until a move is done",
    "cli/common.py": "runs a daemon's coroutine with signal handling",
    "cli/target.py": "runs the target daemon",
    "cli/volume.py": "runs volume operations and waits on a holder's socket",
    "demo/load.py": "the demo's client load: NBD over TCP, paced, reconnecting",
    "demo/ports.py": "the demo's ports: binds each to see that it is free",
    "demo/run.py": "the demo: waits for the cluster, signals, the stages in order",
    "demo/supervisor.py": "the demo's processes: spawns, reads ready lines, stops, kills",
    "cluster/disk_maps.py": "asks the host to scan again, bounded, until every disk has a map",
    "cluster/disks.py": "PR commands through the PR queue; a round cancelled mid-command",
    "cluster/floating_address.py": "runs ip to add a floating address; gratuitous ARP",
    "cluster/group_runner.py": "a group's steps as owned tasks, the pending_timeout timer",
    "cluster/group_steps.py": "volumes, the NBD export and arbitration retries of a group",
    "cluster/heartbeat_transport.py": "the heartbeats' UDP socket and the membership's ticks",
    "cluster/node.py": "the node: host, heartbeats, PR queue, reconcile and defence tasks",
    "cluster/node_control.py": "the status reads every disk at once through the PR queue",
    "cluster/peer_control.py": "signed control requests between nodes: the TCP listener",
    "cluster/snapshot_exports.py": "closes a snapshot a finished NBD connection held",
    "cluster/work_queue.py": "the node's bounded reservation work queue and its workers",
    "control/client.py": "HTTP over a Unix socket",
    "control/metrics_http.py": "serves a daemon's Prometheus metrics over HTTP (aiohttp)",
    "control/forward.py": "one request to another daemon's control plane, Unix or TCP",
    "control/server.py": "serves a service API over a Unix socket",
    "dashboard/server.py": "the dashboard's aiohttp server, its poll task and event streams",
    "dashboard/sources.py": "asks the nodes' and the target's control sockets, bounded",
    "edge/driver.py": "the loop that feeds bytes to a sans-IO core",
    "edge/tasks.py": "eager tasks and bounded waits",
    "edge/state_file.py": "crash-safe state files: the temporary file is named by pid and thread",
    "host/host.py": "discovers, logs in and builds the maps at start, with bounded waits",
    "host/sessions.py": "the shared sessions' supervisors: login, backoff, watching",
    "initiator/lun_device.py": "one LUN over one session, with timeouts",
    "initiator/session.py": "an iSCSI session over a socket",
    "mpio/alua_reader.py": "one shared session's RTPG read task, awaited with a bound",
    "mpio/device.py": "MultipathDevice: path checker, re-drive, queueing",
    "mpio/map_reservations.py": "a map's PR commands down every path at once, its key lock",
    "mpio/path_slot.py": "a path's reinstatement and ALUA tasks, a bounded logout",
    "nbd/server.py": "NBD over TCP",
    "scsi/logical_unit.py": "the device server's task set, range locks and aborts",
    "snapshot/journal.py": "group commit waits for the device",
    "snapshot/service.py": "the daemon's volume service",
    "snapshot/volume.py": "SnapshotVolume: I/O, locks, background tasks",
    "snapshot/volume_tasks.py": "the volume's background tasks",
    "target/server.py": "the target's TCP listeners and connections",
    "target/state_store.py": "a lock serialises saves of one state file",
    "target/task_management.py": "aborts tasks and awaits them",
    "target/coordinator.py": "--workers: listeners, worker processes, shared state acked",
    "target/worker_process.py": "a target worker: handed-over sockets, its server, its channel",
    "target/workers_channel.py": "the coordinator-worker stream: frames, bounded requests",
    "tools/fault_proxy.py": "a TCP proxy that injects faults",
    "validate/checks_arbitration.py": "arbitration rounds raced at once; waits out the delay",
    "validate/checks_pr.py": "PR commands bounded; runs the target restart command",
    "validate/checks_storage.py": "times I/O; fault proxies taken down while I/O runs",
    "validate/nodes.py": "the simulated nodes' sessions, maps and PR queues, bounded",
    "validate/runner.py": "each test and each clean-up bounded by a timeout",
}

# Lowest first. A package may import its own layer and any lower one.
LAYERS: dict[str, int] = {
    "errors": 0,
    "config_checks": 0,
    "native": 0,
    "edge": 0,
    "control": 0,
    "tools": 0,
    "block": 1,
    "scsi": 2,
    "nbd": 2,
    "iscsi": 3,
    "snapshot": 3,
    "initiator": 4,
    "mpio": 5,
    "host": 6,
    "target": 7,
    "cluster": 8,
    "validate": 9,
    "dashboard": 9,
    "cli": 10,
    "demo": 10,
}


def all_modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def module_name(path: Path) -> str:
    return str(path.relative_to(SRC))


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            if node.module == "sanstack":
                found.extend(f"sanstack.{alias.name}" for alias in node.names)
    return found


def layer_of(path: Path) -> str:
    parts = path.relative_to(SRC).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


@pytest.mark.parametrize("path", all_modules(), ids=module_name)
def test_module_is_sans_io_unless_it_is_an_edge(path: Path) -> None:
    bad = {name.split(".")[0] for name in imports(path)} & FORBIDDEN
    if module_name(path) in EDGE_MODULES:
        assert bad, f"{module_name(path)} is on the edge allowlist but does no I/O: remove it"
    else:
        assert not bad, (
            f"{module_name(path)} imports {sorted(bad)}: make it sans-IO, or add it to "
            "EDGE_MODULES with the reason"
        )


def test_every_allowlisted_edge_exists() -> None:
    missing = [name for name in EDGE_MODULES if not (SRC / name).exists()]
    assert not missing


@pytest.mark.parametrize("path", all_modules(), ids=module_name)
def test_module_imports_only_its_layer_or_lower(path: Path) -> None:
    own = layer_of(path)
    if own == "__init__":
        return
    assert own in LAYERS, f"package {own} has no place in LAYERS"
    upward = []
    for name in imports(path):
        parts = name.split(".")
        if parts[0] != "sanstack" or len(parts) < 2 or parts[1] == "__version__":
            continue
        other = parts[1]
        if other in LAYERS and LAYERS[other] > LAYERS[own]:
            upward.append(name)
    assert not upward, f"{module_name(path)} reaches up a layer: {upward}"


def packages() -> list[str]:
    return sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").exists())


_IMPORT_EACH_ALONE = """
import importlib, sys
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "sanstack" or m.startswith("sanstack.")]:
        del sys.modules[loaded]
    importlib.import_module(name)
"""


@pytest.mark.parametrize("package", packages())
def test_every_module_of_a_package_imports_alone(package: str) -> None:
    names = [f"sanstack.{package}"] + [
        "sanstack." + module_name(path).removesuffix(".py").replace("/", ".")
        for path in sorted((SRC / package).glob("*.py"))
        if path.name != "__init__.py"
    ]
    # From the sources: a compiled (mypyc) module cannot be dropped from sys.modules and
    # imported again, and which modules are compiled does not change what each imports.
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH_ALONE, *names],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, PURE_PYTHON_ENV: "1"},
    )
    assert done.returncode == 0, done.stderr
