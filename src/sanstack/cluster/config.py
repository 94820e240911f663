"""The cluster's configuration: one TOML file, the same on every node (docs/cluster-design.md,
"Config"), read into ``cluster.model``'s ``ClusterConfig``.

Every value is checked here, before anything starts, and a bad one raises ``ConfigError``
naming its field (``node[1].address``, ``group[0].preferred_owners[2]``,
``timings.missed_heartbeats``, ``cluster.witness``) and the problem in one line. Unknown keys
are refused everywhere, so a misspelt key never passes as its default.

Rules beyond each value's own (why, where it is not obvious):

- names of nodes, disks and groups are simple (letters, digits, ``.``, ``_``, ``-``; at most
  63; a letter or digit first): they are export names, file names and table cells. The
  cluster's name is printable text of at most 64 UTF-8 bytes; it is part of every key.
- each node's cluster address, control socket, ``peer_control`` address and state
  directory are its own, and so is its ``metrics`` address (optional; port 0, any free
  port, aside); two nodes whose reservation keys (``cluster.keys``) collide are refused.
- a node with ``peer_control`` (where peers on other machines send it control requests,
  signed) needs ``cluster.secret_file``; the file itself is checked when the node starts
  (``read_secret``: it exists, is not world-readable and holds at least 32 bytes), since
  the file is each machine's own.
- a disk is a map's WWID (``naa.`` and 16 or 32 hex digits) or its alias ``IQN/LUN`` (the
  IQN checked as the target checks names; when ``storage.targets`` is given, it must be one
  of them, or no map would ever carry the alias). Two disks never name the same device.
- a group's disks exist and are in no other group; its volumes are among its disks; its
  preferred owners are nodes; no two groups export on the same address, nor on a portal.
- the witness (``node-and-disk`` only, and required there) is a disk in no group.
- two nodes and no witness are refused unless ``two_node = true`` (``cluster.quorum``).
- timings: ``missed_heartbeats`` ≥ 2 (one lost datagram must not make a node down);
  ``arbitration_interval`` ≥ ``heartbeat_interval`` (membership, which decides whose keys a
  defence removes, changes no faster than heartbeats come, so defending more often only adds
  PR traffic); ``pending_timeout`` ≥ 2 x ``arbitration_interval`` (a step that arbitrates
  may wait that long for an incumbent to defend first, as the witness race does);
  ``storage_loss_stop`` ≥ ``heartbeat_interval`` (the node looks at its paths that often);
  with a witness, ``quorum_loss_stop`` ≥ 2 x (2 x ``arbitration_interval`` + 2 x
  ``heartbeat_interval``), its default when not given (16 s at the default timings): the
  groups run on for half of it while the coordinator wins the witness back;
  upper bounds catch milliseconds written as seconds.
- a ``floating`` export is an IPv4 address that is not loopback, multicast or unspecified:
  the owner adds it to an interface and announces it with ARP (IPaddr2).
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from dataclasses import fields
from pathlib import Path
from typing import Any

from sanstack.cluster.keys import format_key, node_key
from sanstack.cluster.model import (
    ClusterConfig,
    DiskSpec,
    FailbackMode,
    GroupSpec,
    NodeSpec,
    QuorumModel,
    Timings,
)
from sanstack.config_checks import (
    check_name,
    integer_in,
    load_toml,
    no_unknown_keys,
    parse_address,
    positive_seconds,
    table_at,
)
from sanstack.control.peer_auth import MIN_SECRET
from sanstack.errors import ConfigError
from sanstack.target.model import MAX_LUNS

MAX_NODES = 64  # every node heartbeats every other one; WSFC's limit too
MAX_CLUSTER_NAME_BYTES = 64
MAX_UNIX_SOCKET_PATH = 107  # sun_path is 108 bytes with its terminating NUL
MAX_RESTART_THRESHOLD = 1000
WEEK = 7 * 24 * 3600.0

_SIMPLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_NAA = re.compile(r"^naa\.(?:[0-9a-f]{16}|[0-9a-f]{32})$", re.IGNORECASE)

_TOP_KEYS = {"cluster", "timings", "storage", "node", "disks", "group"}
_CLUSTER_KEYS = {"name", "quorum", "witness", "two_node", "secret_file"}
_TIMING_KEYS = {
    "heartbeat_interval",
    "missed_heartbeats",
    "arbitration_interval",
    "pending_timeout",
    "quorum_loss_stop",
    "storage_loss_stop",
}
_STORAGE_KEYS = {"portals", "targets"}
_NODE_KEYS = {"name", "address", "control", "state_dir", "metrics", "peer_control"}
_GROUP_DEFAULTS = {f.name: f.default for f in fields(GroupSpec)}
_GROUP_KEYS = {
    "name",
    "disks",
    "volumes",
    "export",
    "preferred_owners",
    "failback",
    "restart_threshold",
    "restart_period",
    "floating",
}


def load_config(path: Path | str) -> ClusterConfig:
    return parse_config(load_toml(Path(path)))


def parse_config(raw: dict[str, Any]) -> ClusterConfig:
    no_unknown_keys(raw, _TOP_KEYS, "")
    if "cluster" not in raw:
        raise ConfigError("cluster", "a [cluster] table with the cluster's name is needed")
    cluster = table_at(raw["cluster"], "cluster")
    no_unknown_keys(cluster, _CLUSTER_KEYS, "cluster")
    name = _cluster_name(cluster.get("name"))
    quorum = _quorum_model(cluster.get("quorum", QuorumModel.NODE_MAJORITY.value))
    two_node = cluster.get("two_node", False)
    if not isinstance(two_node, bool):
        raise ConfigError("cluster.two_node", "must be true or false")
    timings = _timings(raw.get("timings", {}), quorum is QuorumModel.NODE_AND_DISK)
    portals, targets = _storage(raw.get("storage"))
    nodes = _nodes(raw.get("node"), name)
    disks = _disks(raw.get("disks", {}), targets)
    groups = _groups(raw.get("group", []), disks, nodes, portals)
    witness = _witness(cluster, quorum, disks, groups)
    _check_two_node(two_node, len(nodes), quorum)
    secret_file = _secret_file(cluster.get("secret_file"), nodes)
    return ClusterConfig(
        name=name,
        nodes=nodes,
        disks=disks,
        groups=groups,
        portals=portals,
        targets=targets,
        quorum=quorum,
        witness=witness,
        two_node=two_node,
        timings=timings,
        secret_file=secret_file,
    )


# -- [cluster] ---------------------------------------------------------------------------------


def _cluster_name(value: object) -> str:
    where = "cluster.name"
    if value is None:
        raise ConfigError(where, "is required (distinct per cluster: it is part of every key)")
    if not isinstance(value, str) or not value:
        raise ConfigError(where, "must be a non-empty string")
    if not value.isprintable():
        raise ConfigError(where, f"{value!r} has a character that is not printable")
    if value != value.strip():
        raise ConfigError(where, f"{value!r} starts or ends with a space")
    if len(value.encode()) > MAX_CLUSTER_NAME_BYTES:
        raise ConfigError(where, f"is longer than {MAX_CLUSTER_NAME_BYTES} bytes")
    return value


def _quorum_model(value: object) -> QuorumModel:
    for model in QuorumModel:
        if value == model.value:
            return model
    choices = " or ".join(f'"{m.value}"' for m in QuorumModel)
    raise ConfigError("cluster.quorum", f"{value!r} is not {choices}")


def _witness(
    cluster: dict[str, Any],
    quorum: QuorumModel,
    disks: tuple[DiskSpec, ...],
    groups: tuple[GroupSpec, ...],
) -> str | None:
    where = "cluster.witness"
    witness = cluster.get("witness")
    if witness is None:
        if quorum is QuorumModel.NODE_AND_DISK:
            raise ConfigError(
                where, 'quorum = "node-and-disk" needs a witness: the name of a disk in [disks]'
            )
        return None
    if quorum is not QuorumModel.NODE_AND_DISK:
        raise ConfigError(
            where, 'a witness only votes with quorum = "node-and-disk"; set that or remove it'
        )
    if not isinstance(witness, str) or witness not in {d.name for d in disks}:
        raise ConfigError(where, f"{witness!r} is not a disk in [disks]")
    for i, group in enumerate(groups):
        if witness in group.disks:
            raise ConfigError(
                where,
                f"{witness!r} is a disk of group {group.name} (group[{i}]); "
                "the witness belongs to no group",
            )
    return witness


def _check_two_node(two_node: bool, node_count: int, quorum: QuorumModel) -> None:
    where = "cluster.two_node"
    with_witness = quorum is QuorumModel.NODE_AND_DISK
    if two_node and (node_count != 2 or with_witness):
        has = "a witness" if with_witness else f"{node_count} node(s)"
        raise ConfigError(where, f"is only for exactly 2 nodes without a witness (this has {has})")
    if node_count == 2 and not with_witness and not two_node:
        raise ConfigError(
            where,
            "2 nodes and no witness: a majority of 2 is both, so a partition or either "
            'node\'s loss would stop both; add a witness (quorum = "node-and-disk") or set '
            "two_node = true (each node may run alone; a partition is a race for the "
            "reservations)",
        )


def _secret_file(value: object, nodes: tuple[NodeSpec, ...]) -> Path | None:
    where = "cluster.secret_file"
    if value is None:
        for i, node in enumerate(nodes):
            if node.peer_control is not None:
                raise ConfigError(
                    where,
                    f"is required: node {node.name} (node[{i}]) has peer_control, and "
                    "requests between nodes are signed with this file's secret",
                )
        return None
    return _path(value, where)


def read_secret(path: Path, where: str = "cluster.secret_file") -> bytes:
    """The cluster's shared secret from ``path``: a regular file no other user may read,
    of at least ``MIN_SECRET`` bytes (a final newline is not part of it, so
    ``openssl rand -hex 32 > FILE`` makes one). Every node's file holds the same bytes."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(where, f"{path} is not a regular file")
        if info.st_mode & stat.S_IROTH:
            raise ConfigError(
                where,
                f"{path} is readable by every user (mode {stat.S_IMODE(info.st_mode):04o}); "
                "chmod o-rwx it (0600)",
            )
        secret = path.read_bytes().rstrip(b"\r\n")
    except FileNotFoundError:
        raise ConfigError(where, f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(where, f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(secret) < MIN_SECRET:
        raise ConfigError(
            where,
            f"{path} holds {len(secret)} bytes; at least {MIN_SECRET} "
            "(openssl rand -hex 32 > FILE)",
        )
    return secret


# -- [timings] ---------------------------------------------------------------------------------


def witness_race_grace(heartbeat: float, arbitration: float) -> float:
    """How long a partition one vote short runs its groups on while its coordinator races
    for the witness: the race's 2 x arbitration_interval (the incumbent's turn), and two
    heartbeats for the other members to hear that quorum is back."""
    return 2 * arbitration + 2 * heartbeat


def _timings(value: object, with_witness: bool) -> Timings:
    table = table_at(value, "timings")
    no_unknown_keys(table, _TIMING_KEYS, "timings")
    default = Timings()

    def get(key: str) -> object:
        return table.get(key, getattr(default, key))

    heartbeat = positive_seconds(get("heartbeat_interval"), "timings.heartbeat_interval", 60.0)
    missed = get("missed_heartbeats")
    if isinstance(missed, int) and not isinstance(missed, bool) and missed < 2:
        raise ConfigError(
            "timings.missed_heartbeats",
            f"{missed} is too few: one lost heartbeat would make a node down (at least 2)",
        )
    missed = integer_in(missed, "timings.missed_heartbeats", 2, 1000)
    arbitration = positive_seconds(
        get("arbitration_interval"), "timings.arbitration_interval", 600.0
    )
    if arbitration < heartbeat:
        raise ConfigError(
            "timings.arbitration_interval",
            f"{arbitration:g} is less than heartbeat_interval ({heartbeat:g}): membership "
            "changes no faster than heartbeats, so defending more often only adds PR traffic",
        )
    pending = positive_seconds(get("pending_timeout"), "timings.pending_timeout", 86400.0)
    if pending < 2 * arbitration:
        raise ConfigError(
            "timings.pending_timeout",
            f"{pending:g} is less than 2 x arbitration_interval ({2 * arbitration:g}): an "
            "online step may wait that long for a disk's holder to defend first",
        )
    # Groups run on for the first half of quorum_loss_stop (node.py): with a witness, that
    # half must outlast the race for it, or every failover of the witness's holder would
    # stop and restart every group of the survivors too.
    grace = witness_race_grace(heartbeat, arbitration) if with_witness else 0.0
    stop_default = max(default.quorum_loss_stop, 2 * grace)
    stop = positive_seconds(
        table.get("quorum_loss_stop", stop_default), "timings.quorum_loss_stop", 3600.0
    )
    if stop < 2 * grace:
        raise ConfigError(
            "timings.quorum_loss_stop",
            f"{stop:g} is less than 2 x {grace:g}: groups run on for half of it while the "
            f"coordinator races for the witness (2 x arbitration_interval + 2 x "
            f"heartbeat_interval = {grace:g} s), so survivors would stop their groups first",
        )
    storage = positive_seconds(get("storage_loss_stop"), "timings.storage_loss_stop", 3600.0)
    if storage < heartbeat:
        raise ConfigError(
            "timings.storage_loss_stop",
            f"{storage:g} is less than heartbeat_interval ({heartbeat:g}): the node looks at "
            "its paths once every heartbeat interval",
        )
    return Timings(heartbeat, missed, arbitration, pending, stop, storage)


# -- [storage] ---------------------------------------------------------------------------------


def _storage(value: object) -> tuple[tuple[tuple[str, int], ...], tuple[str, ...]]:
    if value is None:
        raise ConfigError("storage", "a [storage] table with the target's portals is needed")
    table = table_at(value, "storage")
    no_unknown_keys(table, _STORAGE_KEYS, "storage")
    raw_portals = table.get("portals")
    if not isinstance(raw_portals, list) or not raw_portals:
        raise ConfigError("storage.portals", "must list at least one HOST:PORT")
    portals: list[tuple[str, int]] = []
    for i, text in enumerate(raw_portals):
        where = f"storage.portals[{i}]"
        portal = parse_address(_string(text, where, "HOST:PORT"), where)
        if portal in portals:
            raise ConfigError(where, f"{text} is listed twice")
        portals.append(portal)
    raw_targets = table.get("targets", [])
    if not isinstance(raw_targets, list):
        raise ConfigError("storage.targets", "must be a list of target IQNs")
    targets: list[str] = []
    for i, text in enumerate(raw_targets):
        target = check_name(text, f"storage.targets[{i}]")
        if target in targets:
            raise ConfigError(f"storage.targets[{i}]", f"{text} is listed twice")
        targets.append(target)
    return tuple(portals), tuple(targets)


# -- [[node]] ----------------------------------------------------------------------------------


def _nodes(value: object, cluster: str) -> tuple[NodeSpec, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError("node", "at least one [[node]] table is needed")
    if len(value) > MAX_NODES:
        raise ConfigError("node", f"{len(value)} nodes; at most {MAX_NODES}")
    nodes: list[NodeSpec] = []
    for i, raw in enumerate(value):
        where = f"node[{i}]"
        table = table_at(raw, where)
        no_unknown_keys(table, _NODE_KEYS, where)
        name = _simple_name(table.get("name"), f"{where}.name")
        address_text = _string(table.get("address"), f"{where}.address", "HOST:PORT")
        address = parse_address(address_text, f"{where}.address")
        control = _path(table.get("control"), f"{where}.control")
        if len(str(control).encode()) > MAX_UNIX_SOCKET_PATH:
            raise ConfigError(
                f"{where}.control",
                f"is longer than {MAX_UNIX_SOCKET_PATH} bytes, a Unix socket path's limit",
            )
        state_dir = _path(table.get("state_dir"), f"{where}.state_dir")
        metrics, metrics_text = None, ""
        if "metrics" in table:
            metrics_text = _string(table["metrics"], f"{where}.metrics", "HOST:PORT")
            metrics = parse_address(metrics_text, f"{where}.metrics", any_port=True)
        peer_text = table.get("peer_control")
        peer_control = None
        if peer_text is not None:
            peer_text = _string(peer_text, f"{where}.peer_control", "HOST:PORT")
            peer_control = parse_address(peer_text, f"{where}.peer_control")
        key = node_key(cluster, name)
        node = NodeSpec(
            name, address, control, state_dir, key, metrics=metrics, peer_control=peer_control
        )
        for j, other in enumerate(nodes):
            if name == other.name:
                raise ConfigError(f"{where}.name", f"{name} is also node[{j}]'s name")
            for key_name, mine, theirs, shown in (
                ("address", address, other.address, address_text),
                ("control", control, other.control, str(control)),
                ("state_dir", state_dir, other.state_dir, str(state_dir)),
                ("peer_control", peer_control, other.peer_control, str(peer_text)),
            ):
                if mine is not None and mine == theirs:
                    raise ConfigError(
                        f"{where}.{key_name}",
                        f"{shown} is also the {key_name} of node {other.name} (node[{j}])",
                    )
            if metrics is not None and metrics[1] != 0 and metrics == other.metrics:
                raise ConfigError(
                    f"{where}.metrics",
                    f"{metrics_text} is also the metrics of node {other.name} (node[{j}])",
                )
            if node.key == other.key:
                raise ConfigError(
                    f"{where}.name",
                    f"its key {format_key(node.key)} is node {other.name}'s (node[{j}]) too; "
                    "rename one",
                )
        nodes.append(node)
    return tuple(nodes)


# -- [disks] -----------------------------------------------------------------------------------


def _disks(value: object, targets: tuple[str, ...]) -> tuple[DiskSpec, ...]:
    table = table_at(value, "disks")
    disks: list[DiskSpec] = []
    for name, raw in table.items():
        where = f"disks.{name}"
        _simple_name(name, where)
        device = _device(raw, where, targets)
        for other in disks:
            if other.device == device:
                raise ConfigError(where, f"{device} is also disk {other.name}'s device")
        disks.append(DiskSpec(name, device))
    return tuple(disks)


def _device(value: object, where: str, targets: tuple[str, ...]) -> str:
    """A map's WWID or alias, as the host exports it (lowercase, the LUN in decimal)."""
    text = _string(value, where, "a WWID naa.<hex> or an alias IQN/LUN")
    target_text, slash, lun_text = text.rpartition("/")
    if slash and target_text.startswith(("iqn.", "eui.", "naa.")):
        target = check_name(target_text, where)
        if not lun_text.isascii() or not lun_text.isdigit() or int(lun_text) >= MAX_LUNS:
            raise ConfigError(where, f"LUN {lun_text!r} in {text!r} is not in 0..{MAX_LUNS - 1}")
        if targets and target not in targets:
            raise ConfigError(
                where, f"target {target} is not in storage.targets, so no map would have it"
            )
        return f"{target}/{int(lun_text)}"
    if _NAA.match(text):
        return text.lower()
    raise ConfigError(
        where, f"{text!r} is neither a WWID (naa. and 16 or 32 hex digits) nor IQN/LUN"
    )


# -- [[group]] ---------------------------------------------------------------------------------


def _groups(
    value: object,
    disks: tuple[DiskSpec, ...],
    nodes: tuple[NodeSpec, ...],
    portals: tuple[tuple[str, int], ...],
) -> tuple[GroupSpec, ...]:
    if not isinstance(value, list):
        raise ConfigError("group", "must be an array of tables ([[group]])")
    disk_names = {d.name for d in disks}
    node_names = {n.name for n in nodes}
    groups: list[GroupSpec] = []
    owner_of_disk: dict[str, int] = {}
    for i, raw in enumerate(value):
        where = f"group[{i}]"
        table = table_at(raw, where)
        no_unknown_keys(table, _GROUP_KEYS, where)
        name = _simple_name(table.get("name"), f"{where}.name")
        for j, other in enumerate(groups):
            if other.name == name:
                raise ConfigError(f"{where}.name", f"{name} is also group[{j}]'s name")
        members = _names(table.get("disks"), f"{where}.disks", "disk names", required=True)
        for k, disk in enumerate(members):
            if disk not in disk_names:
                raise ConfigError(f"{where}.disks[{k}]", f"{disk!r} is not a disk in [disks]")
            if disk in owner_of_disk:
                j = owner_of_disk[disk]
                raise ConfigError(
                    f"{where}.disks[{k}]",
                    f"{disk} is already in group {groups[j].name} "
                    f"(group[{j}]); a disk is in one group",
                )
            owner_of_disk[disk] = i
        volumes = _names(table.get("volumes", []), f"{where}.volumes", "disk names")
        for k, disk in enumerate(volumes):
            if disk not in members:
                raise ConfigError(
                    f"{where}.volumes[{k}]", f"{disk!r} is not one of this group's disks"
                )
        export = _export(table.get("export"), f"{where}.export", groups, portals)
        owners = _names(
            table.get("preferred_owners", []), f"{where}.preferred_owners", "node names"
        )
        for k, owner in enumerate(owners):
            if owner not in node_names:
                raise ConfigError(f"{where}.preferred_owners[{k}]", f"{owner!r} is not a node")
        failback, delay = _failback(
            table.get("failback", FailbackMode.NEVER.value), f"{where}.failback"
        )
        threshold = integer_in(
            table.get("restart_threshold", _GROUP_DEFAULTS["restart_threshold"]),
            f"{where}.restart_threshold",
            1,
            MAX_RESTART_THRESHOLD,
        )
        period = positive_seconds(
            table.get("restart_period", _GROUP_DEFAULTS["restart_period"]),
            f"{where}.restart_period",
            WEEK,
        )
        floating = _floating(table.get("floating", False), export, f"{where}.floating")
        groups.append(
            GroupSpec(
                name, members, volumes, export, owners, failback, delay, threshold, period, floating
            )
        )
    return tuple(groups)


def _export(
    value: object,
    where: str,
    groups: list[GroupSpec],
    portals: tuple[tuple[str, int], ...],
) -> tuple[str, int] | None:
    if value is None:
        return None
    text = _string(value, where, "HOST:PORT")
    export = parse_address(text, where)
    if export in portals:
        raise ConfigError(where, f"{text} is a storage portal")
    for j, other in enumerate(groups):
        if other.export == export:
            raise ConfigError(where, f"{text} is also group {other.name}'s export (group[{j}])")
    return export


def _floating(value: object, export: tuple[str, int] | None, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(where, "must be true or false")
    if not value:
        return False
    if export is None:
        raise ConfigError(where, "a floating address needs the group's export")
    try:
        address = ipaddress.IPv4Address(export[0])
    except ValueError:
        raise ConfigError(
            where, f"{export[0]} is not an IPv4 address (a floating address is announced by ARP)"
        ) from None
    if address.is_loopback or address.is_multicast or address.is_unspecified:
        raise ConfigError(
            where, f"{address} cannot float: every node has it, or no interface can take it"
        )
    return True


def _failback(value: object, where: str) -> tuple[FailbackMode, float]:
    if value == FailbackMode.NEVER.value:
        return FailbackMode.NEVER, 0.0
    if value == FailbackMode.IMMEDIATE.value:
        return FailbackMode.IMMEDIATE, 0.0
    if isinstance(value, str):
        raise ConfigError(
            where, f'{value!r} is not "never", "immediate" or a number of seconds above 0'
        )
    return FailbackMode.DELAYED, positive_seconds(value, where, WEEK)


# -- values ------------------------------------------------------------------------------------


def _string(value: object, where: str, what: str) -> str:
    if value is None:
        raise ConfigError(where, f"is required ({what})")
    if not isinstance(value, str):
        raise ConfigError(where, f"{value!r} is not a string ({what})")
    return value


def _simple_name(value: object, where: str) -> str:
    text = _string(value, where, "a name")
    if not _SIMPLE_NAME.match(text):
        raise ConfigError(
            where,
            f"{text!r} is not a simple name (letters, digits, '.', '_', '-'; "
            "a letter or digit first; at most 63)",
        )
    return text


def _names(value: object, where: str, what: str, *, required: bool = False) -> tuple[str, ...]:
    if value is None and required:
        raise ConfigError(where, f"is required (a list of {what})")
    if not isinstance(value, list) or (required and not value):
        raise ConfigError(
            where,
            f"must be a non-empty list of {what}" if required else f"must be a list of {what}",
        )
    names: list[str] = []
    for k, item in enumerate(value):
        name = _string(item, f"{where}[{k}]", what.removesuffix("s"))
        if name in names:
            raise ConfigError(f"{where}[{k}]", f"{name} is listed twice")
        names.append(name)
    return tuple(names)


def _path(value: object, where: str) -> Path:
    text = _string(value, where, "a path")
    if not text or "\0" in text:
        raise ConfigError(where, "must be a non-empty path without NUL")
    return Path(text)
