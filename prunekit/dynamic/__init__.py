"""Dynamic sparsity: prune and regrow at constant sparsity (RigL, SET).

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    >>> dyn = DynamicSparsity(net, DynamicConfig(sparsity=0.75, method="set", update_every=5))
    >>> round(dyn.sparsity, 2)
    0.75
"""

from prunekit.dynamic.distribution import layer_densities
from prunekit.dynamic.sparse_training import DynamicConfig, DynamicSparsity
from prunekit.dynamic.update import cosine_update_fraction, drop_and_grow, random_masks

__all__ = [
    "DynamicConfig",
    "DynamicSparsity",
    "layer_densities",
    "cosine_update_fraction",
    "drop_and_grow",
    "random_masks",
]
