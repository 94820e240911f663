"""NBD (Network Block Device) server protocol, sans-IO.

``constants`` holds the protocol's values, ``protocol`` the message codecs, and
``server_connection`` the connection state machine that ``sanstack.nbd.server`` drives.
The reference is doc/proto.md of the NetworkBlockDevice/nbd project.
"""

from sanstack.nbd.codes import (
    NBDClientFlag,
    NBDCmd,
    NBDCmdFlag,
    NBDError,
    NBDHandshakeFlag,
    NBDInfo,
    NBDOpt,
    NBDRep,
    NBDReplyFlag,
    NBDReplyType,
    NBDState,
    NBDTransmissionFlag,
)
from sanstack.nbd.events import (
    Disconnect,
    Event,
    ExportChosen,
    ExportInfo,
    ProtocolFailure,
    Request,
    RequestRejected,
)
from sanstack.nbd.protocol import NBDDecodeError
from sanstack.nbd.server_connection import NBDServerConnection

__all__ = [
    "Disconnect",
    "Event",
    "ExportChosen",
    "ExportInfo",
    "NBDClientFlag",
    "NBDCmd",
    "NBDCmdFlag",
    "NBDDecodeError",
    "NBDError",
    "NBDHandshakeFlag",
    "NBDInfo",
    "NBDOpt",
    "NBDRep",
    "NBDReplyFlag",
    "NBDReplyType",
    "NBDServerConnection",
    "NBDState",
    "NBDTransmissionFlag",
    "ProtocolFailure",
    "Request",
    "RequestRejected",
]
