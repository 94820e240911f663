"""Target configuration: a TOML file, or the quick form of ``sanstack target serve``.

Every value is checked here, before anything listens, and a bad one raises ``ConfigError``
naming its field (``target[0].lun[3].size``) and the problem in one line.

File format::

    [[target]]
    name = "iqn.2026-11.org.sanstack:disk"
    alias = "disks"                          # optional
    initiators = ["iqn.1993-08.org.debian:01:node1"]   # optional ACL; absent = everyone
    chap = { user = "u", secret = "s3cret-s3cret" }    # optional; mutual_user/_secret too

    [[target.portal_group]]
    tag = 1
    portals = ["127.0.0.1:3260"]

    [[target.lun]]
    number = 0                               # optional; default: next free
    backstore = "file"                       # "file", "memory", "volume" or "snapshot"
    path = "/var/lib/sanstack/lun0.img"      # file only; created sparse if missing
    size = "1G"                              # needed to create a file, or for memory
    block_size = 512                         # optional
    physical_block_size = 4096               # optional; reported in READ CAPACITY(16)

    [[target.lun]]                           # a snapshot volume (sanstack volume format)
    backstore = "volume"
    path = "/var/lib/sanstack/vol0.img"

    [[target.lun]]                           # one of its snapshots, read-only
    backstore = "snapshot"
    path = "/var/lib/sanstack/vol0.img"
    snapshot = "before-upgrade"

A volume's size and block size are its own (set when it was formatted). However many LUNs
name one volume file, the daemon opens it once and they share it.

The quick form's ``--lun`` takes ``FILE:SIZE``, ``FILE`` (existing), ``memory:SIZE``,
``volume:FILE`` or ``snapshot:FILE@NAME``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sanstack.block.device import BLOCK_SIZES
from sanstack.config_checks import check_name, integer_in, load_toml, no_unknown_keys, table_at
from sanstack.errors import ConfigError
from sanstack.iscsi.chap import ChapCredentials, chap_from_table
from sanstack.snapshot.model import VolumeError, check_snapshot_name
from sanstack.target.model import Portal

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_PHYSICAL_SIZES = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


def parse_size(text: str | int, field_name: str) -> int:
    """``64M``, ``1G``, ``512K``, ``1.5G`` or a byte count; binary units."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = _SIZE.match(str(text))
        if match is None:
            raise ConfigError(field_name, f"{text!r} is not a size (use e.g. 64M or 1G)")
        value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if value <= 0:
        raise ConfigError(field_name, f"size {text!r} must be positive")
    return value


@dataclass(slots=True)
class LunSpec:
    number: int
    backstore: str
    path: Path | None
    size: int | None
    block_size: int = 512
    read_only: bool = False
    physical_block_size: int | None = None
    snapshot: str | None = None  # backstore "snapshot": which snapshot of the volume at path


@dataclass(slots=True)
class PortalGroupSpec:
    tag: int
    portals: list[Portal]


@dataclass(slots=True)
class TargetSpec:
    name: str
    portal_groups: list[PortalGroupSpec]
    luns: list[LunSpec] = field(default_factory=list)
    alias: str = ""
    initiators: frozenset[str] | None = None
    chap: ChapCredentials | None = None


def parse_lun_argument(text: str, number: int, field_name: str) -> LunSpec:
    """The quick form's ``--lun FILE:SIZE`` (or ``--lun FILE`` for an existing file),
    ``memory:SIZE``, ``volume:FILE`` or ``snapshot:FILE@NAME``."""
    kind, colon, rest = text.partition(":")
    if colon and kind in ("volume", "snapshot"):
        table: dict[str, Any] = {"path": rest}
        if kind == "snapshot":
            path_text, at, name = rest.rpartition("@")
            if not at:
                raise ConfigError(field_name, f"{text!r} names no snapshot (snapshot:FILE@NAME)")
            table = {"path": path_text, "snapshot": name}
        return volume_lun_spec(number, kind, table, field_name, own_field=True)
    path_text, sep, size_text = text.rpartition(":")
    if not sep:
        path_text, size_text = text, ""
    if not path_text:
        raise ConfigError(field_name, f"{text!r} has no file name (use FILE:SIZE)")
    if path_text.startswith("memory") and path_text in ("memory", "mem"):
        if not size_text:
            raise ConfigError(field_name, "a memory LUN needs a size (memory:64M)")
        return LunSpec(number, "memory", None, parse_size(size_text, field_name))
    size = parse_size(size_text, field_name) if size_text else None
    if size is not None and size % 512:
        raise ConfigError(field_name, f"size {size} is not a multiple of 512 bytes")
    path = Path(path_text)
    if size is None and not path.exists():
        raise ConfigError(field_name, f"{path} does not exist and no size was given (FILE:SIZE)")
    return LunSpec(number, "file", path, size)


