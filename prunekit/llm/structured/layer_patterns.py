"""Pure helpers for the config of a shallower model: run-length layer patterns, per-layer
values, and a numeric field solved so that a built attribute keeps its value.

* A run-length pattern (GPT-Neo's ``attention_types=[[["global", "local"], 12]]``) expands
  to one entry per layer; after blocks are removed the kept entries are encoded again
  (:func:`expand_runs`, :func:`encode_runs`).
* A block attribute that holds one entry per layer (GPT-Neo's ``attention_layers``, a copy
  of the config's list) is filtered like the config's list (:func:`keep_entries`).
* An attribute computed from a numeric field and the depth (MiniCPM's
  ``residual_scale = scale_depth / sqrt(num_hidden_layers)``) keeps its value when the field
  is solved for it (:func:`secant`), so the kept blocks compute what they computed before.

Example:
    >>> runs = [[["global", "local"], 2]]
    >>> encode_runs(keep_entries(expand_runs(runs, 4), {1}), runs)
    [[['global'], 2], [['local'], 1]]
    >>> round(secant(lambda x: x / 2, 0.7, 1.0, 2.0), 12)
    1.4
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

REL_TOL = 1e-12  # two floats this close are the same built value (one rounding apart)


def same(want: Any, got: Any) -> bool:
    """Equal, with floats compared to :data:`REL_TOL` (a solved field may land one rounding off).

    Example:
        >>> same(0.1 + 0.2, 0.3), same(1, 1.0), same("a", "b")
        (True, True, False)
    """
    if want == got:
        return True
    numbers = (int, float)
    if isinstance(want, numbers) and isinstance(got, numbers) and not isinstance(want, bool) \
            and not isinstance(got, bool):
        return math.isclose(want, got, rel_tol=REL_TOL, abs_tol=0.0)
    return False


def keep_entries(seq: Any, drop: set[int]) -> Any:
    """``seq`` without the entries at ``drop``, of the same kind (str, tuple or list).

    Example:
        >>> keep_entries("M*M-", {1}), keep_entries((1, 2, 3), {0})
        ('MM-', (2, 3))
    """
    kept = [v for i, v in enumerate(seq) if i not in drop]
    return "".join(kept) if isinstance(seq, str) else type(seq)(kept) if isinstance(seq, tuple) else kept


def _is_run(item: Any) -> bool:
    return (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], (list, tuple))
            and len(item[0]) > 0 and type(item[1]) is int and item[1] >= 0)


def expand_runs(value: Any, n: int) -> list[Any] | None:
    """The per-layer list a run-length pattern ``[[pattern, repeats], ...]`` stands for, or None
    when ``value`` is not such a pattern of ``n`` layers.

    Example:
        >>> expand_runs([[["global", "local"], 2]], 4)
        ['global', 'local', 'global', 'local']
        >>> expand_runs([[1, 2], [3, 4]], 2) is None
        True
    """
    if not (isinstance(value, (list, tuple)) and value and all(_is_run(item) for item in value)):
        return None
    out = [entry for pattern, repeats in value for _ in range(repeats) for entry in pattern]
    return out if len(out) == n else None


def encode_runs(entries: Sequence[Any], like: Any) -> Any:
    """``entries`` as a run-length pattern shaped like ``like``: one run of the shortest
    repeating pattern, or one run per stretch of equal entries when none repeats.

    Example:
        >>> encode_runs(["a", "b", "a", "b"], [[["a"], 1]])
        [[['a', 'b'], 2]]
        >>> encode_runs(["a", "a", "b"], (( ("a",), 1),))
        ((('a',), 2), (('b',), 1))
    """
    entries = list(entries)
    outer, inner = type(like), type(like[0][0]) if like else list

    def run(pattern: list[Any], repeats: int) -> Any:
        pair = [inner(pattern), repeats]
        return tuple(pair) if isinstance(like[0], tuple) else pair

    n = len(entries)
    for period in range(1, n):
        if n % period == 0 and entries == entries[:period] * (n // period):
            return outer([run(entries[:period], n // period)])
    runs: list[Any] = []
    start = 0
    for i in range(1, n + 1):
        if i == n or entries[i] != entries[start]:
            runs.append(run([entries[start]], i - start))
            start = i
    return outer(runs)


def secant(f: Callable[[float], float | None], target: float, x0: float, x1: float,
           steps: int = 6) -> float | None:
    """A value ``x`` with ``f(x)`` equal to ``target`` (:func:`same`), by secant steps from
    ``x0`` and ``x1``; None when ``f`` refuses a value (returns None), does not move, or does
    not converge. One step suffices when ``f`` is linear in ``x``.

    Example:
        >>> secant(lambda x: 3 * x + 1, 7.0, 0.0, 1.0)
        2.0
    """
    f0, f1 = f(x0), f(x1)
    for _ in range(steps):
        if f0 is None or f1 is None or f1 == f0:
            return None
        if same(target, f1):
            return x1
        x0, x1 = x1, x1 + (target - f1) * (x1 - x0) / (f1 - f0)
        if not math.isfinite(x1):
            return None
        f0, f1 = f1, f(x1)
    return x1 if f1 is not None and same(target, f1) else None
