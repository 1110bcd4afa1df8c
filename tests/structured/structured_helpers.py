"""Shared helpers for structured-pruning tests: make chosen units dead, then prune."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.structured import StructuredConfig, StructuredPruner


def kill_units(model: nn.Module, pruner: StructuredPruner) -> None:
    """Zero every parameter slice of the units the pruner will remove (provably dead)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for choice in pruner.choices:
            if len(choice.remove) == 0:
                continue
            for (tensor, dim), index in choice.group.index.items():
                if tensor in params:
                    idx = index[choice.remove].reshape(-1)
                    params[tensor].index_fill_(dim, idx, 0.0)


def exact_choices(pruner: StructuredPruner, fraction: float = 0.5, seed: int = 0) -> int:
    """Keep only removals in exact, untied groups (random units); return groups pruned."""
    tied = {a for a, _, _ in pruner.graph.ties} | {b for _, b, _ in pruner.graph.ties}
    gen = torch.Generator().manual_seed(seed)
    n = 0
    for c in pruner.choices:
        if not c.group.exact or c.id in tied or c.size < 2:
            c.remove = torch.zeros(0, dtype=torch.long)
            continue
        k = max(1, int(c.size * fraction))
        c.remove = torch.sort(torch.randperm(c.size, generator=gen)[:k]).values
        n += 1
    return n


def check_equivalence(model: nn.Module, x: torch.Tensor, atol: float = 1e-5) -> dict:
    """Kill units in exact groups, prune them, and compare outputs; returns stats."""
    model.eval()
    pruner = StructuredPruner(model, x, StructuredConfig(ratio=0.5))
    pruned_groups = exact_choices(pruner)
    kill_units(model, pruner)
    with torch.no_grad():
        before = model(x)
    params_before = sum(p.numel() for p in model.parameters())
    pruner.apply()
    with torch.no_grad():
        after = model.eval()(x)
    params_after = sum(p.numel() for p in model.parameters())
    assert after.shape == before.shape
    err = (after - before).abs().max().item()
    assert err <= atol * max(1.0, before.abs().max().item()), f"max abs diff {err}"
    return {"groups": pruned_groups, "params_before": params_before,
            "params_after": params_after, "err": err}
