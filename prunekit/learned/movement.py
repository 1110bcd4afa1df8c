"""Movement pruning (Sanh et al. 2020): learn which weights to keep while fine-tuning.

Every pruned layer gets a score per weight. The forward pass uses
``W' = W * TopK(S)`` (the top ``1 - sparsity`` fraction of scores in the layer), and the
scores receive the straight-through gradient ``dL/dS = dL/dW' * W``: weights moving away
from zero gain score, weights moving towards zero lose it. The sparsity follows a
schedule (usually ``Gradual``); ``finalize()`` turns the learned top-k into ordinary
prunekit masks.

The scores live in a parametrization on ``weight`` (``module.parametrizations.weight[0].scores``),
so create ``MovementPruning`` before the optimizer, which must include them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit.config.base import ConfigBase, check_choice
from prunekit.errors import ConfigError, ModelError
from prunekit.masks import apply_mask, is_masked
from prunekit.masks.sparsify import FilterFn, prunable_layers
from prunekit.patterns.unstructured import keep_mask
from prunekit.schedules.functions import Schedule


class TopKStraightThrough(torch.autograd.Function):
    """Forward: float mask keeping the ``n_keep`` highest scores. Backward: identity."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, n_keep: int) -> torch.Tensor:  # type: ignore[override]
        return keep_mask(scores.detach(), scores.numel() - n_keep).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad, None


def topk_ste(scores: torch.Tensor, keep_fraction: float) -> torch.Tensor:
    """Binary mask of the top ``keep_fraction`` scores with a straight-through gradient.

    Example:
        >>> s = torch.tensor([0.3, 0.1, 0.2, 0.4], requires_grad=True)
        >>> m = topk_ste(s, 0.5); m.tolist()
        [1.0, 0.0, 0.0, 1.0]
        >>> (m * torch.tensor([1., 2., 3., 4.])).sum().backward(); s.grad.tolist()
        [1.0, 2.0, 3.0, 4.0]
    """
    n_keep = int(round(keep_fraction * scores.numel()))
    return TopKStraightThrough.apply(scores, n_keep)


class MovementScores(nn.Module):
    """Parametrization ``w -> w * topk_ste(scores, keep_fraction)``."""

    def __init__(self, weight: torch.Tensor, init: str) -> None:
        super().__init__()
        start = weight.detach().abs().clone() if init == "magnitude" else torch.zeros_like(weight)
        self.scores = nn.Parameter(start)
        self.keep_fraction = 1.0

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.keep_fraction >= 1.0:
            return w + 0.0 * self.scores
        return w * topk_ste(self.scores, self.keep_fraction)


@dataclass(frozen=True)
class MovementConfig(ConfigBase):
    """Movement pruning settings.

    Attributes:
        score_init: ``"magnitude"`` (scores start at ``|w|``, so the first mask is the
            magnitude mask) or ``"zeros"`` (ties broken by position until scores move).

    Example:
        >>> MovementConfig().score_init
        'magnitude'
    """

    score_init: str = "magnitude"

    def __post_init__(self) -> None:
        check_choice("score_init", self.score_init, ("magnitude", "zeros"))


class MovementPruning:
    """Attach movement scores to the prunable layers and follow ``schedule``.

    Call ``step()`` after every optimizer step (or pass it as ``fit(..., on_step=...)``);
    call ``finalize()`` at the end to replace the scores by fixed prunekit masks.

    Example:
        >>> import torch.nn.functional as F
        >>> from prunekit.schedules import OneShot
        >>> net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> mp = MovementPruning(net, OneShot(sparsity=0.5))
        >>> opt = torch.optim.Adam(net.parameters(), lr=0.01)
        >>> opt.zero_grad(); F.cross_entropy(net(torch.randn(4, 8)), torch.zeros(4, dtype=torch.long)).backward()
        >>> opt.step(); _ = mp.step()
        >>> mp.finalize(); float((net[0].weight == 0).float().mean())
        0.5
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: Schedule,
        config: MovementConfig | None = None,
        filter_fn: FilterFn | None = None,
    ) -> None:
        config = config or MovementConfig()
        if not isinstance(schedule, Schedule):
            raise ConfigError(f"schedule must be OneShot, Iterative or Gradual, got {type(schedule).__name__}")
        self.model, self.schedule, self.config = model, schedule, config
        self.layers = prunable_layers(model, filter_fn)
        if not self.layers:
            raise ModelError(f"nothing to prune in {type(model).__name__}: it has no Linear/Conv layer")
        for name, module in self.layers:
            if parametrize.is_parametrized(module, "weight") or is_masked(module):
                raise ModelError(
                    f"layer '{name}' already has a parametrization on weight; movement pruning needs a "
                    "dense layer (call make_permanent first)"
                )
        self.params: list[MovementScores] = []
        for _, module in self.layers:
            p = MovementScores(module.weight, config.score_init)
            parametrize.register_parametrization(module, "weight", p)
            self.params.append(p)
        self.current_step = 0
        self._set(schedule.sparsity_at(0))

    def _set(self, sparsity: float) -> None:
        for p in self.params:
            p.keep_fraction = 1.0 - sparsity

    def score_parameters(self) -> list[nn.Parameter]:
        """The score tensors (e.g. to give them their own learning rate)."""
        return [p.scores for p in self.params]

    def step(self, step: int | None = None) -> float:
        """Advance one step (or jump to ``step``); set the scheduled sparsity; return it."""
        self.current_step = self.current_step + 1 if step is None else int(step)
        sparsity = self.schedule.sparsity_at(self.current_step)
        self._set(sparsity)
        return sparsity

    __call__ = step

    @torch.no_grad()
    def finalize(self) -> None:
        """Replace the scores by fixed prunekit masks (the current top-k), in place."""
        for (_, module), p in zip(self.layers, self.params):
            n_keep = int(round(p.keep_fraction * p.scores.numel()))
            mask = keep_mask(p.scores.detach(), p.scores.numel() - n_keep)
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
            apply_mask(module, "weight", mask)
        self.params.clear()
