"""``sparsify_``: the in-place verb for unstructured pruning with masks."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit.config.base import ConfigBase, check_choice, check_fraction
from prunekit.errors import ConfigError, ModelError
from prunekit.importance.configs import IMPORTANCES, Importance, Magnitude
from prunekit.masks.parametrize import apply_mask, get_mask
from prunekit.masks.report import LayerSparsity, sparsity_report
from prunekit.patterns.block import Block, as_matrix, block_scores, expand_block_mask
from prunekit.patterns.configs import PATTERNS, Unstructured
from prunekit.patterns.nm import NM, nm_keep_mask
from prunekit.patterns.unstructured import global_keep_masks, layer_keep_masks

#: layer types whose ``weight`` is pruned by default
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)

FilterFn = Callable[[str, nn.Module], bool]


@dataclass(frozen=True)
class SparsifyConfig(ConfigBase):
    """How much to prune, ranked by what, in which pattern, over which scope.

    Attributes:
        amount: a fraction in [0, 1) of the weights (or, for ``Block``, of the tiles) to
            prune — the total after pruning, counting weights already masked — or an int
            count. Must be None for ``NM``, whose ``n:m`` fixes the sparsity.
        importance: ``Magnitude(p=1)`` (default) or ``Random(seed)``.
        pattern: ``Unstructured()`` (default), ``Block(rows, cols)`` or ``NM(n, m)``.
        scope: ``"global"`` ranks all layers together; ``"layer"`` prunes ``amount`` in
            each (N:M is always per group).

    Example:
        >>> SparsifyConfig(amount=0.5, scope="layer").to_dict()["importance"]
        {'type': 'Magnitude', 'p': 1}
        >>> SparsifyConfig(pattern=NM(2, 4)).pattern
        NM(n=2, m=4)
    """

    amount: float | int | None = None
    importance: Importance = field(default_factory=Magnitude)
    pattern: ConfigBase = field(default_factory=Unstructured)
    scope: str = "global"

    def __post_init__(self) -> None:
        if isinstance(self.pattern, dict):
            object.__setattr__(self, "pattern", _pattern_from_dict(self.pattern))
        if not isinstance(self.pattern, tuple(PATTERNS.values())):
            raise ConfigError(f"pattern must be one of {sorted(PATTERNS)} (e.g. NM(2, 4)), got {self.pattern!r}")
        if isinstance(self.pattern, NM):
            if self.amount is not None:
                raise ConfigError(
                    f"amount must be None with pattern NM({self.pattern.n}, {self.pattern.m}): "
                    f"the pattern fixes the sparsity at {self.pattern.sparsity:g}"
                )
        elif self.amount is None:
            raise ConfigError("amount (sparsity) is required: a fraction in [0, 1) or an int count")
        elif isinstance(self.amount, numbers.Integral) and not isinstance(self.amount, bool):
            if self.amount < 0:
                raise ConfigError(f"amount as a count must be >= 0, got {self.amount}")
        else:
            check_fraction("amount (sparsity)", self.amount)
        if isinstance(self.importance, dict):
            object.__setattr__(self, "importance", _importance_from_dict(self.importance))
        if not isinstance(self.importance, Importance):
            raise ConfigError(
                f"importance must be one of {sorted(IMPORTANCES)} (e.g. Magnitude()), "
                f"got {self.importance!r}"
            )
        check_choice("scope", self.scope, ("global", "layer"))


def _pattern_from_dict(data: dict[str, Any]) -> ConfigBase:
    kind = data.get("type")
    if kind not in PATTERNS:
        raise ConfigError(f"pattern type must be one of {sorted(PATTERNS)}, got {kind!r}")
    return PATTERNS[kind].from_dict(data)


def _importance_from_dict(data: dict[str, Any]) -> Importance:
    kind = data.get("type")
    if kind not in IMPORTANCES:
        raise ConfigError(f"importance type must be one of {sorted(IMPORTANCES)}, got {kind!r}")
    return IMPORTANCES[kind].from_dict(data)


def prunable_layers(model: nn.Module, filter_fn: FilterFn | None = None) -> list[tuple[str, nn.Module]]:
    """Return ``(name, module)`` of layers whose weight would be pruned.

    Default: every Linear, Conv and ConvTranspose; ``filter_fn(name, module)`` narrows it.

    Example:
        >>> [n for n, _ in prunable_layers(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))]
        ['0']
    """
    out = []
    for name, module in model.named_modules():
        if ".parametrizations." in f".{name}.":
            continue
        if isinstance(module, PRUNABLE_TYPES) and (filter_fn is None or filter_fn(name, module)):
            out.append((name, module))
    return out


def sparsify_(
    model: nn.Module, config: SparsifyConfig, filter_fn: FilterFn | None = None
) -> list[LayerSparsity]:
    """Mask the lowest-importance weights of the model's prunable layers, in place.

    Masks hold through training (the effective weight is ``original * mask``); call
    ``make_permanent`` to bake them in. If anything fails, the model is left as it was.

    Args:
        model: any ``nn.Module``.
        config: a ``SparsifyConfig``.
        filter_fn: optional ``(name, module) -> bool`` choosing which prunable layers take part.

    Returns:
        The per-layer sparsity report of the pruned layers.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> rows = sparsify_(net, SparsifyConfig(amount=0.5))
        >>> sum(r.numel - r.nonzero for r in rows)
        12
    """
    if not isinstance(config, SparsifyConfig):
        raise ConfigError(f"config must be a SparsifyConfig, got {type(config).__name__}")
    layers = prunable_layers(model, filter_fn)
    if not layers:
        what = "no layer passed filter_fn" if filter_fn else "it has no Linear/Conv layer"
        raise ModelError(f"nothing to prune in {type(model).__name__}: {what}")
    scorer = config.importance.scorer()
    return _mask_by_scores(model, layers, [scorer(m.weight) for _, m in layers], config)


def sparsify_with_scores_(
    model: nn.Module, scores: dict[str, torch.Tensor], config: SparsifyConfig
) -> list[LayerSparsity]:
    """Like ``sparsify_``, with importance scores computed elsewhere (SNIP, SynFlow, your own).

    Args:
        model: the model.
        scores: ``{module name: scores shaped like its weight}``; only these layers take part.
        config: a ``SparsifyConfig``; its ``importance`` is not used.

    Returns:
        The per-layer sparsity report of the scored layers.

    Example:
        >>> lin = nn.Linear(2, 1, bias=False)
        >>> rows = sparsify_with_scores_(lin, {"": torch.tensor([[1.0, 2.0]])}, SparsifyConfig(amount=0.5))
        >>> lin.weight[0, 0].item() == 0, lin.weight[0, 1].item() != 0  # the lower score goes
        (True, True)
    """
    if not isinstance(config, SparsifyConfig):
        raise ConfigError(f"config must be a SparsifyConfig, got {type(config).__name__}")
    modules = dict(model.named_modules())
    layers = []
    for name, s in scores.items():
        module = modules.get(name)
        if module is None or not isinstance(getattr(module, "weight", None), torch.Tensor):
            raise ModelError(f"scores name '{name}' is not a module with a weight in {type(model).__name__}")
        if tuple(s.shape) != tuple(module.weight.shape):
            raise ModelError(
                f"scores for '{name}' have shape {tuple(s.shape)}, weight has {tuple(module.weight.shape)}"
            )
        layers.append((name, module))
    if not layers:
        raise ModelError("scores is empty: give at least one {module name: scores} entry")
    return _mask_by_scores(model, layers, [scores[n] for n, _ in layers], config)


def _mask_by_scores(
    model: nn.Module, layers: list[tuple[str, nn.Module]], raw_scores: list[torch.Tensor], config: SparsifyConfig
) -> list[LayerSparsity]:
    """Select under the config's pattern and scope (masked weights first) and apply all-or-nothing."""
    scores = []
    for (_, module), raw in zip(layers, raw_scores):
        s = raw.detach().float().cpu()
        old = get_mask(module)
        if old is not None:
            s = torch.where(old.cpu(), s, torch.full_like(s, float("-inf")))
        scores.append(s)
    names = [name or type(module).__name__ for name, module in layers]
    masks = _select(config, names, scores)
    _apply_all_or_nothing(layers, masks)
    chosen = {id(mod) for _, mod in layers}
    return sparsity_report(model, lambda n, m: id(m) in chosen)


