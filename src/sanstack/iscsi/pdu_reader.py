"""Incremental, sans-IO iSCSI PDU decoder (RFC 7143 §11).

:class:`PDUReader` frames PDUs out of a byte stream split at arbitrary points. Fed ``bytes``
are kept as they are (no copy into a staging buffer); each data segment is copied at most once,
and not at all when it is exactly one fed ``bytes`` object. A PDU is consumed only once it is
complete, so a partial PDU is never half-read.

Errors (all :class:`sanstack.errors.RemoteProtocolError`, defined in :mod:`.pdu`):

* :class:`PDUFormatError` with ``fatal=False``: unknown opcode (COMMAND_NOT_SUPPORTED) or a
  malformed field (INVALID_PDU_FIELD). The PDU was skipped whole; reading may continue.
* :class:`DataDigestError`: the PDU was skipped whole; reading may continue.
* :class:`HeaderDigestError`, or :class:`PDUFormatError` with ``fatal=True`` (a
  DataSegmentLength above the negotiated maximum, PROTOCOL_ERROR): framing is lost. The
  connection must be dropped; the reader re-raises the same error from then on.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from typing import Final, cast

import google_crc32c

from sanstack.iscsi.codes import (
    BHS_LENGTH,
    MAX_CDB_LENGTH,
    MAX_DATA_SEGMENT_LENGTH,
    AHSType,
    AsyncEvent,
    ISCSIResponse,
    LoginStage,
    LogoutReason,
    LogoutResponseCode,
    Opcode,
    RejectReason,
    SNACKType,
    TaskAttribute,
    TaskManagementFunction,
    TaskManagementResponseCode,
    decode_sense,
)
from sanstack.iscsi.digest import crc32c_extend
from sanstack.iscsi.pdu import (
    ASYNC_STRUCT,
    DATA_IN_STRUCT,
    DATA_OUT_STRUCT,
    LOGIN_REQUEST_STRUCT,
    LOGIN_RESPONSE_STRUCT,
    LOGOUT_REQUEST_STRUCT,
    LOGOUT_RESPONSE_STRUCT,
    NOP_IN_STRUCT,
    NOP_OUT_STRUCT,
    PDU,
    R2T,
    R2T_STRUCT,
    REJECT_STRUCT,
    SCSI_COMMAND_STRUCT,
    SCSI_RESPONSE_STRUCT,
    SNACK_STRUCT,
    TMF_REQUEST_STRUCT,
    TMF_RESPONSE_STRUCT,
    AsyncMessage,
    DataDigestError,
    DataIn,
    DataOut,
    HeaderDigestError,
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    PDUFormatError,
    Reject,
    SCSICommand,
    SCSIResponse,
    SNACKRequest,
    TaskManagementRequest,
    TaskManagementResponse,
    TextRequest,
    TextResponse,
)

_U32 = struct.Struct(">I")
_LE32 = struct.Struct("<I")
_AHS_HEADER = struct.Struct(">HB")
_crc = google_crc32c.value
_crc_extend = google_crc32c.extend

# A Data-In segment at least this long is handed out as views of the fed buffers (reads of a
# whole MiB pass on without a copy); a shorter one is copied, letting the buffer go at once.
GATHER_FROM: Final = 64 * 1024
Pieces = tuple[memoryview, ...]

# Fed pieces smaller than this are merged into the previous small piece, so a peer trickling
# single bytes costs memory proportional to the bytes, not to the number of reads.
_COALESCE_BELOW = 1024

# Enum lookups by table: calling an Enum class costs far more than indexing a tuple.
_ATTRS = tuple(TaskAttribute(i) for i in range(8))
_STAGES = tuple(LoginStage(i) for i in range(4))
_TMF_FUNCTIONS = tuple(TaskManagementFunction(i) for i in range(128))
_LOGOUT_REASONS = tuple(LogoutReason(i) for i in range(128))
_SNACK_TYPES = tuple(SNACKType(i) for i in range(16))
_ISCSI_RESPONSES = tuple(ISCSIResponse(i) for i in range(256))
_TMF_RESPONSES = tuple(TaskManagementResponseCode(i) for i in range(256))
_LOGOUT_RESPONSES = tuple(LogoutResponseCode(i) for i in range(256))
_ASYNC_EVENTS = tuple(AsyncEvent(i) for i in range(256))
_REJECT_REASONS = tuple(RejectReason(i) for i in range(256))

_Decoder = Callable[[memoryview, bytes, bytes], PDU]


def _nop_out(h: memoryview, ahs: bytes, data: bytes) -> NopOut:
    b0, _, _, lun, itt, ttt, cmd_sn, exp_stat_sn = NOP_OUT_STRUCT.unpack_from(h)
    return NopOut(
        itt=itt,
        ttt=ttt,
        lun=lun,
        cmd_sn=cmd_sn,
        exp_stat_sn=exp_stat_sn,
        immediate=bool(b0 & 0x40),
        data=data,
    )


def _command_ahs(ahs: bytes, cdb: bytes) -> tuple[bytes, int | None]:
    bidi = None
    pos = 0
    # TotalAHSLength counts words, so each AHS header starts word-aligned and fits whole.
    while pos < len(ahs):
        length, ahs_type = _AHS_HEADER.unpack_from(ahs, pos)
        body = pos + 3
        if body + length > len(ahs):
            raise PDUFormatError("AHS overruns TotalAHSLength", RejectReason.INVALID_PDU_FIELD)
        if ahs_type == AHSType.EXTENDED_CDB:
            # One at most, with the reserved byte and 1-244 more CDB bytes (§11.2.2.3).
            if len(cdb) > 16 or not 2 <= length <= MAX_CDB_LENGTH - 15:
                raise PDUFormatError("bad Extended CDB AHS", RejectReason.INVALID_PDU_FIELD)
            cdb += ahs[body + 1 : body + length]
        elif ahs_type == AHSType.BIDIRECTIONAL_READ_EXPECTED_DATA_TRANSFER_LENGTH:
            if bidi is not None or length != 5:
                raise PDUFormatError("bad bidirectional AHS", RejectReason.INVALID_PDU_FIELD)
            bidi = _U32.unpack_from(ahs, body + 1)[0]
        # Other AHS types are reserved or non-iSCSI extensions (§11.2.2.1): skip them.
        pos = (body + length + 3) & ~3
    return cdb, bidi


def _scsi_command(h: memoryview, ahs: bytes, data: bytes) -> SCSICommand:
    b0, flags, _, lun, itt, edtl, cmd_sn, exp_stat_sn, cdb = SCSI_COMMAND_STRUCT.unpack_from(h)
    bidi = None
    if ahs:
        cdb, bidi = _command_ahs(ahs, cdb)
    return SCSICommand(
        itt=itt,
        lun=lun,
        cdb=cdb,
        expected_data_transfer_length=edtl,
        cmd_sn=cmd_sn,
        exp_stat_sn=exp_stat_sn,
        final=bool(flags & 0x80),
        read=bool(flags & 0x40),
        write=bool(flags & 0x20),
        attr=_ATTRS[flags & 0x07],
        immediate=bool(b0 & 0x40),
        bidi_read_expected_length=bidi,
        data=data,
    )


def _scsi_response(h: memoryview, ahs: bytes, data: bytes) -> SCSIResponse:
    (_, flags, response, status, _, itt, snack_tag, stat_sn, exp_cmd_sn, max_cmd_sn, exp_data_sn,
     bidi_residual_count, residual_count) = SCSI_RESPONSE_STRUCT.unpack_from(h)  # fmt: skip
    return SCSIResponse(
        itt=itt,
        status=status,
        response=_ISCSI_RESPONSES[response],
        stat_sn=stat_sn,
        exp_cmd_sn=exp_cmd_sn,
        max_cmd_sn=max_cmd_sn,
        exp_data_sn=exp_data_sn,
        residual_overflow=bool(flags & 0x04),
        residual_underflow=bool(flags & 0x02),
        bidi_residual_overflow=bool(flags & 0x10),
        bidi_residual_underflow=bool(flags & 0x08),
        residual_count=residual_count,
        bidi_residual_count=bidi_residual_count,
        snack_tag=snack_tag,
        sense=decode_sense(data),
        data=data,
    )


def _tmf_request(h: memoryview, ahs: bytes, data: bytes) -> TaskManagementRequest:
    (b0, flags, _, lun, itt, referenced_task_tag, cmd_sn, exp_stat_sn, ref_cmd_sn,
     exp_data_sn) = TMF_REQUEST_STRUCT.unpack_from(h)  # fmt: skip
    return TaskManagementRequest(
        function=_TMF_FUNCTIONS[flags & 0x7F],
        itt=itt,
        lun=lun,
        referenced_task_tag=referenced_task_tag,
        cmd_sn=cmd_sn,
        exp_stat_sn=exp_stat_sn,
        ref_cmd_sn=ref_cmd_sn,
        exp_data_sn=exp_data_sn,
        immediate=bool(b0 & 0x40),
    )


def _tmf_response(h: memoryview, ahs: bytes, data: bytes) -> TaskManagementResponse:
    _, _, response, _, itt, stat_sn, exp_cmd_sn, max_cmd_sn = TMF_RESPONSE_STRUCT.unpack_from(h)
    return TaskManagementResponse(
        itt=itt,
        response=_TMF_RESPONSES[response],
        stat_sn=stat_sn,
        exp_cmd_sn=exp_cmd_sn,
        max_cmd_sn=max_cmd_sn,
    )


def _login_request(h: memoryview, ahs: bytes, data: bytes) -> LoginRequest:
    (_, flags, version_max, version_min, _, isid_hi, isid_lo, tsih, itt, cid, cmd_sn,
     exp_stat_sn) = LOGIN_REQUEST_STRUCT.unpack_from(h)  # fmt: skip
    return LoginRequest(
        isid=(isid_hi << 32) | isid_lo,
        tsih=tsih,
        itt=itt,
        cid=cid,
        cmd_sn=cmd_sn,
        exp_stat_sn=exp_stat_sn,
        transit=bool(flags & 0x80),
        cont=bool(flags & 0x40),
        csg=_STAGES[(flags >> 2) & 0x03],
        nsg=_STAGES[flags & 0x03],
        version_max=version_max,
        version_min=version_min,
        data=data,
    )


def _login_response(h: memoryview, ahs: bytes, data: bytes) -> LoginResponse:
    (_, flags, version_max, version_active, _, isid_hi, isid_lo, tsih, itt, stat_sn, exp_cmd_sn,
     max_cmd_sn, status_class, status_detail) = LOGIN_RESPONSE_STRUCT.unpack_from(h)  # fmt: skip
    return LoginResponse(
        isid=(isid_hi << 32) | isid_lo,
        itt=itt,
        tsih=tsih,
        stat_sn=stat_sn,
        exp_cmd_sn=exp_cmd_sn,
        max_cmd_sn=max_cmd_sn,
        status_class=status_class,  # an int field: compiled (mypyc), it keeps no enum
        status_detail=status_detail,
        transit=bool(flags & 0x80),
        cont=bool(flags & 0x40),
        csg=_STAGES[(flags >> 2) & 0x03],
        nsg=_STAGES[flags & 0x03],
        version_max=version_max,
        version_active=version_active,
        data=data,
    )


def _text_request(h: memoryview, ahs: bytes, data: bytes) -> TextRequest:
    b0, flags, _, lun, itt, ttt, cmd_sn, exp_stat_sn = NOP_OUT_STRUCT.unpack_from(h)
    return TextRequest(
        itt=itt,
        ttt=ttt,
        lun=lun,
        cmd_sn=cmd_sn,
        exp_stat_sn=exp_stat_sn,
        final=bool(flags & 0x80),
        cont=bool(flags & 0x40),
        immediate=bool(b0 & 0x40),
        data=data,
    )


def _text_response(h: memoryview, ahs: bytes, data: bytes) -> TextResponse:
    _, flags, _, lun, itt, ttt, stat_sn, exp_cmd_sn, max_cmd_sn = NOP_IN_STRUCT.unpack_from(h)
    return TextResponse(
        itt=itt,
        ttt=ttt,
        lun=lun,
        stat_sn=stat_sn,
        exp_cmd_sn=exp_cmd_sn,
        max_cmd_sn=max_cmd_sn,
        final=bool(flags & 0x80),
        cont=bool(flags & 0x40),
        data=data,
    )


def _data_out(h: memoryview, ahs: bytes, data: bytes) -> DataOut:
    (_, flags, _, lun, itt, ttt, exp_stat_sn, data_sn,
     buffer_offset) = DATA_OUT_STRUCT.unpack_from(h)  # fmt: skip
    return DataOut(
        itt=itt,
        ttt=ttt,
        lun=lun,
        exp_stat_sn=exp_stat_sn,
        data_sn=data_sn,
        buffer_offset=buffer_offset,
        final=bool(flags & 0x80),
        data=data,
    )


def _data_in(h: memoryview, ahs: bytes, data: bytes) -> DataIn:
    (_, flags, status, _, lun, itt, ttt, stat_sn, exp_cmd_sn, max_cmd_sn, data_sn, buffer_offset,
     residual_count) = DATA_IN_STRUCT.unpack_from(h)  # fmt: skip
    return DataIn(
        itt=itt,
        ttt=ttt,
        lun=lun,
        stat_sn=stat_sn,
        exp_cmd_sn=exp_cmd_sn,
        max_cmd_sn=max_cmd_sn,
        data_sn=data_sn,
        buffer_offset=buffer_offset,
        residual_count=residual_count,
        final=bool(flags & 0x80),
        acknowledge=bool(flags & 0x40),
        residual_overflow=bool(flags & 0x04),
        residual_underflow=bool(flags & 0x02),
        status_present=bool(flags & 0x01),
        status=status,
        data=data,
    )


def _logout_request(h: memoryview, ahs: bytes, data: bytes) -> LogoutRequest:
    b0, flags, _, itt, cid, cmd_sn, exp_stat_sn = LOGOUT_REQUEST_STRUCT.unpack_from(h)
    return LogoutRequest(
        itt=itt,
        reason=_LOGOUT_REASONS[flags & 0x7F],
        cid=cid,
        cmd_sn=cmd_sn,
        exp_stat_sn=exp_stat_sn,
        immediate=bool(b0 & 0x40),
    )


def _logout_response(h: memoryview, ahs: bytes, data: bytes) -> LogoutResponse:
    (_, _, response, _, itt, stat_sn, exp_cmd_sn, max_cmd_sn, time2wait,
     time2retain) = LOGOUT_RESPONSE_STRUCT.unpack_from(h)  # fmt: skip
    return LogoutResponse(
        itt=itt,
        response=_LOGOUT_RESPONSES[response],
        stat_sn=stat_sn,
        exp_cmd_sn=exp_cmd_sn,
        max_cmd_sn=max_cmd_sn,
        time2wait=time2wait,
        time2retain=time2retain,
    )


def _snack_request(h: memoryview, ahs: bytes, data: bytes) -> SNACKRequest:
    _, flags, _, lun, itt, ttt, exp_stat_sn, beg_run, run_length = SNACK_STRUCT.unpack_from(h)
    return SNACKRequest(
        type=_SNACK_TYPES[flags & 0x0F],
        itt=itt,
        ttt=ttt,
        lun=lun,
        exp_stat_sn=exp_stat_sn,
        beg_run=beg_run,
        run_length=run_length,
    )


def _nop_in(h: memoryview, ahs: bytes, data: bytes) -> NopIn:
    _, _, _, lun, itt, ttt, stat_sn, exp_cmd_sn, max_cmd_sn = NOP_IN_STRUCT.unpack_from(h)
    return NopIn(
        itt=itt,
        ttt=ttt,
        lun=lun,
        stat_sn=stat_sn,
        exp_cmd_sn=exp_cmd_sn,
        max_cmd_sn=max_cmd_sn,
        data=data,
    )


def _r2t(h: memoryview, ahs: bytes, data: bytes) -> R2T:
    (_, _, _, lun, itt, ttt, stat_sn, exp_cmd_sn, max_cmd_sn, r2t_sn, buffer_offset,
     desired_data_transfer_length) = R2T_STRUCT.unpack_from(h)  # fmt: skip
    return R2T(
        itt=itt,
        ttt=ttt,
        lun=lun,
        stat_sn=stat_sn,
        exp_cmd_sn=exp_cmd_sn,
        max_cmd_sn=max_cmd_sn,
        r2t_sn=r2t_sn,
        buffer_offset=buffer_offset,
        desired_data_transfer_length=desired_data_transfer_length,
    )


def _async_message(h: memoryview, ahs: bytes, data: bytes) -> AsyncMessage:
    (_, _, _, lun, _, stat_sn, exp_cmd_sn, max_cmd_sn, async_event, async_vcode, parameter1,
     parameter2, parameter3) = ASYNC_STRUCT.unpack_from(h)  # fmt: skip
    return AsyncMessage(
        async_event=_ASYNC_EVENTS[async_event],
        lun=lun,
        stat_sn=stat_sn,
        exp_cmd_sn=exp_cmd_sn,
        max_cmd_sn=max_cmd_sn,
        async_vcode=async_vcode,
        parameter1=parameter1,
        parameter2=parameter2,
        parameter3=parameter3,
        data=data,
    )


def _reject(h: memoryview, ahs: bytes, data: bytes) -> Reject:
    (_, _, reason, _, _, stat_sn, exp_cmd_sn, max_cmd_sn,
     data_sn_r2t_sn) = REJECT_STRUCT.unpack_from(h)  # fmt: skip
    return Reject(
        reason=_REJECT_REASONS[reason],
        stat_sn=stat_sn,
        exp_cmd_sn=exp_cmd_sn,
        max_cmd_sn=max_cmd_sn,
        data_sn_r2t_sn=data_sn_r2t_sn,
        data=data,
    )


def _decoder_table() -> tuple[_Decoder | None, ...]:
    by_opcode: dict[int, _Decoder] = {
        Opcode.NOP_OUT: _nop_out,
        Opcode.SCSI_COMMAND: _scsi_command,
        Opcode.TASK_MANAGEMENT_REQUEST: _tmf_request,
        Opcode.LOGIN_REQUEST: _login_request,
        Opcode.TEXT_REQUEST: _text_request,
        Opcode.DATA_OUT: _data_out,
        Opcode.LOGOUT_REQUEST: _logout_request,
        Opcode.SNACK_REQUEST: _snack_request,
        Opcode.NOP_IN: _nop_in,
        Opcode.SCSI_RESPONSE: _scsi_response,
        Opcode.TASK_MANAGEMENT_RESPONSE: _tmf_response,
        Opcode.LOGIN_RESPONSE: _login_response,
        Opcode.TEXT_RESPONSE: _text_response,
        Opcode.DATA_IN: _data_in,
        Opcode.LOGOUT_RESPONSE: _logout_response,
        Opcode.R2T: _r2t,
        Opcode.ASYNC_MESSAGE: _async_message,
        Opcode.REJECT: _reject,
    }
    return tuple(by_opcode.get(code) for code in range(64))


# Indexed by the 6-bit opcode; bit 7 (reserved) and bit 6 (I) are masked off.
_DECODERS = _decoder_table()


class PDUReader:
    """Frames and decodes PDUs from a byte stream (see the module docstring for errors).

    ``max_data_segment_length`` is our declared MaxRecvDataSegmentLength (8192 during login,
    §13.12). :meth:`set_digests` and :meth:`set_max_data_segment_length` take effect from the
    next :meth:`next_pdu` call, even for bytes already fed.
    """

    __slots__ = ("_chunks", "_data_digest", "_error", "_header_digest", "_max", "_size")

    def __init__(
        self,
        max_data_segment_length: int = 8192,
        header_digest: bool = False,
        data_digest: bool = False,
    ) -> None:
        self._chunks: deque[memoryview] = deque()
        self._size = 0
        self._max = 0
        self.set_max_data_segment_length(max_data_segment_length)
        self._header_digest = header_digest
        self._data_digest = data_digest
        self._error: PDUFormatError | HeaderDigestError | None = None

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet consumed."""
        return self._size

    def set_digests(self, header: bool, data: bool) -> None:
        self._header_digest = header
        self._data_digest = data

    def set_max_data_segment_length(self, n: int) -> None:
        if not 0 <= n <= MAX_DATA_SEGMENT_LENGTH:
            raise ValueError(f"max data segment length {n} out of range")
        self._max = n

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes. ``bytes`` are kept by reference; other buffers are copied."""
        if self._error is not None:
            return  # the connection is being dropped; don't grow the buffer
        view = memoryview(data if type(data) is bytes else bytes(data))
        n = len(view)
        if not n:
            return
        chunks = self._chunks
        if n < _COALESCE_BELOW and chunks and len(chunks[-1]) < _COALESCE_BELOW:
            chunks[-1] = memoryview(b"".join((chunks[-1], view)))
        else:
            chunks.append(view)
        self._size += n

    def next_pdu(self) -> PDU | None:
        """Return the next complete PDU, or None if more bytes are needed."""
        frame = self.next_frame()
        if frame is None:
            return None
        bhs, ahs, data = frame
        decoder = _DECODERS[bhs[0] & 0x3F]
        assert decoder is not None  # next_frame refused unknown opcodes
        try:
            return decoder(bhs, ahs, data)
        except PDUFormatError as exc:
            exc.header = exc.header or bytes(bhs)
            raise

    def next_frame(self) -> tuple[memoryview, bytes, bytes] | None:
        """``next_pdu`` up to the decoding: the BHS, AHS and data segment of the next whole
        PDU, its framing, opcode and digests checked (the same errors), or None. For a
        caller that unpacks its most frequent PDU itself (``decode_frame`` the others)."""
        return cast("tuple[memoryview, bytes, bytes] | None", self._frame(gather=False))

    def next_frame_gathered(self) -> tuple[memoryview, bytes, bytes | Pieces] | None:
        """``next_frame``, but a Data-In's data segment of ``GATHER_FROM`` bytes or more
        comes as the pieces of the fed buffers it lies in, never copied: a read's data that
        the caller only passes on (to an NBD client) is not copied on the way."""
        return self._frame(gather=True)

    def _frame(self, *, gather: bool) -> tuple[memoryview, bytes, bytes | Pieces] | None:
        if self._error is not None:
            raise self._error
        size = self._size
        if size < BHS_LENGTH:
            return None
        head = self._contiguous(BHS_LENGTH)
        ahs_length = head[4] << 2
        dsl = _U32.unpack_from(head, 4)[0] & 0xFFFFFF
        header_length = BHS_LENGTH + ahs_length
        digest_length = 4 if self._header_digest else 0
        if size < header_length + digest_length:
            return None
        if header_length + digest_length > BHS_LENGTH:
            head = self._contiguous(header_length + digest_length)
        if digest_length:
            covered = bytes(head[:header_length])
            if _crc(covered) != _LE32.unpack_from(head, header_length)[0]:
                raise self._fail(HeaderDigestError("header digest mismatch", covered[:48]))
        if dsl > self._max:
            raise self._fail(
                PDUFormatError(
                    f"DataSegmentLength {dsl} exceeds MaxRecvDataSegmentLength {self._max}",
                    RejectReason.PROTOCOL_ERROR,
                    bytes(head[:BHS_LENGTH]),
                    fatal=True,
                )
            )
        trailer_length = ((-dsl) & 3) + (4 if self._data_digest and dsl else 0)
        if size < header_length + digest_length + dsl + trailer_length:
            return None

        # The whole PDU is here: from now on it is consumed whatever happens, so the stream
        # stays framed after any error raised below.
        bhs = head[:BHS_LENGTH]
        ahs = bytes(head[BHS_LENGTH:header_length]) if ahs_length else b""
        self._skip(header_length + digest_length)
        data: bytes | Pieces = b""
        if gather and dsl >= GATHER_FROM and bhs[0] & 0x3F == Opcode.DATA_IN:
            data = self._take_pieces(dsl)
        elif dsl:
            data = self._take(dsl)
        trailer = self._take(trailer_length) if trailer_length else b""

        decoder = _DECODERS[bhs[0] & 0x3F]
        if decoder is None:
            raise PDUFormatError(
                f"unknown opcode {bhs[0] & 0x3F:#04x}",
                RejectReason.COMMAND_NOT_SUPPORTED,
                bytes(bhs),
            )
        if self._data_digest and dsl:
            if isinstance(data, tuple):
                crc = 0
                for piece in data:
                    crc = crc32c_extend(crc, piece)  # takes a view (google_crc32c: bytes only)
            else:
                crc = _crc(data)
            if len(trailer) > 4:
                crc = _crc_extend(crc, trailer[:-4])
            if crc != _LE32.unpack_from(trailer, len(trailer) - 4)[0]:
                try:
                    pdu: PDU | None = decoder(bhs, ahs, b"")
                except PDUFormatError:
                    pdu = None
                raise DataDigestError("data digest mismatch", bytes(bhs), pdu)
        return bhs, ahs, data

    def _fail(self, exc: PDUFormatError | HeaderDigestError) -> PDUFormatError | HeaderDigestError:
        self._error = exc
        self._chunks.clear()
        self._size = 0
        return exc

    def _contiguous(self, n: int) -> memoryview:
        # Make the first n buffered bytes one chunk; only called with n <= self._size.
        chunks = self._chunks
        first = chunks[0]
        if len(first) >= n:
            return first
        pieces = []
        need = n
        while need:
            chunk = chunks.popleft()
            if len(chunk) > need:
                pieces.append(chunk[:need])
                chunks.appendleft(chunk[need:])
                break
            pieces.append(chunk)
            need -= len(chunk)
        merged = memoryview(b"".join(pieces))
        chunks.appendleft(merged)
        return merged

    def _skip(self, n: int) -> None:
        chunks = self._chunks
        self._size -= n
        while n:
            chunk = chunks[0]
            if len(chunk) > n:
                chunks[0] = chunk[n:]
                return
            chunks.popleft()
            n -= len(chunk)

    def _take_pieces(self, n: int) -> Pieces:
        """The next ``n`` bytes as views of the fed buffers, without a copy."""
        chunks = self._chunks
        self._size -= n
        pieces = []
        while n:
            chunk = chunks.popleft()
            if len(chunk) > n:
                pieces.append(chunk[:n])
                chunks.appendleft(chunk[n:])
                break
            pieces.append(chunk)
            n -= len(chunk)
        return tuple(pieces)

    def _take(self, n: int) -> bytes:
        chunks = self._chunks
        self._size -= n
        first = chunks[0]
        if len(first) == n:
            chunks.popleft()
            obj = first.obj
            # A fed bytes object that is exactly this segment is handed out without a copy.
            if type(obj) is bytes and len(obj) == n:
                return obj
            return bytes(first)
        if len(first) > n:
            chunks[0] = first[n:]
            return bytes(first[:n])
        pieces = []
        while n:
            chunk = chunks.popleft()
            if len(chunk) > n:
                pieces.append(chunk[:n])
                chunks.appendleft(chunk[n:])
                break
            pieces.append(chunk)
            n -= len(chunk)
        return b"".join(pieces)


def decode_frame(bhs: memoryview, ahs: bytes, data: bytes) -> PDU:
    """The PDU of a frame ``PDUReader.next_frame`` returned."""
    decoder = _DECODERS[bhs[0] & 0x3F]
    assert decoder is not None  # next_frame refused unknown opcodes
    try:
        return decoder(bhs, ahs, data)
    except PDUFormatError as exc:
        exc.header = exc.header or bytes(bhs)
        raise


def decode(
    buf: bytes | bytearray | memoryview, header_digest: bool = False, data_digest: bool = False
) -> PDU:
    """Decode exactly one whole PDU. Raises PDUFormatError if ``buf`` is truncated or longer."""
    reader = PDUReader(MAX_DATA_SEGMENT_LENGTH, header_digest, data_digest)
    reader.feed(buf)
    pdu = reader.next_pdu()
    if pdu is None:
        raise PDUFormatError("truncated PDU", RejectReason.PROTOCOL_ERROR, bytes(buf[:BHS_LENGTH]))
    if reader.buffered:
        raise PDUFormatError(
            f"{reader.buffered} bytes after the PDU",
            RejectReason.PROTOCOL_ERROR,
            bytes(buf[:BHS_LENGTH]),
        )
    return pdu
