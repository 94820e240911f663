"""The demo's plan (sans-IO): the cluster's file is one the nodes accept, the target's
command line is one the CLI parses into the three LUNs, the table has its stages, and what
it prints names the real sockets, ports and pids. And its ports: free ones, the last run's
first."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from sanstack.cli.main import build_parser
from sanstack.cluster.config import load_config
from sanstack.demo import plan
from sanstack.demo.ports import choose_ports, save_ports, saved_ports
from sanstack.target.config import quick_target

PORTS = {name: 20000 + i for i, name in enumerate(plan.DEFAULT_PORTS)}
SANSTACK = ("python3", "-m", "sanstack.cli.main")


def test_the_cluster_file_is_one_the_nodes_accept(tmp_path: Path) -> None:
    layout = plan.Layout(tmp_path)
    layout.cluster_config.write_text(plan.cluster_toml(layout, PORTS))
    config = load_config(layout.cluster_config)
    assert [n.name for n in config.nodes] == list(plan.NODES)
    assert config.witness == "witness"
    groups = {g.name: g for g in config.groups}
    assert groups["g1"].disks == ("disk1",) and groups["g1"].volumes == ()
    assert groups["g2"].disks == ("vol1",) and groups["g2"].volumes == ("vol1",)
    assert groups["g1"].export == ("127.0.0.1", PORTS["export-g1"])
    nodes = {n.name: n for n in config.nodes}
    assert nodes["n2"].control == layout.node_control("n2")
    assert nodes["n2"].address == ("127.0.0.1", PORTS["heartbeat-n2"])
    assert {d.name: d.device for d in config.disks}["vol1"] == f"{plan.IQN}/2"


def test_the_table_starts_the_target_then_the_nodes_then_the_loads(tmp_path: Path) -> None:
    layout = plan.Layout(tmp_path)
    table = plan.process_table(layout, PORTS, SANSTACK, "python3")
    assert [(p.name, p.stage) for p in table] == [
        ("target", plan.TARGET_STAGE),
        ("node n1", plan.NODE_STAGE),
        ("node n2", plan.NODE_STAGE),
        ("node n3", plan.NODE_STAGE),
        ("load g1", plan.LOAD_STAGE),
        ("load g2", plan.LOAD_STAGE),
        ("dashboard", plan.DASHBOARD_STAGE),
    ]
    assert len({p.log for p in table}) == len(table)
    dashboard = build_parser().parse_args(list(table[-1].argv[len(SANSTACK) :]))
    assert dashboard.config == layout.cluster_config
    assert dashboard.target_control == layout.target_control
    target = table[0]
    args = build_parser().parse_args(list(target.argv[len(SANSTACK) :]))
    spec = quick_target(args.iqn, args.portal, args.lun)
    assert [lun.path for lun in spec.luns] == [layout.lun(n) for n in plan.LUNS]
    assert args.control == layout.target_control
    assert [g.portals[0].port for g in spec.portal_groups] == [PORTS["portal1"], PORTS["portal2"]]
    node = build_parser().parse_args(list(table[2].argv[len(SANSTACK) :]))
    assert node.config == layout.cluster_config and node.name == "n2"
    assert table[4].argv[1:] == (
        "-m",
        "sanstack.demo.load",
        f"127.0.0.1:{PORTS['export-g1']}",
        "disk1",
        "g1",
    )


def test_what_it_prints_has_the_real_addresses_and_pids(tmp_path: Path) -> None:
    layout = plan.Layout(tmp_path)
    pids = {"target": 10, "node n1": 11, "node n2": 12, "node n3": 13, "load g1": 14}
    text = plan.summary(
        layout, PORTS, pids, {"g1": "n2", "g2": "n3"}, "sanstack", reused=True, demo_pid=99
    )
    assert "kill -9 12    # node n2, g1's owner" in text
    assert f"sanstack cluster move g1 n1 --control {layout.node_control('n1')}" in text
    assert f"portal-group {plan.IQN} 1 down --control {layout.target_control}" in text
    assert f"snapshot create --cluster-control {layout.node_control('n1')} g2/vol1" in text
    assert f"nbdinfo nbd://127.0.0.1:{PORTS['export-g2']}/vol1@before-upgrade" in text
    assert "kill -USR1 99" in text and "data of an earlier run" in text
    assert text.splitlines()[-1].startswith("ready: Ctrl-C")
    table = plan.process_table(layout, PORTS, SANSTACK, "python3")
    dashboard = plan.ProcessSpec("dashboard", ("d",), "ready", layout.log("dashboard"), 3)
    text = plan.summary(
        layout,
        PORTS,
        pids,
        {},
        "sanstack",
        reused=False,
        demo_pid=99,
        others=[(dashboard, 21, "ready http://127.0.0.1:8080/")],
    )
    assert f"  dashboard  pid 21  log {dashboard.log}: ready http://127.0.0.1:8080/" in text
    report = plan.exit_report(table[1], 11, -9, 99)
    assert report.startswith(
        f"sanstack demo: node n1 (pid 11) was killed by signal 9; its log: {table[1].log}"
    )
    assert "kill -USR1 99" in report
    assert "exited 2" in plan.exit_report(table[0], 10, 2, 99)
    described = plan.describe(layout, PORTS, pids, table)
    assert json.loads(json.dumps(described))["processes"][1] == {
        "name": "node n1",
        "pid": 11,
        "log": str(table[1].log),
    }


def test_ports_are_free_and_the_last_runs_come_first(tmp_path: Path) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy_udp,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe,
    ):
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_udp.bind(("127.0.0.1", 0))
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
        probe.close()
        saved = {
            "portal1": busy.getsockname()[1],
            "portal2": free,
            "heartbeat-n1": busy_udp.getsockname()[1],
        }
        chosen = choose_ports(saved)
    assert set(chosen) == set(plan.DEFAULT_PORTS)
    assert len(set(chosen.values())) == len(chosen)
    assert chosen["portal1"] != saved["portal1"]
    assert chosen["heartbeat-n1"] != saved["heartbeat-n1"]
    assert chosen["portal2"] == free
    save_ports(tmp_path / "ports.json", chosen)
    assert saved_ports(tmp_path / "ports.json") == chosen
    (tmp_path / "bad.json").write_text("[not json")
    assert saved_ports(tmp_path / "bad.json") == {}


def test_the_run_file_is_replaced_whole_while_readers_read_it(tmp_path: Path) -> None:
    """The demo rewrites demo.json when it starts a node again; a reader (a script, the
    interop test) must never find it empty or half written."""
    import threading

    from sanstack.demo.run import write_run_file

    path = tmp_path / "demo.json"
    write_run_file(path, {"round": 0, "nodes": {"n1": "x" * 4096}})
    stop = threading.Event()
    seen: list[int] = []
    torn: list[str] = []

    def read() -> None:
        while not stop.is_set():
            text = path.read_text()
            try:
                seen.append(json.loads(text)["round"])
            except ValueError:
                torn.append(text[:40])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for round_no in range(1, 200):
            write_run_file(path, {"round": round_no, "nodes": {"n1": "x" * 4096}})
    finally:
        stop.set()
        reader.join(timeout=30)
    assert not reader.is_alive()
    assert not torn, f"{len(torn)} reads found a torn file, e.g. {torn[0]!r}"
    assert seen and seen == sorted(seen)
