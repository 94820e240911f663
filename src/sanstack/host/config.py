"""The host's configuration: a TOML file, the quick form of ``sanstack host run``, or both.

Every value is checked here, before anything logs in or listens, and a bad one raises
``ConfigError`` naming its field (``host.session.nop_timeout``, ``--portal 10.0.0.1``) and
the problem in one line. Unknown keys are errors, so a typo never passes silently. A flag
given with ``--config`` overrides the file's value (``Flag``).

The file has one ``[host]`` table (``name``, ``portals``, ``nbd``; optional ``targets``,
``control``, ``state_dir``, ``rescan_interval``, ``metrics``) and optional tables below it:
``chap`` and ``discovery_chap`` (``user``, ``secret``, ``mutual_user``, ``mutual_secret``, as the
target's), ``session`` (``SessionOptions``: NOP-Out interval and timeout, login and command
timeouts, reconnect backoff, commands in flight), ``map`` (``MultipathOptions``, with
dm-multipath's names: ``selector``, ``failback``, ``no_path_retry``, ``checker_interval``)
and ``luns``. ``docs/host.toml`` is a complete example with every key and its default::

    [host]
    name = "node1"
    portals = ["10.0.0.1:3260", "10.0.1.1:3260"]
    nbd = "127.0.0.1:10809"

    [host.chap]
    user = "node1"
    secret = "a-long-secret"

    [host.session]
    nop_timeout = 5.0

    [host.map]
    failback = "manual"
    no_path_retry = "queue"

    [host.luns]
    exclude = ["iqn.2026-11.org.example:disks/7"]

Which LUNs (``LunFilter``), in the spirit of multipath.conf's ``blacklist`` and
``blacklist_exceptions``: an entry names a LUN by its WWID (``naa.<hex>``, the map's name) or
by its alias ``IQN/N`` (a target's LUN number; ``IQN/*`` is every LUN of that target). A LUN
``exclude`` names is left out unless ``include`` names it too (the exception wins); with
``include`` alone, only the LUNs it names are used. The host applies it wherever it builds
a map, at start and on every rescan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sanstack.config_checks import (
    check_name,
    integer_in,
    load_toml,
    no_unknown_keys,
    parse_address,
    seconds_in,
    string_list,
    table_at,
)
from sanstack.errors import ConfigError
from sanstack.host.sessions import SessionOptions
from sanstack.iscsi.chap import ChapCredentials, chap_from_table
from sanstack.mpio.no_path import NoPathRetry
from sanstack.mpio.path_slot import MultipathOptions, PathAddress
from sanstack.mpio.paths import FailbackPolicy
from sanstack.mpio.selectors import make_selector

DEFAULT_HOST_CONTROL = Path("/run/sanstack/host.sock")
NAME_PREFIX = "iqn.2026-11.org.sanstack.host:"
RESCAN_INTERVAL = 30.0
_SHORT_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
_WWID = re.compile(r"^naa\.([0-9a-f]{16}|[0-9a-f]{32})$")
_EVERY_LUN = "*"
MAX_LUN = 16383
# Every key of each table; anything else is an error.
HOST_KEYS = frozenset(
    {"name", "portals", "targets", "nbd", "control", "state_dir", "rescan_interval", "metrics"}
    | {"chap", "discovery_chap", "session", "map", "luns"}
)
SESSION_KEYS = frozenset(
    {"nop_interval", "nop_timeout", "login_timeout", "command_timeout"}
    | {"reconnect_min", "reconnect_max", "max_outstanding"}
)
MAP_KEYS = frozenset({"selector", "failback", "no_path_retry", "checker_interval"})
LUNS_KEYS = frozenset({"include", "exclude"})


@dataclass(frozen=True, slots=True)
class LunFilter:
    """Which LUNs become maps (see the module docstring); empty: every LUN. Entries are
    normalized (``lun_entry``): a lower-case WWID ``naa.<hex>``, ``IQN/N`` or ``IQN/*``."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def uses(self, alias: str, wwid: str) -> bool:
        """Whether the LUN reached as ``alias`` (``IQN/N``) with ``wwid`` (``naa.<hex>``;
        empty while not read yet) is used."""
        alias, wwid = alias.lower(), wwid.lower()
        if _names(self.include, alias, wwid):
            return True
        if self.exclude:
            return not _names(self.exclude, alias, wwid)
        return not self.include

    def may_use(self, alias: str) -> bool:
        """False when ``alias`` is left out whatever its WWID turns out to be: the host need
        not read that LUN's identity at all."""
        if any(entry.startswith("naa.") for entry in self.include):
            return True
        return self.uses(alias, "")


def _names(entries: Iterable[str], alias: str, wwid: str) -> bool:
    every_lun = f"{alias.rpartition('/')[0]}/{_EVERY_LUN}"
    return any(entry in (wwid, alias, every_lun) for entry in entries)


def lun_entry(text: object, where: str) -> str:
    """A ``[host.luns]`` entry: ``naa.<16 or 32 hex digits>``, ``IQN/N`` or ``IQN/*``."""
    if not isinstance(text, str):
        raise ConfigError(where, f"{text!r} is not a WWID (naa.…) or an alias (IQN/LUN)")
    target, slash, number = text.rpartition("/")
    if not slash:
        if not _WWID.match(text.lower()):
            raise ConfigError(
                where, f"{text!r} is neither a WWID (naa. and 16 or 32 hex digits) nor IQN/LUN"
            )
        return text.lower()
    name = check_name(target, where)
    if number == _EVERY_LUN:
        return f"{name}/{_EVERY_LUN}"
    if not number.isdigit() or int(number) > MAX_LUN:
        raise ConfigError(where, f"LUN {number!r} in {text!r} is not 0..{MAX_LUN} or *")
    return f"{name}/{int(number)}"


@dataclass(frozen=True, slots=True)
class HostConfig:
    initiator_name: str
    portals: Sequence[PathAddress]
    iqns: Sequence[str] = ()  # only these targets; every discovered one when empty
    state_dir: Path | None = None
    session: SessionOptions = field(default_factory=SessionOptions)
    maps: MultipathOptions = field(default_factory=MultipathOptions)
    luns: LunFilter = field(default_factory=LunFilter)
    rescan_interval: float | None = RESCAN_INTERVAL  # None or 0: no timer
    # SendTargets' own CHAP, apart from the sessions' (``session.chap``), as open-iscsi's
    # discovery.sendtargets.auth: a target may ask it of discovery, of sessions, or both.
    discovery_chap: ChapCredentials | None = None


@dataclass(frozen=True, slots=True)
class HostRunConfig:
    """What ``sanstack host run`` needs: the host, where it serves NBD, its control socket,
    and where its Prometheus metrics (None: nowhere)."""

    host: HostConfig
    nbd: tuple[str, int]
    control: Path = DEFAULT_HOST_CONTROL
    metrics: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Flag:
    """A command-line value that overrides the file's ``key`` (dotted, below ``[host]``:
    ``nbd``, ``map.no_path_retry``); an error in it names ``name`` (``--nbd``)."""

    key: str
    value: object
    name: str


def initiator_name(name: object, where: str) -> str:
    """An iSCSI name as given, or a short host name an IQN is derived from."""
    if not isinstance(name, str):
        raise ConfigError(where, f"{name!r} is neither an iSCSI name nor a short host name")
    if name.lower().startswith(("iqn.", "eui.", "naa.")):
        return check_name(name, where)
    if not _SHORT_NAME.match(name.lower()):
        raise ConfigError(where, f"{name!r} is neither an iSCSI name nor a short host name")
    return NAME_PREFIX + name.lower()


def parse_failback(value: object, where: str) -> tuple[FailbackPolicy, float]:
    """dm-multipath's ``failback``: ``immediate``, ``manual`` or seconds (deferred)."""
    if value in ("immediate", "manual"):
        return FailbackPolicy(value), 0.0
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError
        seconds = float(value)
    except ValueError:
        raise ConfigError(where, f"{value!r} is not immediate, manual or seconds") from None
    if not 0 < seconds <= 3600:
        raise ConfigError(where, "seconds must be in (0, 3600]")
    return FailbackPolicy.DEFERRED, seconds


def parse_no_path_retry(value: object, where: str) -> NoPathRetry:
    """dm-multipath's ``no_path_retry``: ``fail``, ``queue`` or seconds (0 = fail)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(where, f"{value!r} is not fail, queue or seconds")
    try:
        return NoPathRetry.parse(str(value))
    except ConfigError as exc:
        raise ConfigError(where, exc.problem) from None


def parse_selector(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(where, f"{value!r} is not a path selector's name")
    try:
        make_selector(value)
    except ConfigError as exc:
        raise ConfigError(where, exc.problem) from None
    return value


def load_host_config(path: Path, flags: Sequence[Flag] = ()) -> HostRunConfig:
    return parse_host_config(load_toml(path), flags)


class _Values:
    """One table of the file, with the flags that override its keys; each value comes with
    the name an error about it gives."""

    def __init__(self, table: dict[str, Any], where: str, flags: Mapping[str, Flag]) -> None:
        self.table = table
        self.where = where
        self.flags = flags

    def get(self, key: str) -> tuple[object, str] | None:
        flag = self.flags.get(key)
        if flag is not None:
            return flag.value, flag.name
        if key in self.table:
            return self.table[key], f"{self.where}.{key}"
        return None

    def sub(self, key: str) -> _Values:
        where = f"{self.where}.{key}"
        table = table_at(self.table[key], where) if key in self.table else {}
        below = {k[len(key) + 1 :]: f for k, f in self.flags.items() if k.startswith(key + ".")}
        return _Values(table, where, below)


def _items(value: object, where: str) -> list[tuple[str, str]]:
    """A list's strings, each with its own name: ``host.portals[1]``, or ``--portal TEXT``
    for a flag given several times."""
    if where.startswith("--"):
        return [(item, f"{where} {item}") for item in string_list(value, where)]
    return [(item, f"{where}[{i}]") for i, item in enumerate(string_list(value, where))]


def _required(values: _Values, key: str, what: str) -> tuple[object, str]:
    got = values.get(key)
    if got is None:
        raise ConfigError(f"{values.where}.{key}", f"is required ({what})")
    return got


def parse_host_config(raw: dict[str, Any], flags: Sequence[Flag] = ()) -> HostRunConfig:
    """The parsed TOML (``{}`` for the quick form) and the flags into what ``host run``
    needs; every value is checked."""
    no_unknown_keys(raw, {"host"}, "")
    host = _Values(table_at(raw.get("host", {}), "host"), "host", {f.key: f for f in flags})
    no_unknown_keys(host.table, set(HOST_KEYS), "host")
    name = initiator_name(*_required(host, "name", "a host name or an iSCSI name"))
    listed, where = _required(host, "portals", "at least one HOST:PORT")
    portals = [PathAddress(*parse_address(text, at)) for text, at in _items(listed, where)]
    if not portals:
        raise ConfigError(where, "at least one portal HOST:PORT is needed")
    wanted = host.get("targets")
    targets = [] if wanted is None else [check_name(t, at) for t, at in _items(*wanted)]
    nbd_text, nbd_where = _required(host, "nbd", "HOST:PORT to serve NBD on")
    nbd = parse_address(_string(nbd_text, nbd_where), nbd_where, any_port=True)
    control = _path(host.get("control")) or DEFAULT_HOST_CONTROL
    metrics_at = host.get("metrics")
    metrics = None
    if metrics_at is not None:
        metrics = parse_address(_string(*metrics_at), metrics_at[1], any_port=True)
    rescan = host.get("rescan_interval")
    interval = RESCAN_INTERVAL if rescan is None else seconds_in(*rescan, 0, 86400)
    chap, discovery_chap = host.get("chap"), host.get("discovery_chap")
    session = _session(host.sub("session"))
    if chap is not None:
        session = replace(session, chap=chap_from_table(*chap))
    config = HostConfig(
        initiator_name=name,
        portals=portals,
        iqns=targets,
        state_dir=_path(host.get("state_dir")),
        session=session,
        maps=_map(host.sub("map")),
        luns=_luns(host.sub("luns")),
        rescan_interval=interval,
        discovery_chap=None if discovery_chap is None else chap_from_table(*discovery_chap),
    )
    return HostRunConfig(config, nbd, control, metrics)


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(where, "must be a non-empty string")
    return value


def _path(got: tuple[object, str] | None) -> Path | None:
    if got is None:
        return None
    value, where = got
    return value if isinstance(value, Path) else Path(_string(value, where))


def _session(values: _Values) -> SessionOptions:
    no_unknown_keys(values.table, set(SESSION_KEYS), values.where)
    default = SessionOptions()
    reconnect_min = _seconds(values, "reconnect_min", default.reconnect_min, 0.01, 3600)
    reconnect_max = _seconds(values, "reconnect_max", default.reconnect_max, 0.01, 3600)
    if reconnect_max < reconnect_min:
        key = "reconnect_max" if values.get("reconnect_max") else "reconnect_min"
        raise ConfigError(
            f"{values.where}.{key}",
            f"reconnect_max {reconnect_max:g} is below reconnect_min {reconnect_min:g}",
        )
    outstanding = values.get("max_outstanding")
    return SessionOptions(
        nop_interval=_seconds_or_never(values, "nop_interval", default.nop_interval, 0.1, 3600),
        nop_timeout=_seconds(values, "nop_timeout", default.nop_timeout, 0.1, 3600),
        login_timeout=_seconds(values, "login_timeout", default.login_timeout, 0.1, 3600),
        command_timeout=_seconds_or_never(
            values, "command_timeout", default.command_timeout, 0.1, 86400
        ),
        max_outstanding=(
            default.max_outstanding if outstanding is None else integer_in(*outstanding, 1, 4096)
        ),
        reconnect_min=reconnect_min,
        reconnect_max=reconnect_max,
    )


def _seconds(values: _Values, key: str, default: float, low: float, high: float) -> float:
    got = values.get(key)
    return default if got is None else seconds_in(*got, low, high)


def _seconds_or_never(
    values: _Values, key: str, default: float | None, low: float, high: float
) -> float | None:
    """Seconds, or 0 for never (None): no NOP-Out pings, no command timeout."""
    got = values.get(key)
    if got is None:
        return default
    return seconds_in(*got, low, high, zero=True) or None


def _map(values: _Values) -> MultipathOptions:
    no_unknown_keys(values.table, set(MAP_KEYS), values.where)
    default = MultipathOptions()
    selector, failback, no_path, checker = (
        values.get(key) for key in ("selector", "failback", "no_path_retry", "checker_interval")
    )
    policy, delay = (
        (default.failback, default.failback_delay)
        if failback is None
        else parse_failback(*failback)
    )
    return MultipathOptions(
        selector=default.selector if selector is None else parse_selector(*selector),
        no_path_retry=default.no_path_retry if no_path is None else parse_no_path_retry(*no_path),
        failback=policy,
        failback_delay=delay,
        checker_interval=(
            default.checker_interval if checker is None else seconds_in(*checker, 0.05, 3600)
        ),
    )


def _luns(values: _Values) -> LunFilter:
    no_unknown_keys(values.table, set(LUNS_KEYS), values.where)
    lists = []
    for key in ("include", "exclude"):
        got = values.get(key)
        entries = [] if got is None else _items(*got)
        lists.append(tuple(lun_entry(text, where) for text, where in entries))
    return LunFilter(*lists)
