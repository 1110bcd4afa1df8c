"""Attention units split between parallel projections: each projection keeps as many.

Some attentions take one tensor (the values) from several parallel projections, each
holding the rows of a part of the key/value groups: ZAYA's ``v_proj_current`` holds the
values of the first half of the groups and ``v_proj_delayed`` those of the second half
(``num_key_value_heads * head_dim / 2`` rows each, always equal, as the config builds
them). A unit then owns rows of exactly one of those projections and none of the others.

:func:`owner_partitions` finds that from the probed rows alone (no names): the
projections where some units own no row are the *owners*; every unit must own rows of
exactly one owner, the same number in each, and every owner must hold as many units.
Removing units must keep that (the config can only rebuild equal parts), so
:func:`balanced_removal` takes the same number from every part, each its lowest-scored:

* ``n`` units asked of ``k`` parts: ``round_half_up(n / k)`` from each part, at least one
  when ``n > 0`` (heads 0.25 of 4 groups in 2 parts removes one group from each, 2 of 4:
  asking for one never silently removes none);
* never a whole part: at most ``part size - 1`` from each; a part of one unit cannot lose
  any, which is an error naming the projections (heads cannot be removed at all there).

Example:
    >>> rows = {"q": ((0, 1), (2, 3), (4, 5), (6, 7)), "v_a": ((0, 1), (2, 3), (), ()),
    ...         "v_b": ((), (), (0, 1), (2, 3))}
    >>> owner_partitions(rows)
    {'v_a': (0, 1), 'v_b': (2, 3)}
    >>> balanced_removal(torch.tensor([3.0, 1.0, 0.5, 2.0]), 1, owner_partitions(rows), "attn")
    [1, 2]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from prunekit.errors import ModelError, UnsupportedOpError
from prunekit.structured.allocate import balanced_lowest


def owner_partitions(rows: Mapping[str, Sequence[Sequence[int]]]) -> dict[str, tuple[int, ...]] | None:
    """``{projection: its units}`` when the units are split between parallel projections, else None.

    None also when no projection leaves a unit without rows (nothing is split), or when the
    split is not regular (a unit in two owners or none, owners of different sizes, units
    owning different numbers of an owner's rows).

    Example:
        >>> owner_partitions({"q": ((0,), (1,)), "v": ((0,), (1,))}) is None
        True
        >>> owner_partitions({"a": ((0,), (), (1,)), "b": ((), (0,), ())}) is None  # 2 and 1 units
        True
    """
    owners = {p: rs for p, rs in rows.items() if any(len(r) == 0 for r in rs)}
    if not owners:
        return None
    parts: dict[str, tuple[int, ...]] = {}
    seen: list[int] = []
    for p, rs in owners.items():
        units = tuple(u for u, r in enumerate(rs) if r)
        if not units or len({len(rs[u]) for u in units}) != 1:
            return None
        parts[p] = units
        seen.extend(units)
    n_units = len(next(iter(rows.values())))
    if sorted(seen) != list(range(n_units)) or len({len(u) for u in parts.values()}) != 1:
        return None
    if len({len(next(r for r in rs if r)) for rs in owners.values()}) != 1:
        return None  # each owner holds as many rows per unit (equal halves of one tensor)
    return parts


def per_part(n_remove: int, parts: Mapping[str, Sequence[int]], where: str) -> int:
    """Units removed from each part when ``n_remove`` are asked (the rule in the module doc).

    Example:
        >>> parts = {"a": (0, 1), "b": (2, 3)}
        >>> per_part(1, parts, "attn"), per_part(2, parts, "attn"), per_part(3, parts, "attn"), per_part(0, parts, "")
        (1, 1, 1, 0)
    """
    if n_remove <= 0:
        return 0
    k = len(parts)
    size = len(next(iter(parts.values())))
    if size < 2:
        raise UnsupportedOpError(
            f"{where}: its key/value groups are split between the parallel projections {sorted(parts)} "
            f"(one group each), which must keep equal sizes; no group can be removed without emptying one "
            "of them (prune mlp, layers or experts instead)")
    per = max(1, int(n_remove / k + 0.5))
    return min(per, size - 1)


def balanced_removal(scores: torch.Tensor, n_remove: int, parts: Mapping[str, Sequence[int]],
                     where: str) -> list[int]:
    """The removed units (sorted): :func:`per_part` from every part, each part's lowest-scored.

    Example:
        >>> balanced_removal(torch.tensor([1.0, 5.0, 4.0, 2.0, 9.0, 8.0]), 2, {"a": (0, 2, 4), "b": (1, 3, 5)}, "")
        [0, 3]
    """
    per = per_part(n_remove, parts, where)
    if per == 0:
        return []
    order = [u for units in parts.values() for u in units]
    local = balanced_lowest(scores[order], per * len(parts), len(parts))
    return sorted(order[j] for j in local)


def check_balanced(drop: Sequence[int], parts: Mapping[str, Sequence[int]], where: str) -> None:
    """Raise :class:`ModelError` unless ``drop`` takes as many units from every part, none whole.

    Example:
        >>> check_balanced([1, 2], {"a": (0, 1), "b": (2, 3)}, "attn")
        >>> try:
        ...     check_balanced([1], {"a": (0, 1), "b": (2, 3)}, "attn")
        ... except ModelError as e:
        ...     print(str(e).split("; ")[1])
        remove as many groups from each (asked {'a': [1], 'b': []}), e.g. one of each
    """
    gone = set(int(u) for u in drop)
    taken = {p: [u for u in units if u in gone] for p, units in parts.items()}
    counts = {len(v) for v in taken.values()}
    size = len(next(iter(parts.values())))
    if len(counts) == 1 and counts.pop() < size:
        return
    raise ModelError(
        f"{where}: its key/value groups are split between the parallel projections {sorted(parts)} "
        f"(groups { {p: list(u) for p, u in parts.items()} }), which the config rebuilds with equal sizes; "
        f"remove as many groups from each (asked {taken}), e.g. one of each"
        + ("" if size > 1 else "; with one group each, none can be removed"))
