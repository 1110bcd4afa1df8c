"""``SchedulePruner``: the small object that applies a schedule from any training loop.

Call ``pruner.step()`` once after every optimizer step (your own loop, a callback, or
``fit(..., on_step=pruner)``). When the schedule's target sparsity rises, the pruner
calls ``sparsify_`` with the new total amount, so masks grow monotonically and hold
through training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from prunekit.config.base import check_choice
from prunekit.errors import ConfigError
from prunekit.importance.configs import Importance, Magnitude
from prunekit.masks import SparsifyConfig, sparsify_
from prunekit.masks.report import overall_sparsity, sparsity_report
from prunekit.masks.sparsify import FilterFn
from prunekit.schedules.functions import Schedule


@dataclass
class PruneEvent:
    """One pruning action: at which step, to which target, and the sparsity reached."""

    step: int
    target: float
    achieved: float


@dataclass
class SchedulePruner:
    """Prune ``model`` following ``schedule``; call ``step()`` after each optimizer step.

    Args:
        model: the model to mask in place.
        schedule: a ``OneShot``, ``Iterative`` or ``Gradual`` schedule.
        importance: how weights are ranked (``Magnitude()`` by default).
        scope: ``"global"`` or ``"layer"``.
        filter_fn: optional ``(name, module) -> bool`` choosing the layers.

    Attributes:
        current_step: optimizer steps seen so far.
        events: every pruning action taken (step, target, achieved sparsity).

    Example:
        >>> from prunekit.schedules import Iterative
        >>> net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> pruner = SchedulePruner(net, Iterative(final_sparsity=0.75, rounds=2, steps_per_round=3))
        >>> pruner.prune_now()  # the schedule's value at step 0
        0.5
        >>> for _ in range(3):
        ...     _ = pruner.step()
        >>> round(pruner.sparsity, 2)
        0.75
    """

    model: nn.Module
    schedule: Schedule
    importance: Importance = field(default_factory=Magnitude)
    scope: str = "global"
    filter_fn: FilterFn | None = None
    current_step: int = 0
    events: list[PruneEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, Schedule):
            raise ConfigError(
                f"schedule must be OneShot, Iterative or Gradual, got {type(self.schedule).__name__}"
            )
        check_choice("scope", self.scope, ("global", "layer"))
        self._applied = 0.0

    @property
    def sparsity(self) -> float:
        """Fraction of zero weights over the pruned layers, measured now."""
        return overall_sparsity(sparsity_report(self.model, self.filter_fn))

    def prune_now(self) -> float:
        """Apply the schedule's target for ``current_step`` if it is above what is applied;
        return the target."""
        target = self.schedule.sparsity_at(self.current_step)
        if target > self._applied + 1e-12:
            rows = sparsify_(
                self.model,
                SparsifyConfig(amount=target, importance=self.importance, scope=self.scope),
                self.filter_fn,
            )
            self._applied = target
            self.events.append(PruneEvent(self.current_step, target, overall_sparsity(rows)))
        return target

    def step(self, step: int | None = None) -> float:
        """Advance one optimizer step (or jump to ``step``) and prune if the schedule says so.

        Returns the schedule's target sparsity at the new step. Passing ``step`` lets the
        pruner be used directly as ``fit(..., on_step=pruner.step)``.
        """
        self.current_step = self.current_step + 1 if step is None else int(step)
        return self.prune_now()

    __call__ = step
