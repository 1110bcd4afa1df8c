"""How many units each group keeps, and which ones (pure functions of scores)."""

from __future__ import annotations

import math
from fractions import Fraction

import torch


def round_keep(keep: int, size: int, round_to: int | None) -> int:
    """Round a kept count to a multiple of ``round_to`` (never 0, never above ``size``).

    Example:
        >>> round_keep(29, 64, 8), round_keep(3, 64, 8), round_keep(60, 60, 8)
        (32, 8, 60)
    """
    keep = max(1, min(size, keep))
    if not round_to or round_to <= 1 or keep == size:
        return keep
    rounded = max(round_to, int(round(keep / round_to)) * round_to)
    return size if rounded >= size else rounded


def uniform_keep(sizes: list[int], ratio: float, max_ratio: float) -> list[int]:
    """Kept units per group when removing ``ratio`` of each.

    Example:
        >>> uniform_keep([64, 10, 3], 0.5, 0.9)
        [32, 5, 2]
    """
    return keep_at_ratios(sizes, [min(ratio, max_ratio)] * len(sizes))


def keep_at_ratios(sizes: list[int], ratios: list[float]) -> list[int]:
    """Kept units per group when removing ``ratios[g]`` of group ``g`` (at least 1 kept).

    Example:
        >>> keep_at_ratios([64, 10, 3], [0.25, 0.5, 0.9])
        [48, 5, 1]
    """
    return [n - removal_count(n, r) for n, r in zip(sizes, ratios)]


ROUNDINGS = ("floor", "half_up", "half_even")


