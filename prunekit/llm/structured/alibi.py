"""ALiBi (Bloom, MPT): each head has its own slope, so a pruned head must take its slope with it.

Bloom builds one ALiBi tensor for all blocks from ``config.n_head`` (shape
``[batch * heads, 1, keys]``; MPT passes ``position_bias`` ``[heads, 1, keys]``) and hands
it to every attention module. After heads are
removed from a block, :func:`set_alibi_heads` makes that block's attention keep only the
slopes of its remaining original heads, with a forward pre-hook on the attention module
(the config keeps the original head count, so the slopes are the original ones). The
kept heads are recorded in ``prunekit_layer_shapes`` (``alibi_heads``) and
:func:`prunekit.llm.structured.load_pruned` installs the same hook on reload.

Example:
    >>> from torch import nn
    >>> m = nn.Module(); m.forward = lambda hidden_states, alibi: alibi
    >>> set_alibi_heads(m, [0, 2])
    >>> alibi_heads(m, 3)
    [0, 2]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_ATTR = "_prunekit_alibi_heads"
_HOOK = "_prunekit_alibi_hook"


def alibi_heads(attention: nn.Module, n_heads: int) -> list[int]:
    """The original head indices whose slopes ``attention`` uses (all of them by default)."""
    return list(getattr(attention, _ATTR, range(n_heads)))


def _select(alibi: torch.Tensor, batch: int, heads: list[int]) -> torch.Tensor:
    total = alibi.shape[0] // batch
    picked = alibi.reshape(batch, total, *alibi.shape[1:])[:, heads]
    return picked.reshape(batch * len(heads), *alibi.shape[1:])


def _index(kept: list[int], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(kept, dtype=torch.long, device=like.device)


def set_alibi_heads(attention: nn.Module, heads: list[int]) -> None:
    """Make ``attention`` use the ALiBi slopes of original heads ``heads`` only."""
    setattr(attention, _ATTR, [int(h) for h in heads])
    if getattr(attention, _HOOK, None) is not None:
        return

    def pre_hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]):
        kept = getattr(module, _ATTR)
        hidden = args[0] if args else kwargs["hidden_states"]
        if "alibi" in kwargs and kwargs["alibi"] is not None:
            kwargs = {**kwargs, "alibi": _select(kwargs["alibi"], hidden.shape[0], kept)}
            return args, kwargs
        bias = kwargs.get("position_bias")
        if isinstance(bias, torch.Tensor) and bias.dim() in (3, 4):  # MPT [heads, 1, keys]; [batch, heads, q, k]
            return args, {**kwargs, "position_bias": bias.index_select(bias.dim() - 3, _index(kept, bias))}
        return None

    setattr(attention, _HOOK, attention.register_forward_pre_hook(pre_hook, with_kwargs=True))
