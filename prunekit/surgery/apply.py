"""Physically slice tensors and restore them: the only place that mutates the model.

``apply_keep(model, keep)`` slices every named parameter/buffer along the given dims
(``keep[name] = {dim: kept indices}``), runs the surgery rules' ``sync`` and returns a
``Snapshot`` whose ``restore()`` puts every original tensor object and attribute back,
so a failure at any later point leaves the model exactly as it was.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from prunekit.surgery.hook_weights import refresh_hook_weights
from prunekit.surgery.registry import sync_modules


@dataclass
class Snapshot:
    """Original tensors and attributes of every module touched by a surgery."""

    tensors: list[tuple[dict, str, object]] = field(default_factory=list)
    attrs: list[tuple[nn.Module, dict]] = field(default_factory=list)

    def restore(self) -> None:
        for store, key, value in reversed(self.tensors):
            store[key] = value
        for module, saved in reversed(self.attrs):
            for k, v in saved.items():
                module.__dict__[k] = v


def _owners(model: nn.Module) -> dict[int, list[tuple[nn.Module, dict, str]]]:
    owners: dict[int, list] = {}
    for module in model.modules():
        for store in (module._parameters, module._buffers):
            for key, t in store.items():
                if t is not None:
                    owners.setdefault(id(t), []).append((module, store, key))
    return owners


def _plain_attrs(module: nn.Module) -> dict:
    return {
        k: copy.copy(v)
        for k, v in module.__dict__.items()
        if not k.startswith("_") and not isinstance(v, (nn.Module, torch.Tensor))
    }


def apply_keep(model: nn.Module, keep: dict[str, dict[int, torch.Tensor]]) -> Snapshot:
    """Slice tensors to the kept indices; return a snapshot to undo it.

    Example:
        >>> m = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
        >>> snap = apply_keep(m, {"0.weight": {0: torch.tensor([0, 2])},
        ...                       "0.bias": {0: torch.tensor([0, 2])},
        ...                       "1.weight": {1: torch.tensor([0, 2])}})
        >>> m(torch.zeros(1, 4)).shape, m[0].out_features
        (torch.Size([1, 2]), 2)
        >>> snap.restore(); m[0].weight.shape
        torch.Size([3, 4])
    """
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(dict(model.named_buffers(remove_duplicate=False)))
    owners = _owners(model)
    snap = Snapshot()
    touched_modules: dict[int, nn.Module] = {}
    try:
        for name in keep:
            if name not in named:
                raise KeyError(f"no parameter or buffer named '{name}'")
        for module in model.modules():
            touched_modules[id(module)] = module
        for module in touched_modules.values():
            snap.attrs.append((module, _plain_attrs(module)))
        for name, dims in keep.items():
            old = named[name]
            new = old.detach()
            for dim, idx in sorted(dims.items()):
                new = new.index_select(dim, idx.to(new.device))
            new = new.contiguous()
            if isinstance(old, nn.Parameter):
                new = nn.Parameter(new, requires_grad=old.requires_grad)
            for _module, store, key in owners.get(id(old), []):
                snap.tensors.append((store, key, store[key]))
                store[key] = new
        refresh_hook_weights(model)  # legacy weight_norm: its weight before the syncs read it
        sync_modules(model, set(keep))
        _drop_cached_tensors(model)
    except BaseException:
        snap.restore()
        raise
    return snap


def _drop_cached_tensors(model: nn.Module) -> None:
    """Modules that cache tensors computed from their parameters in eval mode (timm's
    attention-bias caches of TinyViT / LeViT) drop them in their ``train()`` override:
    call those again with each module's own mode (the snapshot keeps the old caches)."""
    modes = {id(m): (m, m.training) for m in model.modules()}
    for m, mode in modes.values():
        if type(m).train is not nn.Module.train:
            m.train(mode)
    for m, mode in modes.values():
        m.training = mode
