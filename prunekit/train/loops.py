"""``fit`` and ``evaluate``: plain supervised loops that any pruning method plugs into.

``fit`` takes an optional ``loss_fn(model, x, y) -> loss`` (e.g. distillation) and an
``on_step(step)`` callback run after every optimizer step (e.g. a pruning schedule).
Masks from ``prunekit.masks`` hold through it with any optimizer.

Under ``torchrun`` (a process group initialised by the caller), ``fit`` trains with
DistributedDataParallel (``TrainConfig(strategy="ddp")``) or with the parameters, gradients
and optimiser state sharded by FSDP2 (``strategy="fsdp"``): each process sees its shard of
the data, gradients are averaged, and every process ends with the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from prunekit.config.base import ConfigBase, check_choice, check_positive_int
from prunekit.errors import ConfigError
from prunekit.metrics.accuracy import evaluate  # noqa: F401  (re-exported: train.evaluate)
from prunekit.report.progress import progress_bar
from prunekit.train.distributed import STRATEGIES, copy_back, sharded_copy

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig(ConfigBase):
    """Hyper-parameters of a training run.

    Example:
        >>> TrainConfig(epochs=2, lr=1e-3).optimizer
        'adamw'
    """

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    momentum: float = 0.9
    cosine: bool = True
    seed: int = 0
    strategy: str = "ddp"

    def __post_init__(self) -> None:
        check_positive_int("epochs", self.epochs, allow_zero=True)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("seed", self.seed, allow_zero=True)
        check_choice("optimizer", self.optimizer, ("adamw", "adam", "sgd"))
        check_choice("strategy", self.strategy, STRATEGIES)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Build the optimizer named in ``config`` over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The default task loss."""
    return F.cross_entropy(model(x), y)


def fit(
    model: nn.Module,
    train_data: Dataset,
    config: TrainConfig,
    loss_fn: LossFn | None = None,
    on_step: Callable[[int], None] | None = None,
    progress: bool = True,
    description: str = "train",
) -> list[float]:
    """Train ``model`` in place; return the mean loss of each epoch.

    Args:
        model: the model (left in train mode).
        train_data: a map-style dataset of ``(x, y)``.
        config: a ``TrainConfig``.
        loss_fn: ``(model, x, y) -> scalar loss``; cross-entropy by default.
        on_step: called with the global step number after each optimizer step.
        progress: show a progress bar.
        description: label of the progress bar.

    Under ``torchrun`` with an initialised process group the model is wrapped in
    DistributedDataParallel for the run (``loss_fn`` receives the wrapped model) and the
    data is sharded with a DistributedSampler; the bar shows on rank 0 only. With
    ``config.strategy == "fsdp"`` an FSDP2-sharded copy trains (``loss_fn`` receives it)
    and its weights are gathered back into ``model`` at the end; ``on_step`` then sees
    the step number only (masks changed on ``model`` meanwhile do not reach the copy).

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
        >>> losses = fit(nn.Linear(4, 2), data, TrainConfig(epochs=2), progress=False)
        >>> len(losses)
        2
    """
    loss_fn = loss_fn or cross_entropy_loss
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    sampler = None
    if distributed:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(train_data, shuffle=True, seed=config.seed)
        loader = DataLoader(train_data, batch_size=config.batch_size, sampler=sampler)
        if config.strategy == "fsdp":
            trained: nn.Module = sharded_copy(model)
        else:
            trained = torch.nn.parallel.DistributedDataParallel(model)
        progress = progress and torch.distributed.get_rank() == 0
    else:
        gen = torch.Generator().manual_seed(config.seed)
        loader = DataLoader(train_data, batch_size=config.batch_size, shuffle=True, generator=gen)
        trained = model
    optimizer = make_optimizer(trained, config)
    total_steps = max(1, config.epochs * len(loader))
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps) if config.cosine else None
    )
    trained.train()
    step = 0
    epoch_losses: list[float] = []
    with progress_bar(total_steps, description, enabled=progress) as advance:
        for epoch in range(config.epochs):
            if sampler is not None:
                sampler.set_epoch(epoch)
            running, batches = 0.0, 0
            for x, y in loader:
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(trained, x, y)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                step += 1
                if on_step is not None:
                    on_step(step)
                running += float(loss.detach())
                batches += 1
                advance(1)
            epoch_losses.append(running / max(batches, 1))
    if trained is not model and not isinstance(trained, torch.nn.parallel.DistributedDataParallel):
        copy_back(trained, model)  # FSDP trained a sharded copy: gather it into the model
        model.train()
    return epoch_losses
