"""The cluster's TOML config: every rule, each bad field's exact one-line message, and the
example file (examples/cluster.toml)."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from sanstack.cluster import config as cluster_config
from sanstack.cluster.config import load_config, parse_config
from sanstack.cluster.keys import node_key
from sanstack.cluster.model import (
    ClusterConfig,
    DiskSpec,
    FailbackMode,
    GroupSpec,
    NodeSpec,
    QuorumModel,
    Timings,
)
from sanstack.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cluster.toml"
IQN = "iqn.2026-11.org.sanstack:cluster"

BASE = tomllib.loads(f"""
[cluster]
name = "prod"
quorum = "node-and-disk"
witness = "wit"

[storage]
portals = ["127.0.0.1:3260", "127.0.0.1:3261"]
targets = ["{IQN}"]

[[node]]
name = "n1"
address = "127.0.0.1:7401"
control = "/run/n1.sock"
state_dir = "/var/lib/n1"

[[node]]
name = "n2"
address = "127.0.0.1:7402"
control = "/run/n2.sock"
state_dir = "/var/lib/n2"

[[node]]
name = "n3"
address = "127.0.0.1:7403"
control = "/run/n3.sock"
state_dir = "/var/lib/n3"

[disks]
wit = "{IQN}/0"
d1 = "{IQN}/1"
d2 = "{IQN}/2"
d3 = "{IQN}/3"

[[group]]
name = "g1"
disks = ["d1", "d2"]
volumes = ["d1"]
export = "127.0.0.51:10809"
preferred_owners = ["n1", "n2", "n3"]

