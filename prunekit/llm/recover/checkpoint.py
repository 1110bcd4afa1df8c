"""Resumable recovery checkpoints: one safetensors file, written atomically by rank 0.

The file holds the trainable weights and the optimiser state as full (unsharded) tensors,
under the model's canonical parameter names, and the run's state as JSON in the
safetensors metadata, so the tensors and the step they belong to can never disagree. A
readable copy of the state is written beside it (``recover_state.json``). Full tensors
mean a checkpoint from a run with N processes resumes with any other number.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_checkpoint(d, {"w": torch.ones(2)}, {"exp_avg/w": torch.zeros(2)}, {"step": 3})
    >>> read_checkpoint(d)[2]["step"]
    3
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from prunekit.io.atomic import atomic_write_bytes, atomic_write_json
from prunekit.io.tensors import state_dict_bytes

CHECKPOINT_FILE = "recover.safetensors"
STATE_FILE = "recover_state.json"
_META_KEY = "prunekit_recover_state"
_MODEL, _OPTIM = "model/", "optim/"


def write_checkpoint(folder: str | os.PathLike[str], model_state: dict[str, torch.Tensor],
                     optim_state: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    """Write weights, optimiser tensors and the JSON ``state`` atomically; return the file."""
    folder = Path(folder)
    tensors = {_MODEL + k: v for k, v in model_state.items()}
    tensors.update({_OPTIM + k: v for k, v in optim_state.items()})
    data = state_dict_bytes(tensors, metadata={_META_KEY: json.dumps(state)})
    path = atomic_write_bytes(folder / CHECKPOINT_FILE, data)
    atomic_write_json(folder / STATE_FILE, state)
    return path


def read_checkpoint(folder: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor],
                                                              dict[str, Any]] | None:
    """``(model_state, optim_tensors, state)`` from ``folder``, or None when it has no checkpoint."""
    path = Path(folder) / CHECKPOINT_FILE
    if not path.exists():
        return None
    from safetensors import safe_open

    model_state: dict[str, torch.Tensor] = {}
    optim_state: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as fh:
        state = json.loads((fh.metadata() or {})[_META_KEY])
        for key in fh.keys():
            if key.startswith(_MODEL):
                model_state[key[len(_MODEL):]] = fh.get_tensor(key)
            else:
                optim_state[key[len(_OPTIM):]] = fh.get_tensor(key)
    return model_state, optim_state, state


def flatten_optimizer_state(osd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """A full optimiser state dict keyed by parameter names -> flat tensors + JSON param groups."""
    tensors: dict[str, torch.Tensor] = {}
    for name, slots in osd["state"].items():
        for slot, value in slots.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{slot}/{name}"] = t
    groups = [{k: v for k, v in g.items()} for g in osd["param_groups"]]
    return tensors, groups


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        slot, name = key.split("/", 1)
        state.setdefault(name, {})[slot] = value
    return {"state": state, "param_groups": groups}
