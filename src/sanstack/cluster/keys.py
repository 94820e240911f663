"""A node's SCSI-3 persistent reservation key (docs/cluster-design.md, "Keys").

``node_key(cluster, node) = H32(cluster) << 32 | H32(cluster + "\\0" + node)``, with ``H32``
the first four bytes of SHA-256 (big-endian) of the UTF-8 text. The high word is the same
for every node of a cluster, so a key read back from a disk tells which cluster registered
it; the low word tells the node. Derived, not stored: the same on every restart and on
every node that reads the shared config, and never 0 (SPC-4: a reservation key of 0 means
"unregister"), because a low word of 0 is replaced by 1.
"""

from __future__ import annotations

import hashlib

KEY_BYTES = 8


def _h32(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def node_key(cluster: str, node: str) -> int:
    """The 8-byte key ``node`` of ``cluster`` registers on every path of every disk."""
    low = _h32(f"{cluster}\0{node}") or 1
    return _h32(cluster) << 32 | low


def cluster_word(cluster: str) -> int:
    """The high 32 bits every key of ``cluster`` carries."""
    return _h32(cluster)


def format_key(key: int) -> str:
    """``0x`` and 16 hex digits, as tables and the JSON of events show a key."""
    return f"0x{key:016x}"


def parse_key(text: str) -> int:
    """The inverse of ``format_key`` (any hex form of a 64-bit value); ValueError if not."""
    value = int(text, 16)
    if not 0 <= value < 1 << 64:
        raise ValueError(f"{text!r} is not a 64-bit key")
    return value


def key_bytes(key: int) -> bytes:
    """The key as a PR parameter list carries it (big-endian, 8 bytes)."""
    return key.to_bytes(KEY_BYTES, "big")
