"""Per-layer sensitivity: the metric after pruning one layer alone to each sparsity.

Wiring: for every layer, a copy of the model has only that layer pruned (magnitude by
default) to rising sparsities, and ``metric_fn(model) -> float`` is measured each time.
The user's model is never changed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import nn

from prunekit.config.base import check_fraction
from prunekit.errors import ConfigError, ModelError
from prunekit.importance.configs import Importance, Magnitude
from prunekit.masks import SparsifyConfig, sparsify_
from prunekit.masks.sparsify import FilterFn, prunable_layers
from prunekit.report.progress import progress_bar

MetricFn = Callable[[nn.Module], float]


@dataclass
class SensitivityCurves:
    """Metric-vs-sparsity curves, one per layer.

    Attributes:
        baseline: the metric of the unpruned model.
        sparsities: the sparsities tried (same for every layer).
        metrics: ``{layer_name: [metric at each sparsity]}``.
        sizes: ``{layer_name: number of weights}``.
        higher_is_better: True for accuracy, False for loss/perplexity.
    """

    baseline: float
    sparsities: list[float]
    metrics: dict[str, list[float]]
    sizes: dict[str, int]
    higher_is_better: bool = True
    meta: dict = field(default_factory=dict)

    def drops(self) -> dict[str, list[float]]:
        """Metric degradation at each sparsity (positive = worse), per layer."""
        sign = 1.0 if self.higher_is_better else -1.0
        return {n: [sign * (self.baseline - m) for m in ms] for n, ms in self.metrics.items()}

    def to_dict(self) -> dict:
        return {
            "baseline": self.baseline,
            "sparsities": list(self.sparsities),
            "metrics": {k: list(v) for k, v in self.metrics.items()},
            "sizes": dict(self.sizes),
            "higher_is_better": self.higher_is_better,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: dict) -> SensitivityCurves:
        try:
            return cls(
                baseline=float(data["baseline"]),
                sparsities=[float(s) for s in data["sparsities"]],
                metrics={k: [float(x) for x in v] for k, v in data["metrics"].items()},
                sizes={k: int(v) for k, v in data["sizes"].items()},
                higher_is_better=bool(data.get("higher_is_better", True)),
                meta=dict(data.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a sensitivity-curves mapping: {exc}") from exc


def sensitivity_curves(
    model: nn.Module,
    metric_fn: MetricFn,
    sparsities: Sequence[float] = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95),
    importance: Importance | None = None,
    filter_fn: FilterFn | None = None,
    higher_is_better: bool = True,
    progress: bool = True,
    groups: dict[str, Sequence[str]] | None = None,
) -> SensitivityCurves:
    """Measure ``metric_fn`` with each prunable layer (or group) pruned alone to each sparsity.

    Args:
        model: a trained model (left unchanged).
        metric_fn: ``model -> float``, e.g. test accuracy.
        sparsities: increasing fractions in (0, 1).
        importance: ranking within a layer (``Magnitude()`` by default).
        filter_fn: optional ``(name, module) -> bool`` choosing the layers.
        higher_is_better: whether a larger metric is better.
        progress: progress bar.
        groups: optional ``{group_name: [layer names]}``; each group is pruned as one
            unit (every layer in it to the same sparsity) and gets one curve.

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> x = torch.randn(32, 4)
        >>> ref = net(x).detach()
        >>> fidelity = lambda m: -float((m(x) - ref).pow(2).mean().detach())
        >>> c = sensitivity_curves(net, fidelity, sparsities=(0.5, 0.9), progress=False)
        >>> sorted(c.metrics), c.baseline
        (['0', '2'], -0.0)
    """
    values = [check_fraction("sparsities[]", s) for s in sparsities]
    if not values or any(b <= a for a, b in zip(values, values[1:])):
        raise ConfigError(f"sparsities must be a non-empty increasing list, got {list(sparsities)}")
    importance = importance or Magnitude()
    layers = [n for n, _ in prunable_layers(model, filter_fn)]
    if not layers:
        raise ModelError(f"nothing to analyse in {type(model).__name__}: it has no Linear/Conv layer")
    units = {n: [n] for n in layers} if groups is None else {g: list(ns) for g, ns in groups.items()}
    unknown = sorted({n for ns in units.values() for n in ns} - set(layers))
    if unknown or any(not ns for ns in units.values()):
        raise ModelError(f"groups name layers that are not prunable layers of the model: {unknown[:5]}; "
                         f"prunable layers are {layers[:10]}")
    modules = dict(model.named_modules())
    baseline = float(metric_fn(model))
    metrics: dict[str, list[float]] = {}
    with progress_bar(len(units) * len(values), "sensitivity", enabled=progress) as advance:
        for unit, names in units.items():
            twin = copy.deepcopy(model)
            twin_modules = dict(twin.named_modules())
            targets = [twin_modules[n] for n in names]
            row = []
            for s in values:
                sparsify_(twin, SparsifyConfig(amount=s, importance=importance, scope="layer"),
                          lambda n, m, targets=targets: any(m is t for t in targets))
                row.append(float(metric_fn(twin)))
                advance(1)
            metrics[unit] = row
    sizes = {u: sum(modules[n].weight.numel() for n in ns) for u, ns in units.items()}
    meta = {"groups": units} if groups is not None else {}
    return SensitivityCurves(baseline, values, metrics, sizes, higher_is_better, meta)
