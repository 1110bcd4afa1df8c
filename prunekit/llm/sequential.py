"""Sequential (layer-by-layer) calibration through a model's transformer blocks.

The calibration batches run through the embeddings once, are caught at the input of
block 0 (a pre-hook that stops the forward), and then walk the blocks one at a time:
block ``i`` sees the outputs of the *already pruned* block ``i-1``. Only the hidden
states of the calibration set and one block's working set are alive at once.

Example:
    >>> # for index, block, run in sequential_blocks(model, batches):
    >>> #     with collect_input_stats(find_linears(block), gram=False) as stats:
    >>> #         run()                      # dense block, inputs from pruned blocks < i
    >>> #     ...prune block using stats...  # the generator then feeds its outputs onward
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunekit.llm.blocks import find_blocks


class _StopForward(Exception):
    """Raised by the capture hook once block 0's inputs are recorded."""


@dataclass
class BlockInputs:
    """Per calibration batch: the hidden states entering a block and the rest of its call."""

    hidden: list[torch.Tensor] = field(default_factory=list)
    args: list[tuple[Any, ...]] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)


def capture_block_inputs(
    model: nn.Module, blocks: nn.ModuleList, batches: Iterable[dict[str, Any]]
) -> BlockInputs:
    """Run each batch through the model up to block 0 and record that block's inputs.

    Args:
        model: the full model. blocks: its block list (:func:`find_blocks`).
        batches: keyword dicts for ``model(**batch)``, e.g. ``{"input_ids": ids}``.
    """
    captured = BlockInputs()

    def pre_hook(_module, args, kwargs):
        kwargs = dict(kwargs)
        if args:
            hidden, rest = args[0], tuple(args[1:])
        else:
            hidden, rest = kwargs.pop("hidden_states"), ()
        kwargs.pop("past_key_values", None)
        kwargs.pop("past_key_value", None)
        if "use_cache" in kwargs:
            kwargs["use_cache"] = False
        captured.hidden.append(hidden.detach())
        captured.args.append(rest)
        captured.kwargs.append(kwargs)
        raise _StopForward

    handle = blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True)
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for batch in batches:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                try:
                    model(**batch)
                except _StopForward:
                    pass
    finally:
        handle.remove()
    return captured


def block_output(out: Any) -> torch.Tensor:
    """The hidden states from a block's return value (a tensor or a tuple starting with it)."""
    return out[0] if isinstance(out, (tuple, list)) else out


class BlockRun:
    """``run()`` of :func:`sequential_blocks`: forwards every calibration batch through a block.

    ``run(keep_outputs=True)`` also returns the block's outputs, one tensor per batch (e.g.
    the dense block's outputs, the targets of block reconstruction); ``inputs`` holds the
    block's calibration inputs.
    """

    def __init__(self, block: nn.Module, inputs: BlockInputs) -> None:
        self.block = block
        self.inputs = inputs

    def __call__(self, keep_outputs: bool = False) -> list[torch.Tensor] | None:
        outputs: list[torch.Tensor] = []
        with torch.no_grad():
            for h, a, kw in zip(self.inputs.hidden, self.inputs.args, self.inputs.kwargs):
                out = self.block(h, *a, **kw)
                if keep_outputs:
                    outputs.append(block_output(out).detach())
        return outputs if keep_outputs else None


def sequential_blocks(
    model: nn.Module, batches: Iterable[dict[str, Any]]
) -> Iterator[tuple[int, nn.Module, BlockRun]]:
    """Yield ``(index, block, run)`` for every block, in order, with sequential inputs.

    ``run()`` (a :class:`BlockRun`) forwards every calibration batch through the block
    (call it inside :func:`prunekit.llm.hooks.collect_input_stats`). When the loop
    resumes, the generator recomputes the block's outputs *with its current (pruned)
    weights* and makes them the next block's inputs.
    """
    _, blocks = find_blocks(model)
    inputs = capture_block_inputs(model, blocks, batches)

    for index, block in enumerate(blocks):
        yield index, block, BlockRun(block, inputs)
        with torch.no_grad():
            for j, (h, a, kw) in enumerate(zip(inputs.hidden, inputs.args, inputs.kwargs)):
                inputs.hidden[j] = block_output(block(h, *a, **kw)).detach()
