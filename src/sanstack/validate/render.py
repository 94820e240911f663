"""The report three ways, sans-IO: a table for the terminal, JSON for scripts, and one
self-contained HTML page (inline style, no scripts, nothing fetched) with every test's steps,
like WSFC's validation report."""

from __future__ import annotations

import html
import json

from sanstack.validate.model import Outcome, Report, Step, TestResult

_LABEL = {
    Outcome.PASS: "pass",
    Outcome.WARNING: "WARNING",
    Outcome.FAIL: "FAIL",
    Outcome.SKIPPED: "skipped",
}
REASON_WIDTH = 100


def table(report: Report) -> str:
    """One line per test: id, outcome, title, and the reason under it when not a pass."""
    settings = report.settings
    lines = [
        f"sanstack validate: {settings.target} via {', '.join(settings.portals)}, "
        f"LUN {', '.join(map(str, settings.luns))}, {settings.nodes} nodes",
    ]
    if report.refused:
        lines.append(f"REFUSED: {report.refused}")
        return "\n".join(lines) + "\n"
    width = max((len(r.test_id) for r in report.results), default=4)
    lines.append(f"{'TEST':<{width}}  {'RESULT':<8} TITLE")
    for result in report.results:
        lines.append(f"{result.test_id:<{width}}  {_LABEL[result.outcome]:<8} {result.title}")
        if result.outcome is not Outcome.PASS:
            lines.extend(_wrapped(result.reason, " " * (width + 11)))
    for step in report.restore:
        if step.outcome is Outcome.FAIL:
            lines.append(f"RESTORE FAILED: {step.text}")
    counts = report.counts()
    lines.append(
        f"{counts['pass']} passed, {counts['warning']} warnings, {counts['fail']} failed, "
        f"{counts['skipped']} skipped: {report.outcome.value.upper()}"
    )
    return "\n".join(lines) + "\n"


def _wrapped(text: str, indent: str) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > REASON_WIDTH:
            lines.append(indent + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(indent + line)
    return lines


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"


_STYLE = """
body{font-family:sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #bbb;padding:.3em .6em;text-align:left;vertical-align:top}
.pass{background:#dfd}.warning{background:#ffd}.fail{background:#fdd}.skipped{background:#eee}
li.pass,li.warning,li.fail,li.skipped{padding:0 .3em}
section{border-top:1px solid #bbb;margin-top:1.5em}
"""


def to_html(report: Report) -> str:
    settings = report.settings
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>sanstack validate: {esc(settings.target)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Failover cluster storage validation</h1>",
        "<table>",
        _row("Target", settings.target),
        _row("Portals", ", ".join(settings.portals)),
        _row("LUNs", ", ".join(map(str, settings.luns))),
        _row("Simulated nodes", str(settings.nodes)),
        _row("Started", report.started),
        _row("Options", _options(report)),
        _row("Result", report.outcome.value.upper(), report.outcome),
        "</table>",
    ]
    if report.refused:
        parts.append(f'<p class="fail">Refused: {esc(report.refused)}</p>')
    else:
        parts.append("<h2>Summary</h2><table><tr><th>Test</th><th>WSFC counterpart</th>")
        parts.append("<th>Result</th><th>Reason</th></tr>")
        for result in report.results:
            cls = result.outcome.value
            parts.append(
                f'<tr class="{cls}"><td><a href="#{esc(result.test_id)}">'
                f"{esc(result.title)}</a></td><td>{esc(result.wsfc)}</td>"
                f"<td>{esc(_LABEL[result.outcome])}</td><td>{esc(result.reason)}</td></tr>"
            )
        parts.append("</table>")
        parts.extend(_section(result) for result in report.results)
    if report.restore:
        parts.append('<section id="restore"><h2>Restoring the LUNs</h2>')
        parts.append(_steps(report.restore))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _options(report: Report) -> str:
    s = report.settings
    chosen = [
        name
        for name, on in (
            ("--destructive", s.destructive),
            ("--force", s.force),
            ("--fault-proxy", s.fault_proxy),
            ("--allow-target-restart", s.target_restart is not None),
        )
        if on
    ]
    chosen.append(f"{s.rounds} arbitration rounds, interval {s.arbitration_interval:g} s")
    chosen.append(f"latency warning at {s.latency_warning_ms:g} ms")
    return ", ".join(chosen)


def _row(name: str, value: str, outcome: Outcome | None = None) -> str:
    cls = f' class="{outcome.value}"' if outcome is not None else ""
    return f"<tr><th>{html.escape(name)}</th><td{cls}>{html.escape(value)}</td></tr>"


def _section(result: TestResult) -> str:
    esc = html.escape
    return (
        f'<section id="{esc(result.test_id)}"><h2>{esc(result.title)}</h2>'
        f"<p>Test <code>{esc(result.test_id)}</code>, WSFC counterpart: {esc(result.wsfc)}. "
        f'Result: <span class="{result.outcome.value}">{esc(_LABEL[result.outcome])}</span>'
        f" ({result.seconds:.2f} s): {esc(result.reason)}</p>"
        f"{_steps(result.steps)}</section>"
    )


def _steps(steps: tuple[Step, ...] | list[Step]) -> str:
    items = []
    for step in steps:
        if step.outcome is None:
            items.append(f"<li>{html.escape(step.text)}</li>")
        else:
            label = _LABEL[step.outcome]
            items.append(
                f'<li class="{step.outcome.value}"><b>{html.escape(label)}</b>: '
                f"{html.escape(step.text)}</li>"
            )
    return "<ol>" + "".join(items) + "</ol>"
