"""The host's configuration (``host/config.py``): a good file, every bad field as one line
naming it, unknown keys, flags over the file, the LUN filter's rule, and the CLI's errors."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from sanstack.errors import ConfigError
from sanstack.host.config import (
    DEFAULT_HOST_CONTROL,
    HOST_KEYS,
    LUNS_KEYS,
    MAP_KEYS,
    SESSION_KEYS,
    Flag,
    LunFilter,
    lun_entry,
    parse_failback,
    parse_host_config,
)
from sanstack.mpio.no_path import NoPathPolicy
from sanstack.mpio.path_slot import PathAddress
from sanstack.mpio.paths import FailbackPolicy

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "host.toml"
T = "iqn.2026-11.org.example:disks"
WWID = "naa.6001405f3b0c8e1a"
T_CASED = "iqn.2026-11.org.example:Disks"  # iSCSI names compare without case

MINIMAL = """
[host]
name = "node1"
portals = ["10.0.0.1:3260"]
nbd = "127.0.0.1:10809"
"""

GOOD = (
    MINIMAL
    + f"""
targets = ["{T_CASED}"]
control = "/tmp/host.sock"
state_dir = "/var/lib/sanstack/host"
rescan_interval = 0

[host.chap]
user = "node1"
secret = "a-long-secret"
mutual_user = "array"
mutual_secret = "another-secret"

[host.session]
nop_interval = 0
nop_timeout = 5
login_timeout = 3.5
command_timeout = 0
reconnect_min = 0.5
reconnect_max = 8
max_outstanding = 32

[host.map]
selector = "round-robin"
failback = 15
no_path_retry = "queue"
checker_interval = 0.5

