"""The lottery-ticket experiment: iterative magnitude pruning (IMP) with rewinding.

``find_ticket`` trains, prunes the smallest-magnitude weights, rewinds the survivors to
their values at initialisation (``rewind_step=0``) or at iteration k (``rewind_step=k``),
and repeats until the final sparsity. The result is the *ticket*: the final mask plus
the rewound weights, which ``export_ticket`` writes to safetensors and ``load_ticket``
puts into a fresh model. ``reinit_`` (random re-initialisation under the same mask) is
the control experiment.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from prunekit.config.base import ConfigBase, check_choice, check_fraction, check_positive_int
from prunekit.errors import ConfigError
from prunekit.importance.configs import Magnitude
from prunekit.lottery.rewind import rewind_, snapshot
from prunekit.masks import SparsifyConfig, load_masked, masked_tensors, save_masked, sparsify_
from prunekit.masks.sparsify import FilterFn
from prunekit.schedules.functions import round_sparsities
from prunekit.train import TrainConfig, fit


@dataclass(frozen=True)
class LotteryConfig(ConfigBase):
    """How to search for a ticket.

    Attributes:
        final_sparsity: fraction of weights pruned in the ticket (e.g. 0.95 keeps 5%).
        rounds: number of prune-and-rewind rounds (geometric amounts), unless
            ``sparsities`` lists the sparsity after each round explicitly.
        rewind_step: 0 rewinds to initialisation; k rewinds to the weights after k
            optimizer steps of the first (dense) training.
        scope: ``"global"`` (default, as in the original paper for small nets) or ``"layer"``.

    Example:
        >>> LotteryConfig(final_sparsity=0.75, rounds=2).round_targets()
        [0.5, 0.75]
    """

    final_sparsity: float = 0.9
    rounds: int = 3
    rewind_step: int = 0
    scope: str = "global"
    sparsities: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check_fraction("final_sparsity", self.final_sparsity)
        check_positive_int("rounds", self.rounds)
        check_positive_int("rewind_step", self.rewind_step, allow_zero=True)
        check_choice("scope", self.scope, ("global", "layer"))
        if self.sparsities is not None:
            values = [check_fraction("sparsities[]", s) for s in self.sparsities]
            if any(b <= a for a, b in zip(values, values[1:])) or not values:
                raise ConfigError(f"sparsities must be a non-empty increasing list, got {list(self.sparsities)}")
            if abs(values[-1] - self.final_sparsity) > 1e-9:
                raise ConfigError(
                    f"the last of sparsities ({values[-1]}) must equal final_sparsity ({self.final_sparsity})"
                )
            object.__setattr__(self, "sparsities", tuple(values))

    def round_targets(self) -> list[float]:
        """The sparsity after each round."""
        if self.sparsities is not None:
            return list(self.sparsities)
        return round_sparsities(self.final_sparsity, self.rounds)


@dataclass
class Ticket:
    """A winning-ticket candidate: the rewind state and the masks found by IMP.

    Attributes:
        rewind_state: effective state at the rewind point (plain keys).
        masks: ``{"<module>.<tensor>": bool mask}`` of the final round.
        history: per round, ``{"sparsity": s, **metrics}`` from ``on_round`` (if given).
    """

    rewind_state: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    history: list[dict] = field(default_factory=list)


RoundCallback = Callable[[int, float, nn.Module], dict | None]


def _capture_at(step_k: int, store: dict) -> Callable[[nn.Module], Callable[[int], None]]:
    def make(model: nn.Module) -> Callable[[int], None]:
        def on_step(step: int) -> None:
            if step == step_k and "state" not in store:
                store["state"] = snapshot(model)

        return on_step

    return make


def find_ticket(
    model: nn.Module,
    train_data: Dataset,
    train_config: TrainConfig,
    config: LotteryConfig,
    on_round: RoundCallback | None = None,
    filter_fn: FilterFn | None = None,
    train_last: bool = True,
    progress: bool = False,
) -> Ticket:
    """Run iterative magnitude pruning with rewinding on ``model`` (in place).

    Round 0 trains the dense model (saving the rewind point); each later round prunes
    to the next target sparsity, rewinds the surviving weights and trains again.
    ``on_round(round_index, sparsity, model)`` runs after each round's training and may
    return metrics (e.g. test accuracy) stored in ``Ticket.history``.

    Args:
        model: a freshly initialised model (its initial weights matter).
        train_data: training set.
        train_config: the training run of every round.
        config: a ``LotteryConfig``.
        on_round: optional callback after each training.
        filter_fn: optional ``(name, module) -> bool`` choosing the pruned layers.
        train_last: train the final ticket as the last round (otherwise the model ends
            rewound, untrained, with the final mask).
        progress: progress bars.

    Returns:
        The ``Ticket``. ``model`` ends trained at the final sparsity when ``train_last``.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,)))
        >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> t = find_ticket(net, data, TrainConfig(epochs=1, batch_size=16),
        ...                 LotteryConfig(final_sparsity=0.75, rounds=2, rewind_step=2))
        >>> round(1 - sum(int(m.sum()) for m in t.masks.values()) / 160, 2)
        0.75
    """
    if not isinstance(config, LotteryConfig):
        raise ConfigError(f"config must be a LotteryConfig, got {type(config).__name__}")
    store: dict = {}
    if config.rewind_step == 0:
        store["state"] = snapshot(model)
    capture = _capture_at(config.rewind_step, store)
    history: list[dict] = []

    def run_round(index: int, sparsity: float, first: bool) -> None:
        fit(model, train_data, train_config, on_step=capture(model) if first else None,
            progress=progress, description=f"ticket round {index} ({sparsity:.0%} pruned)")
        metrics = on_round(index, sparsity, model) if on_round is not None else None
        history.append({"round": index, "sparsity": sparsity, **(metrics or {})})

    run_round(0, 0.0, first=True)
    if "state" not in store:
        raise ConfigError(
            f"rewind_step={config.rewind_step} is beyond the first training run; use a smaller rewind_step"
        )
    targets = config.round_targets()
    importance = Magnitude()
    for index, target in enumerate(targets, start=1):
        sparsify_(model, SparsifyConfig(amount=target, importance=importance, scope=config.scope), filter_fn)
        rewind_(model, store["state"])
        if index < len(targets) or train_last:
            run_round(index, target, first=False)
    masks = {qual: mask.detach().clone() for qual, _, _, mask in masked_tensors(model)}
    return Ticket(rewind_state=store["state"], masks=masks, history=history)


def apply_ticket_(model: nn.Module, ticket: Ticket) -> nn.Module:
    """Put ``ticket`` into ``model`` (same architecture): its masks, then its rewound weights.

    Example:
        >>> lin = nn.Linear(2, 1)
        >>> t = Ticket(rewind_state={"weight": torch.ones(1, 2), "bias": torch.zeros(1)},
        ...            masks={"weight": torch.tensor([[True, False]])})
        >>> apply_ticket_(lin, t).weight.tolist()
        [[1.0, 0.0]]
    """
    from prunekit.masks import apply_mask

    modules = dict(model.named_modules())
    for qual in ticket.masks:
        if qual.rpartition(".")[0] not in modules:
            raise ConfigError(f"ticket mask '{qual}' names no module of {type(model).__name__}")
    for qual, mask in ticket.masks.items():
        mod_name, _, tname = qual.rpartition(".")
        apply_mask(modules[mod_name], tname, mask)
    return rewind_(model, ticket.rewind_state)


def export_ticket(model: nn.Module, ticket: Ticket, path: str | os.PathLike[str]) -> Path:
    """Write the ticket (masks + rewound weights) to a safetensors file, atomically.

    ``model`` only provides the architecture; it is not changed. Reload with
    ``load_ticket(fresh_model, path)`` (the same as ``prunekit.masks.load_masked``).
    """
    import copy

    twin = copy.deepcopy(model)
    apply_ticket_(twin, ticket)
    return save_masked(twin, path)


def load_ticket(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a ticket written by ``export_ticket`` into ``model``; returns it."""
    return load_masked(model, path)
