"""``--help`` is the manual a new user reads first: every argument of every command says
what it does, and the default when there is one, and every page renders cleanly."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from sanstack.cli.main import build_parser


def all_parsers() -> Iterator[argparse.ArgumentParser]:
    """The top-level parser and every subcommand's, however deep."""
    pending = [build_parser()]
    while pending:
        parser = pending.pop(0)
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())


PARSERS = {parser.prog: parser for parser in all_parsers()}


def has_default(action: argparse.Action) -> bool:
    # A repeatable option starts as an empty list: that is "none given", not a default.
    default = action.default
    if default is None or default is False or default == argparse.SUPPRESS:
        return False
    return not (isinstance(default, list | tuple) and not default)


def expanded_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help line as printed, with ``%(default)s`` and friends filled in."""
    return parser._get_formatter()._expand_help(action)


def test_the_tree_is_walked() -> None:
    # Guards the walk itself: a sub-sub-command must be among the parsers checked.
    assert "sanstack" in PARSERS
    assert "sanstack target serve" in PARSERS
    assert "sanstack snapshot restore" in PARSERS


@pytest.mark.parametrize("prog", sorted(PARSERS))
def test_every_argument_says_what_it_does_and_its_default(prog: str) -> None:
    parser = PARSERS[prog]
    problems = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if not choice.help:
                    problems.append(f"subcommand {choice.dest!r} has no help")
            continue
        name = "/".join(action.option_strings) or action.metavar or action.dest
        if not action.help or action.help == argparse.SUPPRESS:
            problems.append(f"{name} has no help")
            continue
        if has_default(action):
            text = expanded_help(parser, action)
            default = str(action.default)
            if "default" not in text or default not in text:
                problems.append(f"{name}: help {text!r} does not give the default {default!r}")
    assert not problems, f"{prog}: " + "; ".join(problems)


@pytest.mark.parametrize("prog", sorted(PARSERS))
def test_help_renders(prog: str) -> None:
    text = PARSERS[prog].format_help()
    assert "%%" not in text, text
    assert "%(" not in text, text
