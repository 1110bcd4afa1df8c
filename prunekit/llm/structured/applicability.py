"""Which requested kinds of structure a model has nothing of.

Asking for heads on a pure Mamba model, or experts on a dense one, is not an error:
``structured_prune`` removes the kinds that apply and lists the others, with the reason,
under ``plan["not_applicable"]`` (the CLI prints it; the families benchmark reports the
variant as ``"n/a: <reason>"``). Removing whole layers applies to every model whose class
can be built that much shallower; ``structured_prune`` lists ``layers`` only when the
class itself refuses the smaller depth (its config validation or weight initialisation
raises: :class:`~prunekit.llm.structured.layer_fields.DepthNotBuildableError`).

Example:
    >>> # structured_prune(mamba, batches, StructuredConfig(heads=0.25))["not_applicable"]
    >>> # {'heads': 'no block has attention heads (MambaBlock: the token mixer has none)'}
"""

from __future__ import annotations

from typing import Any

from torch import nn

from prunekit.llm.layers import find_layers
from prunekit.llm.structured.layout import Layout


def _kinds(model: nn.Module, layouts: dict[int, Layout]) -> str:
    _, blocks = find_layers(model)
    return ", ".join(sorted({type(blocks[i]).__name__ for i in layouts}))


def not_applicable(model: nn.Module, config: Any, layouts: dict[int, Layout]) -> dict[str, str]:
    """``{kind: reason}`` for each kind ``config`` asks for that no block of ``model`` has.

    Args:
        model: the model. config: a :class:`~prunekit.llm.structured.prune.StructuredConfig`.
        layouts: every block's layout (``block_layouts(model)``).
    """
    out = {}
    kinds = _kinds(model, layouts)
    if config.heads and all(lay.attention is None and not lay.attention_error for lay in layouts.values()):
        out["heads"] = f"no block has attention heads ({kinds}: the token mixer has none)"
    if config.mlp and all(lay.mlp is None and lay.experts is None for lay in layouts.values()):
        out["mlp"] = f"no block has a dense MLP or experts ({kinds})"
    if config.experts and all(lay.experts is None for lay in layouts.values()):
        out["experts"] = f"no block has routed experts ({kinds})"
    return out
