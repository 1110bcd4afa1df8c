"""Per-layer tensors packed outside the blocks: one ``k``-wide chunk per layer, in layer order.

Some models keep a per-layer input for every block outside the block list, packed along one
dimension of ``L * k`` (Gemma 3n / Gemma 4's per-layer embeddings: ``embed_tokens_per_layer``
of ``[vocab, L * k]`` and ``per_layer_model_projection`` of ``[L * k, hidden]``, reshaped to
``[..., L, k]`` and indexed by layer). A model with ``d`` blocks removed rebuilds them
``(L - d) * k`` wide, so removing blocks also removes the removed layers' chunks.

Nothing is named here: :func:`packed_alternatives` gives the shapes such a tensor may take
after a removal (what the config search accepts); :func:`packed_keep` compares the live
model with the build of the shallower config and returns the slicing that makes them match,
refusing any other difference outside the blocks.

Example:
    >>> packed_alternatives((128, 16), 2, [1])
    [(64, 16), (128, 8)]
    >>> packed_indices(16, 2, [1]).tolist()
    [0, 1, 2, 3, 4, 5, 6, 7]
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from prunekit.errors import UnsupportedOpError


def packed_alternatives(shape: Sequence[int], n: int, drop: Sequence[int]) -> list[tuple[int, ...]]:
    """Each shape ``shape`` takes when one of its dimensions of ``n * k`` (``n`` layers, ``k``
    per layer) loses the chunks of the ``len(drop)`` removed layers; empty when none fits."""
    d = len(set(drop))
    if not 0 < d < n:
        return []
    out = []
    for dim, size in enumerate(shape):
        if size and size % n == 0:
            out.append(tuple(shape[:dim]) + ((n - d) * (size // n),) + tuple(shape[dim + 1:]))
    return out


def packed_dim(before: Sequence[int], after: Sequence[int], n: int, drop: Sequence[int]) -> int | None:
    """The dimension along which ``after`` is ``before`` with the removed layers' chunks cut
    (exactly one dimension differs, ``n * k`` before, ``(n - d) * k`` after), else None."""
    if len(before) != len(after):
        return None
    diff = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    if len(diff) != 1:
        return None
    dim = diff[0]
    return dim if 0 < len(set(drop)) < n and before[dim] % n == 0 and \
        after[dim] == (n - len(set(drop))) * (before[dim] // n) else None


def packed_indices(size: int, n: int, drop: Sequence[int]) -> torch.Tensor:
    """Indices kept along a dimension of ``size = n * k``: every kept layer's ``k``-wide chunk,
    in layer order (chunk ``j`` holds layer ``j``, as ``reshape(..., n, k)`` reads it)."""
    k = size // n
    gone = set(int(i) for i in drop)
    return torch.tensor([j * k + c for j in range(n) if j not in gone for c in range(k)], dtype=torch.long)


def packed_keep(model: nn.Module, blocks: tuple[str, ...], n: int, drop: Sequence[int], updates: dict[str, Any]
                ) -> dict[str, dict[int, torch.Tensor]]:
    """The slicing (an :func:`prunekit.surgery.apply.apply_keep` request) of the tensors outside
    the block lists ``blocks`` (key prefixes) that the config edited by ``updates`` (fields of
    the layer config) rebuilds with the removed layers' chunks cut; empty when none differ.

    Raises:
        UnsupportedOpError: when a tensor outside the blocks is rebuilt with another shape
            that is not such a cut (the removal would not reload as the model it leaves).
    """
    from prunekit.llm.structured.layer_build import meta_build
    from prunekit.llm.structured.layer_fields import layer_config
    from prunekit.llm.structured.per_layer import set_field

    trial = copy.deepcopy(model.config)
    for name, value in updates.items():
        try:
            set_field(layer_config(trial), name, value)
        except Exception:  # a count the config derives from a per-layer list (as remove_layers does)
            pass
    fresh = meta_build(model, trial)
    if fresh is None:
        return {}
    before = meta_build(model, model.config)
    old = {} if before is None else {k: tuple(v.shape) for k, v in before.state_dict().items()}
    new = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    keep: dict[str, dict[int, torch.Tensor]] = {}
    seen: set[int] = set()
    for key, value in model.state_dict(keep_vars=True).items():
        shape = tuple(value.shape)
        if id(value) in seen:  # a tied tensor is sliced once
            continue
        seen.add(id(value))
        if key.startswith(blocks) or key not in new or new[key] == shape or old.get(key, shape) != shape:
            continue  # inside the blocks, gone, unchanged, or already pruned to another width
        dim = packed_dim(shape, new[key], n, drop)
        if dim is None:
            raise UnsupportedOpError(
                f"remove_layers: {key} {list(shape)} (outside the blocks) would reload as {list(new[key])}, "
                f"which is not its removed layers' chunks cut (one dimension of {n} * k becoming "
                f"{n - len(set(drop))} * k); remove other blocks")
        keep[key] = {dim: packed_indices(shape[dim], n, drop)}
    return keep
