"""Debug check: do the traced dependency graph and the ``Layout`` groups describe the same units?

The LLM removers build their :class:`~prunekit.graph.Group`s from each block's ``Layout``
(:mod:`.groups`); the generic tracer (:func:`prunekit.graph.build_dependency_graph`) finds
groups in any model. :func:`compare_units` lays one ``Layout`` group beside the traced
groups and says, per tensor slice of the ``Layout`` group, how the two partitions relate:

* ``"same"``: identical units (an MLP neuron: its gate/up rows and down column);
* ``"finer"`` / ``"coarser"``: each traced unit lies inside one ``Layout`` unit, or the reverse;
* ``"crossed"``: the same indices cut the other way (whole heads in the ``Layout``, head
  dims across every head in the tracer: each traced unit takes the same number of indices
  of every ``Layout`` unit, the ``grid`` flag);
* ``"coverage"``: the two cover different indices of the tensor (``detail`` says which).

``consistent`` says, for ``"same"`` / ``"finer"``, that each traced unit lands in the same
``Layout`` unit in every tensor it spans. ``traced_only`` lists tensors the traced groups
couple to those units that the ``Layout`` group does not hold (the rotary ``inv_freq``).

Example:
    >>> import torch
    >>> from prunekit.graph.groups import Group
    >>> def g(index):
    ...     return Group(0, list(index), index, exact=False)
    >>> a = g({("up.weight", 0): torch.tensor([[0], [1]]), ("down.weight", 1): torch.tensor([[0], [1]])})
    >>> b = g({("up.weight", 0): torch.tensor([[1], [0]]), ("down.weight", 1): torch.tensor([[1], [0]])})
    >>> [(m.tensor, m.relation, m.consistent) for m in compare_units(a, [b]).members]
    [('up.weight', 'same', True), ('down.weight', 'same', True)]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prunekit.graph.groups import Group


@dataclass(frozen=True)
class MemberMatch:
    """How one ``(tensor, dim)`` of a ``Layout`` group is cut by the traced groups."""

    tensor: str
    dim: int
    relation: str
    layout_units: int
    traced_units: int
    grid: bool = False
    consistent: bool = True
    detail: str = ""


@dataclass(frozen=True)
class UnitComparison:
    """Per member of the ``Layout`` group its :class:`MemberMatch`; tensors only the tracer couples."""

    members: list[MemberMatch]
    traced_only: list[tuple[str, int]] = field(default_factory=list)

    def relations(self) -> dict[str, str]:
        """``{tensor: relation}``."""
        return {m.tensor: m.relation for m in self.members}


def _rows(group: Group, key: tuple[str, int]) -> list[frozenset[int]]:
    return [frozenset(r) for r in group.index[key].tolist()]


def _relation(layout: list[frozenset[int]], traced: list[frozenset[int]]) -> tuple[str, bool, str]:
    lay_all, tr_all = frozenset().union(*layout), frozenset().union(*traced) if traced else frozenset()
    if lay_all != tr_all:
        return "coverage", False, (f"{len(lay_all - tr_all)} indices only in the Layout, "
                                   f"{len(tr_all - lay_all)} only traced")
    if set(layout) == set(traced):
        return "same", False, ""
    if all(any(t <= u for u in layout) for t in traced):
        return "finer", False, ""
    if all(any(u <= t for t in traced) for u in layout):
        return "coarser", False, ""
    counts = {len(t & u) for t in traced for u in layout}
    grid = len(counts) == 1 and counts != {0}
    return "crossed", grid, f"each traced unit takes {sorted(counts)} indices of each Layout unit"


def compare_units(layout: Group, traced: Iterable[Group]) -> UnitComparison:
    """Compare a ``Layout`` group with the traced groups that share its tensors (see module doc)."""
    traced = [g for g in traced if any(k in g.index for k in layout.members)]
    members = []
    owner: dict[tuple[int, int], set[int]] = {}  # (traced group, unit) -> Layout units it lands in
    for key in layout.members:
        lay = _rows(layout, key)
        units = [(gi, r, s) for gi, g in enumerate(traced) if key in g.index for r, s in enumerate(_rows(g, key))]
        relation, grid, detail = _relation(lay, [s for _, _, s in units])
        if relation in ("same", "finer"):
            for gi, r, s in units:
                owner.setdefault((gi, r), set()).update(i for i, u in enumerate(lay) if s <= u)
        members.append(MemberMatch(key[0], key[1], relation, len(lay), len(units), grid, detail=detail))
    bad = {k for k, v in owner.items() if len(v) > 1}
    if bad:
        members = [MemberMatch(m.tensor, m.dim, m.relation, m.layout_units, m.traced_units, m.grid,
                               m.relation not in ("same", "finer"), m.detail) for m in members]
    held = set(layout.members)
    extra = sorted({k for g in traced for k in g.members if k not in held})
    return UnitComparison(members, extra)