def volume_lun_spec(
    number: int, backstore: str, table: dict[str, Any], where: str, *, own_field: bool = False
) -> LunSpec:
    """A ``volume`` or ``snapshot`` LUN from ``table`` (``path``, ``snapshot``; the TOML
    LUN table or a control request). ``own_field``: ``where`` names the whole value (the
    quick form's ``--lun ...``), so problems are not attributed to a sub-field."""

    def field(key: str) -> str:
        if own_field:
            return where
        return f"{where}.{key}" if where else key

    for key in ("size", "block_size", "read_only"):
        if table.get(key) is not None:
            raise ConfigError(
                field(key), f"a {backstore} LUN takes its {key} from the volume, not the config"
            )
    path_text = table.get("path")
    if not isinstance(path_text, str) or not path_text:
        raise ConfigError(field("path"), f"a {backstore} LUN needs the volume file's path")
    path = Path(path_text)
    if not path.exists():
        raise ConfigError(
            field("path"), f"{path} does not exist (create it with: sanstack volume format)"
        )
    physical = table.get("physical_block_size")
    if physical is not None and physical not in _PHYSICAL_SIZES:
        raise ConfigError(
            field("physical_block_size"), f"{physical!r} is not a power of two 512..65536"
        )
    snapshot = table.get("snapshot")
    if backstore == "snapshot":
        try:
            snapshot = check_snapshot_name(snapshot)
        except VolumeError as exc:
            raise ConfigError(field("snapshot"), str(exc)) from None
    elif snapshot is not None:
        raise ConfigError(field("snapshot"), 'only a backstore = "snapshot" LUN names one')
    return LunSpec(
        number,
        backstore,
        path,
        None,
        read_only=backstore == "snapshot",
        physical_block_size=physical,
        snapshot=snapshot,
    )


def quick_target(name: str, portals: list[str], luns: list[str]) -> TargetSpec:
    """The quick form: each portal in its own portal group (TPGT 1, 2, ...), LUNs from 0."""
    target_name = check_name(name, "--iqn")
    if not portals:
        raise ConfigError("--portal", "at least one --portal HOST:PORT is needed")
    groups = [
        PortalGroupSpec(i + 1, [Portal.parse(text, field_name=f"--portal {text}")])
        for i, text in enumerate(portals)
    ]
    lun_specs = [parse_lun_argument(text, i, f"--lun {text}") for i, text in enumerate(luns)]
    return TargetSpec(target_name, groups, lun_specs)


def load_config(path: Path) -> list[TargetSpec]:
    return parse_config(load_toml(path))


