"""Prune a block's linears *inside* one forward of all calibration tokens (one pass per block).

The two-pass scheme (statistics on the dense block, prune, forward again for the next
block's inputs) costs two block forwards. When every calibration batch fits in one call
(:func:`prunekit.llm.sequential.mergeable`, within a memory budget), a forward
pre-hook on each linear sees all of its input tokens at once: it computes the input
statistics, prunes the layer and lets the forward continue with the pruned weight. The
layers after it in the block then see the pruned layers' outputs ("true sequential"
inside the block, as SparseGPT's ``--true-sequential``), and the block's output is
already the pruned block's output: one forward per block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunekit.llm.blocks import find_linears, weight_2d
from prunekit.llm.config import LLMPruneConfig
from prunekit.llm.hooks import InputStats
from prunekit.llm.methods.permute_fold import foldable_pairs, permute_pair_
from prunekit.llm.sequential import BlockRun, hidden_layout, layout_bytes, mergeable


def widest_output(block: nn.Module) -> int:
    """The largest output width of ``block``'s linears (works on the meta device too)."""
    return max((weight_2d(m).shape[0] for m in find_linears(block).values()), default=1)


def fits_single_pass(shapes: list[tuple[int, ...]], itemsize: int, widest: int,
                     config: LLMPruneConfig) -> bool:
    """Whether ``config`` allows one pass for batches of these hidden-state shapes: a pure
    function of sizes and config, so in-memory and out-of-core runs decide alike."""
    if config.single_pass_mb <= 0 or not shapes:
        return False
    return layout_bytes(shapes, itemsize, widest) <= config.single_pass_mb * 2**20


def can_single_pass(block: nn.Module, run: BlockRun, config: LLMPruneConfig) -> bool:
    """Whether this block is pruned in one pass: the budget allows and the batches merge."""
    shapes, itemsize = hidden_layout(run.inputs)
    if not fits_single_pass(shapes, itemsize, widest_output(block), config):
        return False
    return mergeable(run.inputs)


def prune_in_single_pass(
    block: nn.Module,
    run: BlockRun,
    config: LLMPruneConfig,
    prune_linear: Callable[..., None],
    gram: bool,
    dense_inputs: dict[str, torch.Tensor] | None = None,
) -> None:
    """Prune every linear of ``block`` in one forward; ``run``'s inputs become the next block's.

    ``prune_linear(module, stats, cross)`` prunes one layer from its input statistics and,
    with ``dense_inputs`` (each linear's input in the dense model, all batches merged, from
    :class:`prunekit.llm.methods.dense_stream.DenseStream`), ``cross = X^T D`` of its input
    here against the dense one (else None). Linears fed the very same tensor (q/k/v,
    gate/up) share one statistics object. With
    ``config.permute`` and a pattern, a consumer's input channels are permuted (and folded
    into its producers) before it is pruned; its input in this forward is permuted to match.
    """
    linears = find_linears(block)
    pairs = {p.consumer: p for p in foldable_pairs(block)} if config.permute and config.pattern else {}
    last: dict[str, Any] = {"x": None, "stats": None, "cross": None}

    def make_hook(name: str) -> Callable[..., Any]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            x = args[0]
            if last["x"] is x:
                stats = last["stats"]
            else:
                stats = InputStats(weight_2d(module).shape[1], gram=gram, device=x.device)
                stats.accumulate(x)
                last["x"], last["stats"], last["cross"] = x, stats, None
            new_args = None
            perm = None
            if name in pairs:
                assert config.pattern is not None
                perm = permute_pair_(block, pairs[name], stats, config.method, config.pattern.n,
                                     config.pattern.m, config.percdamp)
                if perm is not None:
                    new_args = (x[..., perm.to(x.device)], *args[1:])
                    last["x"] = None
            cross = None
            if dense_inputs is not None and name in dense_inputs:
                if perm is None and last["cross"] is not None:
                    cross = last["cross"]
                else:
                    cross = input_cross(x if new_args is None else new_args[0], dense_inputs[name], perm)
                    last["cross"] = cross if perm is None else None
            prune_linear(module, stats, cross)
            return new_args

        return hook

    with torch.no_grad():
        run.single_pass({module: make_hook(name) for name, module in linears.items()})


def input_cross(x: torch.Tensor, dense: torch.Tensor, perm: torch.Tensor | None = None) -> torch.Tensor:
    """``X^T D`` of a layer's input here and in the dense model (same tokens), float32; ``perm``
    (the consumer's channel permutation, already applied to ``x``) is applied to ``D``."""
    x2 = x.detach().reshape(-1, x.shape[-1]).float()
    d2 = dense.reshape(-1, dense.shape[-1]).float()
    if perm is not None:
        d2 = d2[:, perm.to(d2.device)]
    return x2.T @ d2
