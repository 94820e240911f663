"""Targets, portal groups and LUNs: the object tree a running target serves.

Names follow LIO's (target, TPG, portal, LUN, ACL). Each iSCSI portal group is one SCSI
target port (RFC 7143 §4.4.2): its tag is the TPGT, and sanstack also uses it as the
relative target port identifier and the ALUA target port group of that port, so two
portals in two groups are two paths a multipath initiator can tell apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sanstack.block.device import BlockDevice, DeviceIdentity
from sanstack.config_checks import parse_address
from sanstack.errors import ConfigError
from sanstack.iscsi.chap import ChapCredentials
from sanstack.scsi.alua import ALUAGroups, announce_state_change
from sanstack.scsi.alua_codec import ALUAState
from sanstack.scsi.command import Nexus
from sanstack.scsi.logical_unit import LogicalUnit, ReservationStore, TargetInfo
from sanstack.scsi.pr import TargetPort

MAX_LUNS = 16384


@dataclass(frozen=True, slots=True)
class Portal:
    """A listening address of a portal group."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, text: str, *, field_name: str = "portal") -> Portal:
        """``HOST:PORT``; port 0 listens on any free port."""
        return cls(*parse_address(text, field_name, any_port=True))


@dataclass(slots=True)
class PortalGroup:
    """An iSCSI target portal group: one SCSI target port with one or more portals."""

    tag: int
    portals: list[Portal]
    enabled: bool = True


@dataclass(slots=True)
class Target:
    """An iSCSI target: a name, its portal groups, its LUNs and who may log in."""

    name: str
    portal_groups: list[PortalGroup]
    alias: str = ""
    allowed_initiators: frozenset[str] | None = None
    chap: ChapCredentials | None = None
    # Where a LUN's persistent reservations outlive a restart (APTPL), given its device's
    # identity (``target/state_store.py``); None keeps them in memory only.
    reservation_store_for: Callable[[DeviceIdentity], ReservationStore] | None = None
    luns: dict[int, LogicalUnit] = field(default_factory=dict)
    _nexuses: dict[Nexus, int] = field(default_factory=dict)
    logins: int = field(default=0, init=False)  # of normal sessions' connections, ever
    info: TargetInfo = field(init=False)

    def __post_init__(self) -> None:
        # One ALUA target port group per portal group: group id = TPGT = relative port id.
        alua = ALUAGroups.one_per_port([group.tag for group in self.portal_groups])
        alua.on_change = lambda requester: announce_state_change(
            self.luns.values(), requester=requester
        )
        self.info = TargetInfo(
            target_name=self.name,
            lun_numbers=lambda: sorted(self.luns),
            active_nexuses=lambda: list(self._nexuses),
            port_group_id=lambda nexus: alua.group_id_of_port(nexus.relative_target_port_id),
            alua=alua,
            target_ports=lambda: [
                TargetPort(group.tag, self.name, group.tag) for group in self.portal_groups
            ],
        )

    @property
    def alua(self) -> ALUAGroups:
        return self.info.alua

    def set_alua_state(self, tag: int, state: ALUAState) -> bool:
        """An operator's (implicit) ALUA change of a portal group; True if it changed.

        ASYMMETRIC ACCESS STATE CHANGED goes to every I_T nexus of every LUN (SPC-4 §5.16.2.6).
        """
        group_id = self.alua.group_id_of_port(tag)
        if not self.alua.set_state(group_id, state, explicit=False):
            return False
        announce_state_change(self.luns.values())
        return True

    def add_lun(self, number: int, device: BlockDevice) -> LogicalUnit:
        if not 0 <= number < MAX_LUNS:
            raise ConfigError("lun", f"LUN {number} is outside 0..{MAX_LUNS - 1}")
        if number in self.luns:
            raise ConfigError("lun", f"LUN {number} of {self.name} is defined twice")
        store_for = self.reservation_store_for
        store = None if store_for is None else store_for(device.identity)
        lu = LogicalUnit(number, device, self.info, store)
        self.luns[number] = lu
        return lu

    def portal_group(self, tag: int) -> PortalGroup | None:
        return next((g for g in self.portal_groups if g.tag == tag), None)

    def group_serving(self, portal: Portal) -> PortalGroup | None:
        """The enabled portal group through which a login on ``portal`` reaches us."""
        return next((g for g in self.portal_groups if g.enabled and portal in g.portals), None)

    def initiator_allowed(self, initiator_name: str) -> bool:
        return self.allowed_initiators is None or initiator_name in self.allowed_initiators

    # -- nexus bookkeeping (unit attentions go to live nexuses) ------------------------------

    def nexus_up(self, nexus: Nexus) -> None:
        self.logins += 1
        self._nexuses[nexus] = self._nexuses.get(nexus, 0) + 1

    def nexus_down(self, nexus: Nexus) -> None:
        count = self._nexuses.get(nexus, 0) - 1
        if count > 0:
            self._nexuses[nexus] = count
            return
        self._nexuses.pop(nexus, None)
        for lu in self.luns.values():
            lu.nexus_lost(nexus)

    @property
    def nexuses(self) -> Iterable[Nexus]:
        return list(self._nexuses)

    def send_targets_entries(self) -> list[str]:
        """``host:port,tpgt`` for every portal of every enabled group (RFC 7143 §7)."""
        return [
            f"{portal},{group.tag}"
            for group in self.portal_groups
            if group.enabled
            for portal in group.portals
        ]
