"""The NBD server's on-demand exports (``OnDemandExports``): listed to each connection as it
starts, opened for the one connection that chooses one, released when that connection has
ended; a name that can no longer be opened drops the connection; a fixed export wins a
name clash."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from tests.support.nbd_socket import NBDSocketClient
from tests.support.waits import until

from sanstack.block.device import BlockDevice
from sanstack.block.memory import MemoryDevice
from sanstack.nbd import ExportInfo
from sanstack.nbd.server import NBDServer, export_info


class Snapshots:
    def __init__(self) -> None:
        self.devices: dict[str, MemoryDevice] = {}
        self.opened: list[str] = []
        self.released: list[BlockDevice] = []

    def infos(self) -> Mapping[str, ExportInfo]:
        return {name: export_info(device) for name, device in self.devices.items()}

    def open(self, name: str) -> BlockDevice:
        self.opened.append(name)
        device = self.devices.get(name)
        if device is None:
            raise LookupError(f"{name} is gone")
        return device

    def release(self, device: BlockDevice) -> None:
        self.released.append(device)


def test_an_on_demand_export_is_opened_per_connection_and_released_after_it() -> None:
    async def body() -> None:
        snapshots = Snapshots()
        fixed = MemoryDevice(64)
        server = NBDServer({"d1": fixed}, "127.0.0.1", 0, on_demand=snapshots)
        await server.start()
        try:
            snap = MemoryDevice(128, 4096)
            await snap.write(0, b"\x5a" * 4096)
            snapshots.devices["d1@s1"] = snap
            assert set(server.offered()) == {"d1", "d1@s1"}
            first = await NBDSocketClient.connect("127.0.0.1", server.port, "d1@s1")
            second = await NBDSocketClient.connect("127.0.0.1", server.port, "d1@s1")
            assert first.size == 128 * 4096
            assert await first.read(0, 4096) == b"\x5a" * 4096
            assert snapshots.opened == ["d1@s1", "d1@s1"] and snapshots.released == []
            await first.close()
            await until(lambda: len(snapshots.released) == 1, 5.0, "the first one released")
            assert await second.read(4096, 4096) == bytes(4096)
            await second.close()
            await until(lambda: len(snapshots.released) == 2, 5.0, "the second one released")
            plain = await NBDSocketClient.connect("127.0.0.1", server.port, "d1")
            await plain.close()
            assert snapshots.opened == ["d1@s1", "d1@s1"]  # a fixed export is not opened
        finally:
            await server.stop()

    asyncio.run(body())


def test_a_name_gone_since_the_listing_drops_the_connection() -> None:
    async def body() -> None:
        snapshots = Snapshots()
        snapshots.devices["d1@s1"] = MemoryDevice(64)
        server = NBDServer({"d1": MemoryDevice(64)}, "127.0.0.1", 0, on_demand=snapshots)
        await server.start()
        try:
            original = snapshots.infos

            def listed_then_deleted() -> Mapping[str, ExportInfo]:
                infos = original()
                snapshots.devices.clear()  # deleted while the client negotiates
                return infos

            snapshots.infos = listed_then_deleted  # type: ignore[method-assign]
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await NBDSocketClient.connect("127.0.0.1", server.port, "d1@s1")
            assert snapshots.opened == ["d1@s1"] and snapshots.released == []
            snapshots.infos = original  # type: ignore[method-assign]
            client = await NBDSocketClient.connect("127.0.0.1", server.port, "d1")
            await client.close()
        finally:
            await server.stop()

    asyncio.run(body())


def test_a_fixed_export_wins_a_name_clash_and_stop_releases_what_is_open() -> None:
    async def body() -> None:
        snapshots = Snapshots()
        fixed = MemoryDevice(64)
        snapshots.devices["d1"] = MemoryDevice(32)
        snapshots.devices["d1@s1"] = MemoryDevice(32)
        server = NBDServer({"d1": fixed}, "127.0.0.1", 0, on_demand=snapshots)
        await server.start()
        assert server.offered()["d1"].size == 64 * 512
        client = await NBDSocketClient.connect("127.0.0.1", server.port, "d1@s1")
        assert await client.read(0, 512) == bytes(512)
        await server.stop()
        assert snapshots.released == [snapshots.devices["d1@s1"]]
        await client.close()

    asyncio.run(body())
