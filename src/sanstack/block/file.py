"""The file backstore: a LUN kept in a (sparse) regular file or a block device node.

Performance design. A random 4 KiB read of data in the page cache costs a few microseconds,
while a hop to a worker thread and back costs tens: so ``read`` first tries
``preadv(..., RWF_NOWAIT)`` on the event loop, which copies cached data or fails with
EAGAIN instead of sleeping on the disk, and only the remainder (an uncached or partly
cached range) goes to a thread. Writes do the same with ``pwritev(..., RWF_NOWAIT)`` where
the filesystem supports it. ext4 answers EOPNOTSUPP for buffered writes; from the first such
answer on, a page-aligned write (which needs no read of old data) is written on the loop
while such writes stay fast (``_write_inline``: one slow write sends writes to the threads
for a second), and other writes go to the threads, those of one loop iteration together in
one thread job (``_write_in_batch``). Transfers above ``NOWAIT_MAX_BYTES`` go
straight to a thread, since copying megabytes on the loop would stall every other session.
The threads come from a bounded pool the device owns, so a slow disk cannot multiply
threads, and ``close`` waits for every thread operation before the descriptor is closed (a
closed-and-reused descriptor number under a running ``pread`` would read another file).

An exclusive ``flock`` taken at open keeps a second process (or a second ``FileDevice``)
from serving the same file; it is released when the descriptor closes.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sanstack.block.device import (
    BLOCK_SIZES,
    BlockDevice,
    BlockDeviceError,
    DeviceIdentity,
    DeviceNotReady,
    DeviceReadOnly,
    LBAExtent,
    MediumError,
    ProvisioningStatus,
    SpaceExhausted,
)
from sanstack.errors import SanstackError

_T = TypeVar("_T")

DEFAULT_IO_THREADS: Final = 8
# Larger transfers skip the on-loop attempt: a cached copy of this size takes ~20 us.
NOWAIT_MAX_BYTES: Final = 256 * 1024
# A page-aligned write needs no read of old data: it may run on the loop (_write_inline).
_PAGE_MASK: Final = os.sysconf("SC_PAGE_SIZE") - 1
# Slow enough to be the kernel throttling a writer (its pauses run 10-200 ms), not the
# process losing its CPU for a few milliseconds on a busy machine.
INLINE_WRITE_SLOW_SECONDS: Final = 0.02
INLINE_WRITE_BACKOFF_SECONDS: Final = 1.0
# Zeroes written per pwrite when punching holes is unsupported.
ZERO_CHUNK_BYTES: Final = 1 << 20

# linux/falloc.h
FALLOC_FL_KEEP_SIZE: Final = 0x01
FALLOC_FL_PUNCH_HOLE: Final = 0x02

_RWF_NOWAIT: Final[int] = getattr(os, "RWF_NOWAIT", 0)
# preadv2/pwritev2 answers for "this flag or this call is not supported here".
_NOWAIT_UNSUPPORTED: Final = frozenset({errno.EOPNOTSUPP, errno.ENOSYS})
_PUNCH_UNSUPPORTED: Final = frozenset({errno.EOPNOTSUPP, errno.ENOSYS, errno.ENODEV})


class BackstoreInUse(SanstackError):
    """The backing file is locked by another process or another open ``FileDevice``."""


@dataclass(slots=True)
class FileDeviceStats:
    """How I/O was served: on the event loop (``nowait_*``) or by a worker thread."""

    nowait_reads: int = 0
    thread_reads: int = 0
    nowait_writes: int = 0
    thread_writes: int = 0
    write_batches: int = 0  # thread jobs that carried the small thread_writes
    inline_writes: int = 0  # page-aligned writes done on the loop (no RWF_NOWAIT writes)
    slow_inline_writes: int = 0  # of those, the ones that sent writes to threads for a while


def _load_fallocate() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    fn = getattr(libc, "fallocate64", None) or getattr(libc, "fallocate", None)
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int
    fallocate: Callable[[int, int, int, int], int] = fn
    return fallocate


_fallocate = _load_fallocate()


def _punch_hole(fd: int, offset: int, length: int) -> None:
    """fallocate(PUNCH_HOLE|KEEP_SIZE): deallocate the range; it then reads as zeroes."""
    if _fallocate is None:
        raise OSError(errno.ENOSYS, "fallocate is not available")
    if _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _pread_into(fd: int, buf: bytearray, start: int, offset: int) -> None:
    view = memoryview(buf)
    while start < len(buf):
        n = os.preadv(fd, [view[start:]], offset + start)
        if n == 0:
            raise EOFError(f"end of file at offset {offset + start}")
        start += n


def _pread_whole(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset``: ``os.pread`` reads into a new, unzeroed bytes object,
    where a ``bytearray`` would first be zero-filled (a megabyte per large read)."""
    data = os.pread(fd, size, offset)
    if len(data) == size:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            raise EOFError(f"end of file at offset {offset + got}")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _pwrite_all(fd: int, data: memoryview, start: int, offset: int) -> None:
    while start < len(data):
        n = os.pwritev(fd, [data[start:]], offset + start)
        if n == 0:  # never for a regular file; do not spin if a device says so
            raise OSError(errno.EIO, f"write of zero bytes at offset {offset + start}")
        start += n


