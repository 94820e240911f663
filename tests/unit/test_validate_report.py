"""``sanstack validate``'s sans-IO parts: outcomes, the catalogue, settings, the reports."""

from __future__ import annotations

import argparse
import inspect
import json
from html.parser import HTMLParser

import pytest

from sanstack.cli.validate import settings_from
from sanstack.errors import ConfigError
from sanstack.validate import render
from sanstack.validate.catalogue import CATALOGUE, missing_need, select
from sanstack.validate.model import (
    Need,
    Outcome,
    Report,
    RunSettings,
    Step,
    TestRun,
    percentile,
)
from sanstack.validate.scsi_probe import error_text, identity_text, sense_text, unit_serial

SETTINGS = RunSettings("iqn.2026-11.org.sanstack:t", ("127.0.0.1:3260",), (0, 1), 2)


def test_the_worst_finding_is_the_outcome_and_its_reason() -> None:
    run = TestRun("t")
    run.ok("fine")
    run.warn("slow")
    assert run.result("T", "W", 1.0).outcome is Outcome.WARNING
    run.fail("broken")
    run.fail("broken")  # the same reason twice is said once
    result = run.result("T", "W", 1.0)
    assert (result.outcome, result.reason) == (Outcome.FAIL, "broken")
    assert [s.outcome for s in result.steps] == [
        Outcome.PASS,
        Outcome.WARNING,
        Outcome.FAIL,
        Outcome.FAIL,
    ]


def test_many_failures_are_summed_up() -> None:
    run = TestRun("t")
    for n in range(4):
        run.fail(f"f{n}")
    assert run.result("T", "W", 0).reason == "f0; f1; and 2 more"


def test_a_test_that_checked_nothing_is_skipped_never_passed() -> None:
    run = TestRun("t")
    run.step("looked around")
    result = run.result("T", "W", 0.5)
    assert result.outcome is Outcome.SKIPPED
    skipped = TestRun("t").skipped("T", "W", "needs --fault-proxy", 0)
    assert (skipped.outcome, skipped.reason) == (Outcome.SKIPPED, "needs --fault-proxy")


def test_a_test_that_broke_off_fails() -> None:
    run = TestRun("t")
    run.ok("first step")
    result = run.crashed("T", "W", "the path failed", 2.0)
    assert result.outcome is Outcome.FAIL
    assert "could not finish: the path failed" in result.reason


def test_check_records_a_pass_or_a_failure() -> None:
    run = TestRun("t")
    assert run.check(True, "yes", "no") is True
    assert run.check(False, "yes", "no") is False
    assert run.steps == [Step("yes", Outcome.PASS), Step("no", Outcome.FAIL)]


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100
    assert percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_catalogue_ids_are_unique_and_every_test_is_a_coroutine() -> None:
    ids = [spec.test_id for spec in CATALOGUE]
    assert len(ids) == len(set(ids))
    assert all(inspect.iscoroutinefunction(spec.run) for spec in CATALOGUE)
    assert all(spec.wsfc for spec in CATALOGUE)


def test_needs_the_settings_do_not_meet_skip_a_test() -> None:
    one = RunSettings("iqn.2026-11.org.sanstack:t", ("h:1",), (0,), 1)
    assert missing_need(frozenset({Need.TWO_NODES}), one) is Need.TWO_NODES
    assert missing_need(frozenset({Need.FAULT_PROXY, Need.TWO_PORTALS}), one) is Need.TWO_PORTALS
    two = RunSettings("iqn.2026-11.org.sanstack:t", ("h:1", "h:2"), (0,), 2, fault_proxy=True)
    assert (
        missing_need(frozenset({Need.FAULT_PROXY, Need.TWO_PORTALS, Need.TWO_NODES}), two) is None
    )
    assert missing_need(frozenset({Need.DESTRUCTIVE}), two) is Need.DESTRUCTIVE


def test_select_names_an_unknown_test() -> None:
    assert select(None) == CATALOGUE
    assert [s.test_id for s in select(["alua", "pr-register"])] == ["pr-register", "alua"]
    with pytest.raises(ValueError, match="unknown test nope"):
        select(["nope"])


def _args(**changes: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "portal": ["127.0.0.1:3260", "127.0.0.1:3261"],
        "iqn": "iqn.2026-11.org.sanstack:t",
        "lun": [0],
        "nodes": 2,
        "destructive": False,
        "force": False,
        "fault_proxy": False,
        "allow_target_restart": None,
        "rounds": 5,
        "arbitration_interval": 1.0,
        "latency_warning": 100.0,
        "test": [],
    }
    values.update(changes)
    return argparse.Namespace(**values)


