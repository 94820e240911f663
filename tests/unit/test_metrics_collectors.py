"""The Prometheus collectors read the daemons' live counters (docs/metrics.md): each
collector's text is parsed back with ``prometheus_client``'s parser and checked series by
series; the per-LUN command counts, the group phase times and the endpoint itself."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample
from tests.support.fake_volume import FakeFiles

from sanstack.block.io_metrics import io_families
from sanstack.block.io_stats import IOKind, IOStats
from sanstack.block.memory import MemoryDevice
from sanstack.cli.common import metrics_address
from sanstack.cluster.arbitration import Action
from sanstack.cluster.events import EventKind
from sanstack.cluster.group_phases import PHASE_BUCKETS, GroupPhases
from sanstack.cluster.group_state import GroupState
from sanstack.cluster.heartbeat import Claim, ClaimState
from sanstack.cluster.metrics import ClusterCollector
from sanstack.cluster.node import ClusterNode
from sanstack.cluster.quorum import QuorumState
from sanstack.control.metrics_http import MetricsServer, metrics_registry
from sanstack.errors import ConfigError
from sanstack.host.config import parse_host_config
from sanstack.nbd.server import NBDServer
from sanstack.scsi.codes import Opcode, Status
from sanstack.scsi.command import Command, CommandResult, Nexus
from sanstack.scsi.command_stats import CommandStats
from sanstack.scsi.pr_codec import PROutServiceAction
from sanstack.snapshot.service import VolumeService
from sanstack.target.metrics import TargetCollector
from sanstack.target.model import Portal, PortalGroup, Target
from sanstack.target.registry import TargetRegistry

IQN = "iqn.2026-11.org.sanstack:metrics"
NEXUS = Nexus("iqn.2026-11.org.example:host", 1, IQN, 1)


def scrape(*collectors: Collector) -> dict[str, list[Sample]]:
    """Every sample of the collectors' text, by family name (as the parser names them)."""
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    text = generate_latest(registry).decode()
    return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


def value(families: dict[str, list[Sample]], sample: str, **labels: str) -> float:
    """The one sample named ``sample`` whose labels include ``labels``."""
    found = [
        s.value
        for samples in families.values()
        for s in samples
        if s.name == sample and labels.items() <= s.labels.items()
    ]
    assert len(found) == 1, (sample, labels, found)
    return found[0]


