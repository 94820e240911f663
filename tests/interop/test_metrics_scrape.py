"""Issue 12 item 3 with real processes: ``/metrics`` on a target, a host and a cluster node.

Each daemon runs with ``--metrics 127.0.0.1:0`` (the cluster node with ``metrics`` in its
``[[node]]`` table) and names the bound address on its ready line. Each is scraped with a
plain HTTP GET (urllib, and curl) and parsed with ``prometheus_client``'s text parser: the
series of docs/metrics.md are there, and the counters move under I/O through the host's
NBD export (target LUN, host export) and through the cluster group's export (group I/O);
the group's arbitration shows in the node's and the target's PR counters.
"""

from __future__ import annotations

import re
import shutil
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tests.support.cluster_nodes import GroupDef, group_of, running_cluster, write_config
from tests.support.cluster_volumes import write_range
from tests.support.processes import (
    free_port,
    run_tool,
    running_host,
    running_target,
    sanstack_command,
)
from tests.support.waits import wait_until

pytestmark = pytest.mark.interop

HOST_IQN = "iqn.2026-11.org.sanstack:metrics-host"
CLUSTER_IQN = "iqn.2026-11.org.sanstack:metrics-cluster"
SETTLE = 60.0
MiB = 1 << 20


def metrics_url(ready: bytes) -> str:
    found = re.search(rb"metrics (http://\S+/metrics)", ready)
    assert found is not None, ready
    return found.group(1).decode()


Samples = list[Sample]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: Samples, name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def names(samples: Samples) -> set[str]:
    return {s.name for s in samples}


def moved(url: str, name: str, above: float, what: str, **labels: str) -> Samples:
    """Scrape until ``name`` (with ``labels``) is above ``above``; the last scrape."""
    seen: list[Samples] = []

    def check() -> bool:
        seen[:] = [scrape(url)]
        return value(seen[0], name, **labels) > above

    wait_until(check, 30.0, what)
    return seen[0]


def curl_works(url: str) -> None:
    if shutil.which("curl") is None:
        return
    done = run_tool(["curl", "-sS", "--max-time", "10", url], timeout=30)
    assert "# TYPE sanstack_daemon_info gauge" in done.stdout


def test_target_host_and_cluster_node_metrics_move_under_load(tmp_path: Path) -> None:
    host_portal = free_port()
    with running_target(
        tmp_path, HOST_IQN, [host_portal], ["memory:16M"], extra=["--metrics", "127.0.0.1:0"]
    ) as target:
        target_url = metrics_url(target.ready_line)
        nbd_port = free_port()
        with running_host(
            tmp_path, "metrics-host", [host_portal], nbd_port, extra=["--metrics", "127.0.0.1:0"]
        ) as host:
            host_url = metrics_url(host.ready_line)
            check_target_and_host(target_url, host_url, nbd_port)
        check_cluster_node(tmp_path)


