"""Search the pruning ratio that meets a MACs / params / measured-latency target."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunekit.errors import TargetUnreachableError


def batch_of(example_input: Any, batch: int) -> Any:
    """Repeat a batch-1 example to ``batch`` rows (tensors only)."""
    def rep(t):
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            return t[:1].expand(batch, *t.shape[1:]).contiguous()
        return t
    if isinstance(example_input, dict):
        return {k: rep(v) for k, v in example_input.items()}
    if isinstance(example_input, (tuple, list)):
        return type(example_input)(rep(t) for t in example_input)
    return rep(example_input)


def shape_only_count(model: nn.Module, example_input: Any):
    """The ``FlopCounterMode`` (with ``prunekit.metrics.macs.EXTRA_FLOP_FORMULAS``) after
    one eval forward in which the heavy ops only compute shapes."""
    from prunekit.graph.shapes import ShapeOnly
    from prunekit.metrics.macs import flop_counter, frozen_params
    from prunekit.structured.pruner import _call

    was = model.training
    model.eval()
    try:
        with torch.no_grad(), frozen_params(model), ShapeOnly(), flop_counter() as counter:
            _call(model, example_input)
    finally:
        model.train(was)
    return counter


def shape_only_macs(model: nn.Module, example_input: Any) -> int:
    """MACs of one eval forward, counted like ``prunekit.metrics.count_macs`` (FLOPs / 2
    from ``torch.utils.flop_counter``) but with the heavy ops run shape-only.

    Example:
        >>> shape_only_macs(nn.Linear(3, 2), torch.zeros(1, 3))
        6
    """
    return int(shape_only_count(model, example_input).get_total_flops() // 2)


def interleaved_times(
    models: list[nn.Module], example_input: Any, runs: int = 15, warmup: int = 3
) -> list[list[float]]:
    """Per model, the ms of each of ``runs`` forwards, timed alternately (round ``i`` of
    every model ran back to back, so load changes hit all alike)."""
    from prunekit.structured.pruner import _call

    modes = [m.training for m in models]
    times: list[list[float]] = [[] for _ in models]
    try:
        for m in models:
            m.eval()
        with torch.inference_mode():
            for _ in range(warmup):
                for m in models:
                    _call(m, example_input)
            for _ in range(runs):
                for i, m in enumerate(models):
                    start = time.perf_counter()
                    _call(m, example_input)
                    times[i].append((time.perf_counter() - start) * 1000.0)
    finally:
        for m, was in zip(models, modes):
            m.train(was)
    return times


def interleaved_latency(
    models: list[nn.Module], example_input: Any, runs: int = 15, warmup: int = 3
) -> list[float]:
    """Median ms per model, timing the models alternately so load changes hit all alike.

    Example:
        >>> a, b = nn.Linear(64, 64), nn.Linear(64, 8)
        >>> len(interleaved_latency([a, b], torch.zeros(2, 64), runs=3, warmup=1))
        2
    """
    return [statistics.median(t) for t in interleaved_times(models, example_input, runs, warmup)]


def latency_fraction(dense: nn.Module, pruned: nn.Module, example_input: Any, runs: int = 15,
                     warmup: int = 3) -> float:
    """Median over rounds of pruned ms / dense ms, each round timing both back to back:
    a slow drift of the machine's load cancels within a round.

    Example:
        >>> a, b = nn.Linear(64, 64), nn.Linear(64, 8)
        >>> 0 < latency_fraction(a, b, torch.zeros(2, 64), runs=3, warmup=1)
        True
    """
    d, p = interleaved_times([dense, pruned], example_input, runs, warmup)
    return median_ratio(p, d)


def median_ratio(pruned_ms: list[float], dense_ms: list[float]) -> float:
    """Median of the per-round ratios ``pruned_ms[i] / dense_ms[i]``.

    Example:
        >>> median_ratio([5.0, 6.0, 4.0], [10.0, 10.0, 10.0])
        0.5
    """
    return statistics.median(p / d for p, d in zip(pruned_ms, dense_ms))


def search_ratio(
    measure: Callable[[float], float],
    target: float,
    max_ratio: float,
    iterations: int,
    what: str,
    tolerance: float = 0.0,
) -> tuple[float, list[dict[str, float]]]:
    """Smallest ratio in [0, max_ratio] with ``measure(ratio) <= target`` (bisection).

    ``measure`` returns the kept fraction (pruned / dense) at a ratio; it is assumed to
    fall as the ratio grows. Raises ``TargetUnreachableError`` if even ``max_ratio``
    does not reach the target.
    """
    history: list[dict[str, float]] = []
    top = measure(max_ratio)
    history.append({"ratio": max_ratio, what: top})
    if top > target * (1 + tolerance):
        raise TargetUnreachableError(
            f"target {what} = {target:.3f} of dense is unreachable: pruning at the largest "
            f"ratio ({max_ratio:.2f}, capped per group by max_ratio) still keeps {top:.3f}; "
            f"raise max_ratio or relax the target"
        )
    lo, hi, best = 0.0, max_ratio, max_ratio
    for _ in range(iterations):
        mid = (lo + hi) / 2
        value = measure(mid)
        history.append({"ratio": mid, what: value})
        if value <= target:
            hi, best = mid, mid
        else:
            lo = mid
        if hi - lo < 1e-3:
            break
    return best, history
