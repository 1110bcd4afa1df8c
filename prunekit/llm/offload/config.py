"""The frozen, validated settings of an out-of-core run: memory budget, device, spilling."""

from __future__ import annotations

import re
from dataclasses import dataclass

from prunekit.config.base import ConfigBase, check_choice
from prunekit.config.device import DEVICES, resolve_device
from prunekit.errors import ConfigError

__all__ = ["SPILL", "DEVICES", "OutOfCoreConfig", "parse_memory", "resolve_device"]

SPILL: tuple[str, ...] = ("auto", "memory", "disk")
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_memory(text: str | int) -> int:
    """Bytes in a size such as ``"2GB"``, ``"512MiB"``, ``"1.5 GB"`` or a plain integer.

    GB/MB/KB are powers of ten, GiB/MiB/KiB powers of two.

    Example:
        >>> parse_memory("2GB"), parse_memory("1.5GiB"), parse_memory(4096)
        (2000000000, 1610612736, 4096)
    """
    if isinstance(text, bool):
        raise ConfigError(f"max_memory must be a size such as '2GB', got {text!r}")
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
        unit = match.group(2).upper() if match else None
        if match is None or unit not in _UNITS:
            raise ConfigError(f"max_memory must be a size such as '2GB', '1500MB' or '4GiB', got {text!r}")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ConfigError(f"max_memory must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class OutOfCoreConfig(ConfigBase):
    """How an out-of-core run may use memory.

    Attributes:
        max_memory: process memory budget in bytes (or a size string such as ``"2GB"``).
            One decoder block, its statistics and the embeddings must fit; the calibration
            activations stay in memory when they fit beside them, else they spill to disk.
        device: where each block is calibrated and pruned: ``cpu``, ``cuda`` or ``auto``.
        spill: ``auto`` (decide from the budget), ``memory`` or ``disk`` (always spill).
        scratch_dir: folder for spilled activations (default: a temporary folder beside the output).

    Example:
        >>> OutOfCoreConfig(max_memory="2GB").max_memory
        2000000000
    """

    max_memory: int | str = "2GB"
    device: str = "cpu"
    spill: str = "auto"
    scratch_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_memory", parse_memory(self.max_memory))
        check_choice("device", self.device, DEVICES)
        check_choice("spill", self.spill, SPILL)
        if self.scratch_dir is not None and not isinstance(self.scratch_dir, str):
            raise ConfigError(f"scratch_dir must be a folder path or None, got {self.scratch_dir!r}")
