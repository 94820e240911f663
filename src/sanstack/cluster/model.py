"""What a failover cluster is made of, as the shared configuration file states it: nodes,
disks, groups, the quorum model and the timings (docs/cluster-design.md). Values only;
``cluster.config`` reads and checks the TOML file into these."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


class QuorumModel(Enum):
    NODE_MAJORITY = "node-majority"
    NODE_AND_DISK = "node-and-disk"  # node majority plus a disk witness (WSFC)


class FailbackMode(Enum):
    NEVER = "never"
    IMMEDIATE = "immediate"
    DELAYED = "delayed"  # after ``GroupSpec.failback_delay`` seconds


@dataclass(frozen=True, slots=True)
class Timings:
    """Seconds. Defaults: WSFC's 1 s heartbeat and 3 s DiskArbInterval."""

    heartbeat_interval: float = 1.0
    missed_heartbeats: int = 5  # a node is down after this many heartbeats missed
    arbitration_interval: float = 3.0  # the owner defends every disk this often
    pending_timeout: float = 60.0  # the bound of each online or offline step
    # without quorum, every group stopped within this (with a witness, by default long
    # enough for the race for it: config.witness_race_grace)
    quorum_loss_stop: float = 10.0
    # a group whose disks have had no path this long is stopped here without writes (and
    # moves); I/O waits no longer than this for a path either
    storage_loss_stop: float = 10.0

    @property
    def node_timeout(self) -> float:
        return self.heartbeat_interval * self.missed_heartbeats


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    address: tuple[str, int]  # the cluster (heartbeat) address, UDP
    control: Path  # the node's control socket
    state_dir: Path  # ISIDs, reservation keys, the event log
    key: int  # its 8-byte reservation key (``cluster.keys.node_key``), never 0
    metrics: tuple[str, int] | None = None  # where it serves Prometheus metrics, if anywhere
    # where it takes control requests from its peers, signed (TCP, the cluster network);
    # None: its peers reach it through ``control``, so only on the same machine
    peer_control: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class DiskSpec:
    name: str
    device: str  # the map's WWID (naa.…) or alias (IQN/LUN)


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A group (WSFC role, Pacemaker resource group): disks, the snapshot volumes on some
    of them, and the NBD export only its owner binds."""

    name: str
    disks: tuple[str, ...]
    volumes: tuple[str, ...] = ()  # disks that carry a snapshot volume
    export: tuple[str, int] | None = None
    preferred_owners: tuple[str, ...] = ()
    failback: FailbackMode = FailbackMode.NEVER
    failback_delay: float = 0.0
    restart_threshold: int = 3
    restart_period: float = 900.0
    floating: bool = False  # the export's address is added by the owner (IPaddr2)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    nodes: tuple[NodeSpec, ...]
    disks: tuple[DiskSpec, ...]
    groups: tuple[GroupSpec, ...]
    portals: tuple[tuple[str, int], ...]
    targets: tuple[str, ...] = ()  # only these target IQNs; every discovered one when empty
    quorum: QuorumModel = QuorumModel.NODE_MAJORITY
    witness: str | None = None  # a disk name; its reservation holder has the witness vote
    two_node: bool = False  # two nodes without a witness, accepted knowingly
    timings: Timings = field(default_factory=Timings)
    # the shared secret that signs requests between nodes (``control/peer_auth.py``); read
    # and checked at start (``config.read_secret``), never kept in the config
    secret_file: Path | None = None

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def node_with_key(self, key: int) -> NodeSpec | None:
        """The node whose reservation key ``key`` is (None: another cluster's, or stale)."""
        for node in self.nodes:
            if node.key == key:
                return node
        return None

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(node.name for node in self.nodes)
