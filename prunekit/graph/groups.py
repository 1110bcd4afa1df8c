"""Turn traced couplings into groups of removable units.

A *unit* is one connected component of atoms: every tensor slice that must go when one
channel (neuron, head dim ...) goes. Units touching the same set of tensor dims form a
*group* (e.g. "the 256 channels of layer3's residual stream"). A unit is removable only
if it has a producer (something creates the channel), is not coupled to the model's
input or output, and every tensor it touches loses whole slices.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch

from prunekit.graph.atoms import AtomTable


@dataclass
class Group:
    """Coupled units across a set of tensor dims.

    Attributes:
        id: index in ``DependencyGraph.groups``.
        members: the (tensor name, dim) pairs every unit of this group slices.
        index: ``index[(tensor, dim)]`` is a LongTensor ``[n_units, k]``: the k indices of
            that tensor dim belonging to each unit.
        exact: True when removing dead units provably leaves outputs unchanged (no
            normalisation or softmax over these channels).
        consumers: the members that *read* the units (input columns of the projections
            fed by them), scored by the ``"activation"`` importance; None lets the scorer
            find them from the module types (``prunekit.structured.scoring``).
    """

    id: int
    members: list[tuple[str, int]]
    index: dict[tuple[str, int], torch.Tensor]
    exact: bool = True
    ties: list[tuple[int, int]] = field(default_factory=list)  # (other group id, factor)
    comps: torch.Tensor | None = None  # the atom component of each unit (see graph.sizes)
    consumers: list[tuple[str, int]] | None = None

    @property
    def size(self) -> int:
        return int(next(iter(self.index.values())).shape[0])

    def describe(self) -> str:
        shown = ", ".join(f"{t}[dim {d}]" for t, d in self.members[:4])
        more = f" +{len(self.members) - 4} more" if len(self.members) > 4 else ""
        return f"group {self.id}: {self.size} units over {shown}{more}"


def build_groups(table: AtomTable, tensor_shapes: dict[str, tuple[int, ...]],
                 comp: np.ndarray | None = None) -> list[Group]:
    """Resolve couplings into groups. ``tensor_shapes`` maps tensor name -> shape;
    ``comp`` is ``table.components()`` if already computed."""
    comp = table.components() if comp is None else comp
    fixed = comp[0]
    rows: list[tuple[np.ndarray, int]] = []  # (component per atom, block index)
    is_prod = np.zeros(int(comp.max()) + 1 if len(comp) else 1, dtype=bool)
    for bi, block in enumerate(table.blocks):
        if block.kind == "virtual":
            continue
        c = comp[block.start : block.start + block.size]
        rows.append((c, bi))
        if block.producer:
            is_prod[c] = True
    is_prod[fixed] = False
    inexact_mask = np.zeros(len(is_prod), dtype=bool)
    if table.inexact:
        ids = torch.cat(table.inexact).unique().numpy()
        ids = ids[ids < len(comp)]
        inexact_mask[comp[ids]] = True

    key_ids: dict[tuple[str, int], int] = {}
    cs, ks, ix = [], [], []
    bad: set[int] = set()
    for c, bi in rows:
        block = table.blocks[bi]
        mask = is_prod[c]
        if not mask.any():
            continue
        local = np.nonzero(mask)[0]
        if block.kind == "dim":
            kid = key_ids.setdefault((block.tensor, block.dim), len(key_ids))
            cs.append(c[local])
            ks.append(np.full(len(local), kid))
            ix.append(local)
            continue
        # element atoms: each component must own whole slices along one dim
        shape = block.shape
        numel = int(np.prod(shape))
        order = np.argsort(c[local], kind="stable")
        comps_sorted = c[local][order]
        flat_sorted = local[order]
        uniq, starts, counts = np.unique(comps_sorted, return_index=True, return_counts=True)
        for cc, st, n in zip(uniq.tolist(), starts.tolist(), counts.tolist()):
            if n * max(shape) < numel:
                bad.add(cc)
                continue
            coords = np.stack(np.unravel_index(flat_sorted[st : st + n], shape))
            found = None
            for d in range(len(shape)):
                if shape[d] > 1 and n * shape[d] == numel and (coords[d] == coords[d][0]).all():
                    found = d
                    break
            if found is None:
                bad.add(cc)
            else:
                kid = key_ids.setdefault((block.tensor, found), len(key_ids))
                cs.append(np.array([cc]))
                ks.append(np.array([kid]))
                ix.append(np.array([coords[found][0]]))
    if not cs:
        return []
    keys = {v: k for k, v in key_ids.items()}
    C, K, IX = np.concatenate(cs), np.concatenate(ks), np.concatenate(ix)
    order = np.lexsort((IX, K, C))
    C, K, IX = C[order], K[order], IX[order]
    ck = C.astype(np.int64) * (len(keys) + 1) + K
    uck, starts, counts = np.unique(ck, return_index=True, return_counts=True)
    pair_comp = C[starts]
    pair_key = K[starts]
    # per component: its (key, count) runs
    comp_bounds = np.flatnonzero(np.r_[True, pair_comp[1:] != pair_comp[:-1], True])
    by_signature: dict[tuple, list[int]] = defaultdict(list)  # sig -> list of first pair idx
    for a, b in zip(comp_bounds[:-1].tolist(), comp_bounds[1:].tolist()):
        cc = int(pair_comp[a])
        if cc in bad:
            continue
        by_signature[(pair_key[a:b].tobytes(), counts[a:b].tobytes())].append(a)

    groups: list[Group] = []
    for (kb, cb), firsts in by_signature.items():
        sig = list(zip(np.frombuffer(kb, dtype=pair_key.dtype).tolist(),
                       np.frombuffer(cb, dtype=counts.dtype).tolist()))
        firsts_arr = np.array(firsts)
        index = {}
        for off, (kid, k) in enumerate(sig):
            st = starts[firsts_arr + off]
            index[keys[kid]] = torch.from_numpy(IX[st[:, None] + np.arange(k)[None, :]].astype(np.int64))
        first_key = keys[sig[0][0]]
        perm = torch.argsort(index[first_key][:, 0])
        index = {key: v[perm] for key, v in index.items()}
        unit_comps = pair_comp[firsts_arr]
        exact = not bool(inexact_mask[unit_comps].any())
        members = [keys[kid] for kid, _ in sig]
        if any(t not in tensor_shapes for t, _ in members):
            continue
        comps = torch.from_numpy(unit_comps.astype(np.int64))[perm]
        groups.append(Group(len(groups), members, index, exact, comps=comps))
    groups.sort(key=lambda g: _first_position(g, tensor_shapes))
    for i, g in enumerate(groups):
        g.id = i
    return groups


def _first_position(g: Group, tensor_shapes) -> tuple:
    order = list(tensor_shapes)
    pos = {n: i for i, n in enumerate(order)}
    return min((pos.get(t, 1 << 30), d) for t, d in g.members)
