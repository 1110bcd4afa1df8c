"""The compact sparse file format (``prunekit.compact`` v1), on top of safetensors.

Every tensor of a state dict is stored in the cheapest of these forms (spec in
``docs/compression-pipeline.md``):

- ``plain``: the tensor itself under its own name (any safetensors reader sees it);
- ``dense``: all elements' bytes (raw, or int8 codes + scales), through the codec;
- ``sparse``: positions of the non-zeros (``bitmask`` or ``delta8``) + their values
  (``raw`` bytes of the original dtype, ``int8`` codes + per-channel scales, or
  ``codebook`` codes + centroids), each part through the codec (``none`` or ``zstd``).

Encoded parts are uint8 tensors named ``<tensor>/<part>``; the file's metadata holds
``format``, ``version`` and ``layout`` (JSON, one entry per tensor). Decoding restores
raw tensors bit for bit (negative zeros come back as +0.0, the only canonicalisation)
and quantized ones as exactly their quantized values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from prunekit.config.base import ConfigBase, check_choice, check_positive_int
from prunekit.errors import ModelError
from prunekit.export.encoding import (
    CODECS,
    bitmask_decode,
    bitmask_encode,
    bitpack,
    bitunpack,
    compress,
    decompress,
    delta8_decode,
    delta8_encode,
)
from prunekit.io.tensors import state_dict_bytes
from prunekit.quant.apply import LayerQuant, QuantRecord

FORMAT, VERSION = "prunekit.compact", "1"
POSITIONS = ("auto", "bitmask", "delta8")


@dataclass(frozen=True)
class CompactConfig(ConfigBase):
    """Options of the compact writer.

    Attributes:
        positions: ``"auto"`` (the smaller of the two per tensor), ``"bitmask"`` or ``"delta8"``.
        codec: ``"zstd"`` (entropy coding, needs ``zstandard``) or ``"none"``.
        zstd_level: 1..22.

    Example:
        >>> CompactConfig(codec="none").positions
        'auto'
    """

    positions: str = "auto"
    codec: str = "zstd"
    zstd_level: int = 19

    def __post_init__(self) -> None:
        check_choice("positions", self.positions, POSITIONS)
        check_choice("codec", self.codec, CODECS)
        if check_positive_int("zstd_level", self.zstd_level) > 22:
            raise ValueError(f"zstd_level must be in 1..22, got {self.zstd_level}")


def _bytes_of(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()


def dtype_from_name(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ModelError(f"compact file names an unknown dtype {name!r}")
    return dtype


def _position_candidates(nonzero: np.ndarray, choice: str) -> dict[str, bytes]:
    out = {}
    if choice in ("auto", "bitmask"):
        out["bitmask"] = bitmask_encode(nonzero)
    if choice in ("auto", "delta8"):
        out["delta8"] = delta8_encode(np.flatnonzero(nonzero))
    return out


def _encode_tensor(
    name: str, t: torch.Tensor, lq: LayerQuant | None, cfg: CompactConfig
) -> tuple[dict, dict[str, bytes]]:
    """Return ``(layout entry, {part: coded bytes})`` for one tensor; plain tensors give no parts."""
    entry: dict[str, Any] = {"name": name, "shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
    flat = t.detach().cpu().reshape(-1)
    code = lambda raw: compress(raw, cfg.codec, cfg.zstd_level)  # noqa: E731
    candidates: list[tuple[int, dict, dict[str, bytes]]] = []
    if lq is not None:
        codes = lq.codes(t.detach().cpu().float())
        params = {"scale" if lq.scheme == "int8" else "codebook": code(_bytes_of(lq.params.float()))}
        head = {"values": lq.scheme, "bits": lq.bits, "axis": lq.axis}
        if lq.scheme == "int8":
            nonzero = (codes != 0).reshape(-1).numpy()
            dense = {"values": code(_bytes_of(codes)), **params}
            candidates.append((0, {"form": "dense", **head}, dense))
            values = code(_bytes_of(codes.reshape(-1)[torch.from_numpy(nonzero)]))
        else:
            nonzero = (flat != 0).numpy()
            raw = _bytes_of(codes) if cfg.codec == "zstd" else bitpack(codes.numpy(), lq.bits)
            values = code(raw)
    else:
        nonzero = (flat != 0).numpy()
        candidates.append((0, {"form": "plain"}, {}))
        if cfg.codec != "none":
            candidates.append((1, {"form": "dense", "values": "raw"}, {"values": code(_bytes_of(flat))}))
        values = code(_bytes_of(flat[torch.from_numpy(nonzero)]))
        params, head = {}, {"values": "raw"}
    for kind, pos in _position_candidates(nonzero, cfg.positions).items():
        parts = {"positions": code(pos), "values": values, **params}
        candidates.append((2, {"form": "sparse", "positions": kind, "nnz": int(nonzero.sum()), **head}, parts))
    plain_size = flat.numel() * flat.element_size()
    best = min(
        candidates,
        key=lambda c: (plain_size if c[1]["form"] == "plain" else sum(len(b) for b in c[2].values()), c[0]),
    )
    entry.update(best[1])
    if best[2]:
        entry["codec"] = cfg.codec
    return entry, best[2]


def encode_compact(
    state: dict[str, torch.Tensor],
    record: QuantRecord | None = None,
    config: CompactConfig | None = None,
    metadata: dict[str, str] | None = None,
) -> bytes:
    """Encode a state dict (and the quantization of its weights) as compact-file bytes.

    Args:
        state: plain tensors by name (e.g. ``effective_state_dict(model)``).
        record: ``QuantRecord`` from ``quantize_`` (layer name -> quantization); the
            tensor ``"<layer>.weight"`` is stored as codes, and must hold exactly the
            quantized values.
        config: ``CompactConfig``.
        metadata: extra string metadata (keys other than format/version/layout).

    Example:
        >>> w = torch.zeros(100); w[3] = 1.5
        >>> data = encode_compact({"w": w})
        >>> len(data) < len(state_dict_bytes({"w": w}))
        True
    """
    cfg = config or CompactConfig()
    weights = {f"{layer}.weight": lq for layer, lq in (record or {}).items()}
    unknown = sorted(set(weights) - set(state))
    if unknown:
        raise ModelError(f"quantization record names tensors missing from the state: {unknown[:5]}")
    layout, tensors = [], {}
    for name, t in state.items():
        entry, parts = _encode_tensor(name, t, weights.get(name), cfg)
        layout.append(entry)
        if entry["form"] == "plain":
            tensors[name] = t
        for part, data in parts.items():
            tensors[f"{name}/{part}"] = (
                torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)
            )
    meta = dict(metadata or {})
    meta.update({"format": FORMAT, "version": VERSION, "layout": json.dumps(layout, separators=(",", ":"))})
    return state_dict_bytes(tensors, meta)


def read_part(tensors: dict[str, torch.Tensor], name: str, part: str, codec: str) -> bytes:
    key = f"{name}/{part}"
    if key not in tensors:
        raise ModelError(f"compact file is missing the part '{key}'")
    return decompress(_bytes_of(tensors[key]), codec)


def decode_entry(entry: dict, tensors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, LayerQuant | None]:
    name, shape, dtype = entry["name"], tuple(entry["shape"]), dtype_from_name(entry["dtype"])
    if entry["form"] == "plain":
        return tensors[name], None
    codec = entry["codec"]
    numel = int(np.prod(shape, dtype=np.int64))
    kind = entry["values"]
    lq = None
    if kind in ("int8", "codebook"):
        param_name = "scale" if kind == "int8" else "codebook"
        params = torch.frombuffer(bytearray(read_part(tensors, name, param_name, codec)), dtype=torch.float32).clone()
        lq = LayerQuant(kind, int(entry["bits"]), params, int(entry.get("axis", 0)))
    values = read_part(tensors, name, "values", codec)
    if entry["form"] == "dense":
        if kind == "raw":
            return torch.frombuffer(bytearray(values), dtype=dtype).clone().reshape(shape), None
        q = torch.frombuffer(bytearray(values), dtype=torch.int8).clone().reshape(shape)
        return lq.dequantize(q).to(dtype), lq
    positions = read_part(tensors, name, "positions", codec)
    nnz = int(entry["nnz"])
    if entry["positions"] == "bitmask":
        index = torch.from_numpy(np.flatnonzero(bitmask_decode(positions, numel)))
    else:
        index = torch.from_numpy(delta8_decode(positions))
    out = torch.zeros(numel, dtype=dtype)
    if kind == "raw":
        out[index] = torch.frombuffer(bytearray(values), dtype=dtype).clone() if nnz else out[:0]
    elif kind == "int8":
        q = torch.zeros(numel, dtype=torch.int8)
        q[index] = torch.frombuffer(bytearray(values), dtype=torch.int8).clone() if nnz else q[:0]
        return lq.dequantize(q.reshape(shape)).to(dtype), lq
    else:
        codes = np.frombuffer(values, dtype=np.uint8) if codec == "zstd" else bitunpack(values, lq.bits, nnz)
        out[index] = lq.params[torch.from_numpy(codes.astype(np.int64))].to(dtype)
    return out.reshape(shape), lq


def decode_compact(data: bytes) -> tuple[dict[str, torch.Tensor], QuantRecord, dict[str, str]]:
    """Decode compact-file bytes into ``(state, quant record, extra metadata)``.

    Example:
        >>> w = torch.zeros(100); w[3] = 1.5
        >>> state, record, _ = decode_compact(encode_compact({"w": w}))
        >>> torch.equal(state["w"], w), record
        (True, {})
    """
    from safetensors.torch import load

    tensors = load(data)
    meta = read_metadata(data)
    if meta.get("format") != FORMAT:
        raise ModelError(f"not a prunekit compact file (format={meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise ModelError(
            f"compact file version {meta.get('version')!r} is not supported (this prunekit reads {VERSION})"
        )
    state: dict[str, torch.Tensor] = {}
    record: QuantRecord = {}
    for entry in json.loads(meta["layout"]):
        value, lq = decode_entry(entry, tensors)
        state[entry["name"]] = value
        if lq is not None:
            record[entry["name"].removesuffix(".weight")] = lq
    extra = {k: v for k, v in meta.items() if k not in ("format", "version", "layout")}
    return state, record, extra


def read_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes (8-byte little-endian header length, JSON header).

    Example:
        >>> read_metadata(state_dict_bytes({"w": torch.zeros(1)}, {"a": "b"}))
        {'a': 'b'}
    """
    size = int.from_bytes(data[:8], "little")
    return dict(json.loads(data[8 : 8 + size]).get("__metadata__", {}))
