"""N:M semi-structured sparsity: keep the ``n`` largest of every ``m`` consecutive weights.

Pure tensor math (no modules). Groups run along the last (input) dimension of a
weight laid out as ``(out_features, in_features)``, which is what sparse tensor cores
(2:4) and the Wanda / SparseGPT papers use.

Example:
    >>> import torch
    >>> row = torch.arange(1.0, 9.0).unsqueeze(0)          # [[1, 2, ..., 8]]
    >>> (row * nm_keep_mask(row, 2, 4)).tolist()
    [[0.0, 0.0, 3.0, 4.0, 0.0, 0.0, 7.0, 8.0]]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from prunekit.config.base import ConfigBase
from prunekit.errors import ConfigError


@dataclass(frozen=True)
class NM(ConfigBase):
    """An N:M pattern: ``n`` weights kept in every group of ``m`` consecutive input weights.

    Validated on construction (``0 < n < m``). Whether ``m`` divides a layer's input
    width is checked when the pattern is applied (:func:`nm_keep_mask`).

    Example:
        >>> NM(2, 4).sparsity
        0.5
        >>> NM.parse("4:8")
        NM(n=4, m=8)
    """

    n: int = 2
    m: int = 4

    def __post_init__(self) -> None:
        for name in ("n", "m"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"N:M pattern: {name} must be an integer, got {v!r}")
        if not 0 < self.n < self.m:
            raise ConfigError(
                f"N:M pattern {self.n}:{self.m} is invalid: need 0 < n < m "
                "(n weights kept out of every m), e.g. 2:4 or 4:8"
            )

    @property
    def sparsity(self) -> float:
        """Fraction of weights set to zero, ``1 - n/m``."""
        return 1.0 - self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"

    @classmethod
    def parse(cls, text: str) -> NM:
        """Parse ``"n:m"`` (as typed on a command line) into an :class:`NM`."""
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(text))
        if not match:
            raise ConfigError(f"N:M pattern must look like '2:4' or '4:8', got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))


def check_nm_divides(in_features: int, n: int, m: int, where: str = "weight") -> None:
    """Raise a ConfigError unless ``m`` divides ``in_features``."""
    if in_features % m:
        raise ConfigError(
            f"N:M pattern {n}:{m} cannot be applied to {where}: its input width "
            f"{in_features} is not a multiple of m={m}; choose an m that divides {in_features}"
        )


def nm_keep_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Boolean keep-mask with exactly ``n`` True in every ``m`` consecutive entries of the last dim.

    Args:
        scores: importance scores, shape ``(..., in_features)``; higher means keep.
            ``in_features`` must be a multiple of ``m``.
        n: weights kept per group. m: group size.

    Returns:
        A bool tensor shaped like ``scores``. Ties are broken by position (earlier first).

    Example:
        >>> nm_keep_mask(torch.tensor([[4.0, 1.0, 3.0, 2.0]]), 2, 4).tolist()
        [[True, False, True, False]]
    """
    NM(n, m)  # validates n and m
    if scores.dim() == 0:
        raise ConfigError("nm_keep_mask needs a tensor with at least one dimension")
    in_features = scores.shape[-1]
    check_nm_divides(in_features, n, m)
    groups = scores.detach().reshape(-1, m).float()
    # stable ordering: a descending stable sort keeps earlier positions first among ties
    order = torch.sort(groups, dim=1, descending=True, stable=True).indices[:, :n]
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, order, True)
    return keep.reshape(scores.shape)
