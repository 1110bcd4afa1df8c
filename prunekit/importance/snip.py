"""SNIP (Lee et al. 2019): connection sensitivity at initialisation, ``|w * dL/dw|``.

``snip_scores`` runs forward/backward on a few batches and returns a score per weight of
each prunable layer; ``prune_with_scores_`` masks the lowest scores (global or per
layer); ``snip_prune_`` does both. The model's weights and gradients are left as they
were, BatchNorm statistics included (only masks are added).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from prunekit.config.base import check_fraction
from prunekit.errors import ConfigError, ModelError
from prunekit.masks.report import overall_sparsity
from prunekit.masks.sparsify import FilterFn, SparsifyConfig, prunable_layers, sparsify_with_scores_

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _default_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def weight_tensor(module: nn.Module) -> torch.Tensor:
    """The stored weight a gradient lands on (the original under a mask)."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations["weight"].original
    return module.weight


def snip_scores(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: LossFn | None = None,
    filter_fn: FilterFn | None = None,
) -> dict[str, torch.Tensor]:
    """Return ``{layer_name: |w * dL/dw|}`` summed over ``batches`` (weights already masked
    score 0).

    Args:
        model: the model, usually at initialisation.
        batches: iterable of ``(x, y)``; gradients are summed over them.
        loss_fn: ``(model, x, y) -> loss`` (cross-entropy by default).
        filter_fn: optional ``(name, module) -> bool`` choosing the layers.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1., 2.], [3., 4.]]))
        ...     _ = net[1].weight.copy_(torch.tensor([[5., 6.]]))
        >>> s = snip_scores(net, [(torch.ones(1, 2), None)], loss_fn=lambda m, x, y: m(x).sum())
        >>> s["0"].tolist(), s["1"].tolist()
        ([[5.0, 10.0], [18.0, 24.0]], [[15.0, 42.0]])
    """
    loss_fn = loss_fn or _default_loss
    layers = prunable_layers(model, filter_fn)
    if not layers:
        raise ModelError(f"nothing to score in {type(model).__name__}: it has no Linear/Conv layer")
    tensors = [weight_tensor(m) for _, m in layers]
    saved_grads = [t.grad for t in tensors]
    saved_flags = [t.requires_grad for t in tensors]
    grads = [torch.zeros_like(t) for t in tensors]
    was_training = model.training
    buffers = [(b, b.detach().clone()) for b in model.buffers()]  # e.g. BatchNorm statistics
    seen = 0
    try:
        for t in tensors:
            t.requires_grad_(True)
        for x, y in batches:
            for t in tensors:
                t.grad = None
            loss = loss_fn(model, x, y)
            got = torch.autograd.grad(loss, tensors, allow_unused=True)
            for acc, g in zip(grads, got):
                if g is not None:
                    acc.add_(g.detach())
            seen += 1
    finally:
        for t, g, flag in zip(tensors, saved_grads, saved_flags):
            t.grad = g
            t.requires_grad_(flag)
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        model.train(was_training)
    if seen == 0:
        raise ConfigError("SNIP needs at least one batch of data; got an empty iterable")
    scores = {}
    for (name, module), g in zip(layers, grads):
        effective = module.weight.detach()
        scores[name] = (effective * g).abs().float()
    return scores


def prune_with_scores_(
    model: nn.Module, scores: dict[str, torch.Tensor], sparsity: float, scope: str = "global"
) -> float:
    """Mask the weights with the lowest ``scores`` so ``sparsity`` of the scored layers is
    pruned (already-masked weights count and are pruned first). All masks are checked
    before any is applied. Returns the sparsity reached over the scored layers.

    Example:
        >>> lin = nn.Linear(2, 1, bias=False)
        >>> prune_with_scores_(lin, {"": torch.tensor([[1.0, 2.0]])}, 0.5)
        0.5
        >>> lin.weight[0, 0].item() == 0.0
        True
    """
    rows = sparsify_with_scores_(model, scores, SparsifyConfig(amount=sparsity, scope=scope))
    return overall_sparsity(rows)


def snip_prune_(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    sparsity: float,
    loss_fn: LossFn | None = None,
    scope: str = "global",
    filter_fn: FilterFn | None = None,
) -> float:
    """Score with SNIP on ``batches`` and mask ``sparsity`` of the weights; returns the
    sparsity reached.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> batch = (torch.randn(16, 4), torch.randint(0, 2, (16,)))
        >>> snip_prune_(net, [batch], 0.75)
        0.75
    """
    check_fraction("sparsity", sparsity)
    return prune_with_scores_(model, snip_scores(model, batches, loss_fn, filter_fn), sparsity, scope)
