"""How ``sanstack volume`` and ``sanstack snapshot`` results read on a terminal (``--json``
prints the service's shapes as they are)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sanstack.control.client import render_table


def human_bytes(size: int) -> str:
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift:
            if size % (1 << shift) == 0:
                return f"{size >> shift}{unit}"
            return f"{size / (1 << shift):.1f}{unit}"
    return f"{size}B"


def interval_text(seconds: int) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % n == 0:
            return f"{seconds // n}{unit}"
    return f"{seconds}s"


def schedule_text(schedule: dict[str, Any] | None) -> str:
    if schedule is None:
        return "off"
    return (
        f"every {interval_text(schedule['interval'])}, keep {schedule['keep']} "
        f"(weight {schedule['weight']}, names {schedule['prefix']}-...)"
    )


def policy_text(policy: dict[str, Any]) -> str:
    return (
        f"refuse new snapshots at {policy['warn_percent']}%, delete snapshots at "
        f"{policy['delete_percent']}%, when full: {policy['on_full']}"
    )


def background_text(work: list[dict[str, Any]]) -> str:
    if not work:
        return "idle"
    return ", ".join(
        f"{p['operation']} {100 * p['done'] // p['total'] if p['total'] else 100}% "
        f"({p['done']}/{p['total']} chunks)"
        for p in work
    )


def info_table(info: dict[str, Any]) -> str:
    holder = info["holder"]
    rows = [
        ("path", info["path"]),
        ("uuid", info["uuid"]),
        ("format", str(info.get("format_version", "?"))),
        (
            "size",
            f"{human_bytes(info['size_bytes'])} ({info['block_size']}-byte blocks, "
            f"{human_bytes(info['chunk_size'])} chunks)",
        ),
        (
            "reserve",
            f"{human_bytes(info['reserve_bytes'])}, {info['snapshot_used_percent']:.1f}% used "
            f"({human_bytes(info['snapshot_used_bytes'])}), "
            f"{human_bytes(info['free_bytes'])} free",
        ),
        ("snapshots", f"{info['snapshots']} of at most {info['max_snapshots']}"),
        ("policy", policy_text(info["policy"])),
        ("schedule", schedule_text(info["schedule"])),
        (
            "holder",
            "-"
            if holder is None
            else f"pid {holder['pid']} on {holder['host']}"
            + (f" (control {holder['control']})" if holder["control"] else ""),
        ),
        ("background", background_text(info["background"])),
    ]
    return "\n".join(f"{key:11} {value}" for key, value in rows)


_SNAPSHOT_COLUMNS = [
    ("name", "NAME"),
    ("created", "CREATED"),
    ("size", "SIZE"),
    ("used", "USED"),
    ("weight", "WEIGHT"),
    ("keep", "KEEP"),
    ("state", "STATE"),
]


def snapshot_rows(snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **s,
            "created": datetime.fromtimestamp(s["created"]).strftime("%Y-%m-%d %H:%M:%S"),
            "size": human_bytes(s["size_bytes"]),
            "used": human_bytes(s["used_bytes"]),
            "keep": "keep" if s["keep"] else "-",
            "state": s["state"] + (" (scheduled)" if s["scheduled"] else ""),
        }
        for s in snapshots
    ]


def snapshot_table(snapshots: list[dict[str, Any]]) -> str:
    return render_table(snapshot_rows(snapshots), _SNAPSHOT_COLUMNS)
