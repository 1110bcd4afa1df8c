"""Shared argparse pieces: a parser whose usage errors are one line, and typed converters."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from prunekit.config.base import check_fraction
from prunekit.errors import ConfigError


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser that reports a usage error on one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1).

    Example:
        >>> fraction("0.5")
        0.5
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None
    try:
        return check_fraction("value", value)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1.

    Example:
        >>> positive_int("3")
        3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0.

    Example:
        >>> non_negative_int("0")
        0
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value
