"""Base class for prunekit's frozen config dataclasses.

Subclasses are ``@dataclass(frozen=True)`` and validate in ``__post_init__``.
``from_dict`` rejects unknown keys and lists the valid ones; ``to_dict`` gives plain
JSON/YAML-serialisable data (nested configs carry a ``"type"`` key).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, ClassVar, TypeVar

from prunekit.errors import ConfigError

T = TypeVar("T", bound="ConfigBase")


class ConfigBase:
    """Mixin for frozen dataclasses: dict round trip with strict key checking.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Demo(ConfigBase):
        ...     amount: float = 0.5
        >>> Demo.from_dict({"amount": 0.25}).to_dict()
        {'amount': 0.25}
    """

    #: nested config classes this one may hold, by their "type" name
    registry: ClassVar[dict[str, type]] = {}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = _to_plain(value)
        return out

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names) - {"type"})
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown key(s) {unknown}; valid keys are {sorted(names)}"
            )
        return cls(**{k: v for k, v in data.items() if k != "type"})


def _to_plain(value: Any) -> Any:
    if isinstance(value, ConfigBase):
        d = value.to_dict()
        return {"type": type(value).__name__, **d}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def check_fraction(name: str, value: Any, *, allow_one: bool = False) -> float:
    """Validate a fraction in [0, 1) (or [0, 1] with ``allow_one``); return it as float.

    Example:
        >>> check_fraction("sparsity", 0.5)
        0.5
    """
    hi = "1]" if allow_one else "1)"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number in [0, {hi}, got {value!r}")
    v = float(value)
    if math.isnan(v) or v < 0 or v > 1 or (v == 1 and not allow_one):
        raise ConfigError(f"{name} must be a number in [0, {hi}, got {value!r}")
    return v


def check_positive_int(name: str, value: Any, *, allow_zero: bool = False) -> int:
    """Validate a positive (or non-negative) integer and return it.

    Example:
        >>> check_positive_int("epochs", 3)
        3
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or value < (0 if allow_zero else 1):
        kind = "a non-negative" if allow_zero else "a positive"
        raise ConfigError(f"{name} must be {kind} integer, got {value!r}")
    return int(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> str:
    """Validate that ``value`` is one of ``choices`` and return it.

    Example:
        >>> check_choice("scope", "global", ("global", "layer"))
        'global'
    """
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value
