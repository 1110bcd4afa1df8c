"""``DistillConfig``: temperature, mixing weight and optional hidden-feature pairs."""

from __future__ import annotations

from dataclasses import dataclass

from prunekit.config.base import ConfigBase, check_fraction
from prunekit.errors import ConfigError


@dataclass(frozen=True)
class DistillConfig(ConfigBase):
    """How the student learns from the teacher.

    Attributes:
        temperature: softmax temperature of the soft targets (> 0).
        alpha: weight of the soft-target loss; ``1 - alpha`` weighs the task loss.
        features: pairs ``(student_module, teacher_module)`` whose outputs are matched
            with an MSE loss (a learned 1x1 projection bridges different channel counts).
        feature_weight: weight of the summed feature losses.

    Example:
        >>> DistillConfig(features=[["features.2", "features.2"]]).features
        (('features.2', 'features.2'),)
    """

    temperature: float = 4.0
    alpha: float = 0.9
    features: tuple[tuple[str, str], ...] = ()
    feature_weight: float = 1.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.temperature, bool)
            or not isinstance(self.temperature, (int, float))
            or self.temperature <= 0
        ):
            raise ConfigError(f"temperature must be a positive number, got {self.temperature!r}")
        check_fraction("alpha", self.alpha, allow_one=True)
        if (
            isinstance(self.feature_weight, bool)
            or not isinstance(self.feature_weight, (int, float))
            or self.feature_weight < 0
        ):
            raise ConfigError(f"feature_weight must be a number >= 0, got {self.feature_weight!r}")
        pairs = []
        for pair in self.features:
            if isinstance(pair, str) or len(pair) != 2 or not all(isinstance(p, str) for p in pair):
                raise ConfigError(f"features must be pairs of module names [student, teacher], got {pair!r}")
            pairs.append((pair[0], pair[1]))
        object.__setattr__(self, "features", tuple(pairs))
