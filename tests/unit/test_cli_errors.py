"""Bad arguments and bad config files get one line naming the field; never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

IQN = "iqn.2026-11.org.sanstack:cli"


def sanstack(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sanstack.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--lun", "a.img:12X"], ["--lun a.img:12X", "not a size"]),
        (["--lun", "a.img:1000"], ["multiple of 512"]),
        (["--lun", "missing.img"], ["does not exist"]),
        (["--portal", "127.0.0.1"], ["--portal", "HOST:PORT"]),
        (["--portal", "127.0.0.1:99999"], ["outside 0..65535"]),
        (["--portal", "127.0.0.1:abc"], ["not a number"]),
        (["--iqn", "not-a-name"], ["--iqn", "not an iSCSI name"]),
    ],
)
def test_quick_form_errors_name_the_field(
    tmp_path: Path, args: list[str], words: list[str]
) -> None:
    base = {"--iqn": IQN, "--portal": "127.0.0.1:0", "--lun": "memory:1M"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["target", "serve"]
    for flag, value in base.items():
        argv += [flag, value]
    assert_one_line_error(sanstack(*argv, cwd=tmp_path), *words)


def test_missing_required_arguments(tmp_path: Path) -> None:
    assert_one_line_error(sanstack("target", "serve", "--lun", "memory:1M", cwd=tmp_path), "--iqn")
    assert_one_line_error(sanstack("target", "serve", "--iqn", IQN, cwd=tmp_path), "--lun")
    assert_one_line_error(sanstack("target", "bogus", cwd=tmp_path), "invalid choice")
    assert_one_line_error(sanstack("target", "serve", "--nop-interval", "x", cwd=tmp_path))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("not toml [", ["not valid TOML"]),
        ("", ["target", "at least one"]),
        ('[[target]]\nname = "x"\n', ["target[0].name", "not an iSCSI name"]),
        (
            f'[[target]]\nname = "{IQN}"\n',
            ["target[0].portal_group", "at least one"],
        ),
        (
            f'[[target]]\nname = "{IQN}"\n[[target.portal_group]]\ntag = 0\nportals = ["a:1"]\n',
            ["target[0].portal_group[0].tag", "0"],
        ),
        (
            f'[[target]]\nname = "{IQN}"\ncolour = "red"\n',
            ["target[0].colour", "unknown key"],
        ),
        (
            f'[[target]]\nname = "{IQN}"\n[[target.portal_group]]\ntag = 1\n'
            'portals = ["127.0.0.1:0"]\n[[target.lun]]\nbackstore = "memory"\nsize = "lots"\n',
            ["target[0].lun[0].size", "not a size"],
        ),
        (
            f'[[target]]\nname = "{IQN}"\n[[target.portal_group]]\ntag = 1\n'
            'portals = ["127.0.0.1:0"]\n[[target.lun]]\nbackstore = "tape"\nsize = "1M"\n',
            ["target[0].lun[0].backstore", "tape"],
        ),
        (
            f'[[target]]\nname = "{IQN}"\nchap = {{ user = "u" }}\n'
            '[[target.portal_group]]\ntag = 1\nportals = ["127.0.0.1:0"]\n',
            ["target[0].chap.secret", "required"],
        ),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, text: str, words: list[str]) -> None:
    config = tmp_path / "target.toml"
    config.write_text(text)
    result = sanstack("target", "serve", "--config", str(config), cwd=tmp_path)
    assert_one_line_error(result, *words)


def test_missing_config_file(tmp_path: Path) -> None:
    result = sanstack("target", "serve", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert_one_line_error(result, "nope.toml", "not found")


def test_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = sanstack(
            "target", "serve", "--iqn", IQN, "--portal", f"127.0.0.1:{port}",
            "--lun", "memory:1M", cwd=tmp_path,
        )  # fmt: skip
    assert_one_line_error(result, "--portal", "cannot listen")


def test_help_on_every_command(tmp_path: Path) -> None:
    for argv in (
        ["--help"],
        ["target", "--help"],
        ["target", "serve", "--help"],
        ["demo", "--help"],
    ):
        result = sanstack(*argv, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout
