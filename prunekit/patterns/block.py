"""Block sparsity: prune whole ``rows x cols`` tiles of a weight viewed as a 2-D matrix.

A weight ``(out, in, *kernel)`` is viewed as ``(out, in * prod(kernel))``; tiles are
scored by the mean of their elements' scores, and a whole tile is kept or removed.
Block-sparse kernels (and some accelerators) skip removed tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prunekit.config.base import ConfigBase, check_positive_int
from prunekit.errors import ConfigError


@dataclass(frozen=True)
class Block(ConfigBase):
    """A block pattern of ``rows x cols`` tiles over ``(out_features, in_features)``.

    Example:
        >>> Block(4, 1)
        Block(rows=4, cols=1)
    """

    rows: int = 4
    cols: int = 4

    def __post_init__(self) -> None:
        check_positive_int("Block.rows", self.rows)
        check_positive_int("Block.cols", self.cols)


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """View a weight as ``(out, everything else)``.

    Example:
        >>> as_matrix(torch.zeros(8, 3, 2, 2)).shape
        torch.Size([8, 12])
    """
    return weight.reshape(weight.shape[0], -1) if weight.dim() > 1 else weight.reshape(1, -1)


def block_scores(scores: torch.Tensor, rows: int, cols: int, where: str = "weight") -> torch.Tensor:
    """Mean score of each ``rows x cols`` tile; shape ``(R // rows, C // cols)``.

    Example:
        >>> block_scores(torch.arange(16.0).reshape(4, 4), 2, 2).tolist()
        [[2.5, 4.5], [10.5, 12.5]]
    """
    mat = as_matrix(scores)
    r, c = mat.shape
    if r % rows or c % cols:
        raise ConfigError(
            f"block {rows}x{cols} does not tile {where} viewed as {r}x{c}; "
            f"choose rows dividing {r} and cols dividing {c}"
        )
    return mat.reshape(r // rows, rows, c // cols, cols).float().mean(dim=(1, 3))


def expand_block_mask(block_keep: torch.Tensor, rows: int, cols: int, shape: torch.Size) -> torch.Tensor:
    """Expand a per-tile keep mask back to the weight's full shape.

    Example:
        >>> expand_block_mask(torch.tensor([[True, False]]), 1, 2, torch.Size([1, 4])).tolist()
        [[True, True, False, False]]
    """
    full = block_keep.repeat_interleave(rows, dim=0).repeat_interleave(cols, dim=1)
    return full.reshape(shape)
