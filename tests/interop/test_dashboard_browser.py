"""Issue 12 item 2 in a real browser: ``sanstack dashboard`` over a three-node cluster (real
processes: a sanstack target with a witness and four disks, three ``sanstack cluster node``
processes, two groups, g1 carrying a snapshot volume), looked at and driven in headless
Chromium (Debian's ``chromium`` and ``chromium-driver``, through Selenium).

The page loads once and is never reloaded (a marker set in the page at the start must still
be there at the end); everything after arrives through its event stream:

- three nodes, two groups online, disks with their holder, paths per node, the volume, the
  target's sessions and LUNs;
- a writer through g2's export moves g2's chart;
- a move clicked on the page moves g2; pausing a node and moving a group to it shows the
  node's refusal; the node is resumed from the page;
- a snapshot created on the page is in ``sanstack snapshot list``, and deleted from the page;
- ``kill -9`` of g1's owner: g1 shows pending, then online on another node, within 20 s.

Screenshots go to docs/ (docs/dashboard.md shows them). The tests share one cluster and one
page and run in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select
from tests.support.browser import (
    DashboardProcess,
    browser_paths,
    headless_chromium,
    js,
    running_dashboard,
    wait_for,
)
from tests.support.cluster_nodes import (
    ClusterNodes,
    GroupDef,
    group_of,
    running_cluster,
    running_writer,
    write_config,
)
from tests.support.cluster_volumes import volume_cli
from tests.support.processes import Daemon, free_port, run_tool, running_target, sanstack_command

pytestmark = pytest.mark.interop

IQN = "iqn.2026-12.org.sanstack:dashboard"
CLUSTER = "dashboard-test"
NODES = ("n1", "n2", "n3")
SETTLE = 30.0
FAILOVER_SHOWN = 20.0  # the bound: the page shows the failover within 20 s
PAGE = 15.0  # for the page to show what the cluster already did
DOCS = Path(__file__).resolve().parents[2] / "docs"


@dataclass
class Setup:
    nodes: ClusterNodes
    target: Daemon
    dashboard: DashboardProcess
    driver: WebDriver
    directory: Path
    g1: GroupDef
    g2: GroupDef


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    browser_paths()  # before anything starts: fail (CI) or skip at once without a browser
    directory = tmp_path_factory.mktemp("dashboard")
    portals = [free_port(), free_port()]
    volume = directory / "d1.img"
    run_tool([*sanstack_command(), "volume", "format", str(volume), "--size", "16M"])
    luns = ["memory:1M", f"{volume}:16M", "memory:1M", "memory:4M", "memory:1M"]
    with running_target(directory, IQN, portals, luns) as target:
        g1 = GroupDef("g1", ["d1", "d2"], ("127.0.76.1", free_port()), ["n1", "n2"], volumes=["d1"])
        g2 = GroupDef("g2", ["d3", "d4"], ("127.0.76.2", free_port()), ["n2", "n3"])
        config = write_config(
            directory,
            cluster=CLUSTER,
            nodes=NODES,
            portals=portals,
            iqn=IQN,
            disks={"wit": 0, "d1": 1, "d2": 2, "d3": 3, "d4": 4},
            groups=[g1, g2],
            quorum="node-and-disk",
            witness="wit",
        )
        with running_cluster(directory, config, NODES) as nodes:
            nodes.settle("n3", {"g1": "n1", "g2": "n2"}, SETTLE)
            extra = ["--target-control", str(target.control)]
            with (
                running_dashboard(directory, config, extra) as dashboard,
                headless_chromium(directory / "chromium-profile") as driver,
            ):
                driver.get(dashboard.url)
                js(driver, "window.loadedOnce = true;")
                yield Setup(nodes, target, dashboard, driver, directory, g1, g2)
                assert js(driver, "return window.loadedOnce === true;"), "the page was reloaded"


def rows(driver: WebDriver, selector: str) -> list[Any]:
    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def group_row(driver: WebDriver, name: str) -> dict[str, str]:
    row = driver.find_element(By.CSS_SELECTOR, f'#groups tr[data-group="{name}"]')
    return {
        "display": row.get_attribute("data-display") or "",
        "owner": row.get_attribute("data-owner") or "",
        "transitions": row.get_attribute("data-transitions") or "",
    }


def online_on(driver: WebDriver, group: str, node: str) -> bool:
    row = group_row(driver, group)
    return row["display"] == "online" and row["owner"] == node


def node_state(driver: WebDriver, node: str) -> str:
    cell = driver.find_element(By.CSS_SELECTOR, f'#nodes tr[data-node="{node}"] td.state')
    return cell.get_attribute("data-state") or ""


def result(driver: WebDriver) -> tuple[str, str]:
    box = driver.find_element(By.ID, "result")
    return (box.get_attribute("class") or "", box.text)


def wait_result(driver: WebDriver, kind: str, words: str, what: str) -> str:
    found = wait_for(
        driver,
        lambda d: result(d)[0] == kind and words in result(d)[1] and result(d)[1],
        PAGE,
        what,
    )
    return str(found)


def screenshot(driver: WebDriver, name: str) -> None:
    DOCS.mkdir(exist_ok=True)
    driver.save_screenshot(str(DOCS / name))


def test_the_page_shows_nodes_groups_disks_paths_volume_and_target(setup: Setup) -> None:
    d = setup.driver
    wait_for(d, lambda d: len(rows(d, "#nodes tr[data-node]")) == 3, PAGE, "three nodes")
    wait_for(
        d,
        lambda d: online_on(d, "g1", "n1") and online_on(d, "g2", "n2"),
        PAGE,
        "g1 online on n1 and g2 on n2",
    )
    assert [node_state(d, n) for n in NODES] == ["alive"] * 3
    wait_for(d, lambda d: d.find_element(By.ID, "connection").text == "live", PAGE, "live")
    # Disks: each group's disks held by its owner, the witness by some node.
    wait_for(
        d,
        lambda d: (
            [
                d.find_element(By.CSS_SELECTOR, f'#disks tr[data-disk="{disk}"] td.holder').text
                for disk in ("d1", "d2", "d3", "d4")
            ]
            == ["n1", "n1", "n2", "n2"]
        ),
        PAGE,
        "each disk held by its group's owner",
    )
    assert d.find_element(By.CSS_SELECTOR, '#disks tr[data-disk="wit"] td.holder').text in NODES
    # Paths and keys per node: every node sees all five disks.
    wait_for(
        d,
        lambda d: [len(rows(d, f'[data-paths-node="{n}"] tbody tr')) for n in NODES] == [5] * 3,
        PAGE,
        "each node's five maps",
    )
    # The snapshot volume and the target.
    wait_for(
        d,
        lambda d: "held by n1" in d.find_element(By.CSS_SELECTOR, '[data-volume="g1/d1"]').text,
        PAGE,
        "g1/d1's volume held by n1",
    )
    wait_for(d, lambda d: len(rows(d, "#target tr[data-lun]")) == 5, PAGE, "five LUNs")
    wait_for(d, lambda d: len(rows(d, "#target tr[data-session]")) >= 6, PAGE, "sessions")
    wait_for(d, lambda d: len(rows(d, "#events tbody tr")) > 0, PAGE, "cluster events")
    screenshot(d, "dashboard.png")


def test_the_chart_moves_while_a_writer_runs(setup: Setup) -> None:
    d = setup.driver
    chart = '[data-chart="g2"]'

    def canvas() -> str:
        return str(js(d, f"return document.querySelector('{chart} canvas').toDataURL();"))

    with running_writer(setup.directory, "chart", setup.g2.export) as writer:
        writer.wait_acked(50, SETTLE, "50 writes through g2's export")
        wait_for(
            d,
            lambda d: (
                float(d.find_element(By.CSS_SELECTOR, chart).get_attribute("data-write-ops") or 0)
                > 0
            ),
            PAGE,
            "g2's chart shows writes per second",
        )
        before = canvas()
        wait_for(d, lambda d: canvas() != before, PAGE, "g2's chart drawn again with new points")
        points = int(d.find_element(By.CSS_SELECTOR, chart).get_attribute("data-points") or 0)
        wait_for(
            d,
            lambda d: (
                int(d.find_element(By.CSS_SELECTOR, chart).get_attribute("data-points") or 0)
                >= points + 8
            ),
            PAGE,
            "eight more points on g2's chart",
        )
        screenshot(d, "dashboard-io.png")
    assert (
        float(
            d.find_element(By.CSS_SELECTOR, '[data-chart="g1"]').get_attribute("data-write-ops")
            or 0
        )
        == 0
    )


def test_a_move_clicked_on_the_page_moves_the_group(setup: Setup) -> None:
    d = setup.driver
    Select(d.find_element(By.ID, "move-group")).select_by_value("g2")
    Select(d.find_element(By.ID, "move-node")).select_by_value("n3")
    d.find_element(By.ID, "move-button").click()
    wait_result(d, "ok", "n2 → n3", "the move's answer")
    wait_for(d, lambda d: online_on(d, "g2", "n3"), SETTLE, "g2 online on n3 on the page")
    assert group_of(setup.nodes.status("n1"), "g2")["owner"] == "n3"


def test_a_refused_action_shows_the_nodes_error(setup: Setup) -> None:
    d = setup.driver
    d.find_element(By.CSS_SELECTOR, '#nodes tr[data-node="n2"] button.pause').click()
    wait_result(d, "ok", "paused", "the pause's answer")
    wait_for(d, lambda d: node_state(d, "n2") == "paused", PAGE, "n2 paused on the page")
    Select(d.find_element(By.ID, "move-group")).select_by_value("g1")
    Select(d.find_element(By.ID, "move-node")).select_by_value("n2")
    d.find_element(By.ID, "move-button").click()
    text = wait_result(d, "error", "refused", "the refused move")
    assert "node: n2 is paused; resume it first" in text, text
    screenshot(d, "dashboard-error.png")
    d.find_element(By.CSS_SELECTOR, '#nodes tr[data-node="n2"] button.resume').click()
    wait_result(d, "ok", "resumed", "the resume's answer")
    wait_for(d, lambda d: node_state(d, "n2") == "alive", PAGE, "n2 alive again on the page")
    assert group_row(d, "g1")["owner"] == "n1"


def snapshot_names(setup: Setup) -> list[str]:
    listed = volume_cli(setup.nodes, "n3", "snapshot", "list", "g1/d1")
    return [s["name"] for s in listed]


def test_a_snapshot_created_on_the_page_is_in_snapshot_list(setup: Setup) -> None:
    d = setup.driver
    card = d.find_element(By.CSS_SELECTOR, '[data-volume="g1/d1"]')
    field = card.find_element(By.CSS_SELECTOR, "input.snapshot-name")
    field.clear()
    field.send_keys("from-the-page")
    card.find_element(By.CSS_SELECTOR, "button.create-snapshot").click()
    wait_result(d, "ok", "created from-the-page", "the snapshot's answer")
    assert "from-the-page" in snapshot_names(setup)
    row = '[data-volume="g1/d1"] tr[data-snapshot="from-the-page"]'
    wait_for(d, lambda d: len(rows(d, row)) == 1, PAGE, "the snapshot listed on the page")
    screenshot(d, "dashboard-snapshots.png")
    # A second one of the same name is refused, with the node's words.
    field.clear()
    field.send_keys("from-the-page")
    card.find_element(By.CSS_SELECTOR, "button.create-snapshot").click()
    text = wait_result(d, "error", "already exists", "the refused snapshot")
    assert "snapshot 'from-the-page' already exists" in text, text
    d.find_element(By.CSS_SELECTOR, f"{row} button.delete-snapshot").click()
    wait_result(d, "ok", "deleted from-the-page", "the delete's answer")
    assert "from-the-page" not in snapshot_names(setup)
    wait_for(d, lambda d: not rows(d, row), PAGE, "the snapshot gone from the page")


def test_killing_the_owner_shows_pending_then_online_elsewhere(setup: Setup) -> None:
    d = setup.driver
    chart = '[data-chart="g1"]'
    assert online_on(d, "g1", "n1")
    before = group_row(d, "g1")["transitions"]
    with running_writer(setup.directory, "failover", setup.g1.export) as writer:
        writer.wait_acked(50, SETTLE, "50 writes through g1's export before the kill")
        setup.nodes.kill("n1")
        wait_for(
            d,
            lambda d: (
                group_row(d, "g1")["display"] == "online"
                and group_row(d, "g1")["owner"] in ("n2", "n3")
            ),
            FAILOVER_SHOWN,
            "g1 online on a survivor on the page",
        )
        after = group_row(d, "g1")["transitions"].removeprefix(before).split()
        assert any(step.startswith("pending@") for step in after), f"never pending: {after}"
        assert after[-1].startswith("online@n"), after
        wait_for(d, lambda d: node_state(d, "n1") == "down", PAGE, "n1 down on the page")
        # The client reconnects to the new owner, and the chart shows its writes there.
        acked = len(writer.acked())
        writer.wait_acked(acked + 50, SETTLE, "50 more writes through the new owner")
        wait_for(
            d,
            lambda d: (
                float(d.find_element(By.CSS_SELECTOR, chart).get_attribute("data-write-ops") or 0)
                > 0
            ),
            PAGE,
            "g1's chart shows writes on the new owner",
        )
        screenshot(d, "dashboard-failover.png")
    assert d.find_element(By.ID, "stale").get_attribute("hidden") is not None
