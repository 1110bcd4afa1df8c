"""LLM units as groups of the one structured engine (:class:`prunekit.graph.Group`).

A block's :class:`~prunekit.llm.structured.layout.Layout` says where its attention units,
MLP neurons and experts live; here each becomes a ``Group`` whose members are tensor
names relative to the model, exactly as the traced dependency graph names them. The
removers (:mod:`.surgery`, :mod:`.experts`) then build their ``apply_keep`` request with
the engine's :func:`prunekit.structured.keep.keep_request`, and the ``"activation"``
importance scores the units through ``Group.consumers``
(:func:`prunekit.structured.scoring.activation_scores`).

* heads: a unit is a key/value group with its query heads (a head without GQA): its
  q/k/v rows (and biases), the output projection's input columns, and follower tensors
  (per-head norms, sinks ...). Rows every unit reads (multi-query attention's one
  key/value head) belong to no unit and so are kept.
* MLP neurons: gate/up rows (and biases), the down projection's input column, followers.
* experts: every expert-indexed tensor's slice and the router's row.
* expert neurons: neuron position ``j`` of every expert (after the per-expert reordering
  of :func:`~prunekit.llm.structured.experts.shrink_expert_neurons`), each copy of a fused
  ``gate_up``.

Example:
    >>> from prunekit.llm.structured.layout import MLPLayout
    >>> block = nn.ModuleDict({"up": nn.Linear(4, 3), "down": nn.Linear(3, 4)})
    >>> g = mlp_group("layers.0", block, MLPLayout("down", {"up": ((0,), (1,), (2,))}))
    >>> g.members
    [('layers.0.up.weight', 0), ('layers.0.up.bias', 0), ('layers.0.down.weight', 1)]
    >>> g.consumers
    [('layers.0.down.weight', 1)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from prunekit.errors import UnsupportedOpError
from prunekit.graph.groups import Group
from prunekit.llm.layers import join_name
from prunekit.llm.structured.layout import AttentionLayout, ExpertsLayout, MLPLayout
from prunekit.structured.activation import input_dim
from prunekit.structured.keep import keep_request

Index = dict[tuple[str, int], torch.Tensor]


def unit_index(name: str, units: Sequence[Sequence[int]]) -> torch.Tensor:
    """``[n_units, k]`` indices of each unit (every unit owns the same number).

    A unit owning none of the tensor's indices (a projection holding only some units' rows:
    :mod:`.heads_partition`) is padded with ``-1`` (no index; the keep builder skips it).

    Example:
        >>> unit_index("q.weight", ((0, 1), (2, 3))).tolist()
        [[0, 1], [2, 3]]
        >>> unit_index("v.weight", ((0, 1), ())).tolist()
        [[0, 1], [-1, -1]]
    """
    sizes = {len(u) for u in units if len(u)}
    if len(sizes) > 1:
        raise UnsupportedOpError(f"{name}: its units own different numbers of indices "
                                 f"({sorted({len(u) for u in units})}); cannot slice them as one group")
    k = sizes.pop() if sizes else 0
    return torch.tensor([list(u) if u else [-1] * k for u in units], dtype=torch.long).reshape(len(units), k)


def linear_members(name: str, module: nn.Module, units: Sequence[Sequence[int]], side: str) -> Index:
    """Members of a linear's output rows (``side="out"``, with its bias) or input columns (``"in"``)."""
    in_dim = 0 if input_dim(module) == 0 else 1  # GPT-2's Conv1D stores [in, out]; linears [out, in]
    dim = 1 - in_dim if side == "out" else in_dim
    index = unit_index(f"{name}.weight", units)
    members = {(f"{name}.weight", dim): index}
    if side == "out" and getattr(module, "bias", None) is not None:
        members[(f"{name}.bias", 0)] = index
    return members


def _followers(prefix: str, params: Mapping[str, tuple[int, tuple[tuple[int, ...], ...]]]) -> Index:
    return {(join_name(prefix, p), dim): unit_index(join_name(prefix, p), units) for p, (dim, units) in params.items()}


def _group(index: Index, consumers: Iterable[tuple[str, int]] | None = None) -> Group:
    return Group(0, list(index), index, exact=False, consumers=list(consumers) if consumers is not None else None)


def head_group(prefix: str, block: nn.Module, att: AttentionLayout) -> Group:
    """The attention units of one block (``prefix``: the block's path in the model)."""
    index: Index = {}
    for p, rows in att.rows.items():
        index.update(linear_members(join_name(prefix, p), block.get_submodule(p), rows, "out"))
    followers = _followers(prefix, att.params)  # a reader's input columns beside its own rows
    if att.o:
        reader = linear_members(join_name(prefix, att.o), block.get_submodule(att.o), att.cols, "in")
    else:  # routed experts read the heads (a mixture of attention heads): their 3-D weight's columns
        reader = {k: v for k, v in followers.items() if k[0] == join_name(prefix, att.reader)}
    index.update(reader)
    index.update(followers)
    return _group(index, reader)


def mlp_group(prefix: str, block: nn.Module, mlp: MLPLayout) -> Group:
    """The intermediate neurons of one block's dense MLP."""
    index: Index = {}
    for p, rows in mlp.outs.items():
        index.update(linear_members(join_name(prefix, p), block.get_submodule(p), rows, "out"))
    reader = linear_members(join_name(prefix, mlp.inp), block.get_submodule(mlp.inp),
                            tuple((j,) for j in range(mlp.size)), "in")
    index.update(reader)
    index.update(_followers(prefix, mlp.params))
    return _group(index, reader)


def experts_group(members: Mapping[str, int], n_experts: int) -> Group:
    """Whole experts: ``members[tensor] = dim`` indexed by expert (one index per expert).

    Example:
        >>> experts_group({"moe.experts.down_proj": 0, "moe.gate.weight": 0}, 3).index[("moe.gate.weight", 0)].tolist()
        [[0], [1], [2]]
    """
    units = torch.arange(n_experts).reshape(-1, 1)
    return _group({(name, dim): units for name, dim in members.items()}, [])


def expert_neuron_group(prefix: str, layout: ExpertsLayout) -> Group:
    """Neuron position ``j`` of every expert: each fused copy's row ``j + c * size``."""
    index: Index = {}
    for name, (_, dim, copies) in layout.params.items():
        if dim >= 0:
            index[(join_name(prefix, f"{layout.module}.{name}"), dim)] = torch.stack(
                [torch.arange(layout.size) + c * layout.size for c in range(copies)], dim=1)
    return _group(index, [])


def tensor_shapes(model: nn.Module, names: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """The shape of each named parameter / buffer of ``model``."""
    out = {}
    for name in names:
        owner, _, attr = name.rpartition(".")
        out[name] = tuple(getattr(model.get_submodule(owner) if owner else model, attr).shape)
    return out


def removal_keep(model: nn.Module, removals: list[tuple[Group, Sequence[int]]]) -> dict[str, dict[int, torch.Tensor]]:
    """The ``apply_keep`` request removing those units (:func:`~prunekit.structured.keep.keep_request`)."""
    names = {t for g, units in removals if len(units) for t, _ in g.members}
    return keep_request(removals, tensor_shapes(model, names))