def test_settings_from_the_flags() -> None:
    settings = settings_from(_args(lun=[0, 3], allow_target_restart="systemctl restart tgt"))
    assert settings.portals == ("127.0.0.1:3260", "127.0.0.1:3261")
    assert settings.luns == (0, 3)
    assert settings.target_restart == "systemctl restart tgt"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"portal": []}, "--portal"),
        ({"portal": ["nohost"]}, "--portal"),
        ({"portal": ["h:1", "h:1"]}, "--portal"),
        ({"lun": []}, "--lun"),
        ({"lun": [16384]}, "--lun"),
        ({"lun": [1, 1]}, "--lun"),
        ({"nodes": 0}, "--nodes"),
        ({"rounds": 0}, "--rounds"),
        ({"arbitration_interval": 0.0}, "--arbitration-interval"),
        ({"latency_warning": 0.0}, "--latency-warning"),
        ({"allow_target_restart": " "}, "--allow-target-restart"),
        ({"test": ["nope"]}, "--test"),
        ({"iqn": "not a name"}, "--iqn"),
    ],
)
def test_bad_flags_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from(_args(**changes))
    assert caught.value.field == field


def _report() -> Report:
    report = Report(SETTINGS, "2026-12-04T00:00:00+00:00")
    passed = TestRun("disks-visible")
    passed.ok("LUN 0 is visible to node1 through 127.0.0.1:3260")
    report.results.append(passed.result("Disks <visible>", "List Potential Cluster Disks", 0.1))
    failed = TestRun("pr-preempt-abort")
    failed.fail("PREEMPT AND ABORT is not supported (ILLEGAL REQUEST, INVALID FIELD IN CDB)")
    report.results.append(failed.result("PR: PREEMPT AND ABORT", "Validate SCSI-3 PR", 0.2))
    report.results.append(TestRun("multipath").skipped("Multipath", "MPIO", "needs a proxy", 0))
    report.restore.append(Step("LUN 0: nothing of ours left", Outcome.PASS))
    return report


def test_table_shows_each_test_and_the_reason_when_it_did_not_pass() -> None:
    text = render.table(_report())
    lines = text.splitlines()
    assert lines[2].split()[:2] == ["disks-visible", "pass"]
    assert lines[3].split()[:2] == ["pr-preempt-abort", "FAIL"]
    assert "PREEMPT AND ABORT is not supported" in lines[4]
    assert lines[-1] == "1 passed, 0 warnings, 1 failed, 1 skipped: FAIL"


def test_json_lists_every_test_with_its_steps() -> None:
    report = _report()
    document = json.loads(render.to_json(report))
    assert [t["id"] for t in document["tests"]] == [
        "disks-visible",
        "pr-preempt-abort",
        "multipath",
    ]
    assert document["counts"] == {"pass": 1, "warning": 0, "fail": 1, "skipped": 1}
    assert document["outcome"] == "fail"
    assert document["tests"][1]["steps"][0]["outcome"] == "fail"
    assert report.exit_status() == 1


def test_a_refused_run_says_why_and_exits_3() -> None:
    report = Report(SETTINGS, "now", refused="LUN 1 carries 1 registration")
    assert render.table(report).splitlines()[-1] == "REFUSED: LUN 1 carries 1 registration"
    assert json.loads(render.to_json(report))["refused"] == "LUN 1 carries 1 registration"
    assert report.exit_status() == 3
    assert "Refused: LUN 1 carries" in render.to_html(report)


class _Strict(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.sections: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "section":
            self.sections.append(found.get("id") or "")
        if tag in {"script", "link", "img"} or (found.get("src") or "").startswith("http"):
            self.external.append(tag)
        if tag != "meta":
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open.pop() == tag


def test_html_is_self_contained_and_has_a_section_per_test() -> None:
    page = render.to_html(_report())
    parser = _Strict()
    parser.feed(page)
    assert not parser.open and not parser.external
    assert parser.sections == ["disks-visible", "pr-preempt-abort", "multipath", "restore"]
    assert "Disks &lt;visible&gt;" in page  # escaped
    assert 'class="fail"' in page


def test_sense_and_identities_in_plain_words() -> None:
    assert sense_text(0x5, 0x24, 0x00) == "ILLEGAL REQUEST, INVALID FIELD IN CDB"
    assert sense_text(0x5, 0x99, 0x01) == "ILLEGAL REQUEST, ASC 99h/01h"
    assert error_text("ILLEGAL_REQUEST 24/00") == "ILLEGAL REQUEST, INVALID FIELD IN CDB"
    assert error_text("the path failed") == "the path failed"
    assert identity_text([]) is None
    assert unit_serial(b"\x00\x80\x00\x04ab  ") == "ab"
    assert unit_serial(None) is None
