"""Record every write below a stack, then rebuild the device as any power cut could leave it.

The model is dm-log-writes with xfstests' ``replay-log`` and CrashMonkey's permuted
replay (docs/volume-format.md, "How the harness checks it"):

* ``LogWritesDevice`` wraps a ``BlockDevice`` and presents a volatile write cache. Every
  write (with its data), FUA write, discard and FLUSH goes into a ``WriteLog``, and so do
  the caller's marks (``mark``), which a checker uses to say what the stack above had
  acknowledged at that point. Entries are logged when issued; a FLUSH is logged when it
  completes and covers exactly the writes that had *completed* when it was issued (the
  Linux ``REQ_PREFLUSH`` rule), a FUA write is durable once its completion is logged.
* ``Replayer`` builds the device's contents from a log: as of any prefix of it
  (``image_at``: every write issued so far reached the medium, as after a process crash),
  or as of any crash state the block layer allows at a point (``build``): everything a
  completed FLUSH or FUA made durable, plus any subset of the other writes issued before
  that point, each whole or torn into any subset of its sectors. Applying the kept
  sectors in issue order reaches every per-sector outcome any reordering could give.
* ``Replayer.crash_states`` enumerates those states, bounded and seeded: every subset
  when the window of unflushed writes is small, a deterministic sample when it is not.

Images are ``{sector: bytes}`` dicts, absent sectors reading as zeroes (``MemoryDevice``
keeps its blocks the same way). Sans-IO apart from the wrapper's awaits on the device it
wraps.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from sanstack.block.device import BlockDevice, LBAExtent

WHOLE: Final = -1  # the sector mask of a write kept in full
LOG_MAGIC: Final = b"SANSLOGW"
_HEAD = struct.Struct("<8sIIQQ")  # magic, version, sector size, sectors, entries
_ENTRY = struct.Struct("<BBQIQI")  # kind, fua, sector, count, ref, data length
_U64 = struct.Struct("<Q")


class EntryKind(IntEnum):
    WRITE = 1  # data issued to ``sector``; ``fua``: durable once its FUA_DONE is logged
    DISCARD = 2  # ``count`` sectors read as zeroes afterwards (if it reaches the medium)
    FLUSH = 3  # completed; covers the writes completed when it was issued (``ref``)
    FUA_DONE = 4  # the FUA write at entry ``ref`` completed
    MARK = 5  # a label from the stack above (``data`` is its UTF-8 text)


@dataclass(frozen=True, slots=True)
class LogEntry:
    kind: EntryKind
    sector: int = 0
    count: int = 0
    data: bytes = b""
    fua: bool = False
    ref: int = 0  # FLUSH: writes below this entry index were issued before it; FUA_DONE: the write
    uncovered: tuple[int, ...] = ()  # FLUSH: writes below ``ref`` still in flight at its issue

    @property
    def label(self) -> str:
        return self.data.decode()


class WriteLog:
    """The entries of one recording, and the device image it started from."""

    def __init__(
        self, sector_size: int, sectors: int, initial: Mapping[int, bytes] | None = None
    ) -> None:
        self.sector_size = sector_size
        self.sectors = sectors
        self.initial: dict[int, bytes] = dict(initial or {})
        self.entries: list[LogEntry] = []
        self._in_flight: set[int] = set()

    # -- recording --------------------------------------------------------------------

    def begin_write(self, sector: int, data: bytes, *, fua: bool = False) -> int:
        if len(data) % self.sector_size or not data:
            raise ValueError(f"a write of {len(data)} bytes is not whole sectors")
        index = len(self.entries)
        count = len(data) // self.sector_size
        self.entries.append(LogEntry(EntryKind.WRITE, sector, count, bytes(data), fua))
        self._in_flight.add(index)
        return index

    def begin_discard(self, sector: int, count: int) -> int:
        index = len(self.entries)
        self.entries.append(LogEntry(EntryKind.DISCARD, sector, count))
        self._in_flight.add(index)
        return index

    def end_io(self, index: int) -> None:
        self._in_flight.discard(index)
        if self.entries[index].fua:
            self.entries.append(LogEntry(EntryKind.FUA_DONE, ref=index))

    def flush_issued(self) -> tuple[int, tuple[int, ...]]:
        """What a FLUSH issued now covers: entries below the index, minus those in flight."""
        return len(self.entries), tuple(sorted(self._in_flight))

    def flush_done(self, issued: tuple[int, tuple[int, ...]]) -> None:
        ref, uncovered = issued
        self.entries.append(LogEntry(EntryKind.FLUSH, ref=ref, uncovered=uncovered))

    def mark(self, label: str) -> int:
        self.entries.append(LogEntry(EntryKind.MARK, data=label.encode()))
        return len(self.entries) - 1

    def marks(self) -> list[tuple[int, str]]:
        return [(i, e.label) for i, e in enumerate(self.entries) if e.kind == EntryKind.MARK]

    # -- a file format, for logs kept or shipped ---------------------------------------

    def encode(self) -> bytes:
        """The log as bytes: a header, then each entry (uncovered writes, then data)."""
        out = [_HEAD.pack(LOG_MAGIC, 1, self.sector_size, self.sectors, len(self.entries))]
        out.append(_U64.pack(len(self.initial)))
        for sector in sorted(self.initial):
            out.append(_U64.pack(sector) + self.initial[sector])
        for e in self.entries:
            out.append(_ENTRY.pack(e.kind, e.fua, e.sector, e.count, e.ref, len(e.data)))
            out.append(_U64.pack(len(e.uncovered)))
            out.extend(_U64.pack(i) for i in e.uncovered)
            out.append(e.data)
        return b"".join(out)

    @classmethod
    def decode(cls, raw: bytes) -> WriteLog:
        magic, version, sector_size, sectors, count = _HEAD.unpack_from(raw)
        if magic != LOG_MAGIC or version != 1:
            raise ValueError("not a sanstack write log (magic or version)")
        pos = _HEAD.size
        (initial_count,) = _U64.unpack_from(raw, pos)
        pos += 8
        initial = {}
        for _ in range(initial_count):
            (sector,) = _U64.unpack_from(raw, pos)
            initial[sector] = raw[pos + 8 : pos + 8 + sector_size]
            pos += 8 + sector_size
        log = cls(sector_size, sectors, initial)
        for _ in range(count):
            kind, fua, sector, n, ref, length = _ENTRY.unpack_from(raw, pos)
            pos += _ENTRY.size
            (uncovered_count,) = _U64.unpack_from(raw, pos)
            pos += 8
            uncovered = tuple(_U64.unpack_from(raw, pos + 8 * i)[0] for i in range(uncovered_count))
            pos += 8 * uncovered_count
            data = raw[pos : pos + length]
            pos += length
            log.entries.append(
                LogEntry(EntryKind(kind), sector, n, data, bool(fua), ref, uncovered)
            )
        if pos != len(raw):
            raise ValueError(f"write log has {len(raw) - pos} bytes after its last entry")
        return log


@dataclass(frozen=True, slots=True)
class CrashState:
    """The device after a power cut once entries ``[0, point)`` had happened.

    ``kept`` lists the writes not made durable by a FLUSH or FUA that reached the medium
    anyway, in issue order, each with the mask of its sectors that did (``WHOLE``: all).
    """

    point: int
    kept: tuple[tuple[int, int], ...] = ()

    def describe(self) -> str:
        parts = [str(i) if m == WHOLE else f"{i}/{m:#x}" for i, m in self.kept]
        return f"point {self.point}, kept [{' '.join(parts)}]"


class Replayer:
    """Builds images of a ``WriteLog``: at a prefix, or at a crash state."""

    def __init__(self, log: WriteLog) -> None:
        self.log = log
        self._cursor = 0  # prefix image cache: ``_image`` has every entry below it applied
        self._image: dict[int, bytes] = dict(log.initial)
        # Per entry: the last FLUSH completed at or before it (durable frontier).
        self._frontier: list[int] = []
        last = -1
        for i, e in enumerate(log.entries):
            if e.kind == EntryKind.FLUSH:
                last = i
            self._frontier.append(last)

    # -- prefixes ---------------------------------------------------------------------

    def _apply(self, image: dict[int, bytes], entry: LogEntry, mask: int = WHOLE) -> None:
        size = self.log.sector_size
        for i in range(entry.count):
            if mask != WHOLE and not (mask >> i) & 1:
                continue
            if entry.kind == EntryKind.WRITE:
                image[entry.sector + i] = entry.data[i * size : (i + 1) * size]
            else:
                image.pop(entry.sector + i, None)

    def _prefix(self, end: int, skip: tuple[int, ...] = ()) -> dict[int, bytes]:
        """Every write and discard issued below ``end`` applied in order (``skip`` aside)."""
        if skip:
            image = dict(self.log.initial)
            start = 0
        else:
            if end < self._cursor:
                self._cursor, self._image = 0, dict(self.log.initial)
            image, start = self._image, self._cursor
        entries = self.log.entries
        for i in range(start, end):
            if entries[i].kind in (EntryKind.WRITE, EntryKind.DISCARD) and i not in skip:
                self._apply(image, entries[i])
        if skip:
            return image
        self._cursor = end
        return dict(image)

    def image_at(self, point: int) -> dict[int, bytes]:
        """The device once entries ``[0, point)`` happened and every write reached it."""
        return self._prefix(point)

    def flush_points(self) -> list[int]:
        """The points right after each completed FLUSH or FUA write (generic/482's)."""
        kinds = (EntryKind.FLUSH, EntryKind.FUA_DONE)
        return [i + 1 for i, e in enumerate(self.log.entries) if e.kind in kinds]

    # -- crash states -----------------------------------------------------------------

    def split(self, point: int) -> tuple[int, tuple[int, ...], list[int], list[int]]:
        """At ``point``: the covered prefix end, its uncovered writes, then the writes after
        it that are durable (FUA done before ``point``) and those that may be lost."""
        flush = self._frontier[point - 1] if point else -1
        uncovered: tuple[int, ...] = ()
        if flush < 0:
            covered = 0
        else:
            entry = self.log.entries[flush]
            covered, uncovered = entry.ref, entry.uncovered
        entries = self.log.entries
        fua_done = {
            entries[i].ref for i in range(covered, point) if entries[i].kind == EntryKind.FUA_DONE
        }
        io = (EntryKind.WRITE, EntryKind.DISCARD)
        durable: list[int] = []
        pending: list[int] = list(uncovered)
        for i in range(covered, point):
            if entries[i].kind in io:
                (durable if i in fua_done else pending).append(i)
        for i in uncovered:
            if i in fua_done:
                pending.remove(i)
                durable.append(i)
        return covered, uncovered, sorted(durable), sorted(pending)

    def durable_image(self, point: int) -> dict[int, bytes]:
        """What every crash at ``point`` keeps: the state that loses all it may."""
        return self.build(CrashState(point))

    def build(self, state: CrashState) -> dict[int, bytes]:
        covered, uncovered, durable, _pending = self.split(state.point)
        image = self._prefix(covered, uncovered)
        kept = dict(state.kept)
        for i in sorted(set(durable) | set(kept) | set(uncovered)):
            if i in kept:
                self._apply(image, self.log.entries[i], kept[i])
            elif i in durable:
                self._apply(image, self.log.entries[i])
        return image

    def crash_states(
        self, point: int, *, limit: int = 64, seed: int = 0, tear: bool = True
    ) -> list[CrashState]:
        """Up to ``limit`` distinct crash states at ``point``, the same for the same seed.

        Every subset of the writes that may be lost when there are few enough (then, with
        ``tear``, each such write cut at each sector boundary, the others kept); otherwise
        none, all, and a sample in which each write is kept with probability 1/2 and a
        kept one is torn (a prefix, or any subset of its sectors) with probability 1/4.
        """
        pending = self.split(point)[3]
        entries = self.log.entries
        out: dict[tuple[tuple[int, int], ...], None] = {}

        def add(kept: list[tuple[int, int]]) -> None:
            if len(out) < limit:
                out[tuple(sorted(kept))] = None

        n = len(pending)
        if n < 20 and 1 << n <= limit:
            for bits in range(1 << n):
                add([(w, WHOLE) for b, w in enumerate(pending) if (bits >> b) & 1])
            cuts = list(self._cuts(pending)) if tear else []
            room = limit - len(out)
            if len(cuts) > room:
                cuts = random.Random(f"{seed}:{point}").sample(cuts, room)
            for w, cut in cuts:
                add([(x, WHOLE) for x in pending if x != w] + [(w, (1 << cut) - 1)])
        else:
            rng = random.Random(f"{seed}:{point}")
            add([])
            add([(w, WHOLE) for w in pending])
            attempts = 0
            while len(out) < limit and attempts < limit * 4:
                attempts += 1
                kept = []
                for w in pending:
                    if rng.random() < 0.5:
                        continue
                    count = entries[w].count
                    mask = WHOLE
                    if tear and count > 1 and rng.random() < 0.25:
                        if rng.random() < 0.5:
                            mask = (1 << rng.randrange(1, count)) - 1
                        else:
                            mask = rng.getrandbits(count) or 1
                    kept.append((w, mask))
                add(kept)
        return [CrashState(point, kept) for kept in out]

    def _cuts(self, pending: list[int]) -> Iterator[tuple[int, int]]:
        for w in pending:
            for cut in range(1, self.log.entries[w].count):
                yield w, cut


class LogWritesDevice(BlockDevice):
    """A ``BlockDevice`` that logs every write, discard and FLUSH it passes down.

    It presents a volatile write cache (``write_cache``), so the stack above issues the
    FLUSHes a real disk would need; the device below sees the same I/O.
    """

    write_cache = True
    thin_provisioned = True

    def __init__(self, inner: BlockDevice, initial: Mapping[int, bytes] | None = None) -> None:
        self.inner = inner
        self.block_size = inner.block_size
        self.num_blocks = inner.num_blocks
        self.identity = inner.identity
        self.read_only = inner.read_only
        self.log = WriteLog(inner.block_size, inner.num_blocks, initial)

    def mark(self, label: str) -> int:
        return self.log.mark(label)

    async def read(self, lba: int, count: int) -> bytes | memoryview:
        return await self.inner.read(lba, count)

    async def write(self, lba: int, data: bytes | memoryview, *, fua: bool = False) -> None:
        index = self.log.begin_write(lba, bytes(data), fua=fua)
        try:
            await self.inner.write(lba, data)
            if fua and self.inner.write_cache:
                await self.inner.flush()
        finally:
            self.log.end_io(index)

    async def flush(self) -> None:
        issued = self.log.flush_issued()
        await self.inner.flush()
        self.log.flush_done(issued)

    async def unmap(self, lba: int, count: int) -> None:
        index = self.log.begin_discard(lba, count)
        try:
            await self.inner.unmap(lba, count)
        finally:
            self.log.end_io(index)

    async def get_lba_status(self, lba: int, max_count: int) -> list[LBAExtent]:
        return await self.inner.get_lba_status(lba, max_count)

    def health(self) -> str | None:
        return self.inner.health()

    async def close(self) -> None:
        await self.inner.close()
