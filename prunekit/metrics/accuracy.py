"""Accuracy and loss of a classifier on a dataset."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, batch_size: int = 512) -> dict[str, float]:
    """Return ``{"accuracy": fraction correct, "loss": mean cross-entropy}`` on ``data``.

    The model's train/eval mode is restored afterwards.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
        >>> lin = nn.Linear(2, 2)
        >>> 0.0 <= evaluate(lin, data)["accuracy"] <= 1.0
        True
    """
    was_training = model.training
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    try:
        for x, y in DataLoader(data, batch_size=batch_size):
            logits = model(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
            total += y.numel()
    finally:
        model.train(was_training)
    return {"accuracy": correct / max(total, 1), "loss": loss_sum / max(total, 1)}
