"""The node's side of the cluster log: what it writes for each membership change and each PR
command that changed a disk, kept in the ``EventLog`` ring and appended to the event file.

Sans-IO apart from the file (``cluster/event_file.py``); the time of each event is the
wall clock the node passes in (``clock``), so events of several nodes can be compared.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sanstack.cluster.arbitration import Action, Command, CommandOutcome
from sanstack.cluster.event_file import EventFile
from sanstack.cluster.events import ClusterEvent, EventKind, EventLog
from sanstack.cluster.keys import format_key
from sanstack.cluster.membership import (
    MembershipEvent,
    NodeJoined,
    NodeLeft,
    NodePaused,
    NodeRejoined,
    NodeResumed,
    ViewInstalled,
)
from sanstack.cluster.model import ClusterConfig

log = logging.getLogger("sanstack.cluster")


class NodeLog:
    def __init__(self, config: ClusterConfig, me: str, clock: Callable[[], float]) -> None:
        self.config = config
        self.me = me
        self.clock = clock
        self.ring = EventLog()
        self.counts: dict[EventKind, int] = {}  # logged by this process, by kind (metrics)
        self.file = EventFile(config.node(me).state_dir, self.ring.capacity)

    def restore(self) -> None:
        self.ring.restore(self.file.restore())

    def close(self) -> None:
        self.file.close()

    def __call__(self, kind: EventKind, reason: str, **fields: Any) -> None:
        event = self.ring.append(ClusterEvent(self.clock(), self.me, kind, reason, **fields))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.file.append(event)
        log.info("%s: %s", kind.value, reason)

    def name_of(self, key: int | None) -> str | None:
        node = None if key is None else self.config.node_with_key(key)
        return None if node is None else node.name

    def command(
        self,
        disk: str,
        group: str | None,
        command: Command,
        outcome: CommandOutcome,
        detail: str,
    ) -> None:
        """A PR command of an arbitration round ended (READs are not reported here)."""
        if outcome is not CommandOutcome.GOOD:
            log.info("disk %s: %s: %s %s", disk, command.action.value, outcome.value, detail)
            return
        victim = command.service_action_key
        who = self.name_of(victim)
        if command.action is Action.PREEMPT and victim == self.config.node(self.me).key:
            # Not a fencing: a RELEASE missed the nexus holding our reservation (a path
            # down), which now moves to one we reach; the RELEASE that follows is an event.
            log.info("disk %s: our reservation moved to a path we reach, to release it", disk)
        elif command.action is Action.PREEMPT_AND_ABORT:
            self(
                EventKind.DISK_PREEMPTED,
                f"PREEMPT AND ABORT of {who or 'a key of no node'}'s key "
                f"{format_key(victim)}: not a member",
                group=group,
                disk=disk,
                key=victim,
                peer=who,
            )
        elif command.action is Action.PREEMPT:
            self(
                EventKind.DISK_DEFENDED,
                f"registration {format_key(victim)} of a non-member removed",
                group=group,
                disk=disk,
                key=victim,
                peer=who,
            )
        elif command.action is Action.RELEASE:
            own = self.config.node(self.me).key
            self(EventKind.DISK_RELEASED, "released", group=group, disk=disk, key=own)

    def membership(self, event: MembershipEvent) -> None:
        match event:
            case NodeJoined(node=node):
                self(EventKind.JOINED, f"{node} is heard", peer=node)
            case NodeRejoined(node=node, incarnation=new, previous=old):
                self(
                    EventKind.REJOINED,
                    f"{node} restarted (incarnation {new:#x}, was {old:#x})",
                    peer=node,
                )
            case NodeLeft(node=node, reason=reason):
                self(EventKind.LEFT, f"{node} is down: {reason}", peer=node)
            case NodePaused(node=node):
                self(EventKind.PAUSED, f"{node} is paused (draining)", peer=node)
            case NodeResumed(node=node):
                self(EventKind.RESUMED, f"{node} resumed", peer=node)
            case ViewInstalled(epoch=epoch, members=members, coordinator=coordinator):
                ordered = [n for n in self.config.node_names if n in members]
                how = "proposed" if event.proposed else "followed"
                self(
                    EventKind.VIEW,
                    f"members {', '.join(ordered)}; coordinator {coordinator} ({how})",
                    epoch=epoch,
                )
            case _:
                pass