class Families:
    def __init__(self, metrics: Iterable[Any]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterable[Any]:
        return self.metrics


# -- the I/O families and the LUN's command counts ------------------------------------------


def test_io_families_are_counters_and_a_cumulative_histogram_per_op() -> None:
    stats = IOStats()
    stats.record(IOKind.READ, 4096, 0.0002)
    stats.record(IOKind.READ, 8192, 0.003)
    stats.record(IOKind.WRITE, 512, 20.0, ok=False)
    got = scrape(Families(io_families("sanstack_x", "disk", ("disk",), [(("d1",), stats)])))
    assert value(got, "sanstack_x_io_operations_total", disk="d1", op="read") == 2
    assert value(got, "sanstack_x_io_bytes_total", disk="d1", op="read") == 12288
    assert value(got, "sanstack_x_io_errors_total", disk="d1", op="write") == 1
    assert value(got, "sanstack_x_io_bytes_total", disk="d1", op="write") == 0
    assert value(got, "sanstack_x_io_operations_total", disk="d1", op="flush") == 0
    bucket = "sanstack_x_io_duration_seconds_bucket"
    assert value(got, bucket, op="read", le="0.00025") == 1
    assert value(got, bucket, op="read", le="0.005") == 2
    assert value(got, bucket, op="write", le="10.0") == 0
    assert value(got, bucket, op="write", le="+Inf") == 1
    assert value(got, "sanstack_x_io_duration_seconds_count", op="read") == 2
    assert value(got, "sanstack_x_io_duration_seconds_sum", op="read") == pytest.approx(0.0032)


def command(cdb: bytes, data_out: bytes = b"") -> Command:
    return Command(NEXUS, 0, cdb, data_out=data_out)


def test_each_command_is_one_record_of_its_kind() -> None:
    stats = CommandStats()
    read = command(bytes([Opcode.READ_10]) + bytes(9))
    stats.record(read, CommandResult(data=bytes(4096)), 0.001)
    write = command(bytes([Opcode.WRITE_16]) + bytes(15), bytes(8192))
    stats.record(write, CommandResult(), 0.002)
    stats.record(command(bytes([Opcode.SYNCHRONIZE_CACHE_10]) + bytes(9)), CommandResult(), 0.0)
    stats.record(command(bytes([Opcode.UNMAP]) + bytes(9)), CommandResult(), 0.0)
    same_unmap = command(bytes([Opcode.WRITE_SAME_16, 0x08]) + bytes(14), bytes(512))
    stats.record(same_unmap, CommandResult(), 0.0)
    stats.record(command(bytes([Opcode.INQUIRY]) + bytes(5)), CommandResult(data=bytes(36)), 0.0)
    register = bytes([Opcode.PERSISTENT_RESERVE_OUT, PROutServiceAction.REGISTER]) + bytes(8)
    stats.record(command(register), CommandResult(), 0.0)
    conflict = CommandResult(status=Status.RESERVATION_CONFLICT)
    stats.record(write, conflict, 0.0)
    stats.record(read, None, 0.5)  # aborted
    kinds = stats.io.kinds
    assert (kinds[IOKind.READ].ops, kinds[IOKind.READ].bytes, kinds[IOKind.READ].errors) == (
        2,
        4096,
        1,
    )
    assert (kinds[IOKind.WRITE].ops, kinds[IOKind.WRITE].bytes, kinds[IOKind.WRITE].errors) == (
        2,
        8192,
        1,
    )
    assert kinds[IOKind.FLUSH].ops == 1
    assert kinds[IOKind.UNMAP].ops == 2  # UNMAP and WRITE SAME with UNMAP
    assert kinds[IOKind.OTHER].ops == 2  # INQUIRY, PR OUT
    assert stats.pr == {(Opcode.PERSISTENT_RESERVE_OUT, PROutServiceAction.REGISTER): 1}
    assert stats.conflicts == 1


# -- the target ---------------------------------------------------------------------------------


def test_target_collector_reads_luns_sessions_logins_and_volumes(tmp_path: Path) -> None:
    async def main() -> None:
        target = Target(IQN, [PortalGroup(1, [Portal("127.0.0.1", 3260)])])
        lu = target.add_lun(3, MemoryDevice(2048))
        registry = TargetRegistry([target])
        target.nexus_up(NEXUS)
        read = command(bytes([Opcode.READ_10]) + bytes(9))
        lu.stats.record(read, CommandResult(data=bytes(512)), 0.004)
        reserve = bytes([Opcode.PERSISTENT_RESERVE_OUT, PROutServiceAction.RESERVE]) + bytes(8)
        lu.stats.record(command(reserve), CommandResult(), 0.0)
        lu.stats.record(read, CommandResult(status=Status.RESERVATION_CONFLICT), 0.0)
        volumes = VolumeService(opener=FakeFiles())
        await volumes.acquire_volume(tmp_path / "v.img")
        got = scrape(TargetCollector(registry, volumes))
        lun = {"target": IQN, "lun": "3"}
        assert value(got, "sanstack_target_lun_io_operations_total", op="read", **lun) == 2
        assert value(got, "sanstack_target_lun_io_bytes_total", op="read", **lun) == 512
        assert value(got, "sanstack_target_lun_io_errors_total", op="read", **lun) == 1
        pr = "sanstack_target_lun_pr_commands_total"
        assert value(got, pr, service_action="reserve", **lun) == 1
        assert value(got, pr, service_action="read_keys", **lun) == 0
        assert value(got, "sanstack_target_lun_reservation_conflicts_total", **lun) == 1
        assert value(got, "sanstack_target_sessions", target=IQN) == 1
        assert value(got, "sanstack_target_logins_total", target=IQN) == 1
        assert value(got, "sanstack_target_luns", target=IQN) == 1
        volume = {"volume": str((tmp_path / "v.img").resolve())}
        assert value(got, "sanstack_snapshot_volume_snapshots", **volume) == 0
        assert value(got, "sanstack_snapshot_volume_size_bytes", **volume) > 0
        target.nexus_down(NEXUS)
        assert value(scrape(TargetCollector(registry)), "sanstack_target_sessions") == 0
        await volumes.close()

    asyncio.run(main())


# -- the host's NBD exports -----------------------------------------------------------------


def test_nbd_exports_offered_show_zeros_until_used() -> None:
    from sanstack.host.metrics import nbd_families

    server = NBDServer({"a": MemoryDevice(64), "b": MemoryDevice(64)}, "127.0.0.1", 0)
    server.stats_for("b").record(IOKind.WRITE, 4096, 0.001)
    got = scrape(Families(nbd_families(server)))
    assert value(got, "sanstack_nbd_export_io_operations_total", export="a", op="write") == 0
    assert value(got, "sanstack_nbd_export_io_bytes_total", export="b", op="write") == 4096


# -- the cluster node -----------------------------------------------------------------------


def test_group_phases_time_each_onlining_step_and_the_whole_way() -> None:
    phases = GroupPhases()
    steps = [
        (GroupState.OFFLINE, GroupState.ONLINING_DISKS, 10.0),
        (GroupState.ONLINING_DISKS, GroupState.ONLINING_VOLUMES, 13.0),
        (GroupState.ONLINING_VOLUMES, GroupState.ONLINING_EXPORT, 13.5),
        (GroupState.ONLINING_EXPORT, GroupState.ONLINE, 13.6),
        # a failed attempt adds nothing but its successful steps
        (GroupState.ONLINE, GroupState.OFFLINING_EXPORT, 20.0),
        (GroupState.OFFLINING_EXPORT, GroupState.OFFLINING_VOLUMES, 20.1),
        (GroupState.OFFLINING_VOLUMES, GroupState.RELEASING_DISKS, 20.2),
        (GroupState.RELEASING_DISKS, GroupState.OFFLINE, 20.3),
        (GroupState.OFFLINE, GroupState.ONLINING_DISKS, 30.0),
        (GroupState.ONLINING_DISKS, GroupState.RELEASING_DISKS, 90.0),
        (GroupState.RELEASING_DISKS, GroupState.FAILED, 90.5),
    ]
    for old, new, now in steps:
        phases.changed(old, new, now)
    assert phases.phases["disks"].count == 1
    assert phases.phases["disks"].total == pytest.approx(3.0)
    assert phases.phases["volumes"].total == pytest.approx(0.5)
    assert phases.phases["export"].total == pytest.approx(0.1)
    assert phases.online.count == 1 and phases.online.total == pytest.approx(3.6)
    cumulative = dict(phases.phases["disks"].cumulative())
    assert cumulative[2.5] == 0 and cumulative[5.0] == 1 and cumulative[float("inf")] == 1
    assert len(cumulative) == len(PHASE_BUCKETS) + 1


def fake_node() -> ClusterNode:
    """What ``ClusterCollector`` reads of a started node, without starting one."""
    runner = SimpleNamespace(state=GroupState.ONLINE, phases=GroupPhases())
    runner.phases.changed(GroupState.OFFLINE, GroupState.ONLINING_DISKS, 0.0)
    runner.phases.changed(GroupState.ONLINING_DISKS, GroupState.ONLINING_VOLUMES, 2.0)
    server = SimpleNamespace(stats={"d1": IOStats(), "d2": IOStats()})
    server.stats["d1"].record(IOKind.WRITE, 4096, 0.01)
    server.stats["d2"].record(IOKind.WRITE, 512, 0.01)
    claims = {"g1": Claim(ClaimState.ONLINE, 3)}
    peers = {
        "n1": SimpleNamespace(claims=claims),
        "n2": SimpleNamespace(claims={}),
    }
    membership = SimpleNamespace(
        view=lambda: SimpleNamespace(members=frozenset({"n1", "n2"}), epoch=7),
        alive=lambda: frozenset({"n1", "n2"}),
        peer=lambda name: peers[name],
    )
    quorum = QuorumState(True, 2, 2, 3, frozenset({"n1", "n2"}), None, False)
    executor = SimpleNamespace(
        commands={("d1", Action.RESERVE): 2, ("d1", Action.READ): 5},
        conflicts={"d1": 1},
        errors={},
    )
    node = SimpleNamespace(
        me="n1",
        config=SimpleNamespace(
            node_names=("n1", "n2", "n3"),
            disks=(SimpleNamespace(name="d1"), SimpleNamespace(name="d2")),
        ),
        membership=membership,
        quorum_now=lambda: (quorum, True),
        paused=False,
        fenced=False,
        runners={"g1": runner},
        resources={"g1": SimpleNamespace(server=server, volumes={})},
        executor=executor,
        event_counts=lambda: {EventKind.DISK_FENCED: 1, EventKind.VIEW: 4},
    )
    return cast(ClusterNode, node)


def test_cluster_collector_reads_membership_quorum_groups_and_arbitration() -> None:
    got = scrape(ClusterCollector(fake_node()))
    assert value(got, "sanstack_cluster_members") == 2
    assert value(got, "sanstack_cluster_view_epoch") == 7
    assert value(got, "sanstack_cluster_node_alive", node="n3") == 0
    assert value(got, "sanstack_cluster_has_quorum") == 1
    assert value(got, "sanstack_cluster_quorum_votes") == 2
    assert value(got, "sanstack_cluster_quorum_votes_configured") == 3
    assert value(got, "sanstack_cluster_group_state", group="g1", state="online") == 1
    assert value(got, "sanstack_cluster_group_state", group="g1", state="offline") == 0
    assert value(got, "sanstack_cluster_group_owner", group="g1") == 1
    assert value(got, "sanstack_cluster_group_io_operations_total", group="g1", op="write") == 2
    assert value(got, "sanstack_cluster_group_io_bytes_total", group="g1", op="write") == 4608
    phase = "sanstack_cluster_group_online_phase_duration_seconds"
    assert value(got, f"{phase}_count", group="g1", phase="disks") == 1
    assert value(got, f"{phase}_sum", group="g1", phase="disks") == 2.0
    assert value(got, f"{phase}_count", group="g1", phase="export") == 0
    assert value(got, "sanstack_cluster_group_online_duration_seconds_count", group="g1") == 0
    commands = "sanstack_cluster_pr_commands_total"
    assert value(got, commands, disk="d1", action="reserve") == 2
    assert value(got, commands, disk="d1", action="preempt_and_abort") == 0
    assert value(got, "sanstack_cluster_pr_reservation_conflicts_total", disk="d1") == 1
    assert value(got, "sanstack_cluster_events_total", kind="membership.view") == 4
    assert value(got, "sanstack_cluster_fencing_events_total") == 1


# -- the endpoint and its address -------------------------------------------------------------


def test_the_endpoint_serves_the_text_format_on_a_free_port() -> None:
    stats = IOStats()

    async def main() -> None:
        families = Families(io_families("sanstack_y", "disk", ("disk",), [(("d",), stats)]))
        server = MetricsServer(("127.0.0.1", 0), metrics_registry("test", [families]))
        await server.start()
        try:
            assert server.port != 0 and server.url.endswith(f":{server.port}/metrics")
            text, content_type = await asyncio.to_thread(fetch, server.url)
            assert content_type.startswith("text/plain")
            got = {f.name: f for f in text_string_to_metric_families(text)}
            assert got["sanstack_daemon_info"].samples[0].labels["daemon"] == "test"
            assert "sanstack_y_io_operations" in got
            with pytest.raises(urllib.error.HTTPError) as missing:
                await asyncio.to_thread(fetch, server.url.replace("/metrics", "/other"))
            assert missing.value.code == 404
        finally:
            await server.close()

    asyncio.run(main())


def fetch(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode(), answer.headers["Content-Type"]


def test_a_bad_metrics_address_is_one_line_naming_its_field() -> None:
    assert metrics_address(None) is None
    assert metrics_address("127.0.0.1:0") == ("127.0.0.1", 0)
    with pytest.raises(ConfigError, match=r"--metrics: port 'x' in '1\.2\.3\.4:x'"):
        metrics_address("1.2.3.4:x")
    base = {"name": "h", "portals": ["127.0.0.1:3260"], "nbd": "127.0.0.1:0"}
    parsed = parse_host_config({"host": {**base, "metrics": "127.0.0.1:9101"}})
    assert parsed.metrics == ("127.0.0.1", 9101)
    assert parse_host_config({"host": base}).metrics is None
    with pytest.raises(ConfigError, match=r"host\.metrics: 'nope' is not HOST:PORT"):
        parse_host_config({"host": {**base, "metrics": "nope"}})
