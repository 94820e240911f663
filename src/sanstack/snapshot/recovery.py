"""Reading a volume back at open: doublewrite repair, checkpoint, journal replay, upgrade.

``recover`` rebuilds the state a format 2 volume had: torn checkpoint pages are first
rebuilt from the doublewrite slots; then the snapshot table and forward map are loaded,
and the journal replayed from the superblock's tail. Units before the newest MARK found are
trusted (a MARK is written only after a FLUSH completed, so its presence proves that
FLUSH); after it, each MAP record's chunk is read and must match the record's CRC32C, and
the first that does not ends the log there (its data never arrived, so no FLUSH followed
it, and nothing after it was promised).

``upgrade_format1`` turns a format 1 volume into format 2 in place: replay the old
journal, classify the whole chunk table, write every changed page and a format 1
superblock whose log is empty, then the format 2 superblock. A crash before that last
write leaves a format 1 volume that opens (and upgrades) again.
"""

from __future__ import annotations

import logging

from sanstack.block.device import BlockDevice
from sanstack.iscsi.digest import crc32c
from sanstack.snapshot.images import capture_images
from sanstack.snapshot.journal import Truncation, write_images
from sanstack.snapshot.journal_format import (
    DOUBLEWRITE_SLOTS,
    UNIT,
    UNITS_PER_PAGE,
    decode_directory,
    decode_journal_unit,
    directory_offset,
    ring_units,
)
from sanstack.snapshot.layout import (
    PAGE,
    UNMAPPED,
    VERSION,
    MapRecord,
    MarkRecord,
    Record,
    Superblock,
    decode_journal_page,
)
from sanstack.snapshot.model import NotAVolume
from sanstack.snapshot.state import VolumeState

READ_UNITS = 512

log = logging.getLogger("sanstack.snapshot.volume")


async def recover_or_upgrade(
    base: BlockDevice, superblock: Superblock
) -> tuple[VolumeState, int, Truncation | None]:
    """``recover``, after upgrading a format 1 volume (which needs a writable device)."""
    if superblock.version == 1:
        if base.read_only:
            raise NotAVolume(
                "volume format 1 is upgraded to format 2 when opened for writing; "
                "open it read-write once"
            )
        log.info("upgrading the volume from format 1 to format 2")
        superblock = await upgrade_format1(base, superblock)
    state, next_seq, truncation = await recover(base, superblock)
    if truncation is not None:
        log.warning(
            "journal replay stopped at unit %d: a mapped chunk's data did not reach the "
            "device before the power cut; later unflushed records were dropped",
            truncation.seq,
        )
    return state, next_seq, truncation


