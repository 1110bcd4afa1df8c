"""Turn sensitivity curves into per-layer sparsities that meet a global target.

Pure math: every layer gets the largest sparsity whose (interpolated, monotone) metric
drop stays under a common tolerance ``tau``; ``tau`` is found by bisection so that the
weighted sparsity over all layers equals the target. Sensitive layers thus keep more
weights and robust layers give more.
"""

from __future__ import annotations

from prunekit.config.base import check_fraction
from prunekit.errors import TargetUnreachableError
from prunekit.sensitivity.curves import SensitivityCurves


def _max_sparsity_within(sparsities: list[float], drops: list[float], tau: float) -> float:
    """Largest sparsity whose drop <= tau on the piecewise-linear curve through (0, 0)."""
    xs = [0.0] + list(sparsities)
    ys = [0.0]
    for d in drops:
        ys.append(max(ys[-1], d))  # monotone envelope: more pruning never helps
    best = 0.0
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if y1 <= tau:
            best = x1
            continue
        if y0 <= tau < y1:
            best = x0 + (x1 - x0) * (tau - y0) / (y1 - y0)
        break
    return best


def allocate_sparsities(curves: SensitivityCurves, target: float, iterations: int = 60) -> dict[str, float]:
    """Per-layer sparsities whose size-weighted mean is ``target``.

    Args:
        curves: from ``sensitivity_curves``.
        target: global fraction of the analysed layers' weights to prune.
        iterations: bisection steps on the tolerance.

    Returns:
        ``{layer_name: sparsity}``; layers never exceed the largest sparsity measured.

    Raises:
        TargetUnreachableError: when even every layer at its largest measured sparsity
            falls short of ``target``.

    Example:
        >>> c = SensitivityCurves(baseline=1.0, sparsities=[0.5, 0.9],
        ...                       metrics={"a": [1.0, 0.9], "b": [0.8, 0.2]}, sizes={"a": 100, "b": 100})
        >>> {k: round(v, 3) for k, v in allocate_sparsities(c, 0.5).items()}
        {'a': 0.808, 'b': 0.192}
    """
    check_fraction("target", target)
    drops = curves.drops()
    total = sum(curves.sizes[n] for n in drops)
    s_max = curves.sparsities[-1]

    def achieved(tau: float) -> tuple[float, dict[str, float]]:
        alloc = {n: _max_sparsity_within(curves.sparsities, d, tau) for n, d in drops.items()}
        return sum(alloc[n] * curves.sizes[n] for n in alloc) / total, alloc

    hi_tau = max([0.0] + [max(d) for d in drops.values()]) + 1e-9
    reached, alloc = achieved(hi_tau)
    if reached < target - 1e-9:
        raise TargetUnreachableError(
            f"target sparsity {target} is above what the curves cover ({reached:.4f} with every "
            f"layer at {s_max}); measure sparsities closer to 1"
        )
    lo = min(0.0, min(min(d) for d in drops.values())) - 1e-9
    hi = hi_tau
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if achieved(mid)[0] >= target:
            hi = mid
        else:
            lo = mid
    reached, alloc = achieved(hi)
    return _trim_to_target(alloc, curves.sizes, target)


def _trim_to_target(alloc: dict[str, float], sizes: dict[str, int], target: float) -> dict[str, float]:
    """Scale the allocation down uniformly when bisection overshoots (plateaus in curves)."""
    total = sum(sizes[n] for n in alloc)
    reached = sum(alloc[n] * sizes[n] for n in alloc) / total
    if reached <= target + 1e-6 or reached == 0:
        return alloc
    factor = target / reached
    return {n: s * factor for n, s in alloc.items()}
