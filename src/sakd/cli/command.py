"""What a ``sakd`` command is: a registered class (one module of :mod:`sakd.cli` each, or a
plug-in's) that adds its arguments, names the files it will write and runs.

    from sakd.cli.command import COMMANDS, Command

    @COMMANDS.register("hello")
    class Hello(Command):
        '''say hello: the first docstring line is the command's help'''

        def arguments(self, p):
            p.add_argument("--name", default="world")

        def run(self, args) -> int:
            print(f"hello {args.name}")
            return 0

``sakd list commands`` lists them; a plug-in module (``--plugin``) may register one too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sakd.outputs import writable
from sakd.registry import Registry

COMMANDS: Registry = Registry("command", listed=("commands",))


class Command:
    """Base of every command. ``details``: text shown at the end of its ``--help`` (a class
    attribute, or a property where it is read from elsewhere), before what every command's help
    ends with (``--plugin``, the exit statuses)."""

    details: str = ""

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments to its own parser."""

    def writes(self, args) -> list[tuple[Path | str, str]]:
        """The files the command will write, each with the option that names it: checked before
        any work (``--json`` is checked for every command that has it)."""
        return []

    def check_targets(self, args) -> None:
        if getattr(args, "json", None):
            writable(args.json, "--json")
        for path, option in self.writes(args):
            writable(path, option)

    def run(self, args) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def key_value(flag: str):
    """An argparse type for ``FLAG KEY=VALUE`` (a part's option): ``(key, value)``, the value read
    as YAML (numbers, booleans, lists), else as text."""

    def parse(text: str) -> tuple[str, object]:
        import yaml

        key, sep, value = text.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"{flag} {text!r}: write KEY=VALUE")
        return key, yaml.safe_load(value)

    return parse


def data_overrides(parser: argparse.ArgumentParser, what: str = "the checkpoint was trained on") -> None:
    """The ``data.key=value`` overrides of a command that reads a run's data."""
    parser.add_argument("overrides", nargs="*", metavar="data.key=value",
                        help=f"change the data {what}, e.g. data.root=/data")


def device(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    parser.add_argument("--device", default=default, help="auto, cpu, cuda or cuda:N (default: %(default)s)")
