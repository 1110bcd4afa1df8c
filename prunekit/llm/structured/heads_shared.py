"""Per-head tensors outside the blocks, shared by every block's attention.

CPM-Ant builds one relative position bias ``[buckets, num_heads]`` at the model level
(``CpmAntSegmentPositionEmbedding``) and adds it in every block; its forward runs under
``no_grad``, so the probe cannot tie it to heads. Such a tensor is found by name *and*
shape, not by a list: a module outside the blocks whose own head count attribute
(:func:`~prunekit.llm.structured.heads_attrs.new_value`'s rule: ``num_heads``,
``n_head``...) equals the blocks' head count, and whose parameters have exactly one dim
of that size. Removing heads then has to remove the *same* heads in every block (the
one tensor cannot be sliced two ways): :func:`shared_head_tensors` says so, the
structured planner sums each unit's score over the blocks and picks the same units
everywhere, and :func:`~prunekit.llm.structured.surgery.prune_heads` slices the shared
tensor once and updates the module's head count.

Example:
    >>> from torch import nn
    >>> import torch
    >>> class Bias(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.num_heads = 4
    ...         self.table = nn.Parameter(torch.zeros(33, 4))
    >>> model = nn.Module(); model.bias = Bias(); model.layers = nn.ModuleList([nn.Linear(2, 2)])
    >>> shared_head_tensors(model, "layers", 4)
    {'bias.table': 1}
"""

from __future__ import annotations

from torch import nn

from prunekit.llm.structured.heads_attrs import says_heads


def shared_head_tensors(model: nn.Module, blocks_path: str, n_heads: int) -> dict[str, int]:
    """``{parameter path: head dim}`` for per-head tensors outside ``blocks_path`` (see module doc)."""
    out: dict[str, int] = {}
    for path, module in model.named_modules():
        if not path or path == blocks_path or path.startswith(blocks_path + "."):
            continue
        if not any(says_heads(k) and v == n_heads for k, v in vars(module).items() if not k.startswith("_")):
            continue  # no attribute says this module has the blocks' heads
        for name, p in module.named_parameters(recurse=False):
            dims = [d for d, s in enumerate(p.shape) if s == n_heads]
            if len(dims) == 1:
                out[f"{path}.{name}"] = dims[0]
    return out


def common_head_count(layouts: dict) -> int | None:
    """The one query-head count of every block with attention, or None if they differ or none has any."""
    counts = {lay.attention.n_heads for lay in layouts.values() if lay.attention is not None}
    return counts.pop() if len(counts) == 1 else None
