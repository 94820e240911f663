"""The demo's ports: the ones its last run used (``ports.json`` in its directory), else the
defaults of ``plan.DEFAULT_PORTS``; any that is in use now is replaced by a free one.

A free port is taken at random below the kernel's ephemeral range, as the tests do: between
this check and the daemon's bind, no outgoing connection can be given it as its source
port. Nothing stops another program from taking one in that moment; the daemon that then
cannot bind says so and the demo stops, naming it.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Mapping
from pathlib import Path

from sanstack.demo.plan import DEFAULT_PORTS, HOST, UDP_PORTS
from sanstack.edge.state_file import write_atomically
from sanstack.errors import ConfigError

FIRST_PICKED_PORT = 10000
_PICK = random.SystemRandom()


def _free(port: int, udp: bool) -> bool:
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        if not udp:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _ephemeral_start() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _pick_free(udp: bool, taken: set[int]) -> int:
    low = _ephemeral_start()
    for _ in range(200):
        port = _PICK.randrange(FIRST_PICKED_PORT, low) if low > FIRST_PICKED_PORT + 100 else 0
        if port not in taken and _free(port, udp):
            return port
    raise ConfigError("--dir", f"no free port found on {HOST}")


def saved_ports(path: Path) -> dict[str, int]:
    """What the last run chose; nothing if it is missing or unreadable (it is only a hint)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if k in DEFAULT_PORTS and isinstance(v, int)}


def choose_ports(saved: Mapping[str, int]) -> dict[str, int]:
    """One port per name of ``DEFAULT_PORTS``, all different, each free now."""
    chosen: dict[str, int] = {}
    for name, default in DEFAULT_PORTS.items():
        udp = name in UDP_PORTS
        taken = set(chosen.values())
        for candidate in (saved.get(name), default):
            if candidate and candidate not in taken and _free(candidate, udp):
                chosen[name] = candidate
                break
        else:
            chosen[name] = _pick_free(udp, taken)
    return chosen


def save_ports(path: Path, ports: Mapping[str, int]) -> None:
    write_atomically(path, (json.dumps(dict(ports), indent=1) + "\n").encode())
