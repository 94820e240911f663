"""The host's Prometheus metrics, read from its live state at scrape time (sans-IO).

Per map (labels ``wwid``, ``alias``): its paths by state, the path failures and failovers
(a path failed while another carried the I/O on), the I/O queued for want of a path. Per
shared session (labels ``target``, ``portal``): up or not, logins and failures. And the
I/O of each NBD export (label ``export``) when the host serves NBD (``host run``). A
cluster node exposes its in-process host the same way (without the NBD part). The series
are listed in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sanstack.block.io_metrics import io_families
from sanstack.block.io_stats import IOStats
from sanstack.host.host import Host
from sanstack.host.sessions import SessionState
from sanstack.mpio.paths import PathState
from sanstack.nbd.server import NBDServer


def nbd_families(server: NBDServer) -> list[Metric]:
    """The I/O of every export ``server`` offers now or serves still (its name is the label
    ``export``); one no client chose yet has zeros."""
    names = sorted(set(server.exports) | set(server.stats))
    rows = (((name,), server.stats.get(name) or IOStats()) for name in names)
    return io_families("sanstack_nbd_export", "NBD export", ("export",), rows)


class HostCollector:
    """A ``prometheus_client`` collector over a ``Host`` and its NBD server, if any."""

    def __init__(self, host: Host, nbd: NBDServer | None = None) -> None:
        self.host = host
        self.nbd = nbd

    def collect(self) -> Iterable[Metric]:
        yield from self._maps()
        yield from self._sessions()
        if self.nbd is not None:
            yield from nbd_families(self.nbd)

    def _maps(self) -> Iterable[Metric]:
        labels = ["wwid", "alias"]
        paths = GaugeMetricFamily(
            "sanstack_host_map_paths", "Paths of the map, by state", labels=[*labels, "state"]
        )
        failures = CounterMetricFamily(
            "sanstack_host_map_path_failures",
            "Times a path of the map failed (summed over its paths now)",
            labels=labels,
        )
        failovers = CounterMetricFamily(
            "sanstack_host_map_failovers",
            "Times a path of the map failed while another path carried its I/O on",
            labels=labels,
        )
        queued = GaugeMetricFamily(
            "sanstack_host_map_queued_io",
            "I/O requests of the map waiting for a usable path",
            labels=labels,
        )
        for entry in sorted(self.host.maps.values(), key=lambda e: e.alias):
            key = [entry.wwid, entry.alias]
            device = entry.device
            by_state = dict.fromkeys(PathState, 0)
            total_failures = 0
            for slot in device.slots:
                by_state[slot.path.state] += 1
                total_failures += slot.path.failures
            for state, count in by_state.items():
                paths.add_metric([*key, state.value], count)
            failures.add_metric(key, total_failures)
            failovers.add_metric(key, device.failovers)
            queued.add_metric(key, device.queued)
        return [paths, failures, failovers, queued]

    def _sessions(self) -> Iterable[Metric]:
        labels = ["target", "portal"]
        up = GaugeMetricFamily(
            "sanstack_host_session_up", "1 if the shared session is logged in", labels=labels
        )
        logins = CounterMetricFamily(
            "sanstack_host_session_logins", "Logins of the shared session", labels=labels
        )
        failures = CounterMetricFamily(
            "sanstack_host_session_failures", "Failures of the shared session", labels=labels
        )
        for (target, portal), shared in sorted(
            self.host.pool.sessions.items(), key=lambda item: (item[0][0], str(item[0][1]))
        ):
            key = [target, str(portal)]
            up.add_metric(key, 1 if shared.state is SessionState.UP else 0)
            logins.add_metric(key, shared.logins)
            failures.add_metric(key, shared.failures)
        return [up, logins, failures]