def removal_count(size: int, fraction: float, rounding: str = "floor", min_keep: int = 1) -> int:
    """How many of ``size`` units removing ``fraction`` takes, never leaving fewer than
    ``min_keep``. ``rounding``: ``"floor"`` (traced models), ``"half_up"`` (LLM per block:
    0.25 of 2 KV groups is 1) or ``"half_even"`` (Python's ``round``).

    Example:
        >>> removal_count(2, 0.25, "half_up"), removal_count(2, 0.25), removal_count(4, 1.0)
        (1, 0, 3)
        >>> removal_count(10, 0.25, "half_even", min_keep=0), removal_count(10, 0.25, "half_up", min_keep=0)
        (2, 3)
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    exact = size * fraction
    if rounding == "floor":
        n = int(math.floor(exact + 1e-9))
    elif rounding == "half_up":
        n = int(exact + 0.5)
    else:
        n = int(round(exact))
    return max(0, min(n, size - min_keep))


def lowest(scores: torch.Tensor, n: int) -> list[int]:
    """The ``n`` lowest-scored units, lowest first (ties: lower index first).

    Example:
        >>> lowest(torch.tensor([3., 1., 2., 1.]), 3)
        [1, 3, 2]
    """
    return torch.argsort(scores, stable=True)[:n].tolist()


NORMALISATIONS = ("mean", "sum")


def global_lowest(scores: list[torch.Tensor], n_remove: int, normalise: str = "mean",
                  caps: list[int] | None = None, refill: bool = True) -> list[list[int]]:
    """The ``n_remove`` lowest units over all groups: per group its removed units, lowest first.

    Each group's scores are divided by their ``normalise`` (``"mean"`` or ``"sum"``, in the
    scores' own dtype) so groups of different scale compare. A group gives at most
    ``caps[g]`` units (default: all but one, "never remove the last unit"). A unit over its
    group's cap is skipped; with ``refill`` the next-lowest unit takes its place (exactly
    ``n_remove`` removed while any group can give), without it only the ``n_remove``
    lowest overall are candidates (fewer may be removed).

    Example:
        >>> global_lowest([torch.tensor([1., 1., 1., 1.]), torch.tensor([0.1, 10., 10., 0.1])], 2)
        [[], [0, 3]]
        >>> s = [torch.tensor([1., 1.]), torch.tensor([1., 1., 1.])]
        >>> global_lowest(s, 3, "sum"), global_lowest(s, 3, "sum", refill=False)
        ([[0], [0, 1]], [[], [0, 1]])
    """
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
    sizes = [s.numel() for s in scores]
    caps = [n - 1 for n in sizes] if caps is None else caps
    chosen: list[list[int]] = [[] for _ in scores]
    if not scores or n_remove <= 0:
        return chosen
    if normalise == "mean":
        normed = [s / (s.mean() + 1e-12) for s in scores]
    else:
        normed = [s / s.sum().clamp_min(1e-12) for s in scores]
    owner = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)]).tolist()
    local = torch.cat([torch.arange(n) for n in sizes]).tolist()
    order = torch.argsort(torch.cat(normed), stable=True).tolist()
    left = n_remove
    for j in order if refill else order[:n_remove]:
        if left == 0:
            break
        if len(chosen[owner[j]]) < caps[owner[j]]:
            chosen[owner[j]].append(local[j])
            left -= 1
    return chosen


def global_keep(scores: list[torch.Tensor], ratio: float, max_ratio: float) -> list[int]:
    """Kept units per group when removing the ``ratio`` lowest-scored units overall.

    Scores are divided by their group's mean so groups of different scale compare; no
    group loses more than ``max_ratio`` of its units (:func:`global_lowest`).

    Example:
        >>> global_keep([torch.tensor([1., 1., 1., 1.]), torch.tensor([0.1, 10., 10., 0.1])],
        ...             0.25, 0.9)
        [4, 2]
    """
    sizes = [len(s) for s in scores]
    caps = [removal_count(n, max_ratio) for n in sizes]
    n_remove = removal_count(sum(sizes), ratio, min_keep=0)
    removed = global_lowest([s.double() for s in scores], n_remove, "mean", caps)
    return [n - len(r) for n, r in zip(sizes, removed)]


def apply_ties(keep: list[int], sizes: list[int], ties: list[tuple[int, int, int | Fraction]],
               round_to: int | None = None) -> list[int]:
    """Enforce kept(primary) == factor * kept(dependent) for each tie; the dependent's
    count is rounded so that the primary stays a multiple of ``round_to`` (12 heads x 44
    dims = 528 = 66 x 8). A fractional factor ``p/q`` (units of 6 channels tied to heads
    of 32: 16/3) keeps the dependent a multiple of ``q``.

    Example:
        >>> apply_ties([48, 10], [96, 32], [(0, 1, 3)])
        [48, 16]
        >>> apply_ties([540, 45], [768, 64], [(0, 1, 12)], round_to=8)
        [528, 44]
        >>> apply_ties([24, 3, 4], [48, 6, 8], [(0, 1, 8), (0, 2, 6)])  # lcm(8, 6) = 24
        [24, 3, 4]
        >>> apply_ties([16, 3], [32, 6], [(0, 1, Fraction(16, 3))])
        [16, 3]
    """
    keep = list(keep)
    # a primary tied to several dependents keeps a multiple of every factor
    multiple: dict[int, int] = {}
    for a, _, f in ties:
        multiple[a] = math.lcm(multiple.get(a, 1), Fraction(f).numerator)
    for a, b, f in ties:
        f = Fraction(f)
        p, q = f.numerator, f.denominator
        base = round_to // math.gcd(round_to, p) if round_to and round_to > 1 else 1
        step = q * math.lcm(base, multiple[a] // p)
        kb = round_keep(int(round(keep[a] / f)), sizes[b], step if step > 1 else None)
        keep[b] = kb
        keep[a] = min(sizes[a], int(f * kb))
    for a, b, f in ties:  # second pass: primaries shared by several ties agree
        f = Fraction(f)
        kb = int(keep[a] / f)
        kb -= kb % f.denominator
        keep[b] = max(1, min(sizes[b], kb))
    return keep


def choose_removed(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the lowest-scored units to remove so that ``keep`` remain (sorted).

    Example:
        >>> choose_removed(torch.tensor([3., 1., 2., 5.]), 2)
        tensor([1, 2])
    """
    n = len(scores)
    if keep >= n:
        return torch.zeros(0, dtype=torch.long)
    order = torch.argsort(scores.double(), stable=True)
    return torch.sort(order[: n - keep]).values


def balanced_lowest(scores: torch.Tensor, n_remove: int, n_groups: int) -> list[int]:
    """The ``n_remove`` lowest-scoring units, taken evenly from ``n_groups`` consecutive groups.

    Group-limited routers (DeepSeek-V3: ``n_group`` groups of consecutive experts, a group's
    score read from its best experts) need every group to keep the same size, so each group
    loses ``n_remove // n_groups`` units, its own lowest (never more than asked; 0 when
    ``n_remove < n_groups``). The kept units stay in order, so kept group ``g`` is old group ``g``.

    Example:
        >>> balanced_lowest(torch.tensor([5.0, 1.0, 2.0, 9.0, 3.0, 4.0, 8.0, 0.5]), 2, 2)
        [1, 7]
        >>> balanced_lowest(torch.tensor([1.0, 2.0, 3.0, 4.0]), 1, 2)
        []
    """
    size = scores.numel() // n_groups
    per = n_remove // n_groups
    out: list[int] = []
    for g in range(n_groups):
        local = torch.argsort(scores[g * size:(g + 1) * size])[:per]
        out += [g * size + int(j) for j in local]
    return sorted(out)