def check_target_and_host(target_url: str, host_url: str, nbd_port: int) -> None:
    lun = {"target": HOST_IQN, "lun": "0"}
    before = scrape(target_url)
    assert value(before, "sanstack_target_sessions", target=HOST_IQN) == 1
    assert value(before, "sanstack_target_logins_total", target=HOST_IQN) >= 1
    assert value(before, "sanstack_daemon_info", daemon="target") == 1
    for series in (
        "sanstack_target_lun_io_errors_total",
        "sanstack_target_lun_io_bytes_total",
        "sanstack_target_lun_io_duration_seconds_bucket",
        "sanstack_target_lun_pr_commands_total",
        "sanstack_target_lun_reservation_conflicts_total",
    ):
        assert series in names(before), series
    writes = value(before, "sanstack_target_lun_io_operations_total", op="write", **lun)

    alias = f"{HOST_IQN}/0"
    host_before = scrape(host_url)
    assert value(host_before, "sanstack_host_map_paths", alias=alias, state="active") == 1
    assert value(host_before, "sanstack_host_map_paths", alias=alias, state="failed") == 0
    assert value(host_before, "sanstack_host_map_failovers_total", alias=alias) == 0
    assert value(host_before, "sanstack_host_map_path_failures_total", alias=alias) == 0
    assert value(host_before, "sanstack_host_map_queued_io", alias=alias) == 0
    assert value(host_before, "sanstack_host_session_up", target=HOST_IQN) == 1
    exported = value(host_before, "sanstack_nbd_export_io_bytes_total", export=alias, op="write")

    write_range(("127.0.0.1", nbd_port), alias, 0, bytes(range(256)) * (4 * MiB // 256))
    after = moved(
        target_url,
        "sanstack_target_lun_io_operations_total",
        writes,
        "the target counted the writes",
        op="write",
        **lun,
    )
    assert value(after, "sanstack_target_lun_io_bytes_total", op="write", **lun) >= 4 * MiB
    assert value(after, "sanstack_target_lun_io_operations_total", op="flush", **lun) >= 1
    count = value(after, "sanstack_target_lun_io_duration_seconds_count", op="write", **lun)
    assert count == value(after, "sanstack_target_lun_io_operations_total", op="write", **lun)
    host_after = scrape(host_url)
    wrote = value(host_after, "sanstack_nbd_export_io_bytes_total", export=alias, op="write")
    assert wrote - exported == 4 * MiB
    curl_works(target_url)
    curl_works(host_url)


def check_cluster_node(tmp_path: Path) -> None:
    directory = tmp_path / "cluster"
    directory.mkdir()
    portals = [free_port(), free_port()]
    volume = directory / "d1.img"
    run_tool([*sanstack_command(), "volume", "format", str(volume), "--size", "64M"])
    luns = ["memory:1M", f"{volume}:64M", "memory:4M"]
    extra = ["--metrics", "127.0.0.1:0"]
    with running_target(directory, CLUSTER_IQN, portals, luns, extra=extra) as target:
        target_url = metrics_url(target.ready_line)
        export = ("127.0.0.1", free_port())
        g1 = GroupDef("g1", ["d1", "d2"], export, ["n1"], volumes=["d1"])
        config = write_config(
            directory,
            cluster="metrics-test",
            nodes=("n1",),
            portals=portals,
            iqn=CLUSTER_IQN,
            disks={"d1": 1, "d2": 2},
            groups=[g1],
        )
        with_metrics(config, "n1", "127.0.0.1:0")
        with running_cluster(directory, config, ("n1",)) as nodes:
            node_url = metrics_url(nodes.processes["n1"].ready_line)
            nodes.wait_status(
                "n1", lambda s: group_of(s, "g1")["state"] == "online", SETTLE, "g1 online"
            )
            check_node(node_url, export)
            curl_works(node_url)
        pr = scrape(target_url)
        lun1 = {"target": CLUSTER_IQN, "lun": "1"}
        reserves = value(
            pr, "sanstack_target_lun_pr_commands_total", service_action="reserve", **lun1
        )
        assert reserves >= 1


def with_metrics(config: Path, node: str, address: str) -> None:
    """``metrics = ADDRESS`` in ``node``'s ``[[node]]`` table."""
    text = config.read_text()
    table = f'[[node]]\nname = "{node}"\n'
    assert table in text
    config.write_text(text.replace(table, f'{table}metrics = "{address}"\n'))


def check_node(url: str, export: tuple[str, int]) -> None:
    samples = scrape(url)
    assert value(samples, "sanstack_daemon_info", daemon="cluster-node") == 1
    assert value(samples, "sanstack_cluster_members") == 1
    assert value(samples, "sanstack_cluster_view_epoch") >= 0  # one node: its first view
    assert value(samples, "sanstack_cluster_has_quorum") == 1
    assert value(samples, "sanstack_cluster_quorum_votes") == 1
    assert value(samples, "sanstack_cluster_quorum_votes_configured") == 1
    assert value(samples, "sanstack_cluster_group_state", group="g1", state="online") == 1
    assert value(samples, "sanstack_cluster_group_state", group="g1", state="offline") == 0
    assert value(samples, "sanstack_cluster_group_owner", group="g1") == 1
    phase = "sanstack_cluster_group_online_phase_duration_seconds_count"
    for step in ("disks", "volumes", "export"):
        assert value(samples, phase, group="g1", phase=step) == 1, step
    online = "sanstack_cluster_group_online_duration_seconds_count"
    assert value(samples, online, group="g1") == 1
    commands = "sanstack_cluster_pr_commands_total"
    assert value(samples, commands, disk="d1", action="reserve") >= 1
    assert value(samples, "sanstack_cluster_pr_reservation_conflicts_total", disk="d1") == 0
    assert value(samples, "sanstack_cluster_fencing_events_total") == 0
    assert value(samples, "sanstack_cluster_events_total", kind="group.state") >= 4
    volume = {"group": "g1", "volume": "d1"}
    assert value(samples, "sanstack_snapshot_volume_snapshots", **volume) == 0
    assert value(samples, "sanstack_snapshot_volume_size_bytes", **volume) > 0
    assert "sanstack_host_map_paths" in names(samples)  # the node's own maps
    group = {"group": "g1"}
    writes = value(samples, "sanstack_cluster_group_io_operations_total", op="write", **group)
    write_range(export, "d1", MiB, bytes(range(256)) * (MiB // 256))
    after = moved(
        url,
        "sanstack_cluster_group_io_operations_total",
        writes,
        "the node counted the group's writes",
        op="write",
        **group,
    )
    assert value(after, "sanstack_cluster_group_io_bytes_total", op="write", **group) >= MiB
    assert value(after, "sanstack_cluster_group_io_operations_total", op="flush", **group) >= 1
