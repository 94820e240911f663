"""The host's reservation keys per map WWID (``host/prkeys.py``): kept across restarts in the
state directory, crash-safe, and written once per batch of changes, not once per key."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sanstack.edge.state_file import StateFileError, load_state, save_state
from sanstack.host.config import HostConfig
from sanstack.host.host import Host
from sanstack.host.prkeys import STATE_FILE, MapKey, PrKeyStore, PrKeyTable
from sanstack.mpio.path_slot import PathAddress

W1, W2 = "naa.3000000000000001", "naa.3000000000000002"


def test_the_table_keeps_a_key_per_wwid_and_zero_forgets_it() -> None:
    table = PrKeyTable()
    assert table.set(W1, 0xABC1)
    assert not table.set(W1, 0xABC1)  # the same key again changes nothing
    assert table.set(W2, 0x2222, aptpl=True)
    assert table.get(W1) == MapKey(0xABC1) and table.get(W2) == MapKey(0x2222, True)
    again = PrKeyTable.from_dict(table.to_dict())
    assert again.keys == table.keys
    assert table.set(W1, 0) and table.get(W1) is None
    assert not table.set(W1, 0)
    with pytest.raises(ValueError):
        table.set(W1, 1 << 64)


def test_the_store_survives_a_restart_and_refuses_a_damaged_file(tmp_path: Path) -> None:
    store = PrKeyStore(tmp_path)
    version = store.change(W1, 0xABC1)
    assert store.saved < version
    store.write(*store.snapshot())
    assert store.saved == version
    assert PrKeyStore(tmp_path).get(W1) == MapKey(0xABC1)
    # Memory only without a state directory.
    assert PrKeyStore(None).get(W1) is None
    # A file that is whole but wrong (a zero key) is refused, like a damaged one.
    save_state(tmp_path / STATE_FILE, {"keys": [{"wwid": W1, "key": "0x0", "aptpl": False}]})
    with pytest.raises(StateFileError, match="unusable"):
        PrKeyStore(tmp_path)
    (tmp_path / STATE_FILE).write_bytes(b"{not json")
    with pytest.raises(StateFileError):
        PrKeyStore(tmp_path)


def test_keys_changed_together_cost_one_write_after_the_running_one(tmp_path: Path) -> None:
    async def body() -> None:
        host = Host(HostConfig("iqn.2026-11.org.sanstack.host:p", [PathAddress("x", 1)],
                               state_dir=tmp_path))  # fmt: skip
        writes: list[int] = []
        real = host.prkeys.write

        def counted(state: dict[str, Any], version: int) -> None:
            writes.append(version)
            real(state, version)

        host.prkeys.write = counted  # type: ignore[method-assign]
        wwids = [f"naa.30000000000001{n:02x}" for n in range(64)]
        await asyncio.gather(*(host._save_key(w, 0x1000 + n) for n, w in enumerate(wwids)))
        assert 1 <= len(writes) <= 2  # the first change's write, then one for the rest
        state = load_state(tmp_path / STATE_FILE)
        assert state is not None and len(state["keys"]) == 64
        await host._save_key(wwids[0], 0)  # unregistered: forgotten on disk
        assert PrKeyStore(tmp_path).get(wwids[0]) is None
        assert PrKeyStore(tmp_path).get(wwids[1]) == MapKey(0x1001)

    asyncio.run(body())
