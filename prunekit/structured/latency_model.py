"""Cost models of a model's groups, and the latency-aware allocation that uses them
(pure functions: numbers in, numbers out).

A ``CostModel`` is a sum of *terms*, one per module (or module call)::

    cost(keep) = fixed + sum_t cost_t * prod_{g in groups_t} keep[g] / size[g]

A convolution whose input channels belong to group A and output channels to group B is
one term over {A, B} (its work scales with both); a BatchNorm, activation or pooling
call is a term over the one group of its channels; work touching no prunable group is
fixed. ``prunekit.structured.profile`` builds two such models of the same network: one
in measured milliseconds on this device (so memory-bound work that MACs do not count,
norms, activations and pooling at high resolution, is priced as it really runs), one
in MACs.

Latency-aware allocation: if removing a fraction ``f_g`` of group ``g`` costs accuracy
about ``M_g * f_g**2`` (``M_g`` = the MACs the group's units carry: wide, busy layers
hurt more) and saves ``T_g * f_g`` milliseconds (``T_g`` = the measured time its units
carry), the least-damaging way to save a given time is ``f_g`` proportional to
``T_g / M_g``, the group's measured milliseconds per MAC. ``latency_aware_ratios``
returns those ratios; when time is proportional to MACs everywhere they are uniform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A latency-aware ratio stays within [ratio / LATENCY_MAX_TILT, ratio * LATENCY_MAX_TILT].
LATENCY_MAX_TILT = 4.0


@dataclass(frozen=True)
class CostTerm:
    """``cost`` that scales with the kept fraction of each group in ``groups``."""

    cost: float
    groups: tuple[int, ...]


@dataclass(frozen=True)
class CostModel:
    """Cost (milliseconds or MACs) of a network as a function of its group widths.

    Example:
        >>> cm = CostModel((CostTerm(8.0, (0, 1)), CostTerm(2.0, (1,))), 1.0, (4, 2))
        >>> cm.predict([4, 2]), cm.predict([2, 2]), cm.predict([2, 1])
        (11.0, 7.0, 4.0)
    """

    terms: tuple[CostTerm, ...]
    fixed: float
    sizes: tuple[int, ...]

    def _incidence(self) -> tuple[np.ndarray, np.ndarray]:
        a = np.zeros((len(self.terms), len(self.sizes)))
        for i, t in enumerate(self.terms):
            a[i, list(t.groups)] = 1.0
        return a, np.array([t.cost for t in self.terms], dtype=np.float64)

    def predict(self, keep: list[int] | np.ndarray) -> float:
        """Predicted cost when group ``g`` keeps ``keep[g]`` units."""
        a, cost = self._incidence()
        frac = np.asarray(keep, dtype=np.float64) / np.asarray(self.sizes, dtype=np.float64)
        return float(self.fixed + cost @ np.exp(a @ np.log(frac)))

    def per_group(self) -> np.ndarray:
        """Cost each group's units carry at full width (first order: the cost saved by
        removing all of them, one at a time, with every other group left whole).

        Example:
            >>> CostModel((CostTerm(8.0, (0, 1)), CostTerm(2.0, (1,))), 1.0, (4, 2)).per_group().tolist()
            [8.0, 10.0]
        """
        a, cost = self._incidence()
        return a.T @ cost


def split_fixed_cost(
    by_groups: dict[tuple[int, ...], float],
) -> tuple[tuple[CostTerm, ...], float]:
    """``(terms, fixed)`` from costs keyed by group tuples (``()`` is fixed cost).

    Example:
        >>> split_fixed_cost({(0,): 2.0, (): 1.0})
        ((CostTerm(cost=2.0, groups=(0,)),), 1.0)
    """
    terms = tuple(CostTerm(v, g) for g, v in by_groups.items() if g)
    return terms, float(by_groups.get((), 0.0))


def fit_two_points(
    dense: dict[tuple[int, ...], float],
    probe: dict[tuple[int, ...], float],
    frac: list[float],
) -> tuple[tuple[CostTerm, ...], float]:
    """Fit every term ``cost(f) = a + b * prod(f)`` through its dense cost (all ``f`` = 1)
    and its cost at the probe fractions ``frac``; ``b`` (clipped to ``[0, dense]``) is the
    term's scaling cost, every ``a`` goes to the fixed cost.

    Example:
        >>> # a 10 ms term over group 0 that took 7 ms with half the group: 6 ms scale
        >>> fit_two_points({(0,): 10.0, (): 1.0}, {(0,): 7.0, (): 1.0}, [0.5])
        ((CostTerm(cost=6.0, groups=(0,)),), 5.0)
    """
    terms, fixed = [], float(dense.get((), 0.0))
    for groups, full in dense.items():
        if not groups:
            continue
        p = float(np.prod([frac[g] for g in groups]))
        if groups not in probe or p >= 1.0:
            terms.append(CostTerm(full, groups))
            continue
        slope = min(max((full - probe[groups]) / (1.0 - p), 0.0), full)
        terms.append(CostTerm(slope, groups))
        fixed += full - slope
    return tuple(terms), fixed


def latency_aware_ratios(
    latency: CostModel,
    macs: CostModel,
    ratio: float,
    max_ratio: float,
    power: float = 1.0,
    max_tilt: float = LATENCY_MAX_TILT,
) -> list[float]:
    """Per-group removal ratios proportional to each group's measured ms per MAC.

    Args:
        latency: the measured milliseconds model; ``macs``: the MACs model (same groups).
        ratio: the ratio of a group with the network's average ms per MAC (the one knob
            a target search moves).
        max_ratio: no group loses more than this fraction.
        power: ratios proportional to (ms per MAC) ** power; 1 is the optimum of the
            quadratic-damage model above, larger values lean harder on the measurement.
        max_tilt: a group's ratio stays within ``[ratio / max_tilt, ratio * max_tilt]``.

    Returns:
        one removal ratio per group (0 for groups that carry no time).

    Example:
        >>> lat = CostModel((CostTerm(30.0, (0,)), CostTerm(10.0, (1,))), 0.0, (8, 8))
        >>> mac = CostModel((CostTerm(100.0, (0,)), CostTerm(100.0, (1,))), 0.0, (8, 8))
        >>> [round(r, 6) for r in latency_aware_ratios(lat, mac, 0.3, 0.9)]
        [0.45, 0.15]
    """
    if latency.sizes != macs.sizes:
        raise ValueError(f"latency and MACs models must cover the same groups, got sizes "
                         f"{latency.sizes} and {macs.sizes}")
    t, m = latency.per_group(), macs.per_group()
    has_macs = m > 0
    mean = float(t[has_macs].sum() / m[has_macs].sum()) if has_macs.any() else 1.0
    if mean > 0:
        tilt = np.full(len(t), max_tilt)  # time but no MACs: as slow per MAC as allowed
        tilt[has_macs] = (t[has_macs] / m[has_macs] / mean) ** power
    else:
        tilt = np.ones(len(t))
    tilt = np.where(t > 0, np.clip(tilt, 1 / max_tilt, max_tilt), 0.0)
    return [float(min(max_ratio, ratio * w)) for w in tilt]
