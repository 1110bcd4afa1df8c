"""Group importance for structured pruning: one score per removable unit.

Pure functions. Each takes, per tensor dim the unit spans, a matrix ``[n_units, m]`` of
that unit's values (weights, accumulated gradients ...) and returns ``[n_units]``.
``aggregate`` combines the per-tensor scores of a group (sum / mean / max).

Example:
    >>> w = torch.tensor([[1.0, -1.0], [3.0, 0.0]])
    >>> l1_scores([w]), l2_scores([w])
    (tensor([2., 3.], dtype=torch.float64), tensor([2., 9.], dtype=torch.float64))
"""

from __future__ import annotations

import torch

from prunekit.errors import ConfigError

AGGREGATIONS = ("sum", "mean", "max")


def aggregate(per_tensor: list[torch.Tensor], how: str = "sum") -> torch.Tensor:
    """Combine per-tensor unit scores ``[n]`` into one ``[n]`` score.

    Example:
        >>> aggregate([torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0])], "max")
        tensor([3., 2.], dtype=torch.float64)
    """
    if not per_tensor:
        raise ConfigError("aggregate needs at least one per-tensor score")
    stacked = torch.stack([s.double() for s in per_tensor])
    if how == "sum":
        return stacked.sum(0)
    if how == "mean":
        return stacked.mean(0)
    if how == "max":
        return stacked.amax(0)
    raise ConfigError(f"aggregation must be one of {list(AGGREGATIONS)}, got {how!r}")


def l1_scores(slices: list[torch.Tensor], how: str = "sum") -> torch.Tensor:
    """Sum of |w| per unit, aggregated across tensors."""
    return aggregate([s.abs().sum(1) for s in slices], how)


def l2_scores(slices: list[torch.Tensor], how: str = "sum") -> torch.Tensor:
    """Sum of w^2 per unit, aggregated across tensors."""
    return aggregate([s.pow(2).sum(1) for s in slices], how)


def bn_scale_scores(norm_weights: list[torch.Tensor], how: str = "sum") -> torch.Tensor:
    """|gamma| of the normalisation layers in the group (network slimming).

    Example:
        >>> bn_scale_scores([torch.tensor([[0.5], [-2.0]])])
        tensor([0.5000, 2.0000], dtype=torch.float64)
    """
    return aggregate([s.abs().sum(1) for s in norm_weights], how)


def taylor_scores(
    weights: list[torch.Tensor], grad_products: list[torch.Tensor], how: str = "sum"
) -> torch.Tensor:
    """First-order Taylor: |sum over the unit of (w * g)| where ``grad_products`` already
    holds w*g accumulated over calibration batches (``weights`` is unused, kept for a
    uniform signature)."""
    del weights
    return aggregate([p.sum(1).abs() for p in grad_products], how)


def hessian_scores(
    weights: list[torch.Tensor], fisher_diag: list[torch.Tensor], how: str = "sum"
) -> torch.Tensor:
    """Optimal Brain Damage saliency 0.5 * sum(h * w^2), with the Hessian diagonal h
    approximated by the empirical Fisher (sum of g^2 over batches).

    Example:
        >>> hessian_scores([torch.tensor([[2.0], [1.0]])], [torch.tensor([[1.0], [4.0]])])
        tensor([2., 2.], dtype=torch.float64)
    """
    return aggregate([0.5 * (h * w.pow(2)).sum(1) for w, h in zip(weights, fisher_diag)], how)


def fpgm_scores(slices: list[torch.Tensor], how: str = "sum") -> torch.Tensor:
    """Filter pruning via geometric median: units far from all others are kept; a unit
    close to the geometric median is redundant (sum of distances to the others).

    Example:
        >>> fpgm_scores([torch.tensor([[0.0], [1.0], [10.0]])])
        tensor([11., 10., 19.], dtype=torch.float64)
    """
    return aggregate([torch.cdist(s.double(), s.double()).sum(1) for s in slices], how)


def column_scores(weight: torch.Tensor, in_dim: int, input_sq_norm: torch.Tensor | None) -> torch.Tensor:
    """Per input channel ``j`` of a consumer weight: ``||W[..., j, ...]||_2 * ||X_j||_2``.

    ``in_dim`` is the weight dim indexed by input channels, ``input_sq_norm[j]`` the sum
    of ``x_j^2`` over the calibration inputs (None: ones, pure weight norms). Wanda's
    metric, per column. Float32.

    Example:
        >>> column_scores(torch.tensor([[3.0, 0.0], [4.0, 1.0]]), 1, torch.tensor([1.0, 4.0])).tolist()
        [5.0, 2.0]
    """
    w = weight.detach().float().movedim(in_dim, -1)
    norms = w.reshape(-1, w.shape[-1]).norm(dim=0)
    if input_sq_norm is None:
        return norms
    return norms * input_sq_norm.to(norms.device).float().clamp_min(0).sqrt()


def activation_unit_scores(consumers: list[tuple[torch.Tensor, torch.Tensor]], how: str = "sum") -> torch.Tensor:
    """Per unit: the sum of its consumer columns' :func:`column_scores`, aggregated over consumers.

    ``consumers`` holds, per consumer tensor, ``(column scores [n_in], unit index [n_units, k])``.

    Example:
        >>> activation_unit_scores([(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([[0, 1], [2, 3]]))])
        tensor([3., 7.], dtype=torch.float64)
    """
    return aggregate([cols[index.to(cols.device)].sum(1) for cols, index in consumers], how)


def random_group_scores(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform random scores (a baseline)."""
    return torch.rand(n, generator=generator, dtype=torch.float64)


__all__ = [
    "AGGREGATIONS",
    "aggregate",
    "l1_scores",
    "l2_scores",
    "bn_scale_scores",
    "taylor_scores",
    "hessian_scores",
    "fpgm_scores",
    "column_scores",
    "activation_unit_scores",
    "random_group_scores",
]
