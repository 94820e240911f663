"""NBD protocol values, named as in the NBD protocol document (NetworkBlockDevice/nbd,
doc/proto.md). Each enum says which section of that document defines it.

Magic numbers are plain constants: they never appear as a field a caller chooses.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag
from typing import Final

# "Newstyle negotiation": the server's first two words, and every option's prefix.
NBDMAGIC: Final = 0x4E42444D41474943  # ASCII 'NBDMAGIC', also INIT_PASSWD
IHAVEOPT: Final = 0x49484156454F5054  # ASCII 'IHAVEOPT'
# "Fixed newstyle negotiation": the prefix of every option reply.
NBD_REP_MAGIC: Final = 0x3E889045565A9
# "Request message", "Simple reply message", "Structured reply chunk message".
NBD_REQUEST_MAGIC: Final = 0x25609513
NBD_SIMPLE_REPLY_MAGIC: Final = 0x67446698
NBD_STRUCTURED_REPLY_MAGIC: Final = 0x668E33EF

# "Newstyle negotiation": the zero padding after an NBD_OPT_EXPORT_NAME reply.
EXPORT_NAME_ZEROES: Final = 124
# "Conventions": a string MUST be no longer than 4096 bytes.
MAX_STRING_BYTES: Final = 4096
# "Size constraints": the payload every server SHOULD accept and no client is denied.
MAX_PAYLOAD_BYTES: Final = 1 << 25
# "Size constraints": a minimum block size MUST NOT be larger than 2^16.
MAX_MINIMUM_BLOCK_SIZE: Final = 1 << 16


class NBDHandshakeFlag(IntFlag):
    """ "Values" > "Handshake flags": the 16 bits after IHAVEOPT in the greeting."""

    NBD_FLAG_FIXED_NEWSTYLE = 1 << 0
    NBD_FLAG_NO_ZEROES = 1 << 1


class NBDClientFlag(IntFlag):
    """ "Values" > "Client flags": the 32 bits the client answers the greeting with."""

    NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0
    NBD_FLAG_C_NO_ZEROES = 1 << 1


class NBDTransmissionFlag(IntFlag):
    """ "Values" > "Transmission flags": what the export supports, sent with its size."""

    NBD_FLAG_HAS_FLAGS = 1 << 0
    NBD_FLAG_READ_ONLY = 1 << 1
    NBD_FLAG_SEND_FLUSH = 1 << 2
    NBD_FLAG_SEND_FUA = 1 << 3
    NBD_FLAG_ROTATIONAL = 1 << 4
    NBD_FLAG_SEND_TRIM = 1 << 5
    NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6
    NBD_FLAG_SEND_DF = 1 << 7
    NBD_FLAG_CAN_MULTI_CONN = 1 << 8
    NBD_FLAG_SEND_RESIZE = 1 << 9
    NBD_FLAG_SEND_CACHE = 1 << 10
    NBD_FLAG_SEND_FAST_ZERO = 1 << 11


class NBDOpt(IntEnum):
    """ "Values" > "Option types"."""

    NBD_OPT_EXPORT_NAME = 1
    NBD_OPT_ABORT = 2
    NBD_OPT_LIST = 3
    NBD_OPT_PEEK_EXPORT = 4
    NBD_OPT_STARTTLS = 5
    NBD_OPT_INFO = 6
    NBD_OPT_GO = 7
    NBD_OPT_STRUCTURED_REPLY = 8
    NBD_OPT_LIST_META_CONTEXT = 9
    NBD_OPT_SET_META_CONTEXT = 10
    NBD_OPT_EXTENDED_HEADERS = 11


_ERR = 1 << 31


class NBDRep(IntEnum):
    """ "Values" > "Option reply types"; errors have bit 31 set."""

    NBD_REP_ACK = 1
    NBD_REP_SERVER = 2
    NBD_REP_INFO = 3
    NBD_REP_META_CONTEXT = 4
    NBD_REP_ERR_UNSUP = _ERR + 1
    NBD_REP_ERR_POLICY = _ERR + 2
    NBD_REP_ERR_INVALID = _ERR + 3
    NBD_REP_ERR_PLATFORM = _ERR + 4
    NBD_REP_ERR_TLS_REQD = _ERR + 5
    NBD_REP_ERR_UNKNOWN = _ERR + 6
    NBD_REP_ERR_SHUTDOWN = _ERR + 7
    NBD_REP_ERR_BLOCK_SIZE_REQD = _ERR + 8
    NBD_REP_ERR_TOO_BIG = _ERR + 9
    NBD_REP_ERR_EXT_HEADER_REQD = _ERR + 10


class NBDInfo(IntEnum):
    """ "Values" > "Option reply types" > ``NBD_REP_INFO`` information types."""

    NBD_INFO_EXPORT = 0
    NBD_INFO_NAME = 1
    NBD_INFO_DESCRIPTION = 2
    NBD_INFO_BLOCK_SIZE = 3


class NBDCmd(IntEnum):
    """ "Values" > "Request types"."""

    NBD_CMD_READ = 0
    NBD_CMD_WRITE = 1
    NBD_CMD_DISC = 2
    NBD_CMD_FLUSH = 3
    NBD_CMD_TRIM = 4
    NBD_CMD_CACHE = 5
    NBD_CMD_WRITE_ZEROES = 6
    NBD_CMD_BLOCK_STATUS = 7
    NBD_CMD_RESIZE = 8


class NBDCmdFlag(IntFlag):
    """ "Values" > "Command flags"."""

    NBD_CMD_FLAG_FUA = 1 << 0
    NBD_CMD_FLAG_NO_HOLE = 1 << 1
    NBD_CMD_FLAG_DF = 1 << 2
    NBD_CMD_FLAG_REQ_ONE = 1 << 3
    NBD_CMD_FLAG_FAST_ZERO = 1 << 4
    NBD_CMD_FLAG_PAYLOAD_LEN = 1 << 5


class NBDReplyFlag(IntFlag):
    """ "Values" > "Structured reply flags"."""

    NBD_REPLY_FLAG_DONE = 1 << 0


class NBDReplyType(IntEnum):
    """ "Values" > "Structured reply types"; error chunk types have bit 15 set."""

    NBD_REPLY_TYPE_NONE = 0
    NBD_REPLY_TYPE_OFFSET_DATA = 1
    NBD_REPLY_TYPE_OFFSET_HOLE = 2
    NBD_REPLY_TYPE_BLOCK_STATUS = 5
    NBD_REPLY_TYPE_ERROR = (1 << 15) + 1
    NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2


class NBDError(IntEnum):
    """ "Values" > "Error values": the only errnos a reply may carry."""

    NBD_EPERM = 1
    NBD_EIO = 5
    NBD_ENOMEM = 12
    NBD_EINVAL = 22
    NBD_ENOSPC = 28
    NBD_EOVERFLOW = 75
    NBD_ENOTSUP = 95
    NBD_ESHUTDOWN = 108


class NBDState(IntFlag):
    """ "Metadata querying" > "``base:allocation`` metadata context" status flags."""

    NBD_STATE_HOLE = 1 << 0
    NBD_STATE_ZERO = 1 << 1


# "The base: metadata namespace": the one context this server offers.
BASE_ALLOCATION: Final = "base:allocation"
