"""Entry point of the ``prunekit`` command.

Each subcommand lives in its own module under ``prunekit.cli`` and exposes
``register(subparsers) -> None`` (adds its parser and sets ``func=run``) and
``run(args) -> int``. Add a subcommand by listing its module in ``SUBCOMMANDS``.

Errors the user can fix (``PrunekitError``) print one line and exit 2; argparse usage
errors exit 2 too. Nothing the user typed wrong produces a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from prunekit._version import __version__
from prunekit.cli.args import OneLineParser
from prunekit.errors import PrunekitError

#: subcommand modules, in the order ``--help`` lists them
SUBCOMMANDS: tuple[str, ...] = (
    "prunekit.cli.demo",
    "prunekit.cli.llm",
    "prunekit.cli.run",
    "prunekit.cli.report",
    "prunekit.cli.sensitivity",
    "prunekit.cli.prune",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser (all subcommands registered).

    Example:
        >>> p = build_parser()
        >>> p.prog
        'prunekit'
    """
    parser = OneLineParser(
        prog="prunekit",
        description="Prune PyTorch models and prove the result: accuracy, size, MACs, latency.",
    )
    parser.add_argument("--version", action="version", version=f"prunekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PrunekitError as exc:
        print(f"prunekit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
