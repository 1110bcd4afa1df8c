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
    return [max(1, n - int(math.floor(n * r + 1e-9))) for n, r in zip(sizes, ratios)]


def global_keep(scores: list[torch.Tensor], ratio: float, max_ratio: float) -> list[int]:
    """Kept units per group when removing the ``ratio`` lowest-scored units overall.

    Scores are divided by their group's mean so groups of different scale compare; no
    group loses more than ``max_ratio`` of its units.

    Example:
        >>> global_keep([torch.tensor([1., 1., 1., 1.]), torch.tensor([0.1, 10., 10., 0.1])],
        ...             0.25, 0.9)
        [4, 2]
    """
    sizes = [len(s) for s in scores]
    total = sum(sizes)
    n_remove = int(math.floor(total * ratio + 1e-9))
    normed = [s.double() / (s.double().mean() + 1e-12) for s in scores]
    flat = torch.cat(normed)
    owner = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    order = torch.argsort(flat, stable=True)
    cap = [int(math.floor(n * max_ratio + 1e-9)) for n in sizes]
    cap = [min(c, n - 1) for c, n in zip(cap, sizes)]
    removed = [0] * len(sizes)
    left = n_remove
    for i in owner[order].tolist():
        if left == 0:
            break
        if removed[i] < cap[i]:
            removed[i] += 1
            left -= 1
    return [n - r for n, r in zip(sizes, removed)]


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
