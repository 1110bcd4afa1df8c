"""The dense model's activations, walked block by block beside the pruned model's.

Sequential pruning feeds block ``i`` the outputs of the already pruned blocks ``< i``, so
each block's inputs drift from the dense model's. Reconstruction that aims at the dense
*block* on those drifted inputs keeps the drift; aiming at the dense *model's* activations
corrects it. A :class:`DenseStream` keeps the dense model's hidden states of the calibration
batches and, before a block is pruned, runs the still-dense block on them once: that gives

* ``outputs``: the dense model's output of the block (the block fit's targets), which also
  become the stream's next hidden states;
* ``inputs``: each linear layer's input in the dense model, all batches merged along the
  batch dimension (the layer fit's targets ``W0 X_dense``; see :func:`refit_target`).

Pure activations: no weights are kept, and the block is not changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunekit.llm.sequential import block_output


@dataclass
class DenseBlock:
    """One block's dense-model activations: block outputs per batch, linear inputs merged."""

    outputs: list[torch.Tensor] = field(default_factory=list)
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)


class DenseStream:
    """The dense model's hidden states of the calibration batches, advanced one block at a time.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> block = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
        >>> stream = DenseStream([torch.randn(2, 3, 4), torch.randn(1, 3, 4)])
        >>> dense = stream.step(block, [()] * 2, [{}] * 2, {"0": block[0], "2": block[2]})
        >>> dense.inputs["0"].shape, dense.inputs["2"].shape, len(dense.outputs)
        (torch.Size([3, 3, 4]), torch.Size([3, 3, 4]), 2)
        >>> torch.equal(stream.hidden[1], dense.outputs[1])
        True
    """

    def __init__(self, hidden: Sequence[torch.Tensor]) -> None:
        self.hidden = [h.detach().clone() for h in hidden]

    def step(
        self,
        block: nn.Module,
        args: Sequence[tuple[Any, ...]],
        kwargs: Sequence[dict[str, Any]],
        linears: dict[str, nn.Module] | None = None,
    ) -> DenseBlock:
        """Run the (still dense) ``block`` on the dense hidden states and advance the stream.

        Args:
            block: the block before it is pruned.
            args, kwargs: the rest of the block's call per batch (the pruned model's: the
                masks, positions and rotary tables do not depend on the weights).
            linears: the layers whose dense inputs to record (``{}`` or None: none).
        """
        linears = linears or {}
        seen: dict[str, list[torch.Tensor]] = {name: [] for name in linears}

        def make_hook(name: str) -> Any:
            def hook(_module: nn.Module, inputs: tuple[Any, ...]) -> None:
                seen[name].append(inputs[0])  # under no_grad: no graph; the same object for q/k/v

            return hook

        handles = [m.register_forward_pre_hook(make_hook(n)) for n, m in linears.items()]
        outputs: list[torch.Tensor] = []
        try:
            with torch.no_grad():
                for h, a, kw in zip(self.hidden, args, kwargs):
                    outputs.append(block_output(block(h, *a, **kw)).detach())
        finally:
            for handle in handles:
                handle.remove()
        merged: dict[str, torch.Tensor] = {}
        by_source: dict[tuple[int, ...], torch.Tensor] = {}
        for name, parts in seen.items():
            key = tuple(id(p) for p in parts)  # q/k/v (gate/up) see the very same tensors
            if key not in by_source:
                by_source[key] = torch.cat(parts, 0) if len(parts) > 1 else parts[0]
            merged[name] = by_source[key]
        self.hidden = list(outputs)
        return DenseBlock(outputs=outputs, inputs=merged)


def refit_target(
    dense: torch.Tensor, gram: torch.Tensor, cross: torch.Tensor, *, percdamp: float = 0.01
) -> torch.Tensor:
    """The dense-width weight that best maps the pruned model's inputs to the dense model's outputs.

    With ``X`` the layer's inputs in the pruned model and ``D`` its inputs in the dense
    model (same tokens, rows), ``W* = argmin ||X W^T - D W0^T||^2 + damp ||W - W0||^2``,
    ``damp = percdamp * mean(diag X^T X)``. Since ``||X W^T - D W0^T||^2 = ||X (W - W*)^T||^2
    + const``, pruning ``W*`` against the Gram matrix ``X^T X`` (SparseGPT, the layer fit)
    minimises the error against the dense model's outputs.

    Args:
        dense: ``W0``, ``[out, in]``.
        gram: ``X^T X``, ``[in, in]``.
        cross: ``X^T D``, ``[in, in]`` (same scale as ``gram``).
        percdamp: the pull towards ``W0``, relative to the mean input power.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> d = torch.randn(200, 6); w0 = torch.randn(3, 6)
        >>> x = d @ (torch.eye(6) + 0.3 * torch.randn(6, 6))  # inputs drifted by the pruned layers before
        >>> w = refit_target(w0, x.T @ x, x.T @ d, percdamp=0.0)
        >>> err = lambda v: float(((x @ v.T - d @ w0.T) ** 2).sum())
        >>> err(w) < 1e-3 * err(w0)
        True
        >>> torch.allclose(refit_target(w0, d.T @ d, d.T @ d), w0, atol=1e-5)  # no drift: W0
        True
    """
    w0 = dense.detach().double()
    h = gram.detach().double().clone()
    diag = h.diagonal()
    diag[diag == 0] = 1.0
    damp = percdamp * float(diag.mean())
    diag += damp
    rhs = cross.detach().double() @ w0.T + damp * w0.T  # X^T D W0^T + damp W0^T, [in, out]
    factor = torch.linalg.cholesky(h)
    return torch.cholesky_solve(rhs, factor).T.to(dense.dtype)
