"""The host's read path hands a batch on in pieces (``edge.driver.RELAY_PIECE``): a segment
of NBD requests goes to the target as a send per piece, and a segment of answers back to
the NBD client the same way, so the target starts on the first requests while the host
reads the rest (docs/benchmarks.md, "Issue 15, host side"). Driven through
bench/host_read_cost.py's in-process host: the NBD handler, a map and one session."""

from __future__ import annotations

import asyncio

import pytest
from bench.host_read_cost import measure

from sanstack.edge.driver import RELAY_PIECE


@pytest.mark.parametrize("depth", [1, RELAY_PIECE, 32, 33])
def test_a_segment_is_handed_on_in_pieces(depth: int) -> None:
    rounds = 3
    cost = asyncio.run(measure(depth, rounds))
    pieces = -(-depth // RELAY_PIECE)  # the last piece leaves at the segment's end
    assert cost.target_sends == rounds * pieces
    assert cost.client_sends == rounds * pieces
    assert cost.us_per_read > 0