async def restore_doublewrite(base: BlockDevice, superblock: Superblock) -> None:
    """Rewrite the pages of the last doublewrite batch whose in-place copy differs."""
    g = superblock.geometry
    bs = base.block_size
    raw = await base.read(directory_offset(g) // bs, (1 + DOUBLEWRITE_SLOTS) * PAGE // bs)
    entries = decode_directory(raw[:PAGE])
    repaired = False
    for i, (offset, crc) in enumerate(entries):
        image = bytes(raw[(1 + i) * PAGE : (2 + i) * PAGE])
        if crc32c(image) != crc:
            continue  # torn in the slot: its in-place write had not begun
        if bytes(await base.read(offset // bs, PAGE // bs)) != image:
            await base.write(offset // bs, image)
            repaired = True
    if repaired:
        await base.flush()


async def _load_checkpoint(base: BlockDevice, superblock: Superblock) -> VolumeState:
    """The state as the last checkpoint wrote it (snapshot table, forward map)."""
    g = superblock.geometry
    bs = base.block_size
    per_page = PAGE // bs
    state = VolumeState(superblock)
    raw = await base.read(g.snapshot_table // bs, g.snapshot_table_pages * per_page)
    for n in range(g.snapshot_table_pages):
        state.load_snapshot_page(n, raw[n * PAGE : (n + 1) * PAGE])
    for first in range(0, g.map_pages, 256):
        count = min(256, g.map_pages - first)
        raw = await base.read((g.forward_map + first * PAGE) // bs, count * per_page)
        for i in range(count):
            state.load_map_page(first + i, raw[i * PAGE : (i + 1) * PAGE])
    return state


async def _read_units(base: BlockDevice, superblock: Superblock) -> list[tuple[int, list[Record]]]:
    """Every valid unit from the tail on, in order, until the log ends."""
    g = superblock.geometry
    ring = ring_units(g)
    bs = base.block_size
    per_block = max(1, bs // UNIT)
    seq = superblock.journal_tail_seq
    units: list[tuple[int, list[Record]]] = []
    while len(units) < ring:
        index = seq % ring
        count = min(READ_UNITS, ring - index)
        count -= count % per_block
        raw = await base.read((g.journal + index * UNIT) // bs, count * UNIT // bs)
        for i in range(count):
            records = decode_journal_unit(raw[i * UNIT : (i + 1) * UNIT], seq, index + i)
            if records is None:
                return units
            units.append((seq, records))
            seq += 1
    return units


async def recover(
    base: BlockDevice, superblock: Superblock
) -> tuple[VolumeState, int, Truncation | None]:
    """At open: the state, the sequence number the log goes on at, and where replay cut
    the log short (None if it ended on its own).

    The chunk table is not read here: the volume's free-space scan reads it in the background.
    """
    await restore_doublewrite(base, superblock)
    state = await _load_checkpoint(base, superblock)
    g = superblock.geometry
    bs = base.block_size
    units = await _read_units(base, superblock)
    proven = superblock.journal_tail_seq
    for _seq, records in units:
        for record in records:
            if isinstance(record, MarkRecord):
                proven = max(proven, record.proven_seq)
    next_seq = units[-1][0] + 1 if units else superblock.journal_tail_seq
    for seq, records in units:
        for i, record in enumerate(records):
            if seq >= proven and isinstance(record, MapRecord) and record.p != UNMAPPED:
                data = await base.read(g.chunk_offset(record.p) // bs, g.chunk_size // bs)
                if crc32c(data) != record.crc:
                    return state, seq, Truncation(seq, records[:i], next_seq)
            state.replay(record)
    return state, next_seq, None


async def upgrade_format1(base: BlockDevice, superblock: Superblock) -> Superblock:
    """Rewrite a format 1 volume as format 2 (same geometry); the new superblock."""
    g = superblock.geometry
    bs = base.block_size
    await restore_doublewrite(base, superblock)  # an upgrade cut short used it
    state = await _load_checkpoint(base, superblock)
    seq = superblock.journal_tail_seq
    while True:  # format 1's journal: 4 KiB pages, ring index seq % journal_pages
        index = seq % g.journal_pages
        raw = await base.read((g.journal + index * PAGE) // bs, PAGE // bs)
        records = decode_journal_page(raw, seq, index)
        if records is None:
            break
        for record in records:
            state.replay(record)
        seq += 1
    state.start()
    for first in range(0, g.table_pages, 64):
        count = min(64, g.table_pages - first)
        raw = await base.read((g.chunk_table + first * PAGE) // bs, count * PAGE // bs)
        for i in range(count):
            state.scan_page(first + i, raw[i * PAGE : (i + 1) * PAGE])
    images = capture_images(state)
    await base.flush()  # the replayed records' data, before any image that names it
    ring_first = (directory_offset(g) - g.journal) // PAGE
    live = {i % g.journal_pages for i in range(superblock.journal_tail_seq, seq)}
    if live.isdisjoint(range(ring_first, g.journal_pages)):
        await write_images(base, g, images, superblock.generation + 1)
    else:  # the old log still needs those pages: in place, as format 1 always did
        for offset, image in images:
            await base.write(offset // bs, image)
        await base.flush()
    fields = {
        "journal_tail_seq": seq,
        "epoch": state.epoch,
        "next_snapshot_id": state.next_snapshot_id,
        "restore_snapshot_id": state.restore_snapshot_id,
        "restore_epoch": state.restore_epoch,
        "policy": state.policy,
        "schedule": state.schedule,
    }
    emptied = superblock.next_generation(**fields)
    await base.write(emptied.generation % 2 * PAGE // bs, emptied.encode())
    await base.flush()
    # Format 2 starts its ring afresh: no unit there is valid (other magic, old pages).
    upgraded = emptied.next_generation(version=VERSION, journal_tail_seq=UNITS_PER_PAGE)
    await base.write(upgraded.generation % 2 * PAGE // bs, upgraded.encode())
    await base.flush()
    return upgraded
