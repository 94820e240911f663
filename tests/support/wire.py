"""Wire bytes written by hand: the hex of codec vectors, laid out as the spec draws them."""

from __future__ import annotations


def hx(text: str) -> bytes:
    """Hex digits with whitespace and ``#`` comments."""
    return bytes.fromhex("".join(line.split("#", 1)[0] for line in text.splitlines()))
