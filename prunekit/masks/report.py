"""Per-layer sparsity of prunable layers (effective weights, masks applied)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from torch import nn


@dataclass(frozen=True)
class LayerSparsity:
    """One row of the sparsity report."""

    name: str
    kind: str
    shape: tuple[int, ...]
    numel: int
    nonzero: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.numel if self.numel else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape), "sparsity": self.sparsity}


def sparsity_report(
    model: nn.Module, filter_fn: Callable[[str, nn.Module], bool] | None = None
) -> list[LayerSparsity]:
    """Return a row per prunable layer (Linear/Conv) with its weight's zero count.

    Example:
        >>> import torch
        >>> lin = nn.Linear(2, 2)
        >>> with torch.no_grad(): _ = lin.weight.zero_()
        >>> sparsity_report(lin)[0].sparsity
        1.0
    """
    from prunekit.masks.sparsify import prunable_layers

    rows = []
    for name, module in prunable_layers(model, filter_fn):
        w = module.weight
        rows.append(
            LayerSparsity(
                name=name or type(module).__name__,
                kind=layer_kind(module),
                shape=tuple(w.shape),
                numel=w.numel(),
                nonzero=int((w != 0).sum()),
            )
        )
    return rows


def layer_kind(module: nn.Module) -> str:
    """The module's class name, looking through torch's parametrization subclass.

    Example:
        >>> layer_kind(nn.Linear(1, 1))
        'Linear'
    """
    from torch.nn.utils import parametrize

    cls = type(module)
    if parametrize.is_parametrized(module):
        cls = cls.__bases__[0]
    return cls.__name__


def overall_sparsity(rows: list[LayerSparsity]) -> float:
    """Fraction of zeros over all rows' weights together.

    Example:
        >>> overall_sparsity([LayerSparsity("a", "Linear", (2,), 2, 1)])
        0.5
    """
    total = sum(r.numel for r in rows)
    return 1.0 - sum(r.nonzero for r in rows) / total if total else 0.0
