"""Hold the zeros of a pruned model exactly while it trains.

A :class:`ZeroHolder` records, for every linear weight inside the transformer blocks, where
it is exactly zero. Before each optimiser step it zeroes those gradients (so Adam's moments
stay zero there) and after it zeroes the weights again (a guarantee whatever the optimiser
does). It works on plain tensors and on FSDP2's sharded DTensors (the mask is sharded like
the weight), so every process holds the same mask for its shard.

Example:
    >>> lin = torch.nn.Linear(4, 2)
    >>> with torch.no_grad(): lin.weight[0, :2] = 0
    >>> holder = ZeroHolder({"weight": lin.weight})
    >>> opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    >>> lin(torch.ones(1, 4)).sum().backward(); holder.before_step(); opt.step(); holder.after_step()
    >>> int((lin.weight == 0).sum())
    2
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.llm.blocks import find_linears
from prunekit.llm.layers import find_layers
from prunekit.masks.parametrize import is_masked


def block_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weight parameters of the block linears (those prunekit's LLM pruning sparsifies),
    by their names in ``model.named_parameters()``; masked (parametrized) ones are left out,
    their parametrization holds them already."""
    _, blocks = find_layers(model)  # (a layer in parallel lists: all its parts)
    wanted = {id(lin.weight): None for block in blocks for lin in find_linears(block).values()
              if not is_masked(lin, "weight")}
    return {name: p for name, p in model.named_parameters() if id(p) in wanted}


class ZeroHolder:
    """Keep the zeros of the given parameters at zero through optimiser steps."""

    def __init__(self, params: dict[str, nn.Parameter]) -> None:
        self.params = params
        # bool keep-masks, in the parameter's own layout (a DTensor for FSDP2 shards)
        self.keep = {name: (p.detach() != 0) for name, p in params.items()}
        self.held = {name: m for name, m in self.keep.items() if not bool(m.all())}

    @property
    def zeros(self) -> int:
        """Number of held zeros (over the full tensors)."""
        return sum(int((~m).sum()) for m in self.held.values())

    @torch.no_grad()
    def before_step(self) -> None:
        """Zero the gradients at the held positions."""
        for name, keep in self.held.items():
            grad = self.params[name].grad
            if grad is not None:
                grad.mul_(keep)

    @torch.no_grad()
    def after_step(self) -> None:
        """Zero the weights at the held positions."""
        for name, keep in self.held.items():
            self.params[name].mul_(keep)
