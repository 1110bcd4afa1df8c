"""Weight snapshots, rewinding under a mask, and random re-initialisation under a mask.

A snapshot is the model's effective state (parameters and persistent buffers, masks
applied) under its plain keys, cloned. Rewinding copies it back into the model and
multiplies masked tensors by their current mask, so surviving weights get exactly
their saved values and pruned ones stay zero.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit.errors import ModelError
from prunekit.masks import effective_state_dict, get_mask, plain_copy


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return a detached clone of the model's effective state (plain keys).

    Example:
        >>> lin = nn.Linear(2, 1)
        >>> sorted(snapshot(lin))
        ['bias', 'weight']
    """
    return {k: v.detach().clone() for k, v in effective_state_dict(model).items()}


def _target(modules: dict[str, nn.Module], key: str) -> tuple[nn.Module, str]:
    mod_name, _, tname = key.rpartition(".")
    if mod_name not in modules:
        raise ModelError(f"snapshot key '{key}' names no module of the model")
    return modules[mod_name], tname


def rewind_(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Copy ``state`` (from ``snapshot``) into ``model`` in place, keeping current masks.

    Every tensor is checked before anything is written, so a mismatched snapshot
    leaves the model unchanged. Returns the model.

    Example:
        >>> lin = nn.Linear(2, 1)
        >>> saved = snapshot(lin)
        >>> with torch.no_grad(): _ = lin.weight.add_(1.0)
        >>> torch.equal(rewind_(lin, saved).weight, saved["weight"])
        True
    """
    current = effective_state_dict(model)
    missing = sorted(set(current) - set(state))
    extra = sorted(set(state) - set(current))
    if missing or extra:
        raise ModelError(f"snapshot does not match the model: missing {missing[:5]}, unexpected {extra[:5]}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(current[key].shape):
            raise ModelError(f"snapshot '{key}' has shape {tuple(value.shape)}, model has {tuple(current[key].shape)}")
    modules = dict(model.named_modules())
    with torch.no_grad():
        for key, value in state.items():
            module, tname = _target(modules, key)
            if parametrize.is_parametrized(module, tname):
                mask = get_mask(module, tname)
                original = module.parametrizations[tname].original
                original.copy_(value if mask is None else value * mask)
            else:
                getattr(module, tname).copy_(value)
    return model


def reinit_(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every layer with its own ``reset_parameters`` from ``seed``, keeping
    the masks (the lottery ticket's random re-initialisation control). Returns the model.

    Example:
        >>> lin = nn.Linear(4, 1)
        >>> a = reinit_(lin, 0).weight.clone(); b = reinit_(lin, 0).weight.clone()
        >>> torch.equal(a, b)
        True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if not hasattr(module, "reset_parameters") or isinstance(module, parametrize.ParametrizationList):
                continue
            masked = {
                tname: get_mask(module, tname)
                for tname in (module.parametrizations.keys() if parametrize.is_parametrized(module) else ())
            }
            if masked:
                _reset_parametrized(module, masked)
            else:
                module.reset_parameters()
    return model


def _reset_parametrized(module: nn.Module, masks: dict[str, torch.Tensor | None]) -> None:
    """``reset_parameters`` on a parametrized module: run it on a plain twin, copy back
    (masked tensors receive the fresh values under their mask)."""
    twin = plain_copy(module)
    twin.reset_parameters()
    fresh = dict(twin.named_parameters(recurse=False))
    with torch.no_grad():
        for pname, p in module._parameters.items():
            if p is not None:
                p.copy_(fresh[pname])
        for tname, mask in masks.items():
            value = fresh[tname]
            module.parametrizations[tname].original.copy_(value if mask is None else value * mask)
