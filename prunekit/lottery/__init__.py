"""Lottery tickets: iterative magnitude pruning with rewinding, the re-init control, export.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from prunekit.train import TrainConfig
    >>> data = TensorDataset(torch.randn(64, 8), torch.randint(0, 2, (64,)))
    >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    >>> ticket = find_ticket(net, data, TrainConfig(epochs=1, batch_size=16),
    ...                      LotteryConfig(final_sparsity=0.5, rounds=1), train_last=False)
    >>> len(ticket.masks)
    2
"""

from prunekit.lottery.rewind import reinit_, rewind_, snapshot
from prunekit.lottery.ticket import (
    LotteryConfig,
    Ticket,
    apply_ticket_,
    export_ticket,
    find_ticket,
    load_ticket,
)

__all__ = [
    "snapshot",
    "rewind_",
    "reinit_",
    "LotteryConfig",
    "Ticket",
    "find_ticket",
    "apply_ticket_",
    "export_ticket",
    "load_ticket",
]
