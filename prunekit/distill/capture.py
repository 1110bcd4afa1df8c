"""Capture the outputs of named submodules during a forward pass; hooks always removed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from prunekit.errors import ModelError


def resolve_modules(model: nn.Module, names: list[str] | tuple[str, ...], role: str) -> dict[str, nn.Module]:
    """Map each name to its submodule, or raise a ModelError listing valid names.

    Example:
        >>> list(resolve_modules(nn.Sequential(nn.Linear(2, 2)), ["0"], "student"))
        ['0']
    """
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        if name not in modules or not name:
            valid = [n for n in modules if n and ".parametrizations." not in f".{n}."]
            raise ModelError(f"{role} has no module named {name!r}; valid names include {valid[:12]}")
        out[name] = modules[name]
    return out


@contextmanager
def capture_outputs(
    model: nn.Module, names: list[str] | tuple[str, ...], role: str = "model"
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict filled with ``name -> output`` at each forward pass of ``model``.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
        >>> with capture_outputs(net, ["0"]) as feats:
        ...     _ = net(torch.zeros(1, 2))
        >>> feats["0"].shape
        torch.Size([1, 3])
    """
    store: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name, module in resolve_modules(model, names, role).items():

            def hook(_m: nn.Module, _i: tuple, output: torch.Tensor, key: str = name) -> None:
                store[key] = output

            handles.append(module.register_forward_hook(hook))
        yield store
    finally:
        for h in handles:
            h.remove()
