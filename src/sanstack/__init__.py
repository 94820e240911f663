"""sanstack: a clustered SAN storage stack.

Layers stack like device-mapper: every layer is a :class:`sanstack.block.BlockDevice`.
Each package is one layer, whole: its sans-IO core (bytes and ``now`` in, events out) and
the asyncio edge that drives it sit side by side, and the edge modules are an explicit
allowlist (``tests/unit/test_sans_io_rule.py``). Lowest first:

- ``errors``, ``edge``: shared errors; the edge driver and bounded task helpers.
- ``control``: the control-plane HTTP/JSON server and client every daemon uses.
- ``tools``: the fault-injection proxy.
- ``block``: the ``BlockDevice`` interface and the file and memory backstores.
- ``scsi``: the SCSI device server (command table, handlers, sense, ``LogicalUnit``).
- ``nbd``: the NBD protocol core and its server.
- ``iscsi``: the iSCSI protocol core for both ends (PDUs, login, negotiation, connections).
- ``snapshot``: snapshot volumes (a ``BlockDevice`` over a ``BlockDevice``).
- ``initiator``: the iSCSI session and the per-path LUN device.
- ``mpio``: multipath: the policy core and ``MultipathDevice``.
- ``target``: the iSCSI target: model, config, login policy, server, service.
- ``cli``: the command line, a thin view over each daemon's service.

A module imports only its own layer or a lower one; a lower layer reaches up only through
a ``typing.Protocol`` it defines.
"""

__version__ = "0.1.0"

# Before any other module: use the mypyc-compiled modules only when they match the sources.
from sanstack import native as _native

_native.choose()
