"""State files survive kill -9 at any instant: old or new state, never torn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support.processes import wait_for_line

from sanstack.edge.state_file import (
    StateFileError,
    load_state,
    remove_stale_temporaries,
    save_state,
)

# Says "writing" once its first state is whole on disk, then rewrites the file for ever.
WRITER = """
import sys
from pathlib import Path
from sanstack.edge.state_file import save_state
path, writer = Path(sys.argv[1]), int(sys.argv[2])
def state(n):
    return {"writer": writer, "generation": n, "keys": [f"{k:016x}" for k in range(n % 50)]}
save_state(path, state(1))
print("writing", flush=True)
n = 1
while True:
    n += 1
    save_state(path, state(n))
"""
START_TIMEOUT = 60.0  # a Python start-up on a loaded 2-core machine


def test_round_trip_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "pr.json"
    assert load_state(path) is None
    save_state(path, {"generation": 3, "aptpl": True})
    assert load_state(path) == {"generation": 3, "aptpl": True}


def test_damaged_files_are_reported_not_used(tmp_path: Path) -> None:
    path = tmp_path / "pr.json"
    save_state(path, {"generation": 3})
    raw = path.read_bytes()
    tampered = raw.replace(b'generation\\":3', b'generation\\":4')
    assert tampered != raw
    path.write_bytes(tampered)
    with pytest.raises(StateFileError, match="checksum"):
        load_state(path)
    path.write_bytes(b"{not json")
    with pytest.raises(StateFileError, match="not a sanstack state file"):
        load_state(path)


def test_kill_9_at_random_instants_leaves_a_whole_state(tmp_path: Path) -> None:
    path = tmp_path / "pr.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    seen = set()
    # Each delay counts from the writer's "writing": the kill lands inside the write loop,
    # however long the interpreter took to start.
    for writer_id, delay in enumerate((0.0, 0.05, 0.11, 0.17, 0.23, 0.29, 0.31, 0.37, 0.43)):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(writer_id)],
            env=env,
            stdout=subprocess.PIPE,
        )
        try:
            wait_for_line(writer, b"writing", START_TIMEOUT)
            time.sleep(delay)  # the random instant of the writing, not a wait for anything
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(30)
            assert writer.stdout is not None
            writer.stdout.close()
        state = load_state(path)
        # Whole old or whole new: one of this writer's states (its first is on disk before
        # it says "writing"), whose keys match its generation.
        assert state is not None
        assert state["writer"] == writer_id
        n = state["generation"]
        assert state["keys"] == [f"{k:016x}" for k in range(n % 50)]
        seen.add(n)
        remove_stale_temporaries(tmp_path)
        assert [p.name for p in tmp_path.iterdir()] == ["pr.json"]
    assert len(seen) > 1
