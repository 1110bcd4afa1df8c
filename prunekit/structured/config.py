"""Configuration of structured pruning (frozen, validated)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prunekit.config.base import ConfigBase, check_choice, check_fraction, check_positive_int
from prunekit.errors import ConfigError
from prunekit.importance.group import AGGREGATIONS

IMPORTANCES = ("l1", "l2", "bn_scale", "taylor", "hessian", "fpgm", "random", "activation")
ALLOCATIONS = ("uniform", "global", "latency")


@dataclass(frozen=True)
class StructuredConfig(ConfigBase):
    """How many channels/neurons/head dims to remove, and which.

    Args:
        ratio: fraction of units removed from every group (uniform) or overall (global).
            Ignored when a target is set (the ratio is then searched).
        importance: one of ``IMPORTANCES`` (taylor / hessian need calibration data and a
            loss; "activation", Wanda's ``||W[:, j]|| * ||X_j||`` summed over the columns
            reading a unit, needs calibration data: ``prunekit.structured.activation``).
        aggregation: how per-tensor scores of a group combine: sum, mean or max.
        allocation: "uniform" (same ratio per group), "global" (rank all units, scores
            normalised per group) or "latency" (each group's ratio proportional to its
            measured milliseconds per MAC on this device at ``latency_batch``: layers
            that run slowly for their MACs, e.g. high-resolution, memory-bound ones, lose
            more, so the result is faster at the same MACs).
        max_ratio: at most this fraction of any group is removed.
        round_to: kept units per group rounded to a multiple of this (e.g. 8).
        ignored_layers: module names, module types, or predicates ``f(name, module)``;
            groups touching an ignored module are left alone. A name that does not exist
            is an error.
        target_macs / target_params: keep this fraction of the dense MACs / params.
        target_latency: keep this fraction of the measured dense latency (on the current
            device, at ``latency_batch``).
        latency_batch: batch size of the latency target.
        latency_runs: timed runs per measurement of the latency search (median).
        latency_power: latency allocation ratios follow (ms per MAC) ** latency_power.
        max_iterations: search steps for a target.
        seed: for the random importance.

    Example:
        >>> StructuredConfig(ratio=0.5, round_to=8).to_dict()["round_to"]
        8
    """

    ratio: float = 0.5
    importance: str = "l2"
    aggregation: str = "sum"
    allocation: str = "uniform"
    max_ratio: float = 0.9
    round_to: int | None = None
    ignored_layers: tuple[Any, ...] = ()
    target_macs: float | None = None
    target_params: float | None = None
    target_latency: float | None = None
    latency_batch: int = 1
    latency_runs: int = 10
    latency_power: float = 1.0
    max_iterations: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        check_fraction("ratio", self.ratio)
        check_choice("importance", self.importance, IMPORTANCES)
        check_choice("aggregation", self.aggregation, AGGREGATIONS)
        check_choice("allocation", self.allocation, ALLOCATIONS)
        check_fraction("max_ratio", self.max_ratio)
        if self.round_to is not None:
            check_positive_int("round_to", self.round_to)
        for name in ("target_macs", "target_params", "target_latency"):
            value = getattr(self, name)
            if value is not None:
                v = check_fraction(name, value, allow_one=True)
                if v <= 0:
                    raise ConfigError(f"{name} must be in (0, 1], got {value!r}")
        if sum(getattr(self, n) is not None for n in ("target_macs", "target_params",
                                                        "target_latency")) > 1:
            raise ConfigError("set at most one of target_macs, target_params, target_latency")
        check_positive_int("latency_batch", self.latency_batch)
        check_positive_int("latency_runs", self.latency_runs)
        if not isinstance(self.latency_power, (int, float)) or not 0 < self.latency_power <= 4:
            raise ConfigError(f"latency_power must be a number in (0, 4], got "
                              f"{self.latency_power!r}")
        check_positive_int("max_iterations", self.max_iterations)
        if not isinstance(self.ignored_layers, tuple):
            object.__setattr__(self, "ignored_layers", tuple(self.ignored_layers))

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["ignored_layers"] = [
            x if isinstance(x, str) else getattr(x, "__name__", repr(x)) for x in self.ignored_layers
        ]
        return d
