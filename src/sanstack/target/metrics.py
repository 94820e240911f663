"""The target daemon's Prometheus metrics, read from its live state at scrape time (sans-IO).

Per LUN (labels ``target``, ``lun``): the I/O of every command the edge ran
(``scsi/command_stats.py``), PERSISTENT RESERVE IN/OUT commands by service action and
commands answered RESERVATION CONFLICT. Per target: sessions (I_T nexuses logged in now)
and logins. The snapshot volumes the daemon holds (``snapshot/metrics.py``). The series
are listed in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sanstack.block.io_metrics import io_families
from sanstack.scsi.command_stats import PR_SERVICE_ACTIONS
from sanstack.snapshot.metrics import volume_families
from sanstack.snapshot.service import VolumeService
from sanstack.target.registry import TargetRegistry


class TargetCollector:
    """A ``prometheus_client`` collector over one daemon's registry and volumes."""

    def __init__(self, registry: TargetRegistry, volumes: VolumeService | None = None) -> None:
        self.registry = registry
        self.volumes = volumes

    def collect(self) -> Iterable[Metric]:
        targets = list(self.registry.targets.values())
        luns = [
            ((target.name, str(number)), lu)
            for target in targets
            for number, lu in sorted(target.luns.items())
        ]
        yield from io_families(
            "sanstack_target_lun", "LUN", ("target", "lun"), ((k, lu.stats.io) for k, lu in luns)
        )
        pr = CounterMetricFamily(
            "sanstack_target_lun_pr_commands",
            "PERSISTENT RESERVE IN and OUT commands per LUN, by service action",
            labels=["target", "lun", "service_action"],
        )
        conflicts = CounterMetricFamily(
            "sanstack_target_lun_reservation_conflicts",
            "Commands per LUN answered RESERVATION CONFLICT",
            labels=["target", "lun"],
        )
        for key, lu in luns:
            counts = lu.stats.pr
            for opcode, action, name in PR_SERVICE_ACTIONS:
                pr.add_metric([*key, name], counts.get((opcode, action), 0))
            conflicts.add_metric(list(key), lu.stats.conflicts)
        yield pr
        yield conflicts
        sessions = GaugeMetricFamily(
            "sanstack_target_sessions", "I_T nexuses logged in now", labels=["target"]
        )
        logins = CounterMetricFamily(
            "sanstack_target_logins", "Logins of normal sessions' connections", labels=["target"]
        )
        luns_now = GaugeMetricFamily("sanstack_target_luns", "LUNs served", labels=["target"])
        for target in targets:
            sessions.add_metric([target.name], len(list(target.nexuses)))
            logins.add_metric([target.name], target.logins)
            luns_now.add_metric([target.name], len(target.luns))
        yield sessions
        yield logins
        yield luns_now
        if self.volumes is not None:
            held = sorted(self.volumes.held_volumes().items())
            yield from volume_families(("volume",), (((k,), v.info()) for k, v in held))
