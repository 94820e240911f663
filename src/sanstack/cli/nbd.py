"""``sanstack nbd serve``: export block devices over NBD, for manual testing.

    sanstack nbd serve --listen 127.0.0.1:10809 --export disk=/tmp/disk.img:1G \\
        --export scratch=memory:64M --read-only disk

Clients: ``qemu-img info nbd://127.0.0.1:10809/disk``, ``nbdinfo``, ``nbd-client``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from sanstack.cli.common import (
    CommandParser,
    StopSignals,
    add_log_level,
    run_command,
    setup_logging,
)
from sanstack.config_checks import parse_address
from sanstack.errors import ConfigError

log = logging.getLogger("sanstack")


def register(commands: Any) -> None:
    nbd = commands.add_parser("nbd", help="serve block devices over NBD")
    sub = nbd.add_subparsers(dest="nbd_command", metavar="COMMAND")
    sub.required = True
    serve = sub.add_parser(
        "serve",
        help="serve NBD exports until SIGINT/SIGTERM",
        description=(
            "Serve each --export NAME=FILE:SIZE (a missing FILE is created sparse; SIZE like "
            "64M or 1G, optional for an existing file) or NAME=memory:SIZE over NBD. A client "
            "asking for the default export '' gets the only export when there is one."
        ),
    )
    serve.add_argument(
        "--listen",
        default="127.0.0.1:10809",
        metavar="HOST:PORT",
        help="address to listen on (default %(default)s)",
    )
    serve.add_argument(
        "--export",
        action="append",
        default=[],
        metavar="NAME=FILE:SIZE",
        help="an export (repeatable): NAME=FILE:SIZE, NAME=FILE or NAME=memory:SIZE",
    )
    serve.add_argument(
        "--read-only",
        action="append",
        default=[],
        metavar="NAME",
        help="serve export NAME read-only (repeatable)",
    )
    serve.add_argument(
        "--block-size",
        type=int,
        default=512,
        metavar="BYTES",
        help="logical block size of the exports: 512, 1024, 2048 or 4096 (default %(default)s)",
    )
    serve.set_defaults(func=serve_command)


async def serve_command(args: argparse.Namespace) -> int:
    from sanstack.block.device import BLOCK_SIZES, BlockDevice
    from sanstack.nbd.server import NBDServer
    from sanstack.target.build import open_device
    from sanstack.target.config import parse_lun_argument

    host, port = parse_address(args.listen, "--listen", any_port=True)
    if not args.export:
        raise ConfigError("--export", "at least one --export NAME=FILE:SIZE is needed")
    if args.block_size not in BLOCK_SIZES:
        raise ConfigError("--block-size", f"{args.block_size} is not one of {BLOCK_SIZES}")
    specs = {}
    for number, text in enumerate(args.export):
        name, sep, backing = text.partition("=")
        field = f"--export {text}"
        if not sep or not backing:
            raise ConfigError(field, "use NAME=FILE:SIZE or NAME=memory:SIZE")
        if name in specs:
            raise ConfigError(field, f"export {name!r} is given twice")
        spec = parse_lun_argument(backing, number, field)
        if spec.size is not None and spec.size % args.block_size:
            raise ConfigError(field, f"size is not a multiple of {args.block_size}")
        spec.block_size = args.block_size
        specs[name] = spec
    for name in args.read_only:
        if name not in specs:
            raise ConfigError("--read-only", f"no export named {name!r}")
        specs[name].read_only = True

    stop = StopSignals()
    devices: dict[str, BlockDevice] = {}
    try:
        for name, spec in specs.items():
            devices[name] = open_device(spec, f"nbd:{name}", f"--export {name}")
        server = NBDServer(devices, host, port)
        try:
            await server.start()
        except OSError as exc:
            raise ConfigError("--listen", f"cannot listen: {exc.strerror or exc}") from None
        for name, device in devices.items():
            log.info(
                "export %r: %d bytes%s",
                name,
                device.capacity_bytes,
                " (read-only)" if device.read_only else "",
            )
        print(f"ready nbd://{host}:{server.port}", flush=True)
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            await server.stop()
    finally:
        for device in devices.values():
            await device.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m sanstack.cli.nbd serve ...``: the ``nbd`` commands on their own, with
    the error handling of ``sanstack`` (one line on stderr, exit 2 or 1)."""
    parser = CommandParser(prog="sanstack")
    add_log_level(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    commands.required = True
    register(commands)
    args = parser.parse_args(["nbd", *(sys.argv[1:] if argv is None else argv)])
    setup_logging(args.log_level)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