[host.luns]
include = ["{WWID.upper()}", "{T}/3"]
exclude = ["{T}/*"]
"""
)


def parse(text: str, *flags: Flag) -> Any:
    return parse_host_config(tomllib.loads(text), flags)


def test_a_good_file_gives_every_value() -> None:
    run = parse(GOOD)
    host = run.host
    assert host.initiator_name == "iqn.2026-11.org.sanstack.host:node1"
    assert host.portals == [PathAddress("10.0.0.1", 3260)]
    assert host.iqns == [T]
    assert (run.nbd, run.control) == (("127.0.0.1", 10809), Path("/tmp/host.sock"))
    assert host.state_dir == Path("/var/lib/sanstack/host")
    assert host.rescan_interval == 0
    chap = host.session.chap
    assert chap is not None and (chap.user, chap.mutual_user) == ("node1", "array")
    assert host.discovery_chap is None
    session = host.session
    assert (session.nop_interval, session.nop_timeout, session.login_timeout) == (None, 5, 3.5)
    assert session.command_timeout is None
    assert (session.reconnect_min, session.reconnect_max, session.max_outstanding) == (
        0.5,
        8,
        32,
    )
    maps = host.maps
    assert maps.selector == "round-robin"
    assert (maps.failback, maps.failback_delay) == (FailbackPolicy.DEFERRED, 15)
    assert maps.no_path_retry.policy is NoPathPolicy.QUEUE
    assert maps.checker_interval == 0.5
    assert host.luns == LunFilter(include=(WWID, f"{T}/3"), exclude=(f"{T}/*",))


def test_the_minimal_file_takes_the_defaults_and_the_quick_form_is_the_same() -> None:
    run = parse(MINIMAL)
    assert run.control == DEFAULT_HOST_CONTROL
    assert run.host.rescan_interval == 30
    assert run.host.session.chap is None and run.host.luns == LunFilter()
    quick = parse_host_config(
        {},
        [
            Flag("name", "node1", "--name"),
            Flag("portals", ["10.0.0.1:3260"], "--portal"),
            Flag("nbd", "127.0.0.1:10809", "--nbd"),
        ],
    )
    assert quick == run


def test_the_example_file_in_docs_parses_and_shows_every_key() -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    run = parse_host_config(raw)
    assert run.host.session.chap is not None and run.host.discovery_chap is not None
    host = raw["host"]
    assert set(host) == HOST_KEYS
    assert set(host["session"]) == SESSION_KEYS
    assert set(host["map"]) == MAP_KEYS
    assert set(host["luns"]) == LUNS_KEYS
    # Its optional values are the defaults, as it says.
    defaults = parse(MINIMAL).host
    assert run.host.session.nop_timeout == defaults.session.nop_timeout
    assert run.host.maps == defaults.maps


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("[host]\nportals = []\n", "host.name", "required"),
        ('[host]\nname = "Not A Name!"\n', "host.name", "neither an iSCSI name"),
        ('[host]\nname = "n"\nnbd = "x:1"\n', "host.portals", "required"),
        ('[host]\nname = "n"\nportals = []\nnbd = "x:1"\n', "host.portals", "at least one"),
        ('[host]\nname = "n"\nportals = "a:1"\n', "host.portals", "list of strings"),
        ('[host]\nname = "n"\nportals = ["a:1", "b"]\n', "host.portals[1]", "HOST:PORT"),
        ('[host]\nname = "n"\nportals = ["a:0"]\n', "host.portals[0]", "port 0"),
        ('[host]\nname = "n"\nportals = ["a:1"]\n', "host.nbd", "required"),
        ('[host]\nname = "n"\nportals = ["a:1"]\nnbd = "x"\n', "host.nbd", "HOST:PORT"),
        ("targets = ['nope']", "host.targets[0]", "not an iSCSI name"),
        ("control = ''", "host.control", "non-empty"),
        ("state_dir = 3", "host.state_dir", "non-empty string"),
        ("rescan_interval = -1", "host.rescan_interval", "outside"),
        ("rescan_interval = 'often'", "host.rescan_interval", "number of seconds"),
        ("chap = 'x'", "host.chap", "must be a table"),
        ("chap = { user = 'u' }", "host.chap.secret", "required"),
        (
            "chap = { user = 'u', secret = 's', mutual_user = 'm' }",
            "host.chap.mutual_secret",
            "go together",
        ),
        (
            "chap = { user = 'u', secret = 's', mutual_user = 'm', mutual_secret = 's' }",
            "host.chap.mutual_secret",
            "must differ",
        ),
        (f"chap = {{ user = 'u', secret = '{'s' * 256}' }}", "host.chap.secret", "at most 255"),
        ("discovery_chap = { secret = 's' }", "host.discovery_chap.user", "required"),
        ("[host.session]\nnop_timeout = 0", "host.session.nop_timeout", "outside"),
        ("[host.session]\nnop_timeout = true", "host.session.nop_timeout", "number of seconds"),
        ("[host.session]\nnop_interval = -1", "host.session.nop_interval", "outside"),
        ("[host.session]\nlogin_timeout = 'soon'", "host.session.login_timeout", "seconds"),
        ("[host.session]\ncommand_timeout = 1e9", "host.session.command_timeout", "outside"),
        ("[host.session]\nreconnect_min = 0", "host.session.reconnect_min", "outside"),
        ("[host.session]\nreconnect_max = 0.05", "host.session.reconnect_max", "below"),
        ("[host.session]\nreconnect_min = 5", "host.session.reconnect_min", "below"),
        ("[host.session]\nmax_outstanding = 0", "host.session.max_outstanding", "1..4096"),
        ("[host.session]\nmax_outstanding = 1.5", "host.session.max_outstanding", "integer"),
        ("[host.map]\nselector = 'fastest'", "host.map.selector", "not one of"),
        ("[host.map]\nselector = 3", "host.map.selector", "selector's name"),
        ("[host.map]\nfailback = 'later'", "host.map.failback", "immediate, manual"),
        ("[host.map]\nfailback = 0", "host.map.failback", "(0, 3600]"),
        ("[host.map]\nno_path_retry = 'forever'", "host.map.no_path_retry", "fail, queue"),
        ("[host.map]\nno_path_retry = -5", "host.map.no_path_retry", "(0, 86400]"),
        ("[host.map]\nno_path_retry = false", "host.map.no_path_retry", "fail, queue"),
        ("[host.map]\nchecker_interval = 0", "host.map.checker_interval", "outside"),
        ("[host.luns]\ninclude = 'naa.1'", "host.luns.include", "list of strings"),
        ("[host.luns]\ninclude = ['naa.12']", "host.luns.include[0]", "neither a WWID"),
        ("[host.luns]\nexclude = ['disk3']", "host.luns.exclude[0]", "neither a WWID"),
        (f"[host.luns]\nexclude = ['{T}/x']", "host.luns.exclude[0]", "not 0..16383"),
        (f"[host.luns]\nexclude = ['{T}/16384']", "host.luns.exclude[0]", "not 0..16383"),
        ("[host.luns]\nexclude = ['iqn/3']", "host.luns.exclude[0]", "not an iSCSI name"),
        ("host = 3", "host", "must be a table"),
    ],
)
def test_each_bad_value_is_one_line_naming_its_field(text: str, field: str, words: str) -> None:
    if not text.startswith("[host]"):
        # A key of [host] (before any sub-table), or a sub-table, after the minimal file.
        text = text if text.startswith("host =") else _with(text)
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.field == field, str(caught.value)
    assert words in caught.value.problem, str(caught.value)
    assert "\n" not in str(caught.value)


def _with(extra: str) -> str:
    if extra.startswith("[host."):
        return MINIMAL + extra + "\n"
    head, _, rest = MINIMAL.partition('name = "node1"\n')
    return head + 'name = "node1"\n' + extra + "\n" + rest


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[hosts]\nname = 'n'\n", "hosts"),
        (MINIMAL + "portal = ['a:1']\n", "host.portal"),
        (MINIMAL + "[host.session]\nnop_timout = 3\n", "host.session.nop_timout"),
        (MINIMAL + "[host.map]\nno_path_queue = 3\n", "host.map.no_path_queue"),
        (MINIMAL + "[host.luns]\nblacklist = []\n", "host.luns.blacklist"),
        (MINIMAL + "[host.chap]\nusername = 'u'\n", "host.chap.username"),
    ],
)
def test_an_unknown_key_is_an_error_naming_it(text: str, field: str) -> None:
    with pytest.raises(ConfigError, match="unknown key") as caught:
        parse(text)
    assert caught.value.field == field


def test_flags_override_the_file_and_their_errors_name_the_flag() -> None:
    run = parse(
        GOOD,
        Flag("name", "iqn.2026-11.org.example:other", "--name"),
        Flag("portals", ["10.9.9.9:3261", "10.9.9.8:3262"], "--portal"),
        Flag("targets", ["iqn.2026-11.org.example:b"], "--iqn"),
        Flag("nbd", "0.0.0.0:0", "--nbd"),
        Flag("control", Path("/run/x.sock"), "--control"),
        Flag("state_dir", Path("/srv/state"), "--state-dir"),
        Flag("map.no_path_retry", "12", "--no-path-queue"),
        Flag("rescan_interval", 5.0, "--rescan-interval"),
    )
    host = run.host
    assert host.initiator_name == "iqn.2026-11.org.example:other"
    assert host.portals == [PathAddress("10.9.9.9", 3261), PathAddress("10.9.9.8", 3262)]
    assert host.iqns == ["iqn.2026-11.org.example:b"]
    assert (run.nbd, run.control, host.state_dir) == (
        ("0.0.0.0", 0),
        Path("/run/x.sock"),
        Path("/srv/state"),
    )
    assert host.maps.no_path_retry.seconds == 12 and host.rescan_interval == 5
    # What no flag overrides stays the file's.
    assert host.maps.selector == "round-robin" and host.session.max_outstanding == 32
    for flag, field in [
        (Flag("portals", ["10.0.0.1"], "--portal"), "--portal 10.0.0.1"),
        (Flag("nbd", "nowhere", "--nbd"), "--nbd"),
        (Flag("map.no_path_retry", "soon", "--no-path-queue"), "--no-path-queue"),
        (Flag("rescan_interval", -1.0, "--rescan-interval"), "--rescan-interval"),
        (Flag("targets", ["x"], "--iqn"), "--iqn x"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse(GOOD, flag)
        assert caught.value.field == field


def test_the_lun_filter_is_multipaths_blacklist_and_its_exceptions() -> None:
    every = LunFilter()
    assert every.uses(f"{T}/0", WWID) and every.may_use(f"{T}/0")
    # exclude alone: everything but what it names (by alias, by target, by WWID).
    out = LunFilter(exclude=(f"{T}/1", WWID, "iqn.2026-11.org.example:b/*"))
    assert not out.uses(f"{T}/1", "naa.1111111111111111")
    assert not out.uses(f"{T}/2", WWID)
    assert not out.uses("iqn.2026-11.org.example:b/7", "naa.1111111111111111")
    assert out.uses(f"{T}/2", "naa.1111111111111111")
    assert not out.may_use(f"{T}/1") and out.may_use(f"{T}/2")
    # include alone: only what it names.
    only = LunFilter(include=(f"{T}/3",))
    assert only.uses(f"{T}/3", WWID) and not only.uses(f"{T}/4", WWID)
    assert only.may_use(f"{T}/3") and not only.may_use(f"{T}/4")  # never probed
    # Both: the exception wins; a WWID exception means every alias must be probed.
    both = LunFilter(include=(WWID,), exclude=(f"{T}/*",))
    assert both.uses(f"{T}/9", WWID) and not both.uses(f"{T}/9", "naa.1111111111111111")
    assert both.may_use(f"{T}/9")
    # Names are compared without case.
    assert not out.uses(f"{T_CASED}/1", "NAA.1111111111111111")


def test_lun_entries_are_normalized() -> None:
    assert lun_entry(WWID.upper(), "x") == WWID
    assert lun_entry(f"{T_CASED}/007", "x") == f"{T}/7"
    assert lun_entry(f"{T}/*", "x") == f"{T}/*"


def test_failback_is_one_parser_for_the_host_file_and_mpio_export() -> None:
    assert parse_failback("manual", "--failback") == (FailbackPolicy.MANUAL, 0.0)
    assert parse_failback("2.5", "--failback") == (FailbackPolicy.DEFERRED, 2.5)
    assert parse_failback(7, "host.map.failback") == (FailbackPolicy.DEFERRED, 7.0)
    with pytest.raises(ConfigError) as caught:
        parse_failback("soon", "--failback")
    assert caught.value.field == "--failback"
    result = _sanstack(
        "mpio", "export", "--portal", "127.0.0.1:1", "--iqn", T, "--lun", "0",
        "--nbd", "127.0.0.1:0", "--failback", "soon",
    )  # fmt: skip
    _assert_one_line(result, "--failback", "immediate, manual or seconds")


# -- the command line ------------------------------------------------------------------------


def _sanstack(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sanstack.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def _assert_one_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_host_run_config_errors_are_one_line_before_anything_starts(tmp_path: Path) -> None:
    config = tmp_path / "host.toml"
    config.write_text(MINIMAL + "[host.session]\nnop_timeout = -1\n")
    result = _sanstack("host", "run", "--config", str(config), cwd=tmp_path)
    _assert_one_line(result, "host.session.nop_timeout", "outside")
    config.write_text(MINIMAL + "[host.map]\nfailbak = 'manual'\n")
    result = _sanstack("host", "run", "--config", str(config), cwd=tmp_path)
    _assert_one_line(result, "host.map.failbak", "unknown key")
    # A flag's bad value is named by the flag.
    config.write_text(MINIMAL)
    result = _sanstack("host", "run", "--config", str(config), "--nbd", "x", cwd=tmp_path)
    _assert_one_line(result, "--nbd", "HOST:PORT")
    result = _sanstack("host", "run", "--config", str(tmp_path / "missing.toml"), cwd=tmp_path)
    _assert_one_line(result, "missing.toml", "file not found")
    config.write_text("[host\n")
    result = _sanstack("host", "run", "--config", str(config), cwd=tmp_path)
    _assert_one_line(result, "not valid TOML")


def test_the_quick_form_still_needs_its_flags(tmp_path: Path) -> None:
    result = _sanstack("host", "run", "--name", "n1", "--nbd", "127.0.0.1:0", cwd=tmp_path)
    _assert_one_line(result, "--portal", "at least one")
    result = _sanstack("host", "run", "--portal", "127.0.0.1:1", "--nbd", "x:1", cwd=tmp_path)
    _assert_one_line(result, "--name", "--config")
    result = _sanstack(
        "host", "run", "--name", "n1", "--portal", "127.0.0.1:1", "--nbd", "127.0.0.1:0",
        "--no-path-queue", "soon", cwd=tmp_path,
    )  # fmt: skip
    _assert_one_line(result, "--no-path-queue", "fail, queue or seconds")
