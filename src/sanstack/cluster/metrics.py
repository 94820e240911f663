"""A cluster node's Prometheus metrics, read from its live state at scrape time (sans-IO).

Every node exports what it knows (a dashboard or PromQL picks the view it needs, e.g. the
coordinator's, or ``max`` over nodes): membership (the installed view's members and epoch,
which nodes it hears), quorum (whether it has it, the votes), per group its own state (a
state set: one series per ``GroupState``, 1 for the current one), whether it owns the group
by the cluster's claims, the group's I/O through its export while it runs here (the NBD
server's exports summed), how long each onlining step took here (histograms), the
arbitration's PR commands per disk and those that met RESERVATION CONFLICT, the cluster log's
events by kind (fencing among them), and the snapshot volumes of the groups it runs. The
node's multipath maps and sessions come from ``host/metrics.py``'s collector. The series
are listed in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from sanstack.block.io_metrics import io_families, le_text
from sanstack.block.io_stats import IOStats, summed
from sanstack.cluster.arbitration import Action
from sanstack.cluster.events import EventKind
from sanstack.cluster.group_phases import PHASE_NAMES, Durations
from sanstack.cluster.group_state import GroupState
from sanstack.cluster.heartbeat import Claim
from sanstack.cluster.node import ClusterNode
from sanstack.cluster.reconcile import owners_from
from sanstack.snapshot.metrics import volume_families


def _flag(name: str, text: str, value: bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=1 if value else 0)


def _buckets(durations: Durations) -> list[tuple[str, float]]:
    return [(le_text(le), float(count)) for le, count in durations.cumulative()]


class ClusterCollector:
    """A ``prometheus_client`` collector over one started ``ClusterNode``."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    def collect(self) -> Iterable[Metric]:
        yield from self._membership()
        yield from self._groups()
        yield from self._arbitration()
        node = self.node
        yield from volume_families(
            ("group", "volume"),
            (
                ((group, disk), volume.info())
                for group, resources in sorted(node.resources.items())
                for disk, volume in sorted(resources.volumes.items())
            ),
        )

    def _membership(self) -> Iterable[Metric]:
        node = self.node
        view = node.membership.view()
        alive = node.membership.alive()
        quorum, has_quorum = node.quorum_now()
        yield GaugeMetricFamily(
            "sanstack_cluster_members", "Nodes in the installed view", value=len(view.members)
        )
        yield GaugeMetricFamily(
            "sanstack_cluster_view_epoch", "Epoch of the installed view", value=view.epoch
        )
        heard = GaugeMetricFamily(
            "sanstack_cluster_node_alive", "1 if this node hears the node", labels=["node"]
        )
        for name in node.config.node_names:
            heard.add_metric([name], 1 if name in alive else 0)
        yield heard
        yield _flag(
            "sanstack_cluster_has_quorum", "1 if a member of a view with quorum", has_quorum
        )
        yield GaugeMetricFamily(
            "sanstack_cluster_quorum_votes", "Votes of this node's partition", value=quorum.votes
        )
        yield GaugeMetricFamily(
            "sanstack_cluster_quorum_votes_needed", "Votes quorum needs", value=quorum.needed
        )
        yield GaugeMetricFamily(
            "sanstack_cluster_quorum_votes_configured",
            "Votes of the whole cluster (nodes and witness)",
            value=quorum.total,
        )
        yield _flag("sanstack_cluster_paused", "1 if this node is paused (drained)", node.paused)
        yield _flag("sanstack_cluster_fenced", "1 if this node is fenced", node.fenced)

    def _owners(self) -> Mapping[str, str]:
        node = self.node
        view = node.membership.view()
        alive = node.membership.alive()
        claims: dict[str, Mapping[str, Claim]] = {
            name: node.membership.peer(name).claims
            for name in node.config.node_names
            if name in view.members and name in alive
        }
        return owners_from(claims, node.config.node_names)

    def _groups(self) -> Iterable[Metric]:
        node = self.node
        owners = self._owners()
        state = GaugeMetricFamily(
            "sanstack_cluster_group_state",
            "The group's state on this node: 1 for the current one",
            labels=["group", "state"],
        )
        owner = GaugeMetricFamily(
            "sanstack_cluster_group_owner",
            "1 if this node owns the group (the cluster's claims, as in cluster status)",
            labels=["group"],
        )
        phases = HistogramMetricFamily(
            "sanstack_cluster_group_online_phase_duration_seconds",
            "Time each onlining step of the group took on this node",
            labels=["group", "phase"],
        )
        online = HistogramMetricFamily(
            "sanstack_cluster_group_online_duration_seconds",
            "Time the group took on this node from offline (or failed) to online",
            labels=["group"],
        )
        io: list[tuple[tuple[str], IOStats]] = []
        for group in sorted(node.runners):
            runner = node.runners[group]
            for each in GroupState:
                state.add_metric([group, each.name.lower()], 1 if runner.state is each else 0)
            owner.add_metric([group], 1 if owners.get(group) == node.me else 0)
            for phase in PHASE_NAMES:
                durations = runner.phases.phases[phase]
                phases.add_metric([group, phase], _buckets(durations), durations.total)
            whole = runner.phases.online
            online.add_metric([group], _buckets(whole), whole.total)
            server = node.resources[group].server
            io.append(((group,), summed([] if server is None else list(server.stats.values()))))
        yield from (state, owner, phases, online)
        yield from io_families("sanstack_cluster_group", "group", ("group",), io)

    def _arbitration(self) -> Iterable[Metric]:
        node = self.node
        executor = node.executor
        commands = CounterMetricFamily(
            "sanstack_cluster_pr_commands",
            "PR commands of arbitration rounds per disk, by action (read: READ KEYS and "
            "READ RESERVATION)",
            labels=["disk", "action"],
        )
        conflicts = CounterMetricFamily(
            "sanstack_cluster_pr_reservation_conflicts",
            "Arbitration PR commands per disk that met RESERVATION CONFLICT",
            labels=["disk"],
        )
        errors = CounterMetricFamily(
            "sanstack_cluster_pr_errors",
            "Arbitration PR commands per disk that failed otherwise (no path, an error)",
            labels=["disk"],
        )
        for disk in node.config.disks:
            for action in Action:
                label = action.value.replace("-", "_")
                commands.add_metric(
                    [disk.name, label], executor.commands.get((disk.name, action), 0)
                )
            conflicts.add_metric([disk.name], executor.conflicts.get(disk.name, 0))
            errors.add_metric([disk.name], executor.errors.get(disk.name, 0))
        yield from (commands, conflicts, errors)
        counts = node.event_counts()
        events = CounterMetricFamily(
            "sanstack_cluster_events",
            "Events this node logged since it started, by kind (cluster events --json)",
            labels=["kind"],
        )
        for kind in EventKind:
            events.add_metric([kind.value], counts.get(kind, 0))
        yield events
        yield CounterMetricFamily(
            "sanstack_cluster_fencing_events",
            "Times this node found a disk's reservation lost (disk.fenced, WSFC Event 1038)",
            value=counts.get(EventKind.DISK_FENCED, 0),
        )
