"""Save a converted model and load it into a fresh instance (safetensors, no pickle, never densified).

The file holds the model's ``state_dict`` (packed layers as their ``values`` /
``index`` / ``group_ptr`` / ``scale`` buffers) and, in its metadata, which layers are
packed and how (``prunekit.sparse_runtime`` v1). Tied tensors are stored once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from prunekit.errors import ModelError
from prunekit.io.tensors import load_state_into, save_tensors
from prunekit.masks.parametrize import effective_state_dict
from prunekit.sparse_runtime.convert import eligible_weight, set_submodule
from prunekit.sparse_runtime.formats import PackedWeight, SparseFormat
from prunekit.sparse_runtime.module import SparseLinear

FORMAT, VERSION = "prunekit.sparse_runtime", "1"
PARTS = ("values", "index", "group_ptr", "scale")


def save_sparse(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write a model converted by ``sparse_inference_`` atomically; return the path.

    Example:
        >>> import tempfile
        >>> from prunekit.sparse_runtime import pack, SparseFormat
        >>> net = nn.Sequential(SparseLinear(pack(torch.eye(16), SparseFormat()), None))
        >>> save_sparse(net, tempfile.mkdtemp() + "/net.safetensors").exists()
        True
    """
    layers = {
        name: {
            "format": m.format.to_dict(), "shape": [m.out_features, m.in_features], "nnz": m.nnz,
            "conv1x1": m.conv1x1,
        }
        for name, m in model.named_modules()
        if isinstance(m, SparseLinear)
    }
    state: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first: dict[tuple[int, tuple[int, ...], torch.dtype], str] = {}
    for key, t in effective_state_dict(model).items():
        ident = (t.data_ptr(), tuple(t.shape), t.dtype)
        if t.numel() and ident in first:
            aliases[key] = first[ident]
            continue
        first[ident] = key
        state[key] = t
    meta = {"format": FORMAT, "version": VERSION, "layers": json.dumps(layers), "aliases": json.dumps(aliases)}
    return save_tensors(state, path, meta)


def load_sparse(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a ``save_sparse`` file into a fresh instance of the same architecture; return it.

    The packed layers are rebuilt from their stored parts (the dense weight of the fresh
    layer is dropped, never filled), then every other tensor is loaded strictly.

    Example:
        >>> import tempfile
        >>> from prunekit.sparse_runtime import pack, SparseFormat
        >>> net = nn.Sequential(SparseLinear(pack(torch.eye(16), SparseFormat()), None))
        >>> p = save_sparse(net, tempfile.mkdtemp() + "/net.safetensors")
        >>> fresh = load_sparse(nn.Sequential(nn.Linear(16, 16, bias=False)), p)
        >>> torch.equal(fresh(torch.ones(1, 16)), torch.ones(1, 16))
        True
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path} is not a prunekit sparse-runtime file (format={meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise ModelError(f"{path}: sparse-runtime file version {meta.get('version')!r}; this prunekit reads {VERSION}")
    tensors = load_file(str(path))
    layers = json.loads(meta["layers"])
    for name, spec in layers.items():
        try:
            module = model.get_submodule(name)
        except AttributeError as exc:
            raise ModelError(f"{path} packs layer '{name}', which this model does not have") from exc
        found = eligible_weight(module)
        if found is None or list(found[0].shape) != spec["shape"]:
            shape = None if found is None else list(found[0].shape)
            raise ModelError(
                f"layer '{name}' is {type(module).__name__} with weight {shape}; the file packs a "
                f"{spec['shape']} Linear/1x1-conv weight: build the same architecture before loading"
            )
        parts = {p: tensors.pop(f"{name}.{p}", None) for p in PARTS}
        packed = PackedWeight(
            parts["values"], parts["index"], parts["group_ptr"], parts["scale"],
            tuple(spec["shape"]), SparseFormat.from_dict(spec["format"]), int(spec["nnz"]),
        )
        bias = tensors.pop(f"{name}.bias", None)
        set_submodule(model, name, SparseLinear(packed, bias, conv1x1=bool(spec["conv1x1"])))
    aliases = json.loads(meta.get("aliases", "{}"))
    missing, unexpected = load_state_into(model, tensors, strict=False)
    packed_keys = {f"{n}.{p}" for n in layers for p in (*PARTS, "bias")}
    missing = [k for k in missing if k not in packed_keys and k not in aliases]
    if missing or unexpected:
        raise ModelError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model
