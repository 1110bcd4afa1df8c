"""Save a model as a compact file and load one back into a model (masks restored)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from prunekit.export.compact import CompactConfig, decode_compact, encode_compact
from prunekit.io.atomic import atomic_write_bytes
from prunekit.masks.parametrize import apply_mask, effective_state_dict
from prunekit.masks.sparsify import prunable_layers
from prunekit.masks.state import check_state_matches, copy_effective_state_
from prunekit.quant.apply import QuantRecord


def compact_bytes(
    model: nn.Module,
    record: QuantRecord | None = None,
    config: CompactConfig | None = None,
    metadata: dict[str, str] | None = None,
) -> bytes:
    """The compact-file bytes of ``model``'s effective state (masks applied).

    Example:
        >>> net = nn.Linear(64, 64)
        >>> with torch.no_grad(): _ = net.weight[:, 8:].zero_()
        >>> from prunekit.metrics import size_bytes
        >>> len(compact_bytes(net)) < size_bytes(net) / 4
        True
    """
    return encode_compact(effective_state_dict(model), record, config, metadata)


def save_compact(
    model: nn.Module,
    path: str | os.PathLike[str],
    record: QuantRecord | None = None,
    config: CompactConfig | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``model`` as a compact file atomically; return the path.

    Args:
        model: any model (masked or plain); its effective state is stored.
        path: target file (``.safetensors`` suggested: the container is safetensors).
        record: the ``QuantRecord`` returned by ``quantize_``, if the model was quantized.
        config: ``CompactConfig`` (positions encoding, codec).
        metadata: extra string metadata stored in the file.

    Example:
        >>> import tempfile
        >>> p = save_compact(nn.Linear(4, 2), tempfile.mkdtemp() + "/m.safetensors")
        >>> p.exists()
        True
    """
    return atomic_write_bytes(path, compact_bytes(model, record, config, metadata))


def load_compact(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], QuantRecord, dict[str, str]]:
    """Read a compact file: ``(state dict, QuantRecord, extra metadata)``."""
    return decode_compact(Path(path).read_bytes())


def load_compact_into(model: nn.Module, path: str | os.PathLike[str], masks: bool = True) -> QuantRecord:
    """Load a compact file into a model of the same architecture; return its ``QuantRecord``.

    Keys and shapes are checked before anything changes. With ``masks=True`` every
    prunable layer's weight gets a mask equal to its non-zero pattern, so further
    fine-tuning keeps the pruned weights at zero.

    Example:
        >>> import tempfile
        >>> src = nn.Linear(4, 2)
        >>> with torch.no_grad(): _ = src.weight[:, :2].zero_()
        >>> p = save_compact(src, tempfile.mkdtemp() + "/m.safetensors")
        >>> dst = nn.Linear(4, 2)
        >>> _ = load_compact_into(dst, p)
        >>> torch.equal(dst.weight, src.weight)
        True
    """
    state, record, _ = load_compact(path)
    check_state_matches(model, state, path)
    if masks:
        for name, module in prunable_layers(model):
            apply_mask(module, "weight", state[f"{name}.weight" if name else "weight"] != 0)
    copy_effective_state_(model, state)
    return record
