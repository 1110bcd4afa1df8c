"""How a fixed sparsity budget is spread over layers for sparse-from-scratch training.

- ``uniform``: every layer at the same sparsity.
- ``erk`` (Erdős–Rényi-Kernel, Evci et al. 2020): a layer's density is proportional to
  ``sum(shape) / prod(shape)``, so small layers stay denser; layers that would exceed
  density 1 are made dense and the rest rescaled until the total matches.
"""

from __future__ import annotations

from collections.abc import Sequence

from prunekit.config.base import check_choice, check_fraction
from prunekit.errors import TargetUnreachableError


def layer_densities(shapes: Sequence[Sequence[int]], sparsity: float, kind: str = "erk") -> list[float]:
    """Return the density (fraction kept) of each layer so the total sparsity is ``sparsity``.

    Args:
        shapes: weight shapes, e.g. ``[(300, 784), (100, 300)]``.
        sparsity: overall fraction of weights pruned.
        kind: ``"erk"`` or ``"uniform"``.

    Example:
        >>> [round(d, 3) for d in layer_densities([(10, 10), (1000, 1000)], 0.5, "erk")]
        [1.0, 0.5]
    """
    check_fraction("sparsity", sparsity)
    check_choice("distribution", kind, ("erk", "uniform"))
    sizes = [_numel(s) for s in shapes]
    density = 1.0 - sparsity
    if kind == "uniform":
        return [density] * len(shapes)
    raw = [sum(s) / _numel(s) for s in shapes]
    dense: set[int] = set()
    total_keep = density * sum(sizes)
    while True:
        budget = total_keep - sum(sizes[i] for i in dense)
        weight = sum(raw[i] * sizes[i] for i in range(len(sizes)) if i not in dense)
        if weight <= 0:
            if budget < -1e-6:
                raise TargetUnreachableError(f"ERK cannot reach sparsity {sparsity}")
            return [1.0 if i in dense else 0.0 for i in range(len(sizes))]
        eps = budget / weight
        over = [i for i in range(len(sizes)) if i not in dense and eps * raw[i] > 1.0]
        if not over:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(sizes))]
        dense.update(over)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
