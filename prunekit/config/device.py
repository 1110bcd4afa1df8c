"""``--device cpu|cuda|auto``: the one place a device name is checked and resolved."""

from __future__ import annotations

from typing import Any

from prunekit.config.base import check_choice
from prunekit.errors import ConfigError

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> str:
    """``"cpu"`` or ``"cuda"`` for ``"cpu" | "cuda" | "auto"`` (auto: cuda when torch sees one).

    Example:
        >>> resolve_device("cpu")
        'cpu'
        >>> resolve_device("tpu")
        Traceback (most recent call last):
        ...
        prunekit.errors.ConfigError: device must be one of ['auto', 'cpu', 'cuda'], got 'tpu'
    """
    import torch

    check_choice("device", name, DEVICES)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU; use cpu or auto")
    return name


def to_device(value: Any, device: str) -> Any:
    """Tensors moved to ``device`` inside a tensor, dict, list or tuple (other values kept).

    Example:
        >>> import torch
        >>> to_device({"ids": torch.ones(1), "n": 3}, "cpu")["n"]
        3
    """
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value
