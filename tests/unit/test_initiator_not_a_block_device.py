"""A LUN that is no block device (tgt's LUN 0 is a storage array controller) or has no
logical unit connected is refused at probe with NotABlockDevice, before any block command,
so the host leaves it out quietly instead of warning on every rescan."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from sanstack.initiator.lun_device import ISCSIDevice, NotABlockDevice
from sanstack.initiator.session import CommandResponse, ISCSISession
from sanstack.scsi.codes import Opcode, PeripheralDeviceType


class InquiryOnly:
    """Answers INQUIRY with one peripheral byte; anything else is a test failure."""

    parameters = None
    relative_target_port_id = None

    def __init__(self, first_byte: int) -> None:
        self.first_byte = first_byte
        self.opcodes: list[int] = []

    async def command(
        self, lun: int, cdb: bytes, *, data_out: bytes = b"", read_length: int = 0
    ) -> CommandResponse:
        self.opcodes.append(cdb[0])
        assert cdb[0] == Opcode.INQUIRY, "a block command was sent to a LUN that is no disk"
        data = bytes([self.first_byte]) + bytes(35)
        return CommandResponse(0, data[:read_length], b"", read_length - min(36, read_length))


@pytest.mark.parametrize(
    ("first_byte", "shown"),
    [
        (PeripheralDeviceType.STORAGE_ARRAY_CONTROLLER, "device type 0x0c"),
        (PeripheralDeviceType.ENCLOSURE_SERVICES, "device type 0x0d"),
        (0x20 | PeripheralDeviceType.DIRECT_ACCESS_BLOCK, "peripheral qualifier 1"),
        (0x7F, "peripheral qualifier 3"),
    ],
)
def test_a_lun_that_is_no_block_device_is_refused_at_probe(first_byte: int, shown: str) -> None:
    session = InquiryOnly(first_byte)
    with pytest.raises(NotABlockDevice, match=shown):
        asyncio.run(ISCSIDevice.open(cast(ISCSISession, session), 0))
    assert session.opcodes == [Opcode.INQUIRY]
