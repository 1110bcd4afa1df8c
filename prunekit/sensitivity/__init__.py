"""Sensitivity analysis: per-layer metric-vs-sparsity curves, a PNG plot, and an
allocation of per-layer sparsities meeting a global target.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> x = torch.randn(32, 4); ref = net(x).detach()
    >>> score = lambda m: -float((m(x) - ref).pow(2).mean().detach())
    >>> curves = sensitivity_curves(net, score, sparsities=(0.5, 0.9), progress=False)
    >>> alloc = allocate_sparsities(curves, 0.6)
    >>> round(sum(alloc[n] * curves.sizes[n] for n in alloc) / sum(curves.sizes.values()), 3)
    0.6
"""

from prunekit.sensitivity.allocation import allocate_sparsities
from prunekit.sensitivity.apply import apply_layer_sparsities_, expand_groups
from prunekit.sensitivity.curves import SensitivityCurves, sensitivity_curves
from prunekit.sensitivity.plot import plot_sensitivity

__all__ = [
    "SensitivityCurves",
    "sensitivity_curves",
    "allocate_sparsities",
    "apply_layer_sparsities_",
    "expand_groups",
    "plot_sensitivity",
]
