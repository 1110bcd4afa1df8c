"""Why a channel dim is not prunable: a debug listing of the frozen dims and the first reasons.

A dim stays whole when its units are coupled to the model's input or output (atom
``FIXED``), when a layer-type rule or a width tie froze its group, or when its units do
not own whole slices. For the first case the tracer logs, per coupling to ``FIXED``, the
op and module that made it (``AtomTable.fix_log``); a frozen dim is explained by the
logged couplings whose atoms are connected to its own without going through ``FIXED``.

Example:
    >>> import torch
    >>> from torch import nn
    >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4))
    >>> print(explain_frozen(m, torch.zeros(1, 4))[1])
    2.weight[dim 0] (4): coupled to the input/output by the model's output
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.graph.atoms import FIXED, connected_components


@dataclass(frozen=True)
class FrozenDim:
    """A parameter dim no group removes, and the first reasons found (op in module)."""

    tensor: str
    dim: int
    size: int
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.tensor}[dim {self.dim}] ({self.size}): " + "; ".join(self.reasons)


def _components_without_fixed(table) -> np.ndarray:
    pairs = [p[:, (p != FIXED).all(dim=0)] for p in table._pairs]
    pairs = [p for p in pairs if p.numel()]
    if not pairs:
        return np.arange(table.next_id)
    p = torch.cat(pairs, dim=1)
    return connected_components(table.next_id, p[0].numpy(), p[1].numpy())


def explain_frozen(model: nn.Module, example_input: Any, limit: int = 3) -> list[FrozenDim]:
    """Every traced parameter dim that no group of ``build_dependency_graph`` removes,
    with up to ``limit`` reasons each (couplings to the input/output, rules, ties)."""
    from prunekit.graph.dependency import build_dependency_graph_with_trace

    graph, table, comp = build_dependency_graph_with_trace(model, example_input)
    covered = {key for g in graph.groups for key in g.members}
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    loose = _components_without_fixed(table)
    fixed_by: dict[int, list[str]] = {}
    for where, atoms in table.fix_log:
        for c in np.unique(loose[atoms.numpy()]).tolist():
            places = fixed_by.setdefault(c, [])
            if where not in places and len(places) < limit:
                places.append(where)
    out = []
    for block in table.blocks:
        if block.kind != "dim" or block.tensor not in params or block.size < 2:
            continue
        key = (block.tensor, block.dim)
        if key in covered:
            continue
        atoms = np.arange(block.start, block.start + block.size)
        reasons: list[str] = []
        if (comp[atoms] == comp[FIXED]).any():
            for c in np.unique(loose[atoms]).tolist():
                reasons += [f"coupled to the input/output by {w}" for w in fixed_by.get(c, [])
                            if f"coupled to the input/output by {w}" not in reasons]
            reasons = reasons[:limit] or ["coupled to the input/output"]
        reasons += graph.drop_reasons.get(key, [])[:limit]
        if not reasons:
            reasons = ["nothing produces its channels (the model's input), or its units do not own whole slices"]
        out.append(FrozenDim(block.tensor, block.dim, block.size, tuple(reasons)))
    return out
