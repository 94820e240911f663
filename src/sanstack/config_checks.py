"""The checks every configuration shares: the target's TOML file, the host's, and the command
line of each daemon. Each raises ``ConfigError`` naming the field (``host.session.nop_timeout``,
``--portal 10.0.0.1``) and the problem in one line, so a bad value is reported before anything
starts. Lowest layer: any layer's parser may use them."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any

from sanstack.errors import ConfigError

_ISCSI_NAME = re.compile(
    r"^(iqn\.\d{4}-\d{2}\.[^\s]+|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$"
)


def load_toml(path: Path) -> dict[str, Any]:
    """The TOML file at ``path``, parsed; a missing, unreadable or malformed file is a
    ConfigError naming the file."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read: {exc}") from None


def check_name(name: object, field_name: str) -> str:
    """An iSCSI name (RFC 7143 §4.2.7): iqn., eui. or naa. form, at most 223 bytes."""
    if not isinstance(name, str) or not _ISCSI_NAME.match(name) or len(name.encode()) > 223:
        raise ConfigError(field_name, f"{name!r} is not an iSCSI name (iqn.YYYY-MM.domain:id)")
    return name.lower()


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


def no_unknown_keys(table: dict[str, Any], known: set[str], where: str) -> None:
    """A key the format does not have is an error: a typo must not pass silently."""
    for key in table:
        if key not in known:
            prefix = f"{where}." if where else ""
            raise ConfigError(f"{prefix}{key}", f"unknown key (known: {', '.join(sorted(known))})")


def table_at(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(where, "must be a table")
    return value


def integer_in(value: object, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(where, f"{value!r} is not an integer in {low}..{high}")
    return value


def seconds_in(value: object, where: str, low: float, high: float, *, zero: bool = False) -> float:
    """A number of seconds in [``low``, ``high``]; 0 also when ``zero`` (it means "never")."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(where, f"{value!r} is not a number of seconds")
    seconds = float(value)
    if zero and seconds == 0:
        return 0.0
    if not low <= seconds <= high:
        allowed = f"{'0 or ' if zero else ''}{low:g}..{high:g}"
        raise ConfigError(where, f"{value!r} is outside {allowed} seconds")
    return seconds


def string_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(where, "must be a list of strings")
    return value


def positive_seconds(value: object, where: str, high: float) -> float:
    """A duration above 0 and at most ``high`` (an integer or a float, never nan or inf)."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 < value <= high
    ):
        raise ConfigError(where, f"{value!r} is not a number of seconds above 0 and up to {high:g}")
    return float(value)
