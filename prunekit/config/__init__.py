"""Frozen, validated configuration objects and the helpers they share."""

from prunekit.config.base import ConfigBase, check_choice, check_fraction, check_positive_int

__all__ = ["ConfigBase", "check_choice", "check_fraction", "check_positive_int"]