def _select(config: SparsifyConfig, names: list[str], scores: list[torch.Tensor]) -> list[torch.Tensor]:
    """Keep-masks for every layer under the config's pattern and scope (pure)."""
    pattern = config.pattern
    if isinstance(pattern, NM):
        bad = [f"{n} ({as_matrix(s).shape[1]})" for n, s in zip(names, scores) if as_matrix(s).shape[1] % pattern.m]
        if bad:
            raise ConfigError(
                f"N:M pattern {pattern} needs input widths divisible by {pattern.m}; these layers are not: "
                f"{', '.join(bad)}. Exclude them with filter_fn=lambda name, module: name not in {{...}}"
            )
        return [nm_keep_mask(as_matrix(s), pattern.n, pattern.m).reshape(s.shape) for s in scores]
    select = global_keep_masks if config.scope == "global" else layer_keep_masks
    if isinstance(pattern, Block):
        tiles = [block_scores(s, pattern.rows, pattern.cols, where=n) for n, s in zip(names, scores)]
        _check_count(config.amount, tiles, "tiles")
        keep = select(tiles, config.amount)
        return [expand_block_mask(k, pattern.rows, pattern.cols, s.shape) for k, s in zip(keep, scores)]
    _check_count(config.amount, scores, "prunable weights")
    return select(scores, config.amount)


def _check_count(amount: float | int | None, tensors: list[torch.Tensor], what: str) -> None:
    if isinstance(amount, int):
        total = sum(t.numel() for t in tensors)
        if amount > total:
            raise ConfigError(f"amount={amount} exceeds the {total} {what}")


def _apply_all_or_nothing(layers: list[tuple[str, nn.Module]], masks: list[torch.Tensor]) -> None:
    """Apply every mask, or restore every layer exactly if one fails."""
    saved = []
    for _, module in layers:
        old = get_mask(module)
        source = module.weight if old is None else module.parametrizations.weight.original
        data = source.detach().clone()
        saved.append((module, None if old is None else old.clone(), data))
    try:
        for (_, module), mask in zip(layers, masks):
            old = get_mask(module)
            apply_mask(module, "weight", mask if old is None else (mask & old.cpu()))
    except Exception:
        for module, old_mask, data in saved:
            if old_mask is None and parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
                module.weight.data.copy_(data)
            elif old_mask is not None:
                module.parametrizations.weight[0].mask.copy_(old_mask)
                module.parametrizations.weight.original.data.copy_(data)
            else:
                module.weight.data.copy_(data)
        raise
