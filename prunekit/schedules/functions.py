"""Pruning schedules: pure functions from the training step to the target sparsity.

Each schedule is a frozen, validated config with ``sparsity_at(step) -> float`` (the total
fraction of weights that should be pruned once ``step`` optimizer steps have run) and
``is_update_step(step)``. No state: the same step always gives the same answer, so a
schedule can be evaluated anywhere (prunekit's loop, your loop, a callback, a plot).

- ``OneShot``: jump to ``sparsity`` at ``at_step``.
- ``Iterative``: ``rounds`` pruning rounds ``steps_per_round`` apart, the same fraction
  of the remaining weights each round (geometric), fine-tuning in between.
- ``Gradual``: the polynomial schedule of Zhu & Gupta (2017), cubic by default:
  ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0)) ** power`` updated every
  ``frequency`` steps between ``start_step`` (t0) and ``end_step`` (t1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prunekit.config.base import ConfigBase, check_fraction, check_positive_int
from prunekit.errors import ConfigError


class Schedule(ConfigBase):
    """Base of schedules: ``sparsity_at(step)`` and ``is_update_step(step)``."""

    def sparsity_at(self, step: int) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def is_update_step(self, step: int) -> bool:
        """True when the target sparsity changes at ``step`` (pruning should run)."""
        return step >= 0 and self.sparsity_at(step) != self.sparsity_at(step - 1)

    @property
    def final_sparsity(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError


def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, int):
        raise ConfigError(f"step must be an integer, got {step!r}")
    return step


@dataclass(frozen=True)
class OneShot(Schedule):
    """Prune to ``sparsity`` once, at ``at_step`` (0 = before training).

    Example:
        >>> s = OneShot(sparsity=0.9, at_step=10)
        >>> s.sparsity_at(9), s.sparsity_at(10)
        (0.0, 0.9)
    """

    sparsity: float = 0.9
    at_step: int = 0

    def __post_init__(self) -> None:
        check_fraction("sparsity", self.sparsity)
        check_positive_int("at_step", self.at_step, allow_zero=True)

    @property
    def final_sparsity(self) -> float:
        return float(self.sparsity)

    def sparsity_at(self, step: int) -> float:
        return float(self.sparsity) if _check_step(step) >= self.at_step else 0.0


def round_sparsities(final_sparsity: float, rounds: int) -> list[float]:
    """Sparsity after each of ``rounds`` geometric rounds reaching ``final_sparsity``.

    Every round prunes the same fraction of the weights still present:
    ``s_r = 1 - (1 - final) ** (r / rounds)``.

    Example:
        >>> [round(s, 4) for s in round_sparsities(0.75, 2)]
        [0.5, 0.75]
    """
    check_fraction("final_sparsity", final_sparsity)
    check_positive_int("rounds", rounds)
    return [1.0 - (1.0 - final_sparsity) ** (r / rounds) for r in range(1, rounds + 1)]


@dataclass(frozen=True)
class Iterative(Schedule):
    """``rounds`` geometric pruning rounds, the first at ``start_step``, then one every
    ``steps_per_round`` steps (the fine-tuning between rounds).

    Example:
        >>> s = Iterative(final_sparsity=0.75, rounds=2, steps_per_round=100)
        >>> s.sparsity_at(0), s.sparsity_at(99), s.sparsity_at(100)
        (0.5, 0.5, 0.75)
    """

    final_sparsity: float = 0.9
    rounds: int = 3
    steps_per_round: int = 100
    start_step: int = 0

    def __post_init__(self) -> None:
        check_fraction("final_sparsity", self.final_sparsity)
        check_positive_int("rounds", self.rounds)
        check_positive_int("steps_per_round", self.steps_per_round)
        check_positive_int("start_step", self.start_step, allow_zero=True)

    def sparsity_at(self, step: int) -> float:
        if _check_step(step) < self.start_step:
            return 0.0
        done = min(self.rounds, (step - self.start_step) // self.steps_per_round + 1)
        return 1.0 - (1.0 - float(self.final_sparsity)) ** (done / self.rounds)

    @property
    def end_step(self) -> int:
        """Step of the last pruning round."""
        return self.start_step + (self.rounds - 1) * self.steps_per_round


@dataclass(frozen=True)
class Gradual(Schedule):
    """Polynomial (cubic by default) increase from ``initial_sparsity`` at ``start_step``
    to ``final_sparsity`` at ``end_step``, updated every ``frequency`` steps.

    Before ``start_step`` nothing is pruned (0.0); from ``end_step`` on the sparsity is
    ``final_sparsity``; between updates it holds the value of the last update.

    Example:
        >>> s = Gradual(start_step=0, end_step=100, frequency=10, final_sparsity=0.9)
        >>> s.sparsity_at(0), s.sparsity_at(50), s.sparsity_at(55), s.sparsity_at(100)
        (0.0, 0.7875, 0.7875, 0.9)
    """

    start_step: int = 0
    end_step: int = 1000
    frequency: int = 100
    initial_sparsity: float = 0.0
    final_sparsity: float = 0.9
    power: int = 3

    def __post_init__(self) -> None:
        check_positive_int("start_step", self.start_step, allow_zero=True)
        check_positive_int("end_step", self.end_step)
        check_positive_int("frequency", self.frequency)
        check_positive_int("power", self.power)
        check_fraction("initial_sparsity", self.initial_sparsity)
        check_fraction("final_sparsity", self.final_sparsity)
        if self.end_step <= self.start_step:
            raise ConfigError(
                f"end_step ({self.end_step}) must be after start_step ({self.start_step})"
            )
        if self.final_sparsity < self.initial_sparsity:
            raise ConfigError(
                f"final_sparsity ({self.final_sparsity}) must be >= initial_sparsity "
                f"({self.initial_sparsity})"
            )

    def sparsity_at(self, step: int) -> float:
        if _check_step(step) < self.start_step:
            return 0.0
        if step >= self.end_step:
            return float(self.final_sparsity)
        t = self.start_step + ((step - self.start_step) // self.frequency) * self.frequency
        progress = (t - self.start_step) / (self.end_step - self.start_step)
        s_i, s_f = float(self.initial_sparsity), float(self.final_sparsity)
        value = s_f + (s_i - s_f) * (1.0 - progress) ** self.power
        return float(round(value, 12)) if not math.isclose(value, s_f) else s_f


SCHEDULES: dict[str, type[Schedule]] = {"OneShot": OneShot, "Iterative": Iterative, "Gradual": Gradual}


def schedule_from_dict(data: dict) -> Schedule:
    """Build a schedule from ``{"type": "Gradual", ...}`` (e.g. read from a recipe file).

    Example:
        >>> schedule_from_dict({"type": "OneShot", "sparsity": 0.5}).sparsity_at(0)
        0.5
    """
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in SCHEDULES:
        raise ConfigError(f"schedule type must be one of {sorted(SCHEDULES)}, got {kind!r}")
    return SCHEDULES[kind].from_dict(data)
