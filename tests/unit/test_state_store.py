"""State files survive kill -9 at any instant: old or new state, never torn."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sanstack.target.state_store import (
    StateFileError,
    load_state,
    remove_stale_temporaries,
    save_state,
)

WRITER = """
import sys
from pathlib import Path
from sanstack.target.state_store import save_state
path = Path(sys.argv[1])
n = 0
while True:
    n += 1
    save_state(path, {"generation": n, "keys": [f"{k:016x}" for k in range(n % 50)]})
"""


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
    for delay in (0.05, 0.11, 0.17, 0.23, 0.29, 0.31, 0.37, 0.43):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env)
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        state = load_state(path)
        assert state is not None
        n = state["generation"]
        assert state["keys"] == [f"{k:016x}" for k in range(n % 50)]
        seen.add(n)
        remove_stale_temporaries(tmp_path)
        assert [p.name for p in tmp_path.iterdir()] == ["pr.json"]
    assert len(seen) > 1
