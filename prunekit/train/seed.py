"""Seeding for reproducible runs (returns a generator instead of relying on global state)."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch's default generators; return a fresh seeded generator
    for data shuffling.

    Example:
        >>> g = seed_everything(0)
        >>> isinstance(g, torch.Generator)
        True
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
