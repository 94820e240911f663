"""Checks every config reader shares (the target's, the cluster's, the command line's): one
copy, low enough (layer 0) for every layer to use. Each raises ``ConfigError`` naming the
field and the problem in one line."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from sanstack.errors import ConfigError


def read_toml(path: Path) -> dict[str, Any]:
    """The file's TOML as a dict, or ConfigError naming the file."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read: {exc}") from None


def no_unknown(table: dict[str, Any], known: set[str], where: str) -> None:
    """Refuse a key ``known`` does not name, so a typo never passes as a default."""
    for key in table:
        if key not in known:
            prefix = f"{where}." if where else ""
            raise ConfigError(f"{prefix}{key}", f"unknown key (known: {', '.join(sorted(known))})")


def as_table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(where, "must be a table")
    return value


def integer(value: object, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(where, f"{value!r} is not an integer in {low}..{high}")
    return value


def seconds(value: object, where: str, high: float) -> float:
    """A duration above 0 and at most ``high`` (an integer or a float, never nan or inf)."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 < value <= high
    ):
        raise ConfigError(where, f"{value!r} is not a number of seconds above 0 and up to {high:g}")
    return float(value)


def parse_address(text: str, field: str, *, any_port: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) or ConfigError naming ``field``.

    Port 0 ("any free port") only with ``any_port``, for an address to listen on.
    """
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise ConfigError(field, f"{text!r} is not HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(field, f"port {port_text!r} in {text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(field, f"port {port} in {text!r} is outside 0..65535")
    if port == 0 and not any_port:
        raise ConfigError(field, f"port 0 in {text!r}: name the port to connect to")
    return host, port
