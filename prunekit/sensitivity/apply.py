"""Apply per-layer sparsities (e.g. from ``allocate_sparsities``) with masks."""

from __future__ import annotations

from torch import nn

from prunekit.config.base import check_fraction
from prunekit.errors import ModelError
from prunekit.importance.configs import Importance, Magnitude
from prunekit.masks import SparsifyConfig, sparsify_
from prunekit.masks.report import LayerSparsity


def expand_groups(sparsities: dict[str, float], groups: dict[str, list[str]]) -> dict[str, float]:
    """Turn per-group sparsities into per-layer ones (every layer of a group alike).

    Example:
        >>> expand_groups({"blocks": 0.5}, {"blocks": ["a", "b"]})
        {'a': 0.5, 'b': 0.5}
    """
    return {layer: s for g, s in sparsities.items() for layer in groups[g]}


def apply_layer_sparsities_(
    model: nn.Module, sparsities: dict[str, float], importance: Importance | None = None
) -> list[LayerSparsity]:
    """Prune each named layer to its own sparsity (within-layer ranking), in place.

    All names and values are checked before anything changes. Returns one report row
    per layer.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> [r.sparsity for r in apply_layer_sparsities_(net, {"0": 0.5, "2": 0.25})]
        [0.5, 0.25]
    """
    importance = importance or Magnitude()
    modules = dict(model.named_modules())
    for name, s in sparsities.items():
        if name not in modules or not hasattr(modules[name], "weight"):
            raise ModelError(f"no prunable layer named '{name}' in {type(model).__name__}")
        check_fraction(f"sparsity of '{name}'", s)
    rows = []
    for name, s in sparsities.items():
        target = modules[name]
        rows += sparsify_(model, SparsifyConfig(amount=float(s), importance=importance, scope="layer"),
                          lambda n, m, target=target: m is target)
    return rows
