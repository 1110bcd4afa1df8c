"""Typed configs that choose an elementwise importance score for unstructured pruning."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prunekit.config.base import ConfigBase, check_positive_int
from prunekit.errors import ConfigError
from prunekit.importance.magnitude import magnitude_scores
from prunekit.importance.random import random_scores


class Importance(ConfigBase):
    """Base of elementwise importance configs: ``scorer()`` returns ``f(weight) -> scores``."""

    def scorer(self):  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Magnitude(Importance):
    """Weight magnitude ``|w|^p``. Example: ``Magnitude(p=1)`` is L1.

    Example:
        >>> Magnitude().scorer()(torch.tensor([-3.0, 1.0]))
        tensor([3., 1.])
    """

    p: int = 1

    def __post_init__(self) -> None:
        if check_positive_int("Magnitude.p", self.p) not in (1, 2):
            raise ConfigError(f"Magnitude.p must be 1 (L1) or 2 (L2), got {self.p!r}")

    def scorer(self):
        return lambda w: magnitude_scores(w, self.p)


@dataclass(frozen=True)
class Random(Importance):
    """Uniform random scores from ``seed`` (a control for experiments).

    Example:
        >>> Random(seed=0).scorer()(torch.zeros(2)).shape
        torch.Size([2])
    """

    seed: int = 0

    def __post_init__(self) -> None:
        check_positive_int("Random.seed", self.seed, allow_zero=True)

    def scorer(self):
        gen = torch.Generator().manual_seed(self.seed)
        return lambda w: random_scores(w, gen)


IMPORTANCES: dict[str, type[Importance]] = {"Magnitude": Magnitude, "Random": Random}
