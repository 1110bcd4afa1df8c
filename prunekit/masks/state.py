"""Save and reload a masked model's state as safetensors (masks included, no pickle).

File layout: the effective state under the model's plain keys (as after
``make_permanent``), plus one bool tensor ``__mask__.<module>.<tensor>`` per mask.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit.errors import ModelError
from prunekit.io.tensors import load_tensors, save_tensors
from prunekit.masks.parametrize import apply_mask, effective_state_dict, masked_tensors

MASK_PREFIX = "__mask__."


def save_masked(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write the model's effective state and its masks to one safetensors file.

    Example:
        >>> import tempfile
        >>> lin = nn.Linear(2, 1)
        >>> apply_mask(lin, "weight", torch.tensor([[True, False]]))
        >>> p = save_masked(lin, tempfile.mkdtemp() + "/m.safetensors")
        >>> p.suffix
        '.safetensors'
    """
    tensors = dict(effective_state_dict(model))
    for qual, _, _, mask in masked_tensors(model):
        tensors[MASK_PREFIX + qual] = mask
    return save_tensors(tensors, path, metadata={"format": "prunekit.masked", "version": "1"})


def check_state_matches(model: nn.Module, state: dict[str, torch.Tensor], source: object) -> None:
    """Raise ``ModelError`` unless ``state`` has exactly the model's effective keys and shapes.

    ``source`` (a path or name) is quoted in the message. Nothing is changed.
    """
    expected = effective_state_dict(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelError(
            f"{source}: does not match {type(model).__name__}: missing keys {missing[:5]}, "
            f"unexpected keys {unexpected[:5]}"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ModelError(
                f"{source}: '{key}' has shape {tuple(value.shape)}, model has {tuple(expected[key].shape)}"
            )


def copy_effective_state_(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a plain-keyed state into the model; masked tensors receive it as their original.

    Call ``check_state_matches`` first.
    """
    modules = dict(model.named_modules())
    with torch.no_grad():
        for key, value in state.items():
            mod_name, _, tname = key.rpartition(".")
            module = modules[mod_name]
            if parametrize.is_parametrized(module, tname):
                module.parametrizations[tname].original.copy_(value)
            else:
                getattr(module, tname).copy_(value)


def load_masked(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a file written by ``save_masked`` into a model of the same architecture.

    The model may be dense or already masked; masks from the file are applied, then
    the weights are copied. Keys and shapes are checked before anything changes.
    Returns the model.
    """
    tensors = load_tensors(path)
    masks = {k[len(MASK_PREFIX):]: v for k, v in tensors.items() if k.startswith(MASK_PREFIX)}
    state = {k: v for k, v in tensors.items() if not k.startswith(MASK_PREFIX)}
    check_state_matches(model, state, path)
    modules = dict(model.named_modules())
    for qual, mask in masks.items():
        mod_name, _, tname = qual.rpartition(".")
        module = modules.get(mod_name)
        if module is None or tuple(getattr(module, tname, torch.empty(0)).shape) != tuple(mask.shape):
            raise ModelError(f"{path}: mask for '{qual}' names no parameter of that shape in the model")
    for qual, mask in masks.items():
        mod_name, _, tname = qual.rpartition(".")
        apply_mask(modules[mod_name], tname, mask)
    copy_effective_state_(model, state)
    return model
