"""Snapshot volumes after a power cut, checked crash state by crash state (issue 14).

bench/volume_crash.py records random workloads (writes, concurrent writes, unmaps,
FLUSHes, snapshot create/delete/restore, a schedule, backups reading a snapshot) through a
log-writes device, replays each log to many crash states (every write a completed FLUSH
covered, plus any subset of the others, whole or torn at 512-byte boundaries) and opens
and checks each: open succeeds; every block reads its last write acknowledged before the
last completed FLUSH, or a later one, never anything else; the snapshots listed are those
the host may see, each reading exactly its point in time.

The seeds are fixed, so a failure names a seed and a crash state that reproduce it
(``python -m bench.volume_crash --seed N`` runs the long version).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from bench.volume_crash import check_recording, record

SEEDS = (1, 2, 3, 4)
STATES_PER_SEED = 900


@pytest.mark.xfail(strict=True, reason="format 1 has the gaps docs/volume-format.md records")
def test_every_crash_state_of_random_workloads_opens_and_keeps_its_promises() -> None:
    async def go() -> tuple[int, list[str]]:
        states = 0
        failures: list[str] = []
        for seed in SEEDS:
            recording = await record(seed)
            result = await check_recording(recording, budget=STATES_PER_SEED)
            states += result.states
            failures.extend(result.failures)
        return states, failures

    started = time.monotonic()
    states, failures = asyncio.run(go())
    elapsed = time.monotonic() - started
    print(f"seeds {SEEDS}: {states} crash states checked in {elapsed:.1f} s")
    assert not failures, "\n".join(failures)
    assert states == len(SEEDS) * STATES_PER_SEED
