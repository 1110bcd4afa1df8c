"""Calibration of a layer whose parts sit in parallel lists: the whole model runs per layer.

A :class:`~prunekit.llm.layers.ParallelLayer` has no forward to replay (the glue between its
parts lives in the parent's forward), so :class:`ModelRun` stands in for
:class:`~prunekit.llm.sequential.BlockRun`: ``run()`` forwards every calibration batch through
the whole model, with the current (already pruned) weights of the layers before, and stops
as the next layer starts. The hooks the caller put on the layer's linears see exactly the
inputs they get in the model. Layer ``i`` costs ``i + 1`` layers of forward per batch.

Example:
    >>> # for index, layer, run in sequential_blocks(model, batches):   # a parallel-list model
    >>> #     with collect_input_stats(find_linears(layer)) as stats:
    >>> #         run()          # model forward up to the end of layer ``index``
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunekit.errors import UnsupportedOpError
from prunekit.llm.layers import hook_layer
from prunekit.llm.precision import calibration_autocast


class _StopForward(Exception):
    """Raised as the layer after the calibrated one starts."""


class ModelRun:
    """``run()`` of a parallel-list layer (see the module doc); ``inputs`` is empty (there is
    no replayable hidden state), so the caller takes the two-pass path."""

    def __init__(self, model: nn.Module, layers: nn.ModuleList, index: int,
                 batches: list[dict[str, Any]], autocast: torch.dtype | None = None) -> None:
        from prunekit.llm.sequential import BlockInputs

        self.model = model
        self.block = layers[index]
        self.next = layers[index + 1] if index + 1 < len(layers) else None
        self.batches = batches
        self.autocast = autocast
        self.inputs = BlockInputs()
        self.outputs_ready = True

    def __call__(self, keep_outputs: bool = False) -> list[torch.Tensor] | None:
        if keep_outputs:
            raise UnsupportedOpError(f"{type(self.model).__name__}: a layer spread over parallel lists has no "
                                     "block output to reconstruct; use reconstruct='none' or 'layer'")

        def stop(*_: Any) -> None:
            raise _StopForward

        handles = hook_layer(self.next, pre=stop) if self.next is not None else []
        device = next(self.model.parameters()).device
        try:
            with torch.no_grad(), calibration_autocast(self.autocast, device):
                for batch in self.batches:
                    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                    try:
                        self.model(**batch)
                    except _StopForward:
                        pass
        finally:
            for h in handles:
                h.remove()
        return None

    def advance(self) -> None:
        """Nothing to carry: the next layer's run forwards the model again."""

    def single_pass(self, hooks: dict[nn.Module, Any]) -> None:
        raise UnsupportedOpError("a layer spread over parallel lists is calibrated in two passes only")