def parse_config(raw: dict[str, Any]) -> list[TargetSpec]:
    no_unknown_keys(raw, {"target"}, "")
    targets = raw.get("target")
    if not isinstance(targets, list) or not targets:
        raise ConfigError("target", "at least one [[target]] table is needed")
    specs = [_parse_target(t, f"target[{i}]") for i, t in enumerate(targets)]
    names = [s.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("target", f"{name} is defined twice")
    return specs


def _parse_target(value: object, where: str) -> TargetSpec:
    table = table_at(value, where)
    no_unknown_keys(table, {"name", "alias", "initiators", "chap", "portal_group", "lun"}, where)
    name = check_name(table.get("name"), f"{where}.name")
    alias = table.get("alias", "")
    if not isinstance(alias, str):
        raise ConfigError(f"{where}.alias", "must be a string")
    initiators: frozenset[str] | None = None
    if "initiators" in table:
        names = table["initiators"]
        if not isinstance(names, list):
            raise ConfigError(f"{where}.initiators", "must be a list of initiator names")
        initiators = frozenset(
            check_name(n, f"{where}.initiators[{i}]") for i, n in enumerate(names)
        )
    chap = chap_from_table(table["chap"], f"{where}.chap") if "chap" in table else None
    groups_raw = table.get("portal_group")
    if not isinstance(groups_raw, list) or not groups_raw:
        raise ConfigError(f"{where}.portal_group", "at least one [[target.portal_group]] needed")
    groups = [_parse_group(g, f"{where}.portal_group[{i}]") for i, g in enumerate(groups_raw)]
    tags = [g.tag for g in groups]
    if len(set(tags)) != len(tags):
        raise ConfigError(f"{where}.portal_group", "two portal groups share a tag")
    luns_raw = table.get("lun", [])
    if not isinstance(luns_raw, list):
        raise ConfigError(f"{where}.lun", "must be an array of tables ([[target.lun]])")
    luns: list[LunSpec] = []
    used: set[int] = set()
    for i, lun in enumerate(luns_raw):
        spec = _parse_lun(lun, f"{where}.lun[{i}]", used)
        used.add(spec.number)
        luns.append(spec)
    return TargetSpec(name, groups, luns, alias, initiators, chap)


def _parse_group(value: object, where: str) -> PortalGroupSpec:
    table = table_at(value, where)
    no_unknown_keys(table, {"tag", "portals"}, where)
    tag = integer_in(table.get("tag"), f"{where}.tag", 1, 0xFFFF)
    portals = table.get("portals")
    if not isinstance(portals, list) or not portals:
        raise ConfigError(f"{where}.portals", "must list at least one HOST:PORT")
    parsed = []
    for i, text in enumerate(portals):
        if not isinstance(text, str):
            raise ConfigError(f"{where}.portals[{i}]", "must be a string HOST:PORT")
        parsed.append(Portal.parse(text, field_name=f"{where}.portals[{i}]"))
    return PortalGroupSpec(tag, parsed)


def _parse_lun(value: object, where: str, used: set[int]) -> LunSpec:
    table = table_at(value, where)
    known = {"number", "backstore", "path", "size", "block_size", "read_only"}
    known |= {"physical_block_size", "snapshot"}
    no_unknown_keys(table, known, where)
    number = table.get("number")
    if number is None:
        number = next(n for n in range(len(used) + 1) if n not in used)
    number = integer_in(number, f"{where}.number", 0, 16383)
    if number in used:
        raise ConfigError(f"{where}.number", f"LUN {number} is defined twice")
    backstore = table.get("backstore", "file")
    if backstore not in ("file", "memory", "volume", "snapshot"):
        raise ConfigError(
            f"{where}.backstore", f"{backstore!r} is not 'file', 'memory', 'volume' or 'snapshot'"
        )
    if backstore in ("volume", "snapshot"):
        return volume_lun_spec(number, backstore, table, where)
    if "snapshot" in table:
        raise ConfigError(f"{where}.snapshot", 'only a backstore = "snapshot" LUN names one')
    size = parse_size(table["size"], f"{where}.size") if "size" in table else None
    block_size = table.get("block_size", 512)
    if block_size not in BLOCK_SIZES:
        raise ConfigError(f"{where}.block_size", f"{block_size!r} is not one of {BLOCK_SIZES}")
    physical = table.get("physical_block_size")
    if physical is not None and (physical not in _PHYSICAL_SIZES or physical < block_size):
        raise ConfigError(
            f"{where}.physical_block_size",
            f"{physical!r} is not a power of two from block_size up to 65536",
        )
    read_only = table.get("read_only", False)
    if not isinstance(read_only, bool):
        raise ConfigError(f"{where}.read_only", "must be true or false")
    path: Path | None = None
    if backstore == "file":
        if not isinstance(table.get("path"), str):
            raise ConfigError(f"{where}.path", "a file LUN needs a path")
        path = Path(table["path"])
        if size is None and not path.exists():
            raise ConfigError(f"{where}.size", f"{path} does not exist, so a size is needed")
    elif size is None:
        raise ConfigError(f"{where}.size", "a memory LUN needs a size")
    if size is not None and size % block_size:
        raise ConfigError(f"{where}.size", f"{size} is not a multiple of block_size {block_size}")
    return LunSpec(number, backstore, path, size, block_size, read_only, physical)
