"""Load a compact file (``save_compact``) straight into packed layers, never as a dense model.

A compact file already stores a sparse weight as positions (bitmask or delta8) plus its
non-zero values in row-major order (raw float32 / bfloat16, or int8 codes with one scale
per output row): exactly the ``unstructured`` format's values, with the positions turned
into per-row mask bits. Only the mask bits are rearranged; the values are used as read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import ModelError
from prunekit.export.compact import FORMAT, VERSION, decode_entry, read_metadata, read_part
from prunekit.export.encoding import bitmask_decode, delta8_decode
from prunekit.io import load_state_into
from prunekit.sparse_runtime.config import SparseInferenceConfig
from prunekit.sparse_runtime.convert import capture_inputs, eligible_weight, set_submodule
from prunekit.sparse_runtime.formats import CHUNK, PAD, PackedWeight, SparseFormat, unpack
from prunekit.sparse_runtime.module import SparseLinear
from prunekit.sparse_runtime.report import LayerChoice, SparseInferenceReport
from prunekit.sparse_runtime.timing import time_candidates

RAW_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def packed_from_entry(
    entry: dict[str, Any], tensors: dict[str, torch.Tensor], shape: tuple[int, int]
) -> PackedWeight | None:
    """The ``unstructured`` packing of one compact-file entry, or None if it is not stored sparse.

    Example:
        >>> from prunekit.export.compact import encode_compact
        >>> from safetensors.torch import load
        >>> w = torch.zeros(64, 64); w[1, 3] = 2.0; w[7, 40] = -1.0
        >>> data = encode_compact({"w": w})
        >>> entry = json.loads(read_metadata(data)["layout"])[0]
        >>> entry["form"], torch.equal(unpack(packed_from_entry(entry, load(data), (64, 64))), w)
        ('sparse', True)
    """
    kind = entry.get("values")
    raw_ok = kind == "raw" and entry["dtype"] in RAW_DTYPES
    if entry.get("form") != "sparse" or not (raw_ok or (kind == "int8" and entry.get("axis") == 0)):
        return None
    name, codec = entry["name"], entry["codec"]
    n, k = shape
    positions = read_part(tensors, name, "positions", codec)
    if entry["positions"] == "bitmask":
        nonzero = bitmask_decode(positions, n * k).reshape(n, k)
    else:
        nonzero = np.zeros(n * k, dtype=bool)
        nonzero[delta8_decode(positions)] = True
        nonzero = nonzero.reshape(n, k)
    chunks = -(-k // CHUNK)
    bits = np.zeros((n, chunks * CHUNK), dtype=bool)
    bits[:, :k] = nonzero
    index = torch.from_numpy(np.packbits(bits, axis=1, bitorder="little").copy())
    counts = torch.from_numpy(nonzero.sum(axis=1).astype(np.int64))
    group_ptr = torch.zeros(n + 1, dtype=torch.int64)
    group_ptr[1:] = torch.cumsum(counts, 0)
    raw = bytearray(read_part(tensors, name, "values", codec))
    scale = None
    if kind == "int8":
        values = torch.frombuffer(raw, dtype=torch.int8) if raw else torch.zeros(0, dtype=torch.int8)
        scale = torch.frombuffer(bytearray(read_part(tensors, name, "scale", codec)), dtype=torch.float32).clone()
        dtype = "int8"
    else:
        src = RAW_DTYPES[entry["dtype"]]
        values = torch.frombuffer(raw, dtype=src) if raw else torch.zeros(0, dtype=src)
        dtype = "bfloat16" if src == torch.bfloat16 else "float32"
    values = torch.cat([values.clone(), torch.zeros(PAD, dtype=values.dtype)])
    fmt = SparseFormat("unstructured", dtype=dtype)
    return PackedWeight(values, index, group_ptr, scale, (n, k), fmt, int(group_ptr[-1]))


def load_compact_sparse(
    model: nn.Module,
    path: str | os.PathLike[str],
    example_input: Any = None,
    config: SparseInferenceConfig | None = None,
) -> SparseInferenceReport:
    """Load a compact file into ``model``: sparse layers packed from the file, the rest dense.

    Args:
        model: a fresh instance of the architecture the file was saved from.
        path: a ``save_compact`` file.
        example_input: if given, each packed layer is timed against its dense form (rebuilt
            for that one layer) on the input it sees, and turned dense where that is faster.
        config: ``min_sparsity``, ``min_speedup``, ``rounds``, ``threads``, ``exclude``,
            ``print_table`` apply.

    Returns:
        A :class:`SparseInferenceReport` (timings only with ``example_input``).

    Example:
        >>> import tempfile, prunekit
        >>> net = nn.Sequential(nn.Linear(64, 64))
        >>> _ = prunekit.sparsify_(net, prunekit.SparsifyConfig(amount=0.9))
        >>> p = prunekit.save_compact(net, tempfile.mkdtemp() + "/net.safetensors")
        >>> fresh = nn.Sequential(nn.Linear(64, 64))
        >>> report = load_compact_sparse(fresh, p, config=SparseInferenceConfig(print_table=False))
        >>> type(fresh[0]).__name__, torch.allclose(fresh(torch.ones(1, 64)), net(torch.ones(1, 64)), atol=1e-5)
        ('SparseLinear', True)
    """
    from safetensors.torch import load

    cfg = config or SparseInferenceConfig()
    data = Path(path).read_bytes()
    meta = read_metadata(data)
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ModelError(f"{path} is not a prunekit compact file v{VERSION} (format={meta.get('format')!r})")
    tensors = load(data)
    excluded = lambda n: any(n == e or n.startswith(e + ".") for e in cfg.exclude)  # noqa: E731
    layers = {n: m for n, m in model.named_modules() if eligible_weight(m) is not None and not excluded(n)}
    dense_state: dict[str, torch.Tensor] = {}
    packed: dict[str, tuple[PackedWeight, bool]] = {}
    for entry in json.loads(meta["layout"]):
        name = entry["name"]
        layer = name.removesuffix(".weight")
        if name.endswith(".weight") and layer in layers:
            w = eligible_weight(layers[layer])[0]  # type: ignore[index]
            p = packed_from_entry(entry, tensors, tuple(w.shape)) if list(w.shape) == entry["shape"] or (
                len(entry["shape"]) == 4 and entry["shape"][2:] == [1, 1]) else None
            if p is not None and 1.0 - p.nnz / max(1, w.numel()) >= cfg.min_sparsity:
                packed[layer] = (p, isinstance(layers[layer], nn.Conv2d))
                continue
        dense_state[name], _ = decode_entry(entry, tensors)
    rows = []
    for layer, (p, conv) in packed.items():
        bias = dense_state.pop(f"{layer}.bias", None)
        n, k = p.shape
        rows.append(LayerChoice(layer, (n, k), 0, 1.0 - p.nnz / (n * k), p.format.label, None, None,
                                n * k * 4, p.nbytes, reason="from the compact file"))
        set_submodule(model, layer, SparseLinear(p, bias, conv1x1=conv))
    missing, unexpected = load_state_into(model, dense_state, strict=False)
    missing = [m for m in missing if m.rsplit(".", 1)[0] not in packed]
    if missing or unexpected:
        raise ModelError(f"{path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if example_input is not None:
        _keep_faster(model, example_input, cfg, rows)
    report = SparseInferenceReport(rows, threads=cfg.threads or torch.get_num_threads(), kernels="compact")
    if cfg.print_table:
        report.print()
    return report


def _keep_faster(model: nn.Module, example_input: Any, cfg: SparseInferenceConfig, rows: list[LayerChoice]) -> None:
    """Time each packed layer against its dense form; put the dense layer back where it is faster."""
    by_name = {r.name: r for r in rows}
    inputs = capture_inputs(model, list(by_name), example_input)
    with torch.no_grad():
        for name, row in by_name.items():
            module = model.get_submodule(name)
            x = inputs.get(name)
            if x is None:
                row.reason = "not called by the example input"
                continue
            w = unpack(module.packed)
            flat = x.permute(0, 2, 3, 1).reshape(-1, w.shape[1]) if module.conv1x1 else x
            row.batch = flat.numel() // w.shape[1]
            t = time_candidates({"dense": lambda w=w, f=flat, b=module.bias: F.linear(f, w, b),
                                 "sparse": lambda f=flat, m=module: m._mm(f)}, rounds=cfg.rounds)
            row.dense_us, row.sparse_us, row.reason = t["dense"], t["sparse"], ""
            if t["sparse"] * cfg.min_speedup > t["dense"]:
                row.format, row.reason, row.stored_bytes = "dense", "dense is faster", row.dense_bytes
                set_submodule(model, name, _dense_layer(module, w))


def _dense_layer(module: SparseLinear, weight: torch.Tensor) -> nn.Module:
    n, k = weight.shape
    bias = module.bias is not None
    layer = nn.Conv2d(k, n, 1, bias=bias) if module.conv1x1 else nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(weight.reshape(layer.weight.shape))
        if bias:
            layer.bias.copy_(module.bias)
    return layer
