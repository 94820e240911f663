"""A ``BlockDevice`` that is one LUN behind one iSCSI session (SBC-4 over RFC 7143).

Opening reads what a block layer needs: READ CAPACITY(16) for the size, block size and
thin provisioning; VPD 83h's NAA designator for the identity a multipath layer groups
paths by (VPD 80h when there is none); VPD B0h's MAXIMUM TRANSFER LENGTH to split I/O; VPD
B2h's LBPU for UNMAP. Status and sense come back as the ``block.device`` errors, so the
layers above see a remote LUN fail the way a local device does; a failed path comes up as
the session's ``PathFailed`` (a ``DeviceNotReady`` whose ``kind`` a multipath layer reads).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

from sanstack.block.device import (
    BlockDevice,
    BlockDeviceError,
    DeviceIdentity,
    DeviceNotReady,
    DeviceReadOnly,
    MediumError,
    SpaceExhausted,
)
from sanstack.initiator.session import (
    CommandResponse,
    CommandWaiter,
    PathFailed,
    response_of,
)
from sanstack.iscsi.initiator_events import CommandCompleted
from sanstack.iscsi.negotiation import OperationalParameters
from sanstack.scsi.alua_codec import ALUAState
from sanstack.scsi.cdb import (
    CDB16,
    ReadCapacity16CDB,
    ReadWriteCDB,
    SynchronizeCacheCDB,
    UnmapCDB,
    UnmapParameterList,
)
from sanstack.scsi.codes import ASC, Opcode, PeripheralDeviceType, SenseKey, Status
from sanstack.scsi.inquiry import (
    Association,
    BlockLimits,
    Designator,
    DesignatorType,
    InquiryCdb,
    VpdPage,
)
from sanstack.scsi.pr_codec import PROutCdb, PROutParameters, PROutServiceAction, PRScope
from sanstack.scsi.sense import parse_sense

log = logging.getLogger(__name__)

UNIT_ATTENTION_RETRIES = 8
BUSY_RETRIES = 8
BUSY_DELAY = 0.05
DEFAULT_MAX_TRANSFER_BYTES = 1 << 20  # our own cap per command when the target sets none
VPD_ALLOCATION = 4096
_BLOCK_LIMITS_LENGTH = 64  # SBC-4 §6.6.4: PAGE LENGTH 3Ch
_LBPU = 0x80
_LBPME = 0x80
_STANDARD_INQUIRY_LENGTH = 36  # SPC-4 §6.6.2: the fields every target returns
_READ_16 = int(Opcode.READ_16)  # packed per read: a plain int, not an enum member


class PortNotAccessible(DeviceNotReady):
    """NOT READY / LOGICAL UNIT NOT ACCESSIBLE: this target port's ALUA state refuses the
    command (SPC-4 §5.16.2.4). A path state, not a data error: multipath re-drives it."""

    def __init__(self, message: str, alua_state: ALUAState) -> None:
        super().__init__(message)
        self.alua_state = alua_state


# These NOT READY codes name the ALUA state of the port that answered (SPC-4 Annex D).
_INACCESSIBLE: dict[int, ALUAState] = {
    ASC.LOGICAL_UNIT_NOT_ACCESSIBLE_ASYMMETRIC_ACCESS_STATE_TRANSITION: ALUAState.TRANSITIONING,
    ASC.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_STANDBY_STATE: ALUAState.STANDBY,
    ASC.LOGICAL_UNIT_NOT_ACCESSIBLE_TARGET_PORT_IN_UNAVAILABLE_STATE: ALUAState.UNAVAILABLE,
    ASC.LOGICAL_UNIT_NOT_READY_OFFLINE: ALUAState.OFFLINE,
}


class NotABlockDevice(DeviceNotReady):
    """The LUN is there but is no block device (a storage array controller, an enclosure;
    SPC-4 §6.6.2 peripheral device type), or no logical unit is connected behind it."""


class ReservationConflict(BlockDeviceError):
    """The LUN is reserved by another I_T nexus (SCSI RESERVATION CONFLICT status)."""


class ISCSICommandError(BlockDeviceError):
    """A command failed with a status or sense the block errors do not name."""

    def __init__(self, message: str, status: int, sense: bytes) -> None:
        super().__init__(message)
        self.status = status
        self.sense = sense


def designators(page: bytes) -> list[Designator]:
    """The designation descriptors of VPD page 83h; none if one of them uses a code SPC-4
    reserves: the identity then comes from the unit serial, the same on every path."""
    try:
        return Designator.decode_all(page)
    except ValueError as exc:
        log.info("VPD page 83h not used: %s", exc)
        return []


def relative_target_port(page: bytes) -> int | None:
    """The RELATIVE TARGET PORT IDENTIFIER of the port this page came through (SPC-4
    §7.8.6.5), which tells a multipath layer which ALUA port group a path belongs to."""
    for found in designators(page):
        if (
            found.association is Association.TARGET_PORT
            and found.designator_type is DesignatorType.RELATIVE_TARGET_PORT
            and len(found.designator) >= 4
        ):
            return int.from_bytes(found.designator[2:4], "big")
    return None


def identity_from_vpd(page83: bytes | None, page80: bytes | None, fallback: str) -> DeviceIdentity:
    """The device's identity from its designators; equal on every path to the same LUN.

    An 8-byte NAA 3h designator is used as is. Any other NAA (tgt and LIO report 6h, 16
    bytes) seeds a locally assigned one, as does the unit serial number without any NAA.
    """
    serial = ""
    if page80 is not None and len(page80) >= 4:
        serial = bytes(page80[4 : 4 + page80[3]]).decode("ascii", "replace").strip(" \x00")
    lu = [
        (d.designator_type, d.designator)
        for d in (designators(page83) if page83 is not None else [])
        if d.association is Association.LOGICAL_UNIT
    ]
    naa = next((d for t, d in lu if t is DesignatorType.NAA and d), None)
    seed = f"naa:{naa.hex()}" if naa is not None else None
    if seed is None:
        t10 = next((d for t, d in lu if t is DesignatorType.T10_VENDOR_ID and d), None)
        if serial:
            seed = f"serial:{serial}"
        elif t10 is not None:
            seed = f"t10:{t10.hex()}"
        else:
            seed = fallback
    derived = DeviceIdentity.from_seed(seed)
    if naa is not None and len(naa) == 8 and naa[0] >> 4 == 0x3:
        derived = DeviceIdentity(naa=naa, unit_serial=derived.unit_serial)
    if serial and serial.isascii() and serial.isprintable() and len(serial) <= 32:
        derived = DeviceIdentity(naa=derived.naa, unit_serial=serial)
    return derived


def check(result: CommandResponse, *, write: bool) -> None:
    """Raise the block error for a failed command (retryable ones are the caller's)."""
    status = result.status
    if status in (Status.GOOD, Status.CONDITION_MET) and not result.response:
        return
    if result.response:
        raise DeviceNotReady(f"target failure (iSCSI response {result.response:#x})")
    if status == Status.RESERVATION_CONFLICT:
        raise ReservationConflict("reservation conflict")
    if status in (Status.BUSY, Status.TASK_SET_FULL, Status.TASK_ABORTED):
        raise DeviceNotReady(f"status {status:#x}")
    if status != Status.CHECK_CONDITION:
        raise ISCSICommandError(f"status {status:#x}", status, result.sense)
    try:
        key, asc, ascq = parse_sense(result.sense)
    except ValueError:
        raise ISCSICommandError(
            f"CHECK CONDITION with unreadable sense {result.sense.hex()}", status, result.sense
        ) from None
    text = f"{key.name} {asc:02x}/{ascq:02x}"
    if key == SenseKey.MEDIUM_ERROR:
        raise MediumError(text, write=write)
    if key == SenseKey.NOT_READY:
        state = _INACCESSIBLE.get(asc << 8 | ascq)
        if state is not None:
            raise PortNotAccessible(text, state)
        raise DeviceNotReady(text)
    if key == SenseKey.DATA_PROTECT:
        if asc << 8 | ascq == ASC.SPACE_ALLOCATION_FAILED_WRITE_PROTECT:
            raise SpaceExhausted(text)
        raise DeviceReadOnly(text)
    if key in (SenseKey.UNIT_ATTENTION, SenseKey.ABORTED_COMMAND):
        raise DeviceNotReady(text)
    raise ISCSICommandError(text, status, result.sense)


def _alua_changed(result: CommandResponse) -> bool:
    """UNIT ATTENTION / ASYMMETRIC ACCESS STATE CHANGED (fixed or descriptor sense)."""
    _, asc, ascq = parse_sense(result.sense)  # readable: _retryable parsed it already
    return asc << 8 | ascq == ASC.ASYMMETRIC_ACCESS_STATE_CHANGED


def _retryable(result: CommandResponse) -> bool:
    """Unit attentions (normal after resets, ALUA changes) and a busy target are retried."""
    if result.status in (Status.BUSY, Status.TASK_SET_FULL):
        return True
    if result.status != Status.CHECK_CONDITION:
        return False
    try:
        key, _, _ = parse_sense(result.sense)
    except ValueError:
        return False
    return key == SenseKey.UNIT_ATTENTION


def _whole(result: CommandResponse, length: int) -> Sequence[bytes | memoryview]:
    """A READ's Data-In, which must be all ``length`` bytes asked for."""
    got = result.length
    if got != length:
        raise MediumError(f"READ(16) returned {got} of {length} bytes")
    return result.parts


Parts = Sequence[bytes | memoryview]


class ReadSink(Protocol):
    """Whoever started a read with ``ISCSIDevice.start_read``: told of its end directly.

    ``read_done`` gets the data when the command ended GOOD with all of it (the usual
    answer); anything else comes as ``read_slow``, with what ``read_parts`` would have
    gone on to do from there (retries, the error it raises) as a coroutine to make and
    await whenever the sink likes. Both run synchronously inside the session's pump (a
    session failure: inside its teardown), so the sink must not run ``resume`` there.
    """

    def read_done(self, parts: Parts) -> None: ...

    def read_slow(self, resume: Callable[[], Awaitable[Parts]]) -> None: ...


class LunSession(Protocol):
    """What a LUN uses of its session (``ISCSISession``): typed as this, not as the class,
    so compiled (``sanstack/native.py``) the LUN takes any session that does this."""

    parameters: OperationalParameters | None
    failure: PathFailed | None
    relative_target_port_id: int | None

    @property
    def closed(self) -> bool: ...

    async def command(
        self,
        lun: int,
        cdb: bytes,
        *,
        data_out: bytes | bytearray | memoryview = b"",
        read_length: int = 0,
    ) -> CommandResponse: ...

    def start_command(
        self, lun: int, cdb: bytes, read_length: int, waiter: CommandWaiter
    ) -> int | None: ...

    def cancel_command(self, itt: int) -> None: ...


class LunRead(CommandWaiter):
    """One read started by ``ISCSIDevice.start_read``: the session's waiter of its
    command, and the ticket that cancels it."""

    __slots__ = ("_cdb", "_device", "_length", "_session", "_sink", "itt")

    def __init__(self, device: ISCSIDevice, cdb: bytes, length: int, sink: ReadSink) -> None:
        self.deadline = 0.0
        self._device = device
        self._session = device.session
        self._cdb = cdb
        self._length = length
        self._sink = sink
        self.itt = 0

    def command_done(self, event: CommandCompleted) -> None:
        length = self._length
        if not event.status and not event.response:
            parts = event.parts
            if (len(parts) == 1 and len(parts[0]) == length) or sum(map(len, parts)) == length:
                self._sink.read_done(parts)
                return
        result = response_of(event)
        device, cdb = self._device, self._cdb
        self._sink.read_slow(lambda: device._read_after(result, cdb, length))

    def command_failed(self, error: PathFailed) -> None:
        self._sink.read_slow(lambda: _raise(error))

    def cancel(self) -> None:
        """The reader gave up: the command is aborted at the target, the sink told nothing."""
        self._session.cancel_command(self.itt)


async def _raise(error: BaseException) -> Parts:
    raise error


# What ``_probe`` learns of the LUN, which ``over`` carries to the same LUN through another
# session. Named, not copied with ``copy.copy``: compiled, the device is a native object,
# which ``copy`` cannot copy.
PROBED_ATTRIBUTES: Final = (
    "block_size",
    "num_blocks",
    "thin_provisioned",
    "vpd_pages",
    "identity",
    "relative_target_port_id",
    "max_transfer_blocks",
    "max_unmap_blocks",
    "max_unmap_descriptors",
    "unmap_supported",
)


class ISCSIDevice(BlockDevice):
    """One LUN over one ``ISCSISession``; the session is the caller's, not closed here."""

    def __init__(self, session: LunSession, lun: int) -> None:
        # Called on ASYMMETRIC ACCESS STATE CHANGED, so a multipath layer re-reads the
        # target port groups at once instead of at its next check.
        self.on_alua_change: Callable[[], None] | None = None
        self.session = session
        self.lun = lun
        self.block_size = 512
        self.num_blocks = 0
        self.identity = DeviceIdentity.from_seed(f"iscsi:{lun}")
        self.max_transfer_blocks = 0
        self.max_unmap_blocks = 0
        self.max_unmap_descriptors = 0
        self.unmap_supported = False
        self.vpd_pages: frozenset[int] = frozenset()
        self.relative_target_port_id: int | None = None
        self._closed = False
        self._chunk = 1
        self._chunk_for = (0, 0)  # the (block_size, max_transfer_blocks) _chunk is for

    @classmethod
    async def open(cls, session: LunSession, lun: int) -> ISCSIDevice:
        """Read capacity, identity and limits; raises the block errors (DeviceNotReady)."""
        device = cls(session, lun)
        await device._probe()
        return device

    def over(self, session: LunSession) -> ISCSIDevice:
        """The same LUN, as probed already, through ``session`` (a re-login of the same
        path): nothing is read again, so a shared session coming back costs no I/O per LUN."""
        device = ISCSIDevice(session, self.lun)
        for name in PROBED_ATTRIBUTES:
            setattr(device, name, getattr(self, name))
        if session.relative_target_port_id is None:
            session.relative_target_port_id = self.relative_target_port_id
        return device

    async def _probe(self) -> None:
        inquiry = await self.execute(
            InquiryCdb(
                evpd=False, page_code=0, allocation_length=_STANDARD_INQUIRY_LENGTH
            ).encode(),
            read_length=_STANDARD_INQUIRY_LENGTH,
            write=False,
        )
        first = bytes(inquiry.data[:1]) or b"\x7f"
        qualifier, device_type = first[0] >> 5, first[0] & 0x1F
        if qualifier or device_type != PeripheralDeviceType.DIRECT_ACCESS_BLOCK:
            raise NotABlockDevice(
                f"LUN {self.lun} is not a block device "
                f"(peripheral qualifier {qualifier}, device type 0x{device_type:02x})"
            )
        capacity = await self.execute(ReadCapacity16CDB(32).encode(), read_length=32, write=False)
        data = bytes(capacity.data)
        if len(data) < 14:
            raise DeviceNotReady("short READ CAPACITY(16) data")
        last_lba, block_length = struct.unpack_from(">QI", data)
        if block_length == 0 or block_length % 512:
            raise DeviceNotReady(f"unsupported logical block length {block_length}")
        self.block_size = block_length
        self.num_blocks = last_lba + 1
        exponent = data[13] & 0x0F
        if exponent:
            self.set_physical_block_size(block_length << exponent)
        self.thin_provisioned = bool(len(data) > 14 and data[14] & _LBPME)
        supported = await self._vpd(VpdPage.SUPPORTED_VPD_PAGES)
        self.vpd_pages = frozenset(supported[4 : 4 + supported[3]]) if supported else frozenset()
        page83 = await self._vpd_if_supported(VpdPage.DEVICE_IDENTIFICATION)
        page80 = await self._vpd_if_supported(VpdPage.UNIT_SERIAL_NUMBER)
        target = self.session.parameters.target_name if self.session.parameters else None
        self.identity = identity_from_vpd(page83, page80, f"iscsi:{target}:{self.lun}")
        if page83 is not None:
            self.relative_target_port_id = relative_target_port(page83)
            if self.relative_target_port_id is not None:
                self.session.relative_target_port_id = self.relative_target_port_id
        page_b0 = await self._vpd_if_supported(VpdPage.BLOCK_LIMITS)
        if page_b0 is not None:
            # A short page (an older target's) reads as zeros past its end: "no limit".
            limits = BlockLimits.decode(page_b0.ljust(_BLOCK_LIMITS_LENGTH, b"\0"))
            self.max_transfer_blocks = limits.max_transfer_length
            self.max_unmap_blocks = limits.max_unmap_lba_count
            self.max_unmap_descriptors = limits.max_unmap_block_descriptor_count
        provisioning = await self._vpd_if_supported(VpdPage.LOGICAL_BLOCK_PROVISIONING)
        self.unmap_supported = bool(
            provisioning is not None and len(provisioning) > 5 and provisioning[5] & _LBPU
        )

    async def _vpd_if_supported(self, page: VpdPage) -> bytes | None:
        return await self._vpd(page) if page in self.vpd_pages else None

    async def _vpd(self, page: VpdPage) -> bytes | None:
        """A VPD page, or None if the target refuses it (an optional page)."""
        cdb = InquiryCdb(evpd=True, page_code=page, allocation_length=VPD_ALLOCATION).encode()
        try:
            result = await self.execute(cdb, read_length=VPD_ALLOCATION, write=False)
        except ISCSICommandError:
            return None
        data = bytes(result.data)
        return data if len(data) >= 4 and data[1] == page else None

    async def persistent_reserve_out(
        self, action: PROutServiceAction, parameters: PROutParameters, pr_type: int = 0
    ) -> None:
        """PERSISTENT RESERVE OUT (SPC-4 §6.16) on this LUN, LU scope."""
        data = parameters.encode()
        cdb = PROutCdb(action, PRScope.LU_SCOPE, pr_type, len(data)).encode()
        await self.execute(cdb, data_out=data, write=True)

    async def execute(
        self,
        cdb: bytes,
        *,
        data_out: bytes | memoryview = b"",
        read_length: int = 0,
        write: bool,
    ) -> CommandResponse:
        """Run a command, retrying unit attentions and BUSY a bounded number of times.

        A failed path raises the session's ``PathFailed`` as it is: a multipath layer
        decides on its ``kind``, and to anyone else it is a ``DeviceNotReady``."""
        if self._closed:
            raise DeviceNotReady("device is closed")
        result = await self.session.command(
            self.lun, cdb, data_out=data_out, read_length=read_length
        )
        if not result.status and not result.response:  # GOOD: the usual answer
            return result
        return await self._retried(
            result, cdb, data_out=data_out, read_length=read_length, write=write
        )

    async def _retried(
        self,
        result: CommandResponse,
        cdb: bytes,
        *,
        data_out: bytes | memoryview,
        read_length: int,
        write: bool,
    ) -> CommandResponse:
        """``execute`` past a first answer that was not GOOD: retry it as ``execute`` says."""
        attentions = busy = 0
        while True:
            if _retryable(result):
                if result.status == Status.CHECK_CONDITION:
                    attentions += 1
                    if _alua_changed(result) and self.on_alua_change is not None:
                        self.on_alua_change()
                    if attentions <= UNIT_ATTENTION_RETRIES:
                        result = await self._again(cdb, data_out, read_length)
                        continue
                else:
                    busy += 1
                    if busy <= BUSY_RETRIES:
                        await asyncio.sleep(BUSY_DELAY * busy)
                        result = await self._again(cdb, data_out, read_length)
                        continue
            check(result, write=write)
            return result

    async def _again(
        self, cdb: bytes, data_out: bytes | memoryview, read_length: int
    ) -> CommandResponse:
        return await self.session.command(self.lun, cdb, data_out=data_out, read_length=read_length)

    # -- BlockDevice -----------------------------------------------------------------------

    def _chunk_blocks(self) -> int:
        limits = (self.block_size, self.max_transfer_blocks)
        if limits != self._chunk_for:  # worked out again only when a limit changes
            cap = max(1, DEFAULT_MAX_TRANSFER_BYTES // self.block_size)
            mtb = self.max_transfer_blocks
            self._chunk, self._chunk_for = (min(mtb, cap) if mtb else cap), limits
        return self._chunk

    async def read(self, lba: int, count: int) -> bytes | memoryview:
        parts = await self.read_parts(lba, count)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def read_parts(self, lba: int, count: int) -> Sequence[bytes | memoryview]:
        """``read`` as the Data-In PDUs brought it, in order and not joined: what an NBD
        reply writes as it is (``nbd.server``), sparing a copy of every large read."""
        step = self._chunk_blocks()
        if 0 < count <= step:  # one command, the usual read: execute's GOOD path inline
            if self._closed:
                raise DeviceNotReady("device is closed")
            length = count * self.block_size
            cdb = CDB16.pack(Opcode.READ_16, 0, lba, count, 0, 0)
            result = await self.session.command(self.lun, cdb, read_length=length)
            if result.status or result.response:
                result = await self._retried(
                    result, cdb, data_out=b"", read_length=length, write=False
                )
            pieces = result.parts
            if len(pieces) == 1 and len(pieces[0]) == length:
                return pieces  # one Data-In PDU, all of it: the usual answer
            return _whole(result, length)
        parts: list[bytes | memoryview] = []
        done = 0
        while done < count:
            n = min(step, count - done)
            cdb = ReadWriteCDB(Opcode.READ_16, lba + done, n).encode()
            length = n * self.block_size
            parts += _whole(await self.execute(cdb, read_length=length, write=False), length)
            done += n
        return parts

    def start_read(self, lba: int, count: int, sink: ReadSink) -> LunRead | None:
        """``read_parts`` without a coroutine, its end told to ``sink`` (``ReadSink``); the
        ticket, or None when the read cannot start that way (more than one command, a
        closed device, a session that would make it wait): ``read_parts`` then."""
        block_size = self.block_size
        chunk_for = self._chunk_for
        if chunk_for[0] == block_size and chunk_for[1] == self.max_transfer_blocks:
            step = self._chunk  # _chunk_blocks' answer, unchanged
        else:
            step = self._chunk_blocks()
        if self._closed or not 0 < count <= step:
            return None
        length = count * block_size
        cdb = CDB16.pack(_READ_16, 0, lba, count, 0, 0)
        read = LunRead(self, cdb, length, sink)
        itt = self.session.start_command(self.lun, cdb, length, read)
        if itt is None:
            return None
        read.itt = itt
        return read

    async def _read_after(self, result: CommandResponse, cdb: bytes, length: int) -> Parts:
        """``read_parts`` of one command from its first answer on (``start_read``'s)."""
        if result.status or result.response:
            result = await self._retried(result, cdb, data_out=b"", read_length=length, write=False)
        pieces = result.parts
        if len(pieces) == 1 and len(pieces[0]) == length:
            return pieces
        return _whole(result, length)

    async def write(self, lba: int, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        step = self._chunk_blocks()
        count = len(view) // self.block_size
        done = 0
        while done < count:
            n = min(step, count - done)
            chunk = view[done * self.block_size : (done + n) * self.block_size]
            cdb = ReadWriteCDB(Opcode.WRITE_16, lba + done, n).encode()
            await self.execute(cdb, data_out=chunk, write=True)
            done += n

    async def flush(self) -> None:
        cdb = SynchronizeCacheCDB(Opcode.SYNCHRONIZE_CACHE_16, 0, 0).encode()
        await self.execute(cdb, write=True)

    async def unmap(self, lba: int, count: int) -> None:
        """UNMAP when the LUN supports it (VPD B2h LBPU), else the default zero writes."""
        if not self.unmap_supported:
            await super().unmap(lba, count)
            return
        per_descriptor = min(self.max_unmap_blocks or 0xFFFFFFFF, 0xFFFFFFFF)
        per_command = min(self.max_unmap_descriptors or 64, 64)
        while count > 0:
            ranges: list[tuple[int, int]] = []
            while count > 0 and len(ranges) < per_command:
                n = min(per_descriptor, count)
                ranges.append((lba, n))
                lba += n
                count -= n
                if self.max_unmap_blocks:
                    break  # MAXIMUM UNMAP LBA COUNT bounds the whole command
            parameters = UnmapParameterList.of(ranges).encode()
            cdb = UnmapCDB(len(parameters)).encode()
            await self.execute(cdb, data_out=parameters, write=True)

    def health(self) -> str | None:
        if self._closed:
            return "device is closed"
        if self.session.closed:
            return f"session closed: {self.session.failure or 'logged out'}"
        return None

    async def close(self) -> None:
        self._closed = True


async def page83_identity(session: LunSession, lun: int) -> DeviceIdentity | None:
    """The identity of ``lun`` from VPD page 83h alone (one INQUIRY), the one ``open``
    derives, when the page holds a logical unit NAA designator; None when it does not (the
    unit serial or the fallback makes the identity then: only ``open`` can tell)."""
    page = await ISCSIDevice(session, lun)._vpd(VpdPage.DEVICE_IDENTIFICATION)
    if page is None:
        return None
    if not any(
        d.association is Association.LOGICAL_UNIT
        and d.designator_type is DesignatorType.NAA
        and d.designator
        for d in designators(page)
    ):
        return None
    return identity_from_vpd(page, None, "")
