"""The one keep builder: removed units of groups -> an ``apply_keep`` request.

Every structured removal (the traced ``prunekit.structured`` pruner, the LLM head /
neuron / expert removers) names *units of groups* (:class:`~prunekit.graph.Group`); this
pure function turns them into the ``{tensor: {dim: kept indices}}`` request of
:func:`prunekit.surgery.apply_keep`. Indices of a tensor dim that belong to no removed
unit are kept (rows every unit reads, extra rows beside the units); an index ``-1`` in a
group's index is no index (a unit owning nothing of that tensor).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch

from prunekit.graph.groups import Group


def keep_request(
    removals: Iterable[tuple[Group, torch.Tensor | Sequence[int]]],
    tensor_shapes: Mapping[str, Sequence[int]],
) -> dict[str, dict[int, torch.Tensor]]:
    """The ``apply_keep`` dict removing, per ``(group, units)``, those units of the group.

    Args:
        removals: pairs of a group and the indices of its units to remove (validated by
            the caller: in range, not all of them).
        tensor_shapes: the shape of every tensor a removed unit touches.

    Returns:
        ``{tensor name: {dim: sorted kept indices}}`` for every sliced tensor dim.

    Example:
        >>> g = Group(0, [("fc1.weight", 0), ("fc2.weight", 1)],
        ...           {("fc1.weight", 0): torch.tensor([[0], [1], [2]]),
        ...            ("fc2.weight", 1): torch.tensor([[0], [1], [2]])})
        >>> keep = keep_request([(g, [1])], {"fc1.weight": (3, 4), "fc2.weight": (2, 3)})
        >>> keep["fc1.weight"][0].tolist(), keep["fc2.weight"][1].tolist()
        ([0, 2], [0, 2])
    """
    removed: dict[tuple[str, int], list[torch.Tensor]] = {}
    for group, units in removals:
        r = torch.as_tensor(units, dtype=torch.long).reshape(-1)
        if len(r) == 0:
            continue
        for key, idx in group.index.items():
            gone = idx[r].reshape(-1)
            removed.setdefault(key, []).append(gone[gone >= 0])  # -1: a unit without an index there
    keep: dict[str, dict[int, torch.Tensor]] = {}
    for (tensor, dim), gone in removed.items():
        mask = torch.ones(int(tensor_shapes[tensor][dim]), dtype=torch.bool)
        mask[torch.cat(gone)] = False
        keep.setdefault(tensor, {})[dim] = torch.nonzero(mask).reshape(-1)
    return keep
