"""The checkpoint's images: the pages of the tables that changed, from ``VolumeState``.

Pure (sans-IO): a checkpoint captures them in one synchronous step, then writes them
(snapshot/journal.py ``write_images``); the format 1 upgrade does the same once.
"""

from __future__ import annotations

from sanstack.snapshot.layout import (
    MAP_PER_PAGE,
    PAGE,
    SLOTS_PER_PAGE,
    TABLE_PER_PAGE,
    UNMAPPED,
    SnapshotRecord,
    encode_map_page,
    encode_slot_page,
    encode_table_page,
)
from sanstack.snapshot.state import Chunk, VolumeState


def capture_images(state: VolumeState) -> list[tuple[int, bytes]]:
    """Every changed page as (byte offset, image), in device order; clears the dirty sets."""
    g = state.geometry
    images = [(g.snapshot_table + n * PAGE, slot_page_image(state, n)) for n in state.dirty_slots]
    images += [(g.forward_map + n * PAGE, map_page_image(state, n)) for n in state.dirty_map]
    images += [(g.chunk_table + n * PAGE, table_page_image(state, n)) for n in state.dirty_table]
    state.dirty_slots.clear()
    state.dirty_map.clear()
    state.dirty_table.clear()
    return sorted(images)


def map_page_image(state: VolumeState, number: int) -> bytes:
    base = number * MAP_PER_PAGE
    entries = []
    for v in range(base, min(base + MAP_PER_PAGE, state.n)):
        p = state.map_p[v]
        p_enc = 0 if p == v else (UNMAPPED if p == UNMAPPED else p + 1)
        entries.append((p_enc, state.map_birth[v]))
    return encode_map_page(entries, number)


def table_page_image(state: VolumeState, number: int) -> bytes:
    base = number * TABLE_PER_PAGE
    entries = []
    for p in range(base, min(base + TABLE_PER_PAGE, state.pool)):
        if state.chunk[p] == Chunk.DEAD:
            entries.append((state.dead_v[p], state.dead_birth[p], state.dead_death[p]))
        else:
            entries.append((0, 0, 0))
    return encode_table_page(entries, number)


def slot_page_image(state: VolumeState, number: int) -> bytes:
    base = number * SLOTS_PER_PAGE
    by_slot = {s.slot: s for s in state.snapshots.values()}
    return encode_slot_page(
        [by_slot.get(i, SnapshotRecord.empty(i)) for i in range(base, base + SLOTS_PER_PAGE)],
        number,
    )
