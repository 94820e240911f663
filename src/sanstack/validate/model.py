"""What a validation run finds, sans-IO: each test's outcome, its steps, and the report.

A test records what it did as ``Step``s through its ``TestRun``: plain steps (what was
sent, what came back), and findings (``warn``, ``fail``) that carry the reason an
administrator reads. A test that cannot run raises ``Skipped`` with the reason; it counts
as skipped, never as passed. The outcome is the worst finding: FAIL over WARNING over PASS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Outcome(Enum):
    """A test's result, as WSFC's validation report names them (plus "skipped")."""

    PASS = "pass"
    WARNING = "warning"
    FAIL = "fail"
    SKIPPED = "skipped"


class Need(Enum):
    """What a test needs beyond the target itself; each value is why it is skipped."""

    TWO_NODES = "it needs at least two nodes (--nodes 2 or more)"
    TWO_PORTALS = "it needs at least two portals (--portal twice): one path per portal"
    DESTRUCTIVE = "it writes data: run with --destructive on LUNs whose data may be lost"
    FAULT_PROXY = "it takes a path away, and --no-fault-proxy was given"


class Skipped(Exception):
    """The test cannot run here; the message says why."""


@dataclass(frozen=True, slots=True)
class Step:
    """One thing a test did or found. ``outcome`` is None for a plain step."""

    text: str
    outcome: Outcome | None = None


@dataclass(slots=True)
class TestRun:
    """A test under way: its steps and findings."""

    __test__ = False  # not a pytest class

    test_id: str
    steps: list[Step] = field(default_factory=list)

    def step(self, text: str) -> None:
        self.steps.append(Step(text))

    def ok(self, text: str) -> None:
        self.steps.append(Step(text, Outcome.PASS))

    def warn(self, reason: str) -> None:
        self.steps.append(Step(reason, Outcome.WARNING))

    def fail(self, reason: str) -> None:
        self.steps.append(Step(reason, Outcome.FAIL))

    def check(self, good: bool, passed: str, failed: str) -> bool:
        """``ok(passed)`` if ``good`` else ``fail(failed)``; returns ``good``."""
        if good:
            self.ok(passed)
        else:
            self.fail(failed)
        return good

    def findings(self, outcome: Outcome) -> list[str]:
        return [s.text for s in self.steps if s.outcome is outcome]

    def result(self, title: str, wsfc: str, seconds: float) -> TestResult:
        """The outcome is the worst finding; its reason the findings of that outcome."""
        for outcome in (Outcome.FAIL, Outcome.WARNING):
            found = self.findings(outcome)
            if found:
                return TestResult(
                    self.test_id, title, wsfc, outcome, _reason(found), tuple(self.steps), seconds
                )
        passed = self.findings(Outcome.PASS)
        if not passed:  # nothing was checked: never a pass
            return self.skipped(title, wsfc, "nothing could be checked", seconds)
        reason = passed[-1] if len(passed) == 1 else f"{len(passed)} checks passed"
        return TestResult(
            self.test_id, title, wsfc, Outcome.PASS, reason, tuple(self.steps), seconds
        )

    def skipped(self, title: str, wsfc: str, reason: str, seconds: float) -> TestResult:
        steps = (*self.steps, Step(reason, Outcome.SKIPPED))
        return TestResult(self.test_id, title, wsfc, Outcome.SKIPPED, reason, steps, seconds)

    def crashed(self, title: str, wsfc: str, error: str, seconds: float) -> TestResult:
        """The test itself broke off (a path died, a command timed out): that is a failure,
        since a cluster would have met the same error."""
        self.fail(f"the test could not finish: {error}")
        return self.result(title, wsfc, seconds)


def _reason(found: list[str]) -> str:
    unique = list(dict.fromkeys(found))
    if len(unique) <= 2:
        return "; ".join(unique)
    return f"{unique[0]}; {unique[1]}; and {len(unique) - 2} more"


@dataclass(frozen=True, slots=True)
class TestResult:
    __test__ = False  # not a pytest class

    test_id: str
    title: str
    wsfc: str  # the WSFC "Validate a Configuration" test it mirrors
    outcome: Outcome
    reason: str
    steps: tuple[Step, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.test_id,
            "title": self.title,
            "wsfc": self.wsfc,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "steps": [
                {"text": s.text, "outcome": None if s.outcome is None else s.outcome.value}
                for s in self.steps
            ],
        }


@dataclass(frozen=True, slots=True)
class RunSettings:
    """What the run was asked to do, as the report shows it."""

    target: str
    portals: tuple[str, ...]
    luns: tuple[int, ...]
    nodes: int
    destructive: bool = False
    force: bool = False
    fault_proxy: bool = False
    target_restart: str | None = None
    rounds: int = 5
    arbitration_interval: float = 1.0
    latency_warning_ms: float = 100.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "portals": list(self.portals),
            "luns": list(self.luns),
            "nodes": self.nodes,
            "destructive": self.destructive,
            "force": self.force,
            "fault_proxy": self.fault_proxy,
            "target_restart": self.target_restart,
            "rounds": self.rounds,
            "arbitration_interval": self.arbitration_interval,
            "latency_warning_ms": self.latency_warning_ms,
        }


@dataclass(slots=True)
class Report:
    """A whole run: its settings, each test's result, and what was put back afterwards."""

    settings: RunSettings
    started: str  # ISO 8601, for people
    results: list[TestResult] = field(default_factory=list)
    restore: list[Step] = field(default_factory=list)
    refused: str | None = None  # the run did not start: why (foreign registrations, ...)

    def counts(self) -> dict[str, int]:
        counts = {o.value: 0 for o in Outcome}
        for result in self.results:
            counts[result.outcome.value] += 1
        return counts

    @property
    def outcome(self) -> Outcome:
        """FAIL if anything failed or was refused, WARNING if anything warned, else PASS."""
        found = {r.outcome for r in self.results}
        if self.refused or Outcome.FAIL in found:
            return Outcome.FAIL
        if any(s.outcome is Outcome.FAIL for s in self.restore):
            return Outcome.FAIL
        if Outcome.WARNING in found:
            return Outcome.WARNING
        return Outcome.PASS

    def exit_status(self) -> int:
        """0: no failure (warnings and skips included); 1: a test failed; 3: refused."""
        if self.refused:
            return 3
        return 1 if self.outcome is Outcome.FAIL else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_dict(),
            "started": self.started,
            "outcome": self.outcome.value,
            "refused": self.refused,
            "counts": self.counts(),
            "tests": [r.to_dict() for r in self.results],
            "restore": [
                {"text": s.text, "outcome": None if s.outcome is None else s.outcome.value}
                for s in self.restore
            ],
        }


def percentile(samples: list[float], pct: float) -> float:
    """The ``pct``-th percentile by the nearest-rank method (fio's, for small samples)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[min(int(rank), len(ordered)) - 1]
