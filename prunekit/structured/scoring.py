"""Wiring between the model and the pure group-importance functions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.graph.groups import Group
from prunekit.importance import group as gi

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def unit_slices(tensor: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """``[n_units, m]`` values of ``tensor`` for units whose indices along ``dim`` are
    ``index`` (``[n_units, k]``)."""
    n, k = index.shape
    picked = tensor.detach().index_select(dim, index.reshape(-1).to(tensor.device))
    picked = picked.movedim(dim, 0).reshape(n, k, -1)
    return picked.reshape(n, -1).float().cpu()


def per_unit_sum(per_index: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``[n_units, 1]``: sum of a per-index statistic over each unit's indices."""
    return per_index.double()[index.to(per_index.device)].sum(1, keepdim=True).cpu()


def reduce_except(tensor: torch.Tensor, dim: int, how: str) -> torch.Tensor:
    """Per-index statistic along ``dim``: "l1" |w| sum, "l2" w^2 sum, "sum" plain sum."""
    t = tensor.detach()
    others = [d for d in range(t.dim()) if d != dim]
    if not others:
        return t.abs() if how == "l1" else t.pow(2) if how == "l2" else t
    if how == "l1":
        return t.abs().sum(dim=others)
    if how == "l2":
        return (t * t).sum(dim=others)
    return t.sum(dim=others)


def aggregate_hessian(fisher_w2, keys, g, aggregation) -> torch.Tensor:
    """OBD saliency 0.5 * sum(h w^2) per unit from precomputed h*w^2 tensors."""
    ones = torch.ones(g.size, 1, dtype=torch.float64)
    per = [per_unit_sum(reduce_except(fisher_w2[t], d, "sum"), g.index[(t, d)])
           for t, d in keys]
    return gi.aggregate([gi.hessian_scores([ones], [p]) for p in per], aggregation)


def reduce_dims(tensor: torch.Tensor, how: str, key: tuple, dim: int) -> dict:
    """Per-index statistics along dim 0, 1 and ``dim`` from one pass over ``tensor``."""
    t = tensor.detach()
    base = t.abs() if how == "l1" else (t * t) if how == "l2" else t
    out = {}
    for d in sorted({0, min(1, t.dim() - 1), dim}):
        out[key + (d, how)] = reduce_except(base, d, "sum")
    return out


def _weight_keys(group: Group, params: dict[str, torch.Tensor]) -> list[tuple[str, int]]:
    keys = [(t, d) for t, d in group.members if t in params and not t.endswith("bias")]
    return keys or [(t, d) for t, d in group.members if t in params]


def grad_statistics(
    model: nn.Module,
    data: Iterable[Any],
    loss_fn: Callable[..., torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Accumulate w*g (Taylor) and g^2 (Fisher) over ``data`` batches of (inputs, target).

    The model's gradients and mode are restored afterwards.
    """
    params = dict(model.named_parameters())
    saved = {n: (p.grad.clone() if p.grad is not None else None) for n, p in params.items()}
    wg = {n: torch.zeros_like(p) for n, p in params.items()}
    g2 = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    batches = 0
    try:
        for batch in data:
            inputs, target = batch if isinstance(batch, (tuple, list)) else (batch, None)
            model.zero_grad(set_to_none=True)
            out = model(inputs)
            loss = loss_fn(out, target) if target is not None else loss_fn(out)
            loss.backward()
            for n, p in params.items():
                if p.grad is not None:
                    wg[n] += p.detach() * p.grad
                    g2[n] += p.grad.pow(2)
            batches += 1
    finally:
        model.train(was_training)
        for n, p in params.items():
            p.grad = saved[n]
    if batches == 0:
        raise ConfigError("importance needs at least one calibration batch in `data`")
    return wg, g2


def group_scores(
    model: nn.Module,
    groups: list[Group],
    importance: str,
    aggregation: str = "sum",
    seed: int = 0,
    data: Iterable[Any] | None = None,
    loss_fn: Callable[..., torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """One score tensor ``[group.size]`` per group (higher = keep)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    modules = dict(model.named_modules())
    gen = torch.Generator().manual_seed(seed)
    stats = None
    if importance in ("taylor", "hessian"):
        if data is None or loss_fn is None:
            raise ConfigError(f"importance '{importance}' needs calibration `data` and `loss_fn`")
        stats = grad_statistics(model, data, loss_fn)
    if importance == "activation":
        from prunekit.structured.activation import group_activation_scores

        return group_activation_scores(model, groups, data, aggregation)
    out = []
    cache: dict[tuple, torch.Tensor] = {}
    for g in groups:
        if importance == "random":
            out.append(gi.random_group_scores(g.size, gen))
            continue
        keys = _weight_keys(g, params)
        if not keys:
            out.append(torch.zeros(g.size, dtype=torch.float64))
            continue
        # magnitude-type scores only need per-index sums: reduce each tensor once
        # (no copies of big weights), then pass [n_units, 1] sums to the pure functions
        def sums(source, how, keys=keys, g=g):
            out = []
            for t, d in keys:
                ck = (id(source), t, d, how)
                if ck not in cache:
                    cache.update(reduce_dims(source[t], how, (id(source), t), d))
                out.append(per_unit_sum(cache[ck], g.index[(t, d)]))
            return out

        if importance == "l1":
            s = gi.l1_scores(sums(params, "l1"), aggregation)
        elif importance == "l2":
            s = gi.l2_scores([x.sqrt() for x in sums(params, "l2")], aggregation)
        elif importance == "fpgm":
            producer = [(t, d) for t, d in keys if d == 0 and params[t].dim() > 1] or keys
            s = gi.fpgm_scores([unit_slices(params[t], d, g.index[(t, d)]) for t, d in producer],
                               aggregation)
        elif importance == "bn_scale":
            norm = [(t, d) for t, d in keys
                    if isinstance(modules.get(t.rsplit(".", 1)[0]), NORM_TYPES)]
            if norm:
                s = gi.bn_scale_scores(
                    [unit_slices(params[t], d, g.index[(t, d)]) for t, d in norm], aggregation)
            else:
                s = gi.l2_scores([x.sqrt() for x in sums(params, "l2")], aggregation)
        elif importance == "taylor":
            wg, _ = stats
            s = gi.taylor_scores([], sums(wg, "sum"), aggregation)
        elif importance == "hessian":
            _, g2 = stats
            fisher_w2 = {t: g2[t] * params[t].detach().pow(2) for t, _ in keys}
            s = aggregate_hessian(fisher_w2, keys, g, aggregation)
        else:  # validated by the config
            raise ConfigError(f"unknown importance {importance!r}")
        out.append(s)
    return out
