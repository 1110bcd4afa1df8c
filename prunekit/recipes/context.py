"""What a recipe run works on: data, models built from the spec, and stage checkpoints.

A checkpoint folder holds ``model.safetensors`` (effective weights + masks, from
``save_masked``), ``quant.safetensors`` when the model was quantized (the scales or
codebooks) and ``state.json`` (metrics); nothing is pickled.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from prunekit.data.images import ImageDataset, load_dataset
from prunekit.errors import MissingDependencyError
from prunekit.export.compact import CompactConfig
from prunekit.export.compact_io import compact_bytes
from prunekit.io.atomic import atomic_write_json
from prunekit.io.tensors import load_tensors, save_tensors
from prunekit.masks.report import overall_sparsity, sparsity_report
from prunekit.masks.state import load_masked, save_masked
from prunekit.metrics import count_nonzero, count_params, evaluate, size_bytes
from prunekit.models import LeNet300100, SmallConvNet
from prunekit.quant.apply import QuantRecord, record_from_tensors, record_to_tensors
from prunekit.recipes.schema import DataSpec, ModelSpec


@dataclass
class RunData:
    """Train and test splits of a run (subsets applied)."""

    train: TensorDataset | Subset
    test: TensorDataset | Subset
    input_shape: tuple[int, ...]
    num_classes: int


def _subset(data: TensorDataset, n: int | None) -> TensorDataset:
    if n is None or n >= len(data):
        return data
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n]
    return TensorDataset(*(t[order] for t in data.tensors))


def build_data(spec: DataSpec) -> RunData:
    """Load the dataset; a subset is a fixed random pick (seed 0), the same in every run."""
    ds: ImageDataset = load_dataset(spec.dataset)
    return RunData(
        _subset(ds.train, spec.train_subset), _subset(ds.test, spec.test_subset), ds.input_shape, ds.num_classes
    )


def build_model(spec: ModelSpec, data: RunData) -> nn.Module:
    """Instantiate the recipe's model for the data's input shape and classes.

    Example:
        >>> from prunekit.recipes.schema import ModelSpec
        >>> d = RunData(None, None, (1, 8, 8), 10)
        >>> type(build_model(ModelSpec("convnet", {"widths": [4, 8]}), d)).__name__
        'SmallConvNet'
    """
    c, h, w = data.input_shape
    if spec.name == "lenet300100":
        return LeNet300100(c * h * w, data.num_classes, **spec.kwargs)
    kwargs = dict(spec.kwargs)
    if "widths" in kwargs:
        kwargs["widths"] = tuple(kwargs["widths"])
    return SmallConvNet(c, data.num_classes, h, **kwargs)


def _structured():
    """``prunekit.structured`` when installed (channel pruning), else None."""
    try:
        return importlib.import_module("prunekit.structured")
    except ImportError:
        return None


def structure_plan(model: nn.Module) -> dict | None:
    """The structured-pruning plan recorded on ``model`` (None if its shape is the original)."""
    structured = _structured()
    return structured.get_plan(model) if structured is not None else None


def replay_structure(model: nn.Module, plan: dict | None) -> nn.Module:
    """Give a fresh model the shapes of a channel-pruned one by replaying its plan."""
    if plan:
        structured = _structured()
        if structured is None:
            raise MissingDependencyError("prunekit.structured (to replay a channel-pruning plan)", "update prunekit")
        structured.replay_plan(model, plan)
    return model


def save_checkpoint(folder: Path, model: nn.Module, record: QuantRecord | None) -> None:
    """Write the model (masks, quantization record, channel-pruning plan) into ``folder``."""
    plan = structure_plan(model)
    if plan:
        atomic_write_json(folder / "plan.json", plan)
    save_masked(model, folder / "model.safetensors")
    if record:
        tensors, meta = record_to_tensors(record)
        save_tensors(tensors, folder / "quant.safetensors", metadata={"record": meta})


def load_checkpoint(folder: Path, model: nn.Module) -> QuantRecord | None:
    """Load a checkpoint written by ``save_checkpoint`` into a fresh ``model``; return the record."""
    plan_file = folder / "plan.json"
    replay_structure(model, json.loads(plan_file.read_text()) if plan_file.exists() else None)
    load_masked(model, folder / "model.safetensors")
    qpath = folder / "quant.safetensors"
    if not qpath.exists():
        return None
    from safetensors import safe_open

    with safe_open(str(qpath), framework="pt") as f:
        meta = (f.metadata() or {})["record"]
    return record_from_tensors(load_tensors(qpath), meta)


def stage_metrics(model: nn.Module, record: QuantRecord | None, data: RunData) -> dict:
    """Deterministic metrics of the model after a stage: test accuracy and loss, parameters,
    non-zeros, sparsity of the prunable layers, dense fp32 size and compact (zstd) size."""
    result = evaluate(model, data.test)
    rows = sparsity_report(model)
    return {
        "accuracy": result["accuracy"],
        "loss": result["loss"],
        "params": count_params(model),
        "nonzero": count_nonzero(model),
        "sparsity": overall_sparsity(rows),
        "size_bytes": size_bytes(model),
        "compact_bytes": len(compact_bytes(model, record, CompactConfig())),
        "quantized": sorted({lq.scheme for lq in (record or {}).values()}),
        "layers": [r.to_dict() for r in rows],
    }