[[group]]
name = "g2"
disks = ["d3"]
export = "127.0.0.52:10809"
""")

DELETE = object()
Path_ = tuple[str | int, ...]


def edited(*edits: tuple[Path_, object]) -> dict[str, Any]:
    """BASE with each (path, value) set, or deleted for DELETE."""
    raw = copy.deepcopy(BASE)
    for path, value in edits:
        parent: Any = raw
        for step in path[:-1]:
            parent = parent[step]
        if value is DELETE:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
    return raw


def two_nodes(**cluster: object) -> dict[str, Any]:
    raw = edited(
        (("cluster", "quorum"), "node-majority"),
        (("cluster", "witness"), DELETE),
        (("node",), BASE["node"][:2]),
        (("group", 0, "preferred_owners"), ["n1", "n2"]),
    )
    raw["cluster"].update(cluster)
    return raw


def error_of(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    message = str(caught.value)
    assert "\n" not in message
    assert message == f"{caught.value.field}: {caught.value.problem}"
    return message


def test_the_base_config() -> None:
    config = parse_config(BASE)
    assert config == ClusterConfig(
        name="prod",
        nodes=tuple(
            NodeSpec(
                f"n{i}",
                ("127.0.0.1", 7400 + i),
                Path(f"/run/n{i}.sock"),
                Path(f"/var/lib/n{i}"),
                node_key("prod", f"n{i}"),
            )
            for i in (1, 2, 3)
        ),
        disks=(
            DiskSpec("wit", f"{IQN}/0"),
            DiskSpec("d1", f"{IQN}/1"),
            DiskSpec("d2", f"{IQN}/2"),
            DiskSpec("d3", f"{IQN}/3"),
        ),
        groups=(
            GroupSpec(
                "g1",
                ("d1", "d2"),
                ("d1",),
                ("127.0.0.51", 10809),
                ("n1", "n2", "n3"),
            ),
            GroupSpec("g2", ("d3",), export=("127.0.0.52", 10809)),
        ),
        portals=(("127.0.0.1", 3260), ("127.0.0.1", 3261)),
        targets=(IQN,),
        quorum=QuorumModel.NODE_AND_DISK,
        witness="wit",
        two_node=False,
        # With a witness: long enough for the race for it (2 x (2 x 3 + 2 x 1) s).
        timings=Timings(quorum_loss_stop=16.0),
    )
    assert config.node_with_key(node_key("prod", "n2")) == config.node("n2")
    assert config.node_with_key(node_key("other", "n2")) is None


def test_the_example_file_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.name == "example"
    assert config.node_names == ("n1", "n2", "n3")
    assert config.quorum is QuorumModel.NODE_AND_DISK
    assert config.witness == "wit"
    assert [g.name for g in config.groups] == ["g1", "g2"]
    assert config.groups[1].failback is FailbackMode.DELAYED
    assert config.groups[1].failback_delay == 30.0
    assert config.timings == Timings(quorum_loss_stop=16.0)
    assert [n.metrics for n in config.nodes] == [("127.0.0.1", 9200 + i) for i in (1, 2, 3)]
    assert load_config(str(EXAMPLE)) == config


def test_a_cluster_of_one_with_every_default() -> None:
    config = parse_config(
        {
            "cluster": {"name": "solo"},
            "storage": {"portals": ["[::1]:3260"]},
            "node": [{"name": "n1", "address": "[::1]:7401", "control": "c", "state_dir": "s"}],
        }
    )
    assert config.quorum is QuorumModel.NODE_MAJORITY
    assert config.nodes[0].address == ("::1", 7401)
    assert config.portals == (("::1", 3260),)
    assert (config.disks, config.groups, config.targets, config.witness) == ((), (), (), None)
    assert config.timings == Timings()
    assert not config.two_node


def test_with_a_witness_quorum_loss_stop_outlasts_the_race_for_it() -> None:
    faster = parse_config(
        edited((("timings",), {"heartbeat_interval": 0.2, "arbitration_interval": 1.0}))
    )
    assert faster.timings.quorum_loss_stop == 10.0  # the plain default is long enough
    slower = parse_config(edited((("timings",), {"arbitration_interval": 5.0})))
    assert slower.timings.quorum_loss_stop == 24.0  # 2 x (2 x 5 + 2 x 1)
    given = parse_config(edited((("timings",), {"quorum_loss_stop": 16.0})))
    assert given.timings.quorum_loss_stop == 16.0
    assert parse_config(two_nodes(two_node=True)).timings.quorum_loss_stop == 10.0


def test_a_floating_export_and_the_storage_loss_bound() -> None:
    raw = edited(
        (("group", 0, "export"), "10.0.2.200:10809"),
        (("group", 0, "floating"), True),
        (("timings",), {"storage_loss_stop": 4}),
    )
    config = parse_config(raw)
    assert config.groups[0].floating and not config.groups[1].floating
    assert config.timings.storage_loss_stop == 4.0


def test_two_nodes_with_two_node() -> None:
    config = parse_config(two_nodes(two_node=True))
    assert config.two_node
    assert config.node_names == ("n1", "n2")


def test_two_nodes_with_a_witness_need_no_two_node() -> None:
    raw = edited((("node",), BASE["node"][:2]), (("group", 0, "preferred_owners"), ["n2"]))
    assert parse_config(raw).quorum is QuorumModel.NODE_AND_DISK


def test_values_are_normalised() -> None:
    raw = edited(
        (("disks", "d1"), "iqn.2026-11.org.SANSTACK:Cluster/007"),
        (("disks", "d2"), "naa.600140594E1A4A3C"),
        (("timings",), {"heartbeat_interval": 1, "arbitration_interval": 2}),
        (("group", 0, "failback"), "immediate"),
        (("group", 1, "failback"), 5),
    )
    config = parse_config(raw)
    assert config.disks[1] == DiskSpec("d1", f"{IQN}/7")
    assert config.disks[2] == DiskSpec("d2", "naa.600140594e1a4a3c")
    assert config.timings.heartbeat_interval == 1.0
    assert isinstance(config.timings.heartbeat_interval, float)
    assert config.timings.arbitration_interval == 2.0
    assert config.groups[0].failback is FailbackMode.IMMEDIATE
    assert (config.groups[1].failback, config.groups[1].failback_delay) == (
        FailbackMode.DELAYED,
        5.0,
    )


def test_a_32_digit_naa_and_no_targets_filter() -> None:
    raw = edited(
        (("storage", "targets"), DELETE),
        (("disks", "d3"), "naa." + "6" * 32),
        (("disks", "d2"), "iqn.2026-11.org.other:x/2"),
    )
    config = parse_config(raw)
    assert config.disks[3].device == "naa." + "6" * 32
    assert config.disks[2].device == "iqn.2026-11.org.other:x/2"


NOT_SIMPLE = (
    "is not a simple name (letters, digits, '.', '_', '-'; a letter or digit first; at most 63)"
)
TWO_NODE = (
    "cluster.two_node: 2 nodes and no witness: a majority of 2 is both, so a partition or "
    'either node\'s loss would stop both; add a witness (quorum = "node-and-disk") or set '
    "two_node = true (each node may run alone; a partition is a race for the reservations)"
)

BAD: list[tuple[str, dict[str, Any], str]] = [
    # top level
    (
        "unknown top key",
        edited((("clusters",), {})),
        "clusters: unknown key (known: cluster, disks, group, node, storage, timings)",
    ),
    (
        "no cluster",
        edited((("cluster",), DELETE)),
        "cluster: a [cluster] table with the cluster's name is needed",
    ),
    ("cluster not a table", edited((("cluster",), "prod")), "cluster: must be a table"),
    # [cluster]
    (
        "cluster typo",
        edited((("cluster", "witnes"), "wit")),
        "cluster.witnes: unknown key (known: name, quorum, secret_file, two_node, witness)",
    ),
    (
        "no cluster name",
        edited((("cluster", "name"), DELETE)),
        "cluster.name: is required (distinct per cluster: it is part of every key)",
    ),
    ("empty name", edited((("cluster", "name"), "")), "cluster.name: must be a non-empty string"),
    ("name not text", edited((("cluster", "name"), 5)), "cluster.name: must be a non-empty string"),
    (
        "unprintable name",
        edited((("cluster", "name"), "a\tb")),
        "cluster.name: 'a\\tb' has a character that is not printable",
    ),
    (
        "NUL in name",
        edited((("cluster", "name"), "a\0b")),
        "cluster.name: 'a\\x00b' has a character that is not printable",
    ),
    (
        "spaced name",
        edited((("cluster", "name"), " prod")),
        "cluster.name: ' prod' starts or ends with a space",
    ),
    (
        "long name",
        edited((("cluster", "name"), "é" * 33)),
        "cluster.name: is longer than 64 bytes",
    ),
    (
        "quorum model",
        edited((("cluster", "quorum"), "majority")),
        'cluster.quorum: \'majority\' is not "node-majority" or "node-and-disk"',
    ),
    (
        "two_node not bool",
        edited((("cluster", "two_node"), "yes")),
        "cluster.two_node: must be true or false",
    ),
    # [timings]
    ("timings not a table", edited((("timings",), 3)), "timings: must be a table"),
    (
        "timings typo",
        edited((("timings",), {"heartbeat": 1.0})),
        "timings.heartbeat: unknown key (known: arbitration_interval, heartbeat_interval, "
        "missed_heartbeats, pending_timeout, quorum_loss_stop, storage_loss_stop)",
    ),
    (
        "heartbeat 0",
        edited((("timings",), {"heartbeat_interval": 0})),
        "timings.heartbeat_interval: 0 is not a number of seconds above 0 and up to 60",
    ),
    (
        "heartbeat in ms",
        edited((("timings",), {"heartbeat_interval": 1000})),
        "timings.heartbeat_interval: 1000 is not a number of seconds above 0 and up to 60",
    ),
    (
        "heartbeat bool",
        edited((("timings",), {"heartbeat_interval": True})),
        "timings.heartbeat_interval: True is not a number of seconds above 0 and up to 60",
    ),
    (
        "heartbeat nan",
        edited((("timings",), {"heartbeat_interval": float("nan")})),
        "timings.heartbeat_interval: nan is not a number of seconds above 0 and up to 60",
    ),
    (
        "heartbeat text",
        edited((("timings",), {"heartbeat_interval": "1s"})),
        "timings.heartbeat_interval: '1s' is not a number of seconds above 0 and up to 60",
    ),
    (
        "one missed heartbeat",
        edited((("timings",), {"missed_heartbeats": 1})),
        "timings.missed_heartbeats: 1 is too few: one lost heartbeat would make a node down "
        "(at least 2)",
    ),
    (
        "missed heartbeats float",
        edited((("timings",), {"missed_heartbeats": 2.5})),
        "timings.missed_heartbeats: 2.5 is not an integer in 2..1000",
    ),
    (
        "missed heartbeats huge",
        edited((("timings",), {"missed_heartbeats": 5000})),
        "timings.missed_heartbeats: 5000 is not an integer in 2..1000",
    ),
    (
        "arbitration faster than heartbeats",
        edited((("timings",), {"arbitration_interval": 0.5})),
        "timings.arbitration_interval: 0.5 is less than heartbeat_interval (1): membership "
        "changes no faster than heartbeats, so defending more often only adds PR traffic",
    ),
    (
        "arbitration negative",
        edited((("timings",), {"arbitration_interval": -3})),
        "timings.arbitration_interval: -3 is not a number of seconds above 0 and up to 600",
    ),
    (
        "pending shorter than the witness race",
        edited((("timings",), {"pending_timeout": 5})),
        "timings.pending_timeout: 5 is less than 2 x arbitration_interval (6): an online "
        "step may wait that long for a disk's holder to defend first",
    ),
    (
        "pending 0",
        edited((("timings",), {"pending_timeout": 0})),
        "timings.pending_timeout: 0 is not a number of seconds above 0 and up to 86400",
    ),
    (
        "quorum loss stop shorter than the witness race",
        edited((("timings",), {"quorum_loss_stop": 10})),
        "timings.quorum_loss_stop: 10 is less than 2 x 8: groups run on for half of it while "
        "the coordinator races for the witness (2 x arbitration_interval + 2 x "
        "heartbeat_interval = 8 s), so survivors would stop their groups first",
    ),
    (
        "quorum loss stop 0",
        edited((("timings",), {"quorum_loss_stop": 0})),
        "timings.quorum_loss_stop: 0 is not a number of seconds above 0 and up to 3600",
    ),
    (
        "storage loss stop below the heartbeat",
        edited((("timings",), {"storage_loss_stop": 0.5})),
        "timings.storage_loss_stop: 0.5 is less than heartbeat_interval (1): the node looks "
        "at its paths once every heartbeat interval",
    ),
    # [storage]
    (
        "no storage",
        edited((("storage",), DELETE)),
        "storage: a [storage] table with the target's portals is needed",
    ),
    (
        "storage typo",
        edited((("storage", "portal"), [])),
        "storage.portal: unknown key (known: portals, targets)",
    ),
    (
        "no portals",
        edited((("storage", "portals"), [])),
        "storage.portals: must list at least one HOST:PORT",
    ),
    (
        "portal without port",
        edited((("storage", "portals"), ["127.0.0.1"])),
        "storage.portals[0]: '127.0.0.1' is not HOST:PORT",
    ),
    (
        "portal port 0",
        edited((("storage", "portals", 1), "127.0.0.1:0")),
        "storage.portals[1]: port 0 in '127.0.0.1:0': name the port to connect to",
    ),
    (
        "portal twice",
        edited((("storage", "portals", 1), "127.0.0.1:3260")),
        "storage.portals[1]: 127.0.0.1:3260 is listed twice",
    ),
    (
        "portal not text",
        edited((("storage", "portals"), [3260])),
        "storage.portals[0]: 3260 is not a string (HOST:PORT)",
    ),
    (
        "target not an IQN",
        edited((("storage", "targets"), ["bad"])),
        "storage.targets[0]: 'bad' is not an iSCSI name (iqn.YYYY-MM.domain:id)",
    ),
    (
        "targets not a list",
        edited((("storage", "targets"), IQN)),
        "storage.targets: must be a list of target IQNs",
    ),
    (
        "target twice",
        edited((("storage", "targets"), [IQN, IQN.replace("sanstack", "SANSTACK")])),
        "storage.targets[1]: iqn.2026-11.org.SANSTACK:cluster is listed twice",
    ),
    # [[node]]
    ("no node", edited((("node",), DELETE)), "node: at least one [[node]] table is needed"),
    (
        "node a table",
        edited((("node",), {"name": "n1"})),
        "node: at least one [[node]] table is needed",
    ),
    ("node not a table", edited((("node",), ["n1"])), "node[0]: must be a table"),
    (
        "too many nodes",
        edited((("node",), [{"name": f"n{i}"} for i in range(65)])),
        "node: 65 nodes; at most 64",
    ),
    (
        "node typo",
        edited((("node", 1, "adress"), "x")),
        "node[1].adress: unknown key (known: address, control, metrics, name, peer_control, "
        "state_dir)",
    ),
    (
        "node metrics",
        edited((("node", 1, "metrics"), "nope")),
        "node[1].metrics: 'nope' is not HOST:PORT",
    ),
    (
        "node metrics shared",
        edited(
            (("node", 0, "metrics"), "127.0.0.1:9201"), (("node", 2, "metrics"), "127.0.0.1:9201")
        ),
        "node[2].metrics: 127.0.0.1:9201 is also the metrics of node n1 (node[0])",
    ),
    (
        "node without name",
        edited((("node", 1, "name"), DELETE)),
        "node[1].name: is required (a name)",
    ),
    ("node name spaced", edited((("node", 1, "name"), "n 2")), f"node[1].name: 'n 2' {NOT_SIMPLE}"),
    (
        "node name dash first",
        edited((("node", 1, "name"), "-n")),
        f"node[1].name: '-n' {NOT_SIMPLE}",
    ),
    (
        "node name long",
        edited((("node", 1, "name"), "n" * 64)),
        f"node[1].name: '{'n' * 64}' {NOT_SIMPLE}",
    ),
    (
        "node name twice",
        edited((("node", 2, "name"), "n1")),
        "node[2].name: n1 is also node[0]'s name",
    ),
    (
        "node without address",
        edited((("node", 1, "address"), DELETE)),
        "node[1].address: is required (HOST:PORT)",
    ),
    (
        "node address port",
        edited((("node", 1, "address"), "127.0.0.1:99999")),
        "node[1].address: port 99999 in '127.0.0.1:99999' is outside 0..65535",
    ),
    (
        "node address port 0",
        edited((("node", 1, "address"), "127.0.0.1:0")),
        "node[1].address: port 0 in '127.0.0.1:0': name the port to connect to",
    ),
    (
        "node address twice",
        edited((("node", 1, "address"), "127.0.0.1:7401")),
        "node[1].address: 127.0.0.1:7401 is also the address of node n1 (node[0])",
    ),
    (
        "node address twice, IPv6 brackets",
        edited((("node", 0, "address"), "[::1]:7401"), (("node", 2, "address"), "::1:7401")),
        "node[2].address: ::1:7401 is also the address of node n1 (node[0])",
    ),
    (
        "control twice",
        edited((("node", 2, "control"), "/run/n2.sock")),
        "node[2].control: /run/n2.sock is also the control of node n2 (node[1])",
    ),
    (
        "control too long",
        edited((("node", 0, "control"), "/" + "c" * 107)),
        "node[0].control: is longer than 107 bytes, a Unix socket path's limit",
    ),
    (
        "control empty",
        edited((("node", 0, "control"), "")),
        "node[0].control: must be a non-empty path without NUL",
    ),
    (
        "state_dir missing",
        edited((("node", 0, "state_dir"), DELETE)),
        "node[0].state_dir: is required (a path)",
    ),
    (
        "state_dir twice",
        edited((("node", 1, "state_dir"), "/var/lib/n1")),
        "node[1].state_dir: /var/lib/n1 is also the state_dir of node n1 (node[0])",
    ),
    # [disks]
    ("disks not a table", edited((("disks",), ["d1"])), "disks: must be a table"),
    ("disk name", edited((("disks", "d 1"), f"{IQN}/9")), f"disks.d 1: 'd 1' {NOT_SIMPLE}"),
    (
        "disk not text",
        edited((("disks", "d1"), 5)),
        "disks.d1: 5 is not a string (a WWID naa.<hex> or an alias IQN/LUN)",
    ),
    (
        "disk alias with a bad IQN",
        edited((("disks", "d1"), "iqn.bad/1")),
        "disks.d1: 'iqn.bad' is not an iSCSI name (iqn.YYYY-MM.domain:id)",
    ),
    (
        "disk alias LUN",
        edited((("disks", "d1"), f"{IQN}/x")),
        f"disks.d1: LUN 'x' in '{IQN}/x' is not in 0..16383",
    ),
    (
        "disk alias LUN too big",
        edited((("disks", "d1"), f"{IQN}/16384")),
        f"disks.d1: LUN '16384' in '{IQN}/16384' is not in 0..16383",
    ),
    (
        "disk alias empty LUN",
        edited((("disks", "d1"), f"{IQN}/")),
        f"disks.d1: LUN '' in '{IQN}/' is not in 0..16383",
    ),
    (
        "short naa",
        edited((("disks", "d1"), "naa.123")),
        "disks.d1: 'naa.123' is neither a WWID (naa. and 16 or 32 hex digits) nor IQN/LUN",
    ),
    (
        "an IQN without a LUN",
        edited((("disks", "d1"), IQN)),
        f"disks.d1: '{IQN}' is neither a WWID (naa. and 16 or 32 hex digits) nor IQN/LUN",
    ),
    (
        "an eui target alias",
        edited((("disks", "d1"), "eui.12/1")),
        "disks.d1: 'eui.12' is not an iSCSI name (iqn.YYYY-MM.domain:id)",
    ),
    (
        "a device path",
        edited((("disks", "d1"), "/dev/sdb")),
        "disks.d1: '/dev/sdb' is neither a WWID (naa. and 16 or 32 hex digits) nor IQN/LUN",
    ),
    (
        "disk alias of a target not in storage.targets",
        edited((("disks", "d1"), "iqn.2026-11.org.other:x/1")),
        "disks.d1: target iqn.2026-11.org.other:x is not in storage.targets, so no map would "
        "have it",
    ),
    (
        "two disks, one device",
        edited((("disks", "d2"), f"{IQN}/01")),
        f"disks.d2: {IQN}/1 is also disk d1's device",
    ),
    (
        "two disks, one WWID",
        edited(
            (("disks", "d1"), "naa.600140594e1a4a3c"), (("disks", "d2"), "naa.600140594E1A4A3C")
        ),
        "disks.d2: naa.600140594e1a4a3c is also disk d1's device",
    ),
    # [[group]]
    (
        "group a table",
        edited((("group",), {"name": "g1"})),
        "group: must be an array of tables ([[group]])",
    ),
    ("group not a table", edited((("group",), ["g1"])), "group[0]: must be a table"),
    (
        "group typo",
        edited((("group", 0, "disk"), ["d1"])),
        "group[0].disk: unknown key (known: disks, export, failback, floating, name, "
        "preferred_owners, restart_period, restart_threshold, volumes)",
    ),
    ("group name", edited((("group", 0, "name"), "g/1")), f"group[0].name: 'g/1' {NOT_SIMPLE}"),
    (
        "group name twice",
        edited((("group", 1, "name"), "g1")),
        "group[1].name: g1 is also group[0]'s name",
    ),
    (
        "group without disks",
        edited((("group", 0, "disks"), DELETE)),
        "group[0].disks: is required (a list of disk names)",
    ),
    (
        "group with no disk",
        edited((("group", 0, "disks"), [])),
        "group[0].disks: must be a non-empty list of disk names",
    ),
    (
        "group disks not a list",
        edited((("group", 0, "disks"), "d1")),
        "group[0].disks: must be a non-empty list of disk names",
    ),
    (
        "group disk unknown",
        edited((("group", 0, "disks", 1), "d9")),
        "group[0].disks[1]: 'd9' is not a disk in [disks]",
    ),
    (
        "group disk not text",
        edited((("group", 0, "disks", 1), 3)),
        "group[0].disks[1]: 3 is not a string (disk name)",
    ),
    (
        "group disk twice",
        edited((("group", 0, "disks", 1), "d1")),
        "group[0].disks[1]: d1 is listed twice",
    ),
    (
        "disk in two groups",
        edited((("group", 1, "disks"), ["d1"])),
        "group[1].disks[0]: d1 is already in group g1 (group[0]); a disk is in one group",
    ),
    (
        "volume not a group disk",
        edited((("group", 0, "volumes"), ["d3"])),
        "group[0].volumes[0]: 'd3' is not one of this group's disks",
    ),
    (
        "volume twice",
        edited((("group", 0, "volumes"), ["d1", "d1"])),
        "group[0].volumes[1]: d1 is listed twice",
    ),
    (
        "volumes not a list",
        edited((("group", 0, "volumes"), "d1")),
        "group[0].volumes: must be a list of disk names",
    ),
    (
        "export not an address",
        edited((("group", 0, "export"), "nope")),
        "group[0].export: 'nope' is not HOST:PORT",
    ),
    (
        "export port 0",
        edited((("group", 0, "export"), "127.0.0.51:0")),
        "group[0].export: port 0 in '127.0.0.51:0': name the port to connect to",
    ),
    (
        "export twice",
        edited((("group", 1, "export"), "127.0.0.51:10809")),
        "group[1].export: 127.0.0.51:10809 is also group g1's export (group[0])",
    ),
    (
        "floating not a boolean",
        edited((("group", 0, "floating"), "yes")),
        "group[0].floating: must be true or false",
    ),
    (
        "floating without an export",
        edited((("group", 0, "export"), DELETE), (("group", 0, "floating"), True)),
        "group[0].floating: a floating address needs the group's export",
    ),
    (
        "floating loopback",
        edited((("group", 0, "floating"), True)),
        "group[0].floating: 127.0.0.51 cannot float: every node has it, or no interface can "
        "take it",
    ),
    (
        "floating not IPv4",
        edited((("group", 0, "export"), "[fd00::1]:10809"), (("group", 0, "floating"), True)),
        "group[0].floating: fd00::1 is not an IPv4 address (a floating address is announced "
        "by ARP)",
    ),
    (
        "export on a portal",
        edited((("group", 0, "export"), "127.0.0.1:3261")),
        "group[0].export: 127.0.0.1:3261 is a storage portal",
    ),
    (
        "preferred owner unknown",
        edited((("group", 0, "preferred_owners", 2), "n9")),
        "group[0].preferred_owners[2]: 'n9' is not a node",
    ),
    (
        "preferred owner twice",
        edited((("group", 0, "preferred_owners", 2), "n1")),
        "group[0].preferred_owners[2]: n1 is listed twice",
    ),
    (
        "failback word",
        edited((("group", 0, "failback"), "sometimes")),
        'group[0].failback: \'sometimes\' is not "never", "immediate" or a number of seconds '
        "above 0",
    ),
    (
        "failback 0",
        edited((("group", 0, "failback"), 0)),
        "group[0].failback: 0 is not a number of seconds above 0 and up to 604800",
    ),
    (
        "failback negative",
        edited((("group", 0, "failback"), -5.0)),
        "group[0].failback: -5.0 is not a number of seconds above 0 and up to 604800",
    ),
    (
        "failback bool",
        edited((("group", 0, "failback"), True)),
        "group[0].failback: True is not a number of seconds above 0 and up to 604800",
    ),
    (
        "restart threshold 0",
        edited((("group", 0, "restart_threshold"), 0)),
        "group[0].restart_threshold: 0 is not an integer in 1..1000",
    ),
    (
        "restart period 0",
        edited((("group", 0, "restart_period"), 0)),
        "group[0].restart_period: 0 is not a number of seconds above 0 and up to 604800",
    ),
    # the witness
    (
        "node-and-disk without a witness",
        edited((("cluster", "witness"), DELETE)),
        'cluster.witness: quorum = "node-and-disk" needs a witness: the name of a disk in [disks]',
    ),
    (
        "a witness with node-majority",
        edited((("cluster", "quorum"), "node-majority")),
        'cluster.witness: a witness only votes with quorum = "node-and-disk"; set that or '
        "remove it",
    ),
    (
        "witness not a disk",
        edited((("cluster", "witness"), "nope")),
        "cluster.witness: 'nope' is not a disk in [disks]",
    ),
    (
        "witness in a group",
        edited((("cluster", "witness"), "d3")),
        "cluster.witness: 'd3' is a disk of group g2 (group[1]); the witness belongs to no group",
    ),
    # two nodes
    ("two nodes, no witness", two_nodes(), TWO_NODE),
    ("two nodes, two_node false", two_nodes(two_node=False), TWO_NODE),
    (
        "two_node with three nodes",
        edited(
            (("cluster", "quorum"), "node-majority"),
            (("cluster", "witness"), DELETE),
            (("cluster", "two_node"), True),
        ),
        "cluster.two_node: is only for exactly 2 nodes without a witness (this has 3 node(s))",
    ),
    (
        "two_node with a witness",
        edited(
            (("node",), BASE["node"][:2]),
            (("group", 0, "preferred_owners"), ["n1"]),
            (("cluster", "two_node"), True),
        ),
        "cluster.two_node: is only for exactly 2 nodes without a witness (this has a witness)",
    ),
]


@pytest.mark.parametrize(
    ("raw", "message"), [(raw, m) for _, raw, m in BAD], ids=[c[0] for c in BAD]
)
def test_a_bad_value_is_one_line_naming_its_field(raw: dict[str, Any], message: str) -> None:
    assert error_of(raw) == message


def test_two_nodes_whose_keys_collide_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_config, "node_key", lambda cluster, node: 0x1234)
    assert error_of(BASE) == (
        "node[1].name: its key 0x0000000000001234 is node n1's (node[0]) too; rename one"
    )


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match="file not found") as caught:
        load_config(missing)
    assert caught.value.field == str(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("[cluster\nname = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load_config(broken)
    assert caught.value.field == str(broken)
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace("missed_heartbeats = 5", "missed_heartbeats = 1"))
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert caught.value.field == "timings.missed_heartbeats"
