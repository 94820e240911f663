"""The CLI's side of a daemon's control plane: JSON over HTTP on a Unix socket, and tables."""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sanstack.errors import SanstackError

DEFAULT_TARGET_CONTROL = Path(os.environ.get("SANSTACK_CONTROL", "/run/sanstack/target.sock"))
TIMEOUT = 30.0


class ControlError(SanstackError):
    """The daemon refused a request, or could not be reached; the message says which."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(str(self._path))
        self.sock = sock


def call(path: Path, method: str, resource: str, body: Any = None) -> Any:
    """One request; the decoded JSON answer, or ``ControlError`` with the daemon's message."""
    conn = _UnixHTTPConnection(path)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if data else {}
        conn.request(method, resource, body=data, headers=headers)
        response = conn.getresponse()
        payload = json.loads(response.read() or b"null")
    except (FileNotFoundError, ConnectionRefusedError):
        raise ControlError(
            f"no daemon is listening on {path} (is it running? --control?)"
        ) from None
    except PermissionError:
        raise ControlError(f"{path}: permission denied (run as the daemon's user)") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise ControlError(f"{path}: {exc}") from None
    finally:
        conn.close()
    if response.status != 200:
        message = payload.get("error") if isinstance(payload, dict) else payload
        raise ControlError(str(message))
    return payload


def socket_in_use(path: Path) -> bool:
    """Whether a live daemon answers on ``path`` (a stale socket file does not count)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def render_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A plain aligned table: ``columns`` are (key, heading) pairs."""
    cells = [[heading for _key, heading in columns]]
    for row in rows:
        cells.append(["-" if row.get(key) is None else str(row.get(key)) for key, _h in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def emit(value: Any, *, as_json: bool, table: str | None = None) -> None:
    """Print JSON for scripts, or the table for people."""
    print(json.dumps(value, indent=2) if as_json or table is None else table)
