"""The simulated cluster nodes a validation run is made of, and what every test shares.

Each ``Node`` is a host in miniature, built from the host's and multipath's own pieces: its
own initiator name, a ``SessionPool`` with ISIDs of its own (``host/isids.py``, kept in
memory), one shared session per portal, and one ``MultipathDevice`` per LUN over those
sessions (paths grouped by VPD 0x83, our key registered on every path, as the host does).
For arbitration each node has the cluster's own ``DiskArbiter`` per LUN and a
``DiskExecutor`` on a PR ``WorkQueue`` of its own (``cluster/disks.py``), so the tests
exercise exactly what ``sanstack cluster node`` runs. The key of each node is
``cluster.keys.node_key`` of a cluster name drawn at random per run (KB 2488012: WSFC's
validation uses a random key so two runs never meet each other's keys).

``Validation`` is the run's shared state: the settings, the nodes, the clock, and the
one way back to a clean LUN (``clean``) every PR test starts and ends with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field

from sanstack.block.device import BlockDeviceError, DeviceNotReady
from sanstack.cluster.arbitration import DiskArbiter
from sanstack.cluster.disks import DiskExecutor
from sanstack.cluster.keys import format_key, node_key
from sanstack.cluster.work_queue import WorkQueue
from sanstack.host.isids import IsidStore
from sanstack.host.sessions import SessionOptions, SessionPool, SessionState, SharedSession
from sanstack.initiator.lun_device import ISCSIDevice
from sanstack.mpio.device import MultipathDevice
from sanstack.mpio.no_path import NoPathPolicy, NoPathRetry
from sanstack.mpio.path_slot import MultipathOptions, PathAddress
from sanstack.scsi.pr_codec import PROutServiceAction
from sanstack.validate import scsi_probe
from sanstack.validate.model import RunSettings

log = logging.getLogger(__name__)

LOGIN_WAIT = 10.0
MAP_OPEN_WAIT = 30.0
PR_BOUND = 10.0
SESSION_OPTIONS = SessionOptions(
    nop_interval=1.0,
    nop_timeout=3.0,
    login_timeout=5.0,
    command_timeout=10.0,
    reconnect_min=0.1,
    reconnect_max=1.0,
)
MAP_OPTIONS = MultipathOptions(no_path_retry=NoPathRetry(NoPathPolicy.QUEUE_FOR, 10.0))


@dataclass(slots=True)
class Node:
    """One simulated cluster node (module docstring)."""

    name: str
    initiator_name: str
    key: int
    pool: SessionPool
    sessions: list[SharedSession]
    queue: WorkQueue
    executor: DiskExecutor
    maps: dict[int, MultipathDevice] = field(default_factory=dict)
    map_errors: dict[int, str] = field(default_factory=dict)
    arbiters: dict[int, DiskArbiter] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name} (key {format_key(self.key)})"

    def map(self, lun: int) -> MultipathDevice:
        found = self.maps.get(lun)
        if found is None:
            reason = self.map_errors.get(lun, "not opened")
            raise DeviceNotReady(f"{self.name} has no device for LUN {lun}: {reason}")
        return found

    def paths(self, lun: int) -> list[tuple[str, ISCSIDevice]]:
        """(portal, the LUN over that portal's session) for every path that is up now."""
        found = []
        for slot in self.map(lun).slots:
            if slot.device is not None:
                found.append((str(slot.provider.name).rsplit("@", 1)[-1], slot.device))
        return found

    def arbiter(self, lun: int) -> DiskArbiter:
        arbiter = self.arbiters.get(lun)
        if arbiter is None:
            arbiter = self.arbiters[lun] = DiskArbiter(self.key)
        return arbiter

    def forget_arbitration(self, lun: int) -> None:
        self.arbiters.pop(lun, None)

    async def close(self) -> None:
        for device in self.maps.values():
            await device.close()
        await self.queue.close()
        await self.pool.close()


class Validation:
    """The run's shared state (module docstring)."""

    def __init__(self, settings: RunSettings, initiator_base: str) -> None:
        self.settings = settings
        self.initiator_base = initiator_base
        self.cluster = f"sanstack-validate-{secrets.token_hex(4)}"
        self.addresses = [
            PathAddress(host, int(port))
            for host, port in (p.rsplit(":", 1) for p in settings.portals)
        ]
        self.nodes: list[Node] = []
        self.loop = asyncio.get_running_loop()

    @property
    def target(self) -> str:
        return self.settings.target

    @property
    def luns(self) -> tuple[int, ...]:
        return self.settings.luns

    def now(self) -> float:
        return self.loop.time()

    def key_of(self, name: str) -> int:
        return node_key(self.cluster, name)

    # -- nodes -------------------------------------------------------------------------------

    async def open_node(self, index: int) -> Node:
        """Node ``index`` (from 1): logged in through every portal, a map per LUN."""
        name = f"node{index}"
        initiator = f"{self.initiator_base}-{name}"
        pool = SessionPool(initiator, IsidStore(None), SESSION_OPTIONS)
        sessions = [pool.session(self.target, address) for address in self.addresses]
        await asyncio.gather(*(s.wait_up(LOGIN_WAIT) for s in sessions))
        key = self.key_of(name)
        queue = WorkQueue(f"{name} PR", workers=4, capacity=64)
        executor = DiskExecutor(queue, key, self.now, bound=PR_BOUND)
        node = Node(name, initiator, key, pool, sessions, queue, executor)
        for lun in self.luns:
            up = [s for s in sessions if s.state is SessionState.UP]
            try:
                node.maps[lun] = await asyncio.wait_for(
                    MultipathDevice.over(
                        [(s, lun) for s in up], MAP_OPTIONS, target_name=self.target, lun=lun
                    ),
                    MAP_OPEN_WAIT,
                )
            except (BlockDeviceError, TimeoutError) as exc:
                node.map_errors[lun] = str(exc) or "no answer"
        return node

    async def open_nodes(self) -> None:
        opened = await asyncio.gather(
            *(self.open_node(i) for i in range(1, self.settings.nodes + 1)),
            return_exceptions=True,
        )
        for node in opened:
            if isinstance(node, BaseException):
                await self.close()
                raise node
            self.nodes.append(node)

    async def close(self) -> None:
        for node in self.nodes:
            await node.close()
        self.nodes.clear()

    # -- persistent reservations -------------------------------------------------------------

    async def clean(self, lun: int) -> list[str]:
        """Bring ``lun`` back to no registration and no reservation of ours: node 1 takes its
        key on every path and CLEARs; if keys are left (a path it could not reach), every
        node unregisters on every path. Every map forgets its key. What was left, if any."""
        first = self.nodes[0]
        device = first.map(lun)
        with contextlib.suppress(BlockDeviceError):
            await asyncio.wait_for(device.pr_register(first.key), PR_BOUND)
            await asyncio.wait_for(device.pr_clear(), PR_BOUND)
        for node in self.nodes:
            node.forget_arbitration(lun)
            if lun in node.maps:
                node.maps[lun].registration.cleared()
        left = await self.leftovers(lun)
        if left:
            for node in self.nodes:
                for _, path in node.paths(lun):
                    await scsi_probe.prout(
                        path, PROutServiceAction.REGISTER_AND_IGNORE_EXISTING_KEY, sa_key=0
                    )
            left = await self.leftovers(lun)
        return left

    async def leftovers(self, lun: int) -> list[str]:
        """Our keys still registered on ``lun`` and a reservation one of them holds."""
        ours = {n.key: n.name for n in self.nodes}
        _, path = self.nodes[0].paths(lun)[0]
        keys = (await scsi_probe.read_keys(path)).reservation_keys
        reservation = await scsi_probe.read_reservation(path)
        left = [f"{ours[k]}'s key {format_key(k)}" for k in keys if k in ours]
        if reservation.pr_type is not None and reservation.reservation_key in ours:
            left.append(f"a reservation of {ours[reservation.reservation_key]}")
        return left

    async def register_all(self, lun: int, nodes: list[Node] | None = None) -> None:
        """Every node (or ``nodes``) registers its key on every path, as a cluster node
        joining does (REGISTER, then REGISTER AND IGNORE EXISTING KEY where needed)."""
        for node in nodes if nodes is not None else self.nodes:
            await asyncio.wait_for(node.map(lun).pr_register(node.key), PR_BOUND)
