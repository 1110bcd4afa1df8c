"""Pruning patterns: *what shape* is removed (N:M, ...)."""

from prunekit.patterns.nm import NM, check_nm_divides, nm_keep_mask

__all__ = ["NM", "nm_keep_mask", "check_nm_divides"]
