"""SynFlow (Tanaka et al. 2020): data-free pruning at initialisation by iterative
synaptic flow conservation.

The score of a weight is ``|w * dR/dw|`` with ``R = 1^T (prod_l |W_l|) 1``: the network
with every parameter replaced by its absolute value, fed an all-ones input, summed.
Pruning is repeated ``iterations`` times on an exponential schedule, re-scoring after
each step, which avoids layer collapse. Scores are computed on a float64 copy of the
model; the user's model only receives the final masks.
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.config.base import check_fraction, check_positive_int
from prunekit.errors import ModelError
from prunekit.importance.snip import prune_with_scores_
from prunekit.masks import plain_copy
from prunekit.masks.sparsify import FilterFn, prunable_layers


def synflow_scores(
    model: nn.Module, input_shape: tuple[int, ...], filter_fn: FilterFn | None = None
) -> dict[str, torch.Tensor]:
    """Return ``{layer_name: |w * dR/dw|}`` for the prunable layers (one SynFlow pass).

    Args:
        model: the model; not modified (scored on a float64 copy with |parameters|).
        input_shape: one example's shape, e.g. ``(1, 28, 28)``.
        filter_fn: optional ``(name, module) -> bool`` choosing the layers.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1., -2.], [3., 4.]]))
        ...     _ = net[1].weight.copy_(torch.tensor([[5., -6.]]))
        >>> s = synflow_scores(net, (2,))
        >>> s["0"].tolist(), s["1"].tolist()
        ([[5.0, 10.0], [18.0, 24.0]], [[15.0, 42.0]])
    """
    names = [n for n, _ in prunable_layers(model, filter_fn)]
    if not names:
        raise ModelError(f"nothing to score in {type(model).__name__}: it has no Linear/Conv layer")
    twin = _abs_twin(model)
    modules = dict(twin.named_modules())
    weights = [modules[n].weight for n in names]
    for w in weights:
        w.requires_grad_(True)
    out = twin(torch.ones((1, *input_shape), dtype=torch.float64))
    grads = torch.autograd.grad(out.sum(), weights)
    return {n: (w.detach() * g).abs().float() for n, w, g in zip(names, weights, grads)}


def _abs_twin(model: nn.Module) -> nn.Module:
    """Float64 eval-mode twin of ``model`` without masks and with |parameters|."""
    twin = plain_copy(model)
    twin.double().eval()
    with torch.no_grad():
        for p in twin.parameters():
            p.abs_()
    return twin


def synflow_prune_(
    model: nn.Module,
    input_shape: tuple[int, ...],
    sparsity: float,
    iterations: int = 100,
    filter_fn: FilterFn | None = None,
) -> float:
    """Prune ``model`` to ``sparsity`` with iterative SynFlow (data-free); returns the
    sparsity reached over the pruned layers.

    Round k prunes (globally) to ``1 - (1 - sparsity) ** (k / iterations)``, re-scoring
    the masked network each time.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> synflow_prune_(net, (16,), 0.75, iterations=5)
        0.75
    """
    check_fraction("sparsity", sparsity)
    check_positive_int("iterations", iterations)
    reached = 0.0
    for k in range(1, iterations + 1):
        target = 1.0 - (1.0 - sparsity) ** (k / iterations)
        reached = prune_with_scores_(model, synflow_scores(model, input_shape, filter_fn), target)
    return reached
