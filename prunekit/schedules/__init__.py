"""When to prune: schedules as pure functions of the step, and a pruner to apply them.

- ``OneShot``, ``Iterative``, ``Gradual``: frozen configs with ``sparsity_at(step)``.
- ``SchedulePruner(model, schedule).step()``: use from any training loop.
- ``LightningPruningCallback`` / ``HFPruningCallback`` (``prunekit.schedules.callbacks``):
  the same pruner inside PyTorch Lightning or the Hugging Face ``Trainer``.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> pruner = SchedulePruner(net, Gradual(start_step=0, end_step=10, frequency=2, final_sparsity=0.8))
    >>> for _ in range(10):
    ...     _ = pruner.step()
    >>> round(pruner.sparsity, 2)
    0.8
"""

from prunekit.schedules.functions import (
    SCHEDULES,
    Gradual,
    Iterative,
    OneShot,
    Schedule,
    round_sparsities,
    schedule_from_dict,
)
from prunekit.schedules.pruner import PruneEvent, SchedulePruner

__all__ = [
    "Schedule",
    "OneShot",
    "Iterative",
    "Gradual",
    "SCHEDULES",
    "round_sparsities",
    "schedule_from_dict",
    "SchedulePruner",
    "PruneEvent",
]
