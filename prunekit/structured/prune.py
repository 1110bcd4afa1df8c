"""``prune_channels_``: the one-call structured pruning verb (ratio or target)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from prunekit.graph import DependencyGraph, Group
from prunekit.metrics import count_params
from prunekit.structured.config import StructuredConfig
from prunekit.structured.pruner import PruneResult, StructuredPruner
from prunekit.structured.targets import (
    batch_of,
    latency_fraction,
    search_ratio,
    shape_only_macs,
)

#: The latency search aims this fraction of the target (see ``prune_channels_``).
LATENCY_AIM = 0.97


def local_slope(history: list[dict[str, float]], ratio: float, what: str = "latency") -> float:
    """Least-squares slope of ``what`` against ratio over the 4 measurements nearest
    ``ratio`` (negative: pruning more keeps less); -1.0 if it cannot be estimated.

    Example:
        >>> h = [{"ratio": r, "latency": 1 - 1.5 * r} for r in (0.1, 0.2, 0.3, 0.4, 0.9)]
        >>> round(local_slope(h, 0.25), 6)
        -1.5
    """
    near = sorted(history, key=lambda h: abs(h["ratio"] - ratio))[:4]
    xs = torch.tensor([h["ratio"] for h in near], dtype=torch.float64)
    ys = torch.tensor([h[what] for h in near], dtype=torch.float64)
    var = float(((xs - xs.mean()) ** 2).sum())
    if len(near) < 2 or var == 0.0:
        return -1.0
    slope = float(((xs - xs.mean()) * (ys - ys.mean())).sum()) / var
    return slope if slope < 0 else -1.0


def confirm_ratio(measure: Callable[[float], float], ratio: float, aim: float, target: float,
                  history: list[dict[str, float]], max_ratio: float, checks: int = 2) -> float:
    """Re-measure the bisection's pick, which favours a lucky measurement; while it
    measures above ``target``, step the ratio by the local slope towards ``aim``.
    Appends every check to ``history``; returns the ratio to use."""
    for _ in range(checks):
        value = measure(ratio)
        history.append({"ratio": ratio, "latency": value, "check": 1.0})
        if value <= target:
            break
        step = (value - aim) / -local_slope(history, ratio)
        ratio = min(max_ratio, ratio + max(step, 0.005))
    return ratio


def prune_channels_(
    model: nn.Module,
    example_input: Any,
    config: StructuredConfig | None = None,
    *,
    data: Iterable[Any] | None = None,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    scores: dict[int, torch.Tensor] | Callable[[Group], torch.Tensor] | None = None,
    graph: DependencyGraph | None = None,
) -> PruneResult:
    """Physically remove channels / neurons / head dims from ``model`` in place.

    Args:
        model: any ``nn.Module`` (torchvision models are all covered).
        example_input: one input batch (a tensor, tuple or kwargs dict) used to trace.
        config: ``StructuredConfig`` (ratio or a MACs / params / latency target).
        data, loss_fn: calibration batches ``(x, y)`` and loss for taylor / hessian;
            ``data`` alone for "activation".
        scores: user scores per group id (or a function of the ``Group``).
        graph: a precomputed ``DependencyGraph`` (saves the trace).

    Returns:
        ``PruneResult`` with the plan (also stored on the model for ``save_pruned``).

    Raises:
        ConfigError, UnsupportedOpError, TargetUnreachableError, ModelError - and in
        every case the model is left exactly as it was.

    Example:
        >>> import torchvision
        >>> m = torchvision.models.resnet18()
        >>> r = prune_channels_(m, torch.zeros(1, 3, 64, 64), StructuredConfig(ratio=0.5))
        >>> m.conv1.out_channels, m.fc.in_features, m(torch.zeros(1, 3, 64, 64)).shape
        (32, 256, torch.Size([1, 1000]))
    """
    config = config or StructuredConfig()
    pruner = StructuredPruner(model, example_input, config, data=data, loss_fn=loss_fn,
                              scores=scores, graph=graph)
    search: list[dict[str, float]] = []
    if config.target_macs is not None or config.target_params is not None:
        use_macs = config.target_macs is not None
        target = config.target_macs if use_macs else config.target_params
        what = "macs" if use_macs else "params"

        def size() -> int:
            return shape_only_macs(model, example_input) if use_macs else count_params(model)

        dense = size()

        def measure(ratio: float) -> float:
            snap = pruner.trial(pruner.propose(ratio))
            try:
                return size() / dense
            finally:
                snap.restore()

        ratio, search = search_ratio(measure, target, pruner.max_search_ratio(),
                                     config.max_iterations, what)
        pruner.ratio, pruner.choices = ratio, pruner.propose(ratio)
    elif config.target_latency is not None:
        x = batch_of(example_input, config.latency_batch)
        dense_copy = copy.deepcopy(model)

        def measure(ratio: float) -> float:
            snap = pruner.trial(pruner.propose(ratio))
            try:
                return latency_fraction(dense_copy, model, x, runs=config.latency_runs, warmup=2)
            finally:
                snap.restore()

        # Aim LATENCY_AIM below the target: the search keeps the smallest ratio that
        # measured under it, which favours lucky measurements; re-measured, such a pick
        # lands a few percent higher.
        aim = config.target_latency * LATENCY_AIM
        ratio, search = search_ratio(measure, aim, pruner.max_search_ratio(),
                                     min(config.max_iterations, 8), "latency",
                                     tolerance=1.05 / LATENCY_AIM - 1)
        ratio = confirm_ratio(measure, ratio, aim, config.target_latency, search,
                              pruner.max_search_ratio())
        del dense_copy
        pruner.ratio, pruner.choices = ratio, pruner.propose(ratio)
    result = pruner.apply()
    result.search = search
    return result