def _pwrite_batch(fd: int, writes: list[tuple[memoryview, int, int]]) -> list[OSError | None]:
    """Each write of a batch in turn, on one pool thread: its error, or None."""
    errors: list[OSError | None] = []
    for data, start, offset in writes:
        try:
            _pwrite_all(fd, data, start, offset)
        except OSError as exc:
            errors.append(exc)
        else:
            errors.append(None)
    return errors


def _write_zeroes(fd: int, offset: int, length: int) -> None:
    zeroes = memoryview(bytes(min(length, ZERO_CHUNK_BYTES)))
    end = offset + length
    while offset < end:
        n = min(len(zeroes), end - offset)
        _pwrite_all(fd, zeroes[:n], 0, offset)
        offset += n


def _translate(exc: OSError, path: str, *, write: bool = False) -> BlockDeviceError:
    """The ``BlockDeviceError`` an ``OSError`` of the backing file means to the SCSI layer."""
    code = exc.errno
    message = f"{path}: {exc.strerror or exc}"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return SpaceExhausted(message)
    if code in (errno.EROFS, errno.EBADF):
        return DeviceReadOnly(message)
    if code in (errno.ENODEV, errno.ENXIO):
        return DeviceNotReady(message)
    return MediumError(message, write=write)


class FileDevice(BlockDevice):
    """A ``BlockDevice`` over a regular file or a block device node.

    ``size_bytes`` creates a missing file (with ``create``) or grows a shorter one, sparse;
    without it the device is the size of the file. Every block is reported thin: a hole
    reads as zeroes, so LBPRZ holds.
    """

    thin_provisioned = True
    write_cache = True

    # The positional order is the documented constructor signature callers rely on.
    def __init__(  # noqa: PLR0917
        self,
        path: str | os.PathLike[str],
        block_size: int = 512,
        size_bytes: int | None = None,
        create: bool = False,
        read_only: bool = False,
        identity: DeviceIdentity | None = None,
        *,
        io_threads: int = DEFAULT_IO_THREADS,
        nowait: bool = True,
    ) -> None:
        if block_size not in BLOCK_SIZES:
            raise ValueError(f"block_size {block_size} is not one of {BLOCK_SIZES}")
        if size_bytes is not None and (size_bytes <= 0 or size_bytes % block_size):
            raise ValueError(f"size_bytes must be a positive multiple of {block_size}")
        if create and read_only:
            raise ValueError("cannot create a read-only backing file")
        if io_threads < 1:
            raise ValueError("io_threads must be at least 1")
        self.path = os.fspath(path)
        self.block_size = block_size
        self.read_only = read_only
        self._fd = self._open(create, size_bytes)
        try:
            size = self._size(size_bytes)
        except BaseException:
            os.close(self._fd)
            raise
        self.num_blocks = size // block_size
        if self.num_blocks == 0:
            os.close(self._fd)
            raise ValueError(f"{self.path} is smaller than one {block_size}-byte block")
        self.identity = identity or DeviceIdentity.from_seed("file:" + os.path.realpath(self.path))
        self.stats = FileDeviceStats()
        self._nowait_read = nowait and _RWF_NOWAIT != 0
        self._nowait_write = nowait and _RWF_NOWAIT != 0
        self._punch_supported = _fallocate is not None
        self._pool = ThreadPoolExecutor(
            max_workers=io_threads, thread_name_prefix=f"file:{os.path.basename(self.path)}"
        )
        self._pending: set[Future[Any]] = set()
        self._write_batch: list[tuple[memoryview, int, int, asyncio.Future[None]]] = []
        self._inline_writes = nowait
        self._inline_writes_after = 0.0  # monotonic time before which writes use threads
        self._closed = False
        self._closing: asyncio.Future[None] | None = None

    # -- opening -------------------------------------------------------------------------

    def _open(self, create: bool, size_bytes: int | None) -> int:
        flags = (os.O_RDONLY if self.read_only else os.O_RDWR) | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            if not create or size_bytes is None:
                raise FileNotFoundError(
                    errno.ENOENT,
                    "backing file does not exist (create it with create=True and size_bytes)",
                    self.path,
                ) from None
            # O_EXCL: if another process creates it first, its file is not truncated by us.
            fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BackstoreInUse(
                f"{self.path} is already served by another process or device (flock)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _size(self, size_bytes: int | None) -> int:
        st = os.fstat(self._fd)
        if stat.S_ISBLK(st.st_mode):
            actual = os.lseek(self._fd, 0, os.SEEK_END)
            if size_bytes is not None and size_bytes > actual:
                raise ValueError(f"{self.path} holds {actual} bytes, not {size_bytes}")
        elif stat.S_ISREG(st.st_mode):
            actual = st.st_size
            if size_bytes is not None and size_bytes > actual:
                if self.read_only:
                    raise ValueError(f"{self.path} is {actual} bytes, shorter than {size_bytes}")
                os.ftruncate(self._fd, size_bytes)  # grows sparse
        else:
            raise ValueError(f"{self.path} is neither a regular file nor a block device")
        return actual if size_bytes is None else size_bytes

    # -- plumbing ------------------------------------------------------------------------

    def _live_fd(self) -> int:
        if self._closed:
            raise DeviceNotReady(f"{self.path}: device is closed")
        return self._fd

    async def _run(self, fn: Callable[..., _T], *args: object) -> _T:
        """Run ``fn`` on the device's pool; ``close`` waits for it before closing the fd."""
        self._live_fd()
        future = self._pool.submit(fn, *args)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return await asyncio.wrap_future(future)

    # -- BlockDevice ---------------------------------------------------------------------

    async def read(self, lba: int, count: int) -> memoryview:
        fd = self._live_fd()
        size = count * self.block_size
        offset = lba * self.block_size
        if not (self._nowait_read and size <= NOWAIT_MAX_BYTES):
            self.stats.thread_reads += 1
            try:
                return memoryview(await self._run(_pread_whole, fd, size, offset))
            except EOFError as exc:
                raise MediumError(f"{self.path}: short read, the file was truncated") from exc
            except OSError as exc:
                raise _translate(exc, self.path) from exc
        buf = bytearray(size)
        got = 0
        if self._nowait_read:
            try:
                got = os.preadv(fd, [buf], offset, _RWF_NOWAIT)
            except BlockingIOError:
                got = 0
            except OSError as exc:
                if exc.errno not in _NOWAIT_UNSUPPORTED:
                    raise _translate(exc, self.path) from exc
                self._nowait_read = False
            if got == size:
                self.stats.nowait_reads += 1
                return memoryview(buf)
        self.stats.thread_reads += 1
        try:
            await self._run(_pread_into, fd, buf, got, offset)
        except EOFError as exc:
            raise MediumError(f"{self.path}: short read, the file was truncated") from exc
        except OSError as exc:
            raise _translate(exc, self.path) from exc
        return memoryview(buf)

    def read_now(self, lba: int, count: int) -> memoryview | None:
        """The blocks if the page cache holds them all (one ``preadv`` with RWF_NOWAIT);
        None if reading would wait or fail, and then ``read`` does it (and reports errors).

        The target answers a cached read from here without a coroutine (``ReadsNow``).
        """
        size = count * self.block_size
        if not self._nowait_read or self._closed or size > NOWAIT_MAX_BYTES:
            return None
        buf = bytearray(size)
        try:
            got = os.preadv(self._fd, [buf], lba * self.block_size, _RWF_NOWAIT)
        except OSError:
            return None
        if got != size:
            return None
        self.stats.nowait_reads += 1
        return memoryview(buf)

    async def write(self, lba: int, data: bytes | memoryview) -> None:
        fd = self._live_fd()
        if self.read_only:
            raise DeviceReadOnly(f"{self.path} is read-only")
        view = memoryview(data).cast("B")
        offset = lba * self.block_size
        done = 0
        if self._nowait_write and len(view) <= NOWAIT_MAX_BYTES:
            try:
                done = os.pwritev(fd, [view], offset, _RWF_NOWAIT)
            except BlockingIOError:
                done = 0
            except OSError as exc:
                if exc.errno not in _NOWAIT_UNSUPPORTED:
                    raise _translate(exc, self.path, write=True) from exc
                self._nowait_write = False
            if done == len(view):
                self.stats.nowait_writes += 1
                return
        if (
            not done
            and not self._nowait_write  # refused RWF_NOWAIT (an EAGAIN must not block here)
            and self._inline_writes
            and len(view) <= NOWAIT_MAX_BYTES
            and not (offset | len(view)) & _PAGE_MASK
        ):
            done = self._write_inline(fd, view, offset)
            if done == len(view):
                return
        self.stats.thread_writes += 1
        if len(view) <= NOWAIT_MAX_BYTES:
            await self._write_in_batch(view, done, offset)
            return
        try:
            await self._run(_pwrite_all, fd, view, done, offset)
        except OSError as exc:
            raise _translate(exc, self.path, write=True) from exc

    def _write_inline(self, fd: int, view: memoryview, offset: int) -> int:
        """A page-aligned write into the page cache, on the loop; the bytes written (0: not
        tried, because a recent one was slow).

        Where RWF_NOWAIT writes are refused (ext4's buffered writes), this is what a cached
        write costs: a copy of whole pages, no read of the old data and no disk I/O. A pool
        thread costs several times that, mostly in handing the GIL back and forth. What can
        still make such a write wait is the kernel throttling a writer that dirties pages
        faster than the disk takes them: a write that takes longer than
        ``INLINE_WRITE_SLOW_SECONDS`` sends the device's writes to its threads for
        ``INLINE_WRITE_BACKOFF_SECONDS``, so a throttled disk stalls the loop once, briefly.
        """
        now = time.monotonic()
        if now < self._inline_writes_after:
            return 0
        try:
            done = os.pwritev(fd, [view], offset)
        except OSError as exc:
            raise _translate(exc, self.path, write=True) from exc
        if time.monotonic() - now > INLINE_WRITE_SLOW_SECONDS:
            self.stats.slow_inline_writes += 1
            self._inline_writes_after = now + INLINE_WRITE_BACKOFF_SECONDS
        if done == len(view):
            self.stats.inline_writes += 1
        return done

    def write_now(self, lba: int, data: bytes | memoryview) -> bool:
        """A write done without waiting: ``pwritev`` with RWF_NOWAIT, or where that is
        refused a page-aligned write on the loop (``_write_inline``); False otherwise (the
        target then calls ``write``, which redoes any part written here)."""
        if self._closed or self.read_only:
            return False
        view = memoryview(data).cast("B")
        size = len(view)
        if size > NOWAIT_MAX_BYTES:
            return False
        offset = lba * self.block_size
        if self._nowait_write:
            try:
                done = os.pwritev(self._fd, [view], offset, _RWF_NOWAIT)
            except OSError as exc:
                if exc.errno not in _NOWAIT_UNSUPPORTED:
                    return False
                self._nowait_write = False
            else:
                if done == size:
                    self.stats.nowait_writes += 1
                    return True
                return False
        if not self._inline_writes or (offset | size) & _PAGE_MASK:
            return False
        try:
            return self._write_inline(self._fd, view, offset) == size
        except BlockDeviceError:
            return False

    async def _write_in_batch(self, view: memoryview, done: int, offset: int) -> None:
        """Hand a small write to a pool thread together with every other small write made
        in this loop iteration: one thread hop (and one wake-up of the loop) per batch, not
        per write. A queue depth of 32 writes costs two context switches, not 64."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._write_batch.append((view, done, offset, waiter))
        if len(self._write_batch) == 1:
            loop.call_soon(self._submit_writes)
        await waiter

    def _submit_writes(self) -> None:
        batch, self._write_batch = self._write_batch, []
        if not batch:
            return
        if self._closed:  # close() submits what is queued first: nothing should be left
            for *_, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(DeviceNotReady(f"{self.path}: device is closed"))
            return
        loop = asyncio.get_running_loop()
        writes = [(view, done, offset) for view, done, offset, _ in batch]
        future = self._pool.submit(_pwrite_batch, self._fd, writes)
        self.stats.write_batches += 1
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._writes_done, f, batch))

    def _writes_done(
        self,
        future: Future[list[OSError | None]],
        batch: list[tuple[memoryview, int, int, asyncio.Future[None]]],
    ) -> None:
        try:
            errors = future.result()
        except Exception as exc:  # the pool itself failed (shut down): every write failed
            errors = [OSError(errno.EIO, str(exc))] * len(batch)
        for (*_, waiter), error in zip(batch, errors, strict=True):
            if waiter.done():
                continue  # its command was aborted; the write itself has happened
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(_translate(error, self.path, write=True))

    async def flush(self) -> None:
        fd = self._live_fd()
        try:
            await self._run(os.fdatasync, fd)
        except OSError as exc:
            raise _translate(exc, self.path, write=True) from exc

    async def unmap(self, lba: int, count: int) -> None:
        fd = self._live_fd()
        if self.read_only:
            raise DeviceReadOnly(f"{self.path} is read-only")
        if count <= 0:
            return
        offset = lba * self.block_size
        length = count * self.block_size
        try:
            if self._punch_supported:
                try:
                    await self._run(_punch_hole, fd, offset, length)
                    return
                except OSError as exc:
                    if exc.errno not in _PUNCH_UNSUPPORTED:
                        raise
                    self._punch_supported = False
            await self._run(_write_zeroes, fd, offset, length)
        except OSError as exc:
            raise _translate(exc, self.path, write=True) from exc

    async def get_lba_status(self, lba: int, max_count: int) -> list[LBAExtent]:
        fd = self._live_fd()
        end = min(self.num_blocks, lba + max_count)
        try:
            return [await self._run(self._extent_at, fd, lba, end)]
        except OSError as exc:
            raise _translate(exc, self.path) from exc

    def _extent_at(self, fd: int, lba: int, end: int) -> LBAExtent:
        """The run of blocks from ``lba`` sharing one status, from SEEK_DATA/SEEK_HOLE.

        A block holding any data is mapped, so a hole run ends at the block where data
        starts and a data run ends at the first block entirely in a hole.
        """
        bs = self.block_size
        try:
            data = os.lseek(fd, lba * bs, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only holes from here to the end of the file
                return LBAExtent(lba, end - lba, ProvisioningStatus.DEALLOCATED)
            if exc.errno == errno.EINVAL:  # no SEEK_DATA here: everything is data
                return LBAExtent(lba, end - lba, ProvisioningStatus.MAPPED)
            raise
        if data // bs > lba:
            return LBAExtent(lba, min(data // bs, end) - lba, ProvisioningStatus.DEALLOCATED)
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        stop = min(-(-hole // bs), end)
        return LBAExtent(lba, max(stop, lba + 1) - lba, ProvisioningStatus.MAPPED)

    def health(self) -> str | None:
        if self._closed:
            return "device is closed"
        try:
            st = os.fstat(self._fd)
        except OSError as exc:
            return f"{self.path}: {exc.strerror}"
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 0:
            return f"{self.path} was deleted"
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return f"{self.path} vanished"
        except OSError as exc:
            return f"{self.path}: {exc.strerror}"
        if (named.st_dev, named.st_ino) != (st.st_dev, st.st_ino):
            return f"{self.path} was replaced by another file"
        mode = os.R_OK if self.read_only else os.R_OK | os.W_OK
        if not os.access(self.path, mode):
            return f"{self.path} is not {'readable' if self.read_only else 'read-writable'}"
        return None

    async def close(self) -> None:
        """Refuse new I/O, wait for thread operations in flight, then close the file.

        Idempotent; concurrent callers all return once the file is closed.
        """
        if self._closing is None:
            self._submit_writes()  # writes issued before close still happen
            self._closed = True
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        pending = [asyncio.wrap_future(f) for f in list(self._pending)]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._pool.shutdown(wait=False)
        os.close(self._fd)  # also releases the flock

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"FileDevice({self.path!r}, {self.num_blocks}x{self.block_size}, {state})"
