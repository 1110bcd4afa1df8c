"""Input statistics of linear layers, gathered by forward hooks that are always removed.

An :class:`InputStats` accumulator follows init / accumulate / finalize: it sums the
per-feature squares ``sum_t x_tj^2`` (Wanda) and, when asked, the Gram matrix
``X^T X`` (SparseGPT's Hessian up to scale) over every token it sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

#: bytes of float32 input per slice of :meth:`InputStats.accumulate`'s squared norms
SLICE_BYTES = 2**19


class InputStats:
    """Running statistics of a linear layer's inputs.

    Example:
        >>> s = InputStats(3, gram=True)
        >>> s.accumulate(torch.ones(2, 5, 3))
        >>> s.tokens, s.sq_norm.tolist(), s.gram[0, 0].item()
        (10, [10.0, 10.0, 10.0], 10.0)
    """

    def __init__(self, in_features: int, *, gram: bool, device: torch.device | str = "cpu") -> None:
        self.tokens = 0
        self.sq_norm = torch.zeros(in_features, dtype=torch.float32, device=device)
        self.gram = (
            torch.zeros(in_features, in_features, dtype=torch.float32, device=device) if gram else None
        )

    def accumulate(self, x: torch.Tensor) -> None:
        """Add a batch of inputs shaped ``(..., in_features)``, in float32 whatever their dtype.

        The squared norms are summed over slices of about :data:`SLICE_BYTES` (a bf16 input
        is upcast slice by slice), which stay in cache: several times faster than squaring
        a whole calibration set's activations at once.
        """
        x = x.detach().reshape(-1, x.shape[-1])
        self.tokens += x.shape[0]
        for part in x.split(max(1, SLICE_BYTES // (4 * x.shape[-1]))):
            part = part.float()
            self.sq_norm += part.square().sum(0)
        if self.gram is not None:
            x = x.float()
            self.gram.addmm_(x.T, x)

    def hessian(self) -> torch.Tensor:
        """``2/T * X^T X`` (the layer-wise reconstruction Hessian); needs ``gram=True``."""
        if self.gram is None:
            raise RuntimeError("InputStats was created without gram=True")
        return self.gram * (2.0 / max(self.tokens, 1))


@contextmanager
def collect_input_stats(
    linears: dict[str, nn.Module], *, gram: bool
) -> Iterator[dict[str, InputStats]]:
    """Attach forward hooks that feed each linear layer's input into an :class:`InputStats`.

    The hooks are removed when the ``with`` block ends, also on error.

    Example:
        >>> lin = nn.Linear(3, 2)
        >>> with collect_input_stats({"lin": lin}, gram=False) as stats:
        ...     _ = lin(torch.ones(4, 3))
        >>> stats["lin"].tokens, len(lin._forward_hooks)
        (4, 0)
    """
    from prunekit.llm.blocks import weight_2d

    stats: dict[str, InputStats] = {}
    handles = []
    # layers fed the very same tensor (q/k/v, gate/up) share one accumulator: their
    # statistics are identical, so they are computed once. Decided on the first call.
    owner_of: dict[str, str] = {}
    last: dict[str, object] = {"tensor": None, "name": None}

    try:
        for name, module in linears.items():
            w = weight_2d(module)
            # the input width is the last dim: ``[out, in]``, or ``[experts, out, in]`` (routed experts)
            stats[name] = InputStats(w.shape[-1], gram=gram, device=w.device)

            def hook(_mod, inputs, _out, _name=name):
                x = inputs[0]
                if _name not in owner_of:
                    same = x is last["tensor"]
                    owner_of[_name] = str(last["name"]) if same else _name
                if owner_of[_name] == _name:
                    stats[_name].accumulate(x)
                    last["tensor"], last["name"] = x, _name

            handles.append(module.register_forward_hook(hook))
        yield stats
    finally:
        for handle in handles:
            handle.remove()
        last["tensor"] = None
        for name, owner in owner_of.items():
            if owner != name:
                stats[name] = stats[owner]
