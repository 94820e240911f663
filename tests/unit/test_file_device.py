"""The file backstore: sparse files, the RWF_NOWAIT fast path and its thread fallback,
hole punching, SEEK_DATA provisioning status, the flock, errors and close."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

import sanstack.block.file as file_module
from sanstack.block.device import (
    DeviceIdentity,
    DeviceNotReady,
    DeviceReadOnly,
    LBAExtent,
    MediumError,
    ProvisioningStatus,
    SpaceExhausted,
)
from sanstack.block.file import BackstoreInUse, FileDevice

BS = 512
BLOCKS = 2048
MAPPED = ProvisioningStatus.MAPPED
DEALLOCATED = ProvisioningStatus.DEALLOCATED
HAVE_NOWAIT = bool(getattr(os, "RWF_NOWAIT", 0))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "lun.img"


@pytest.fixture
def device(path: Path) -> Iterator[FileDevice]:
    dev = FileDevice(path, BS, size_bytes=BLOCKS * BS, create=True)
    yield dev
    asyncio.run(dev.close())


def run(coro: Awaitable[None]) -> None:
    async def main() -> None:
        await coro

    asyncio.run(main())


def data(count: int, seed: int = 1) -> bytes:
    return bytes((seed * 7 + i) & 0xFF for i in range(count * BS))


def nowait_write_enabled(device: FileDevice) -> bool:
    return device._nowait_write


def drop_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# -- opening -----------------------------------------------------------------------------


def test_create_makes_a_sparse_file(device: FileDevice, path: Path) -> None:
    st = path.stat()
    assert st.st_size == BLOCKS * BS
    assert st.st_blocks * 512 < BLOCKS * BS  # no data blocks allocated
    assert device.num_blocks == BLOCKS
    assert device.block_size == BS
    assert device.capacity_bytes == BLOCKS * BS
    assert device.thin_provisioned
    assert device.write_cache
    assert device.identity == DeviceIdentity.from_seed("file:" + os.path.realpath(path))
    assert device.health() is None
    assert "lun.img" in repr(device)


def test_open_existing_uses_its_size_and_grows_on_request(path: Path) -> None:
    path.write_bytes(bytes(8 * BS))

    async def main() -> None:
        dev = FileDevice(path)
        assert dev.num_blocks == 8
        await dev.close()
        grown = FileDevice(path, 4096, size_bytes=64 * 4096)
        assert grown.num_blocks == 64
        assert os.stat(path).st_size == 64 * 4096
        await grown.close()
        # An existing file is opened, not recreated, even with create=True.
        again = FileDevice(path, 4096, size_bytes=64 * 4096, create=True)
        assert again.num_blocks == 64
        await again.close()

    asyncio.run(main())


def test_identity_can_be_given(path: Path) -> None:
    identity = DeviceIdentity.from_seed("volume-1")
    dev = FileDevice(path, size_bytes=BS, create=True, identity=identity)
    assert dev.identity == identity
    asyncio.run(dev.close())


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"block_size": 520, "size_bytes": 520, "create": True}, ValueError),
        ({"size_bytes": 1000, "create": True}, ValueError),
        ({"size_bytes": 0, "create": True}, ValueError),
        ({"size_bytes": BS, "create": True, "read_only": True}, ValueError),
        ({"size_bytes": BS, "create": True, "io_threads": 0}, ValueError),
        ({}, FileNotFoundError),
        ({"create": True}, FileNotFoundError),  # nothing to create without a size
        ({"size_bytes": BS}, FileNotFoundError),
    ],
)
def test_bad_arguments(path: Path, kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        FileDevice(path, **kwargs)  # type: ignore[arg-type]
    assert not path.exists()


def test_rejects_directories_empty_and_short_read_only_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither"):
        FileDevice(tmp_path, read_only=True)
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="smaller than one"):
        FileDevice(empty)
    short = tmp_path / "short.img"
    short.write_bytes(bytes(BS))
    with pytest.raises(ValueError, match="shorter"):
        FileDevice(short, size_bytes=4 * BS, read_only=True)
    # The failed opens released their locks.
    asyncio.run(FileDevice(short).close())


# -- flock -------------------------------------------------------------------------------


def test_a_second_open_of_the_same_file_is_refused(device: FileDevice, path: Path) -> None:
    with pytest.raises(BackstoreInUse, match=r"lun\.img"):
        FileDevice(path)
    with pytest.raises(BackstoreInUse):
        FileDevice(path, read_only=True)


def test_another_process_cannot_serve_the_file(device: FileDevice, path: Path) -> None:
    script = (
        "import sys\n"
        "from sanstack.block.file import BackstoreInUse, FileDevice\n"
        "try:\n"
        "    FileDevice(sys.argv[1])\n"
        "except BackstoreInUse as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert str(path) in proc.stdout


def test_close_releases_the_lock(path: Path) -> None:
    async def main() -> None:
        first = FileDevice(path, size_bytes=BS * 4, create=True)
        await first.close()
        second = FileDevice(path)
        await second.close()

    asyncio.run(main())


# -- reads and writes --------------------------------------------------------------------


def test_round_trip_and_unwritten_blocks_read_zero(device: FileDevice) -> None:
    async def main() -> None:
        assert bytes(await device.read(0, 4)) == bytes(4 * BS)
        await device.write(10, data(3))
        await device.write(13, memoryview(data(1, seed=9)))
        assert bytes(await device.read(10, 4)) == data(3) + data(1, seed=9)
        await device.flush()
        big = data(1024, seed=3)  # 512 KiB: above NOWAIT_MAX_BYTES, straight to a thread
        await device.write(1024, big)
        assert bytes(await device.read(1024, 1024)) == big

    run(main())


@pytest.mark.skipif(not HAVE_NOWAIT, reason="no RWF_NOWAIT on this platform")
def test_cached_reads_stay_on_the_event_loop(device: FileDevice) -> None:
    async def main() -> None:
        await device.write(0, data(8))
        before = device.stats.thread_reads
        for _ in range(5):
            assert bytes(await device.read(0, 8)) == data(8)
        assert device.stats.nowait_reads == 5
        assert device.stats.thread_reads == before

    run(main())


@pytest.mark.skipif(not HAVE_NOWAIT, reason="no RWF_NOWAIT on this platform")
def test_uncached_read_falls_back_to_a_thread(device: FileDevice, path: Path) -> None:
    async def main() -> None:
        await device.write(0, data(8))
        await device.flush()
        drop_page_cache(path)
        assert bytes(await device.read(0, 8)) == data(8)
        # Whichever path served it, the data is right and exactly one read was counted.
        assert device.stats.nowait_reads + device.stats.thread_reads == 1

    run(main())


def _fake_preadv(
    behaviour: Callable[[int, list[memoryview | bytearray], int], int],
) -> Callable[..., int]:
    real = os.preadv

    def fake(fd: int, buffers: list[bytearray], offset: int, flags: int = 0) -> int:
        if flags:
            return behaviour(fd, buffers, offset)  # type: ignore[arg-type]
        return real(fd, buffers, offset)

    return fake


@pytest.mark.skipif(not HAVE_NOWAIT, reason="no RWF_NOWAIT on this platform")
def test_eagain_falls_back_to_a_thread(device: FileDevice, monkeypatch: pytest.MonkeyPatch) -> None:
    def eagain(fd: int, buffers: list[memoryview | bytearray], offset: int) -> int:
        raise BlockingIOError(errno.EAGAIN, "would block")

    async def main() -> None:
        await device.write(4, data(2))
        monkeypatch.setattr(os, "preadv", _fake_preadv(eagain))
        device._nowait_read = True
        assert bytes(await device.read(4, 2)) == data(2)
        assert device.stats.thread_reads == 1
        assert device._nowait_read  # EAGAIN is per call: the next read tries again

    run(main())


@pytest.mark.skipif(not HAVE_NOWAIT, reason="no RWF_NOWAIT on this platform")
def test_short_nowait_read_is_completed_by_a_thread(
    device: FileDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.preadv

    def half(fd: int, buffers: list[memoryview | bytearray], offset: int) -> int:
        view = memoryview(buffers[0])
        return real(fd, [view[: len(view) // 2]], offset)

    async def main() -> None:
        await device.write(0, data(4, seed=5))
        monkeypatch.setattr(os, "preadv", _fake_preadv(half))
        device._nowait_read = True
        assert bytes(await device.read(0, 4)) == data(4, seed=5)
        assert device.stats.thread_reads == 1

    run(main())


@pytest.mark.skipif(not HAVE_NOWAIT, reason="no RWF_NOWAIT on this platform")
def test_unsupported_nowait_switches_reads_to_threads_for_good(
    device: FileDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def unsupported(fd: int, buffers: list[memoryview | bytearray], offset: int) -> int:
        calls.append(offset)
        raise OSError(errno.EOPNOTSUPP, "not supported")

    async def main() -> None:
        monkeypatch.setattr(os, "preadv", _fake_preadv(unsupported))
        device._nowait_read = True
        await device.read(0, 1)
        await device.read(1, 1)
        assert len(calls) == 1
        assert device.stats.thread_reads == 2

    run(main())


def test_nowait_disabled_by_constructor(path: Path) -> None:
    async def main() -> None:
        dev = FileDevice(path, size_bytes=16 * BS, create=True, nowait=False)
        await dev.write(0, data(1))
        await dev.read(0, 1)
        assert dev.stats.thread_reads == 1
        assert dev.stats.thread_writes == 1
        assert dev.stats.nowait_reads == dev.stats.nowait_writes == 0
        await dev.close()

    asyncio.run(main())


@pytest.mark.skipif(not HAVE_NOWAIT, reason="no RWF_NOWAIT on this platform")
def test_writes_use_nowait_where_supported_and_threads_otherwise(
    device: FileDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.pwritev
    attempts: list[str] = []

    def make_fake(outcome: str) -> Callable[..., int]:
        def fake(fd: int, buffers: list[memoryview], offset: int, flags: int = 0) -> int:
            if not flags:
                return real(fd, buffers, offset)
            attempts.append(outcome)
            if outcome == "ok":
                return real(fd, buffers, offset)
            if outcome == "short":
                return real(fd, [buffers[0][:BS]], offset)
            if outcome == "eagain":
                raise BlockingIOError(errno.EAGAIN, "would block")
            raise OSError(errno.EOPNOTSUPP, "not supported")

        return fake

    async def main() -> None:
        device._nowait_write = True
        monkeypatch.setattr(os, "pwritev", make_fake("ok"))
        await device.write(0, data(2, seed=1))
        assert device.stats.nowait_writes == 1
        monkeypatch.setattr(os, "pwritev", make_fake("short"))
        await device.write(2, data(2, seed=2))
        monkeypatch.setattr(os, "pwritev", make_fake("eagain"))
        await device.write(4, data(2, seed=3))
        assert nowait_write_enabled(device)
        monkeypatch.setattr(os, "pwritev", make_fake("unsupported"))
        await device.write(6, data(2, seed=4))
        await device.write(8, data(2, seed=5))
        assert not nowait_write_enabled(device)
        assert attempts == ["ok", "short", "eagain", "unsupported"]
        assert device.stats.thread_writes == 4
        expected = b"".join(data(2, seed=s) for s in range(1, 6))
        assert bytes(await device.read(0, 10)) == expected

    run(main())


# -- unmap and provisioning status -------------------------------------------------------


def test_unmap_punches_a_hole(device: FileDevice, path: Path) -> None:
    async def main() -> None:
        await device.write(0, data(64))
        await device.flush()
        allocated = os.stat(path).st_blocks
        await device.unmap(16, 32)
        await device.unmap(0, 0)
        assert bytes(await device.read(16, 32)) == bytes(32 * BS)
        assert bytes(await device.read(0, 16)) == data(64)[: 16 * BS]
        assert bytes(await device.read(48, 16)) == data(64)[48 * BS :]
        assert os.stat(path).st_blocks < allocated
        assert os.stat(path).st_size == BLOCKS * BS  # KEEP_SIZE

    run(main())


def test_unmap_falls_back_to_zeroes_when_punching_is_unsupported(
    device: FileDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "no punch")

    async def main() -> None:
        await device.write(0, data(8))
        monkeypatch.setattr(file_module, "_punch_hole", unsupported)
        await device.unmap(2, 4)
        assert not device._punch_supported
        assert (
            bytes(await device.read(0, 8)) == data(8)[: 2 * BS] + bytes(4 * BS) + data(8)[6 * BS :]
        )
        await device.unmap(0, 1)  # straight to zeroes now
        assert bytes(await device.read(0, 1)) == bytes(BS)

    run(main())


def test_unmap_other_errors_propagate(device: FileDevice, monkeypatch: pytest.MonkeyPatch) -> None:
    def eio(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    async def main() -> None:
        monkeypatch.setattr(file_module, "_punch_hole", eio)
        with pytest.raises(MediumError):
            await device.unmap(0, 8)
        assert device._punch_supported

    run(main())


def test_get_lba_status_follows_seek_data_and_seek_hole(device: FileDevice) -> None:
    async def main() -> None:
        assert await device.get_lba_status(0, BLOCKS) == [LBAExtent(0, BLOCKS, DEALLOCATED)]
        assert await device.get_lba_status(5, 10) == [LBAExtent(5, 10, DEALLOCATED)]
        await device.write(16, data(8))  # one 4 KiB filesystem block
        await device.write(64, data(16))
        assert await device.get_lba_status(0, BLOCKS) == [LBAExtent(0, 16, DEALLOCATED)]
        assert await device.get_lba_status(16, BLOCKS) == [LBAExtent(16, 8, MAPPED)]
        assert await device.get_lba_status(20, BLOCKS) == [LBAExtent(20, 4, MAPPED)]
        assert await device.get_lba_status(24, BLOCKS) == [LBAExtent(24, 40, DEALLOCATED)]
        assert await device.get_lba_status(64, 3) == [LBAExtent(64, 3, MAPPED)]
        assert await device.get_lba_status(80, BLOCKS) == [LBAExtent(80, BLOCKS - 80, DEALLOCATED)]
        await device.unmap(64, 8)
        assert await device.get_lba_status(64, BLOCKS) == [LBAExtent(64, 8, DEALLOCATED)]
        assert await device.get_lba_status(72, BLOCKS) == [LBAExtent(72, 8, MAPPED)]
        # A partly written filesystem block counts as mapped for every LBA in it.
        await device.write(BLOCKS - 1, data(1))
        assert await device.get_lba_status(BLOCKS - 8, 8) == [LBAExtent(BLOCKS - 8, 8, MAPPED)]

    run(main())


# -- errors ------------------------------------------------------------------------------


def test_read_only_device(path: Path) -> None:
    path.write_bytes(data(4))

    async def main() -> None:
        dev = FileDevice(path, read_only=True)
        assert dev.read_only
        assert bytes(await dev.read(0, 4)) == data(4)
        with pytest.raises(DeviceReadOnly):
            await dev.write(0, data(1))
        with pytest.raises(DeviceReadOnly):
            await dev.unmap(0, 1)
        await dev.flush()
        assert dev.health() is None
        await dev.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (errno.EIO, MediumError),
        (errno.ENOSPC, SpaceExhausted),
        (errno.EDQUOT, SpaceExhausted),
        (errno.EROFS, DeviceReadOnly),
        (errno.EBADF, DeviceReadOnly),
        (errno.ENODEV, DeviceNotReady),
        (errno.EINVAL, MediumError),
    ],
)
def test_os_errors_map_to_block_device_errors(
    device: FileDevice, monkeypatch: pytest.MonkeyPatch, code: int, error: type[Exception]
) -> None:
    def failing(*args: object, **kwargs: object) -> int:
        raise OSError(code, os.strerror(code))

    async def main() -> None:
        monkeypatch.setattr(os, "pwritev", failing)
        with pytest.raises(error, match=r"lun\.img"):
            await device.write(0, data(1))
        monkeypatch.setattr(os, "preadv", failing)
        with pytest.raises(error):
            await device.read(0, 1)
        monkeypatch.setattr(os, "fdatasync", failing)
        with pytest.raises(error):
            await device.flush()

    run(main())


def test_truncated_backing_file_is_a_medium_error(device: FileDevice, path: Path) -> None:
    async def main() -> None:
        await device.write(0, data(4))
        os.truncate(path, 2 * BS)
        with pytest.raises(MediumError, match="truncated"):
            await device.read(0, 4)

    run(main())


def test_health_reports_deleted_replaced_vanished_and_closed(path: Path, tmp_path: Path) -> None:
    async def main() -> None:
        dev = FileDevice(path, size_bytes=4 * BS, create=True)
        assert dev.health() is None
        os.unlink(path)
        assert "deleted" in (dev.health() or "")
        await dev.close()
        assert dev.health() == "device is closed"

        dev = FileDevice(path, size_bytes=4 * BS, create=True)
        os.link(path, tmp_path / "keep.img")  # the served inode stays linked
        (tmp_path / "new.img").write_bytes(bytes(4 * BS))
        os.replace(tmp_path / "new.img", path)
        assert "replaced" in (dev.health() or "")
        os.rename(path, tmp_path / "moved.img")
        assert "vanished" in (dev.health() or "")
        await dev.close()

    asyncio.run(main())


# -- close -------------------------------------------------------------------------------


def test_io_after_close_is_not_ready_and_close_is_idempotent(path: Path) -> None:
    async def main() -> None:
        dev = FileDevice(path, size_bytes=4 * BS, create=True)
        await dev.close()
        await dev.close()
        for call in (
            dev.read(0, 1),
            dev.write(0, data(1)),
            dev.flush(),
            dev.unmap(0, 1),
            dev.get_lba_status(0, 1),
        ):
            with pytest.raises(DeviceNotReady):
                await call

    asyncio.run(main())


def test_close_waits_for_reads_in_flight(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)
    real = os.preadv

    def slow_preadv(fd: int, buffers: list[memoryview], offset: int, flags: int = 0) -> int:
        if flags:
            raise BlockingIOError(errno.EAGAIN, "would block")
        entered.release()
        release.wait(timeout=30)
        return real(fd, buffers, offset)

    async def main() -> None:
        dev = FileDevice(path, size_bytes=16 * BS, create=True, io_threads=4)
        await dev.write(0, data(16))
        fd = dev._fd
        monkeypatch.setattr(os, "preadv", slow_preadv)
        reads = [asyncio.ensure_future(dev.read(i, 1)) for i in range(4)]
        for _ in range(4):
            await asyncio.to_thread(entered.acquire)
        closing = asyncio.ensure_future(dev.close())
        second_close = asyncio.ensure_future(dev.close())
        await asyncio.sleep(0.05)
        assert not closing.done() and not second_close.done()
        os.fstat(fd)  # still open: threads are using it
        with pytest.raises(DeviceNotReady):
            await dev.read(0, 1)
        # An aborted command's read may be cancelled; its thread still finishes first.
        reads[0].cancel()
        await asyncio.sleep(0.05)
        assert not closing.done()
        release.set()
        results = await asyncio.gather(*reads[1:])
        assert [bytes(r) for r in results] == [data(16)[i * BS : (i + 1) * BS] for i in (1, 2, 3)]
        await asyncio.wait_for(asyncio.gather(closing, second_close), timeout=10)
        assert dev.health() == "device is closed"
        reopened = FileDevice(path)  # the flock went with the descriptor
        await reopened.close()

    asyncio.run(main())


def test_small_thread_writes_of_one_loop_iteration_share_one_thread_job(path: Path) -> None:
    async def main() -> None:
        dev = FileDevice(path, size_bytes=64 * BS, create=True, nowait=False)
        await asyncio.gather(*(dev.write(i, data(1, seed=i)) for i in range(32)))
        assert dev.stats.thread_writes == 32
        assert dev.stats.write_batches == 1
        expected = b"".join(data(1, seed=i) for i in range(32))
        assert bytes(await dev.read(0, 32)) == expected
        await dev.close()

    asyncio.run(main())


def test_writes_queued_when_close_starts_still_happen(path: Path) -> None:
    async def main() -> None:
        dev = FileDevice(path, size_bytes=16 * BS, create=True, nowait=False)
        writes = [asyncio.ensure_future(dev.write(i, data(1, seed=i))) for i in range(4)]
        await asyncio.sleep(0)  # the writes are queued, their batch not yet handed over
        await dev.close()
        await asyncio.gather(*writes)
        again = FileDevice(path, size_bytes=16 * BS)
        assert bytes(await again.read(0, 4)) == b"".join(data(1, seed=i) for i in range(4))
        await again.close()

    asyncio.run(main())


def test_a_write_whose_command_was_cancelled_still_lands_and_others_complete(path: Path) -> None:
    async def main() -> None:
        dev = FileDevice(path, size_bytes=16 * BS, create=True, nowait=False)
        first = asyncio.ensure_future(dev.write(0, data(1, seed=7)))
        second = asyncio.ensure_future(dev.write(1, data(1, seed=8)))
        await asyncio.sleep(0)
        first.cancel()
        await second
        with pytest.raises(asyncio.CancelledError):
            await first
        await dev.close()
        again = FileDevice(path, size_bytes=16 * BS)
        assert bytes(await again.read(0, 2)) == data(1, seed=7) + data(1, seed=8)
        await again.close()

    asyncio.run(main())


def test_page_aligned_writes_run_on_the_loop_where_nowait_writes_are_refused(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    async def main() -> None:
        dev = FileDevice(path, size_bytes=64 * BS, create=True)
        dev._nowait_write = False  # as after ext4's EOPNOTSUPP
        page = 4096 // BS
        await dev.write(0, data(page, seed=1))  # aligned: on the loop
        assert (dev.stats.inline_writes, dev.stats.thread_writes) == (1, 0)
        await dev.write(page * 2 + 1, data(1, seed=2))  # not page-aligned: a thread
        assert (dev.stats.inline_writes, dev.stats.thread_writes) == (1, 1)
        clock = iter(n / 20 for n in range(1000))  # 50 ms per reading
        monkeypatch.setattr(time, "monotonic", lambda: next(clock))  # every write "slow"
        await dev.write(page, data(page, seed=3))
        assert dev.stats.slow_inline_writes == 1 and dev.stats.inline_writes == 2
        await dev.write(page * 3, data(page, seed=4))  # within the back-off: a thread
        assert dev.stats.inline_writes == 2 and dev.stats.thread_writes == 2
        monkeypatch.undo()
        expected = data(page, seed=1) + data(page, seed=3)
        assert bytes(await dev.read(0, 2 * page)) == expected
        assert bytes(await dev.read(page * 2 + 1, 1)) == data(1, seed=2)
        assert bytes(await dev.read(page * 3, page)) == data(page, seed=4)
        await dev.close()

    asyncio.run(main())
