"""Training windows for recovery: a fixed, seeded order, so a resumed run sees the same data.

Step ``s`` uses global windows ``s * batch_size ... (s + 1) * batch_size - 1`` of an endless
stream: the text's non-overlapping windows in a seeded permutation, a new permutation each
pass. Process ``r`` of ``w`` takes its contiguous share of that global batch.

Example:
    >>> stream = WindowStream(torch.arange(100), seqlen=10, seed=0)
    >>> stream.batch(0, batch_size=4).shape
    torch.Size([4, 10])
    >>> bool((stream.batch(3, 4, rank=1, world=2) == stream.batch(3, 4)[2:]).all())
    True
"""

from __future__ import annotations

import torch

from prunekit.config.base import check_positive_int
from prunekit.errors import ConfigError, DatasetError


class WindowStream:
    """An endless, seeded sequence of ``seqlen``-token windows cut from one token stream."""

    def __init__(self, token_ids: torch.Tensor, seqlen: int, seed: int = 0) -> None:
        check_positive_int("seqlen", seqlen)
        ids = token_ids.reshape(-1).long()
        count = ids.numel() // seqlen
        if count < 1:
            raise DatasetError(
                f"recovery text has {ids.numel()} tokens, fewer than one window of {seqlen}; "
                "give a longer --recover-text or a smaller seqlen"
            )
        self.windows = ids[: count * seqlen].reshape(count, seqlen)
        self.seed = seed
        self._orders: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.windows.shape[0]

    def _order(self, epoch: int) -> torch.Tensor:
        if epoch not in self._orders:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._orders = {epoch: torch.randperm(len(self), generator=gen)}
        return self._orders[epoch]

    def window(self, index: int) -> torch.Tensor:
        """The ``index``-th window of the endless stream."""
        epoch, pos = divmod(index, len(self))
        return self.windows[self._order(epoch)[pos]]

    def batch(self, step: int, batch_size: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        """``(batch_size // world, seqlen)`` windows of step ``step`` for process ``rank``."""
        if batch_size % world:
            raise ConfigError(
                f"batch_size ({batch_size}) must be a multiple of the number of processes ({world})"
            )
        share = batch_size // world
        first = step * batch_size + rank * share
        return torch.stack([self.window(first + i) for i in range(share)])
