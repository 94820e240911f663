"""I/O statistics (``block/io_stats.py``): counts, bytes and a latency histogram per kind,
summed over devices; and the NBD server keeping one per export while the name is offered."""

from __future__ import annotations

import asyncio
import contextlib

from tests.support.nbd_socket import NBDReplyError, NBDSocketClient
from tests.support.waits import until

from sanstack.block.device import BlockDevice
from sanstack.block.io_stats import LATENCY_BUCKETS, IOKind, IOStats, summed
from sanstack.block.memory import MemoryDevice
from sanstack.nbd import ExportInfo
from sanstack.nbd.server import NBDServer, export_info


class Snapshots:
    """On-demand exports: a fixed set of devices, opened and released as they are."""

    def __init__(self) -> None:
        self.devices: dict[str, MemoryDevice] = {}

    def infos(self) -> dict[str, ExportInfo]:
        return {name: export_info(device) for name, device in self.devices.items()}

    def open(self, name: str) -> BlockDevice:
        return self.devices[name]

    def release(self, device: BlockDevice) -> None:
        pass


def test_a_record_counts_the_op_its_bytes_and_its_latency_bucket() -> None:
    stats = IOStats()
    stats.record(IOKind.READ, 4096, 0.0003)
    stats.record(IOKind.READ, 4096, 0.0001)  # on a bound: counted in that bucket (le)
    stats.record(IOKind.WRITE, 8192, 20.0)  # above every bound
    stats.record(IOKind.WRITE, 8192, 0.002, ok=False)
    read, write = stats.kinds[IOKind.READ], stats.kinds[IOKind.WRITE]
    assert (read.ops, read.bytes, read.errors) == (2, 8192, 0)
    assert read.buckets[0] == 1 and read.buckets[LATENCY_BUCKETS.index(0.0005)] == 1
    assert (write.ops, write.bytes, write.errors) == (2, 8192, 1)
    assert write.buckets[-1] == 1
    cumulative = write.cumulative()
    assert cumulative[-1] == (float("inf"), 2)
    assert [count for _le, count in cumulative] == sorted(count for _le, count in cumulative)
    snapshot = stats.snapshot()
    assert snapshot["read"]["ops"] == 2 and snapshot["write"]["bytes"] == 8192
    assert len(snapshot["flush"]["buckets"]) == len(LATENCY_BUCKETS) + 1


def test_stats_sum_over_devices() -> None:
    one, two = IOStats(), IOStats()
    one.record(IOKind.READ, 512, 0.001)
    two.record(IOKind.READ, 1024, 0.003)
    two.record(IOKind.FLUSH, 0, 0.01)
    total = summed([one, two])
    assert total.kinds[IOKind.READ].ops == 2 and total.kinds[IOKind.READ].bytes == 1536
    assert total.kinds[IOKind.FLUSH].ops == 1
    assert one.kinds[IOKind.READ].ops == 1  # the parts are left as they were


def test_the_nbd_server_counts_each_exports_requests() -> None:
    async def body() -> None:
        snapshots = Snapshots()
        snapshots.devices["d1@s1"] = MemoryDevice(64, 4096)
        server = NBDServer({"d1": MemoryDevice(64, 4096)}, "127.0.0.1", 0, on_demand=snapshots)
        await server.start()
        try:
            client = await NBDSocketClient.connect("127.0.0.1", server.port, "d1")
            await client.write(0, b"\x01" * 8192)
            await client.read(0, 4096)
            await client.flush()
            with contextlib.suppress(NBDReplyError):
                await client.read(64 * 4096, 4096)  # past the end: the core refuses it
            stats = server.stats["d1"].kinds
            assert (stats[IOKind.WRITE].ops, stats[IOKind.WRITE].bytes) == (1, 8192)
            assert (stats[IOKind.READ].ops, stats[IOKind.READ].bytes) == (1, 4096)
            assert stats[IOKind.FLUSH].ops == 1
            await client.close()
            snap = await NBDSocketClient.connect("127.0.0.1", server.port, "d1@s1")
            await snap.read(0, 4096)
            assert server.stats["d1@s1"].kinds[IOKind.READ].ops == 1
            await snap.close()
            # An on-demand name's counters go with the last connection that served it.
            await until(lambda: "d1@s1" not in server.stats, 5.0, "d1@s1's stats dropped")
            server.remove_export("d1")
            assert "d1" not in server.stats
        finally:
            await server.stop()

    asyncio.run(body())
