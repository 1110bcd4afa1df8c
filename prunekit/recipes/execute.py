"""Run one recipe stage on the pipeline's state (the model and its quantization record).

Each stage function gets the ``Pipeline`` and the stage's temporary folder (renamed into
place by the runner once everything in it is written) and returns
``(extra deterministic metrics, timing)``; timing holds anything measured in wall-clock
time, which differs between runs and is kept apart from the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.distill.trainer import distill
from prunekit.errors import ModelError
from prunekit.export.compact_io import load_compact_into, save_compact
from prunekit.masks.parametrize import effective_state_dict, plain_copy
from prunekit.metrics import model_metrics
from prunekit.quant.apply import QuantRecord, quantize_
from prunekit.recipes.context import RunData, build_model, load_checkpoint, replay_structure, structure_plan
from prunekit.recipes.schema import Recipe, StageSpec
from prunekit.recipes.stages import PruneMethod
from prunekit.train.loops import fit


@dataclass
class Pipeline:
    """The state a recipe's stages pass along."""

    recipe: Recipe
    data: RunData
    model: nn.Module
    stages_dir: Path
    prune_methods: dict[str, PruneMethod]
    record: QuantRecord | None = None
    dense_bytes: int = 0
    progress: bool = True
    extras: dict[str, Any] = field(default_factory=dict)

    def fresh_model(self) -> nn.Module:
        return build_model(self.recipe.model, self.data)

    def load_stage(self, stage: StageSpec) -> nn.Module:
        """A new model holding the checkpoint of a finished earlier stage."""
        folder = self.stages_dir / stage.id
        if not (folder / "state.json").exists():
            raise ModelError(f"stage '{stage.id}' has no checkpoint in {self.stages_dir}")
        model = self.fresh_model()
        load_checkpoint(folder, model)
        return model

    def reference_stage(self) -> StageSpec | None:
        """The last stage before the first prune (the dense reference), if any."""
        first = next((s.index for s in self.recipe.stages if s.kind == "prune"), None)
        return self.recipe.stages[first - 1] if first else None

    def example_batch(self, batch_size: int) -> torch.Tensor:
        """The first ``batch_size`` test images (repeated if the test split is smaller)."""
        test = self.data.test
        return torch.stack([test[i % len(test)][0] for i in range(batch_size)])


Result = tuple[dict[str, Any], dict[str, Any]]


def _train(p: Pipeline, stage: StageSpec, folder: Path) -> Result:
    losses = fit(p.model, p.data.train, stage.options.train, progress=p.progress, description=stage.id)
    return {"train_loss": losses[-1] if losses else None}, {}


def _distill(p: Pipeline, stage: StageSpec, folder: Path) -> Result:
    teacher_stage = p.recipe.teacher_stage(stage)
    teacher = p.load_stage(teacher_stage)
    losses = distill(p.model, teacher, p.data.train, stage.options.train, stage.options.distill, progress=p.progress)
    return {"train_loss": losses[-1] if losses else None, "teacher": teacher_stage.id}, {}


def _prune(p: Pipeline, stage: StageSpec, folder: Path) -> Result:
    method = p.prune_methods[stage.options.method]
    method.apply(p.model, stage.options.config, p.example_batch(2))
    return {}, {}


def _quantize(p: Pipeline, stage: StageSpec, folder: Path) -> Result:
    p.record = quantize_(p.model, stage.options)
    return {}, {}


def _export(p: Pipeline, stage: StageSpec, folder: Path) -> Result:
    opts = stage.options
    if opts.format == "compact":
        path = save_compact(
            p.model,
            folder / "model.compact.safetensors",
            p.record,
            opts.compact,
            metadata={"recipe": p.recipe.name, "model": p.recipe.model.name},
        )
        fresh = replay_structure(p.fresh_model(), structure_plan(p.model))
        load_compact_into(fresh, path)
        want, got = effective_state_dict(p.model), effective_state_dict(fresh)
        exact = set(want) == set(got) and all(torch.equal(want[k], got[k]) for k in want)
        if not exact:
            raise ModelError(f"stage '{stage.id}': the compact file did not load back to the same weights")
        size = path.stat().st_size
        return {
            "artifact": path.name,
            "compact_file_bytes": size,
            "roundtrip_exact": exact,
            "compression_ratio": p.dense_bytes / size,
        }, {}
    from prunekit.export.onnx import export_onnx, ort_latency_ms, verify_onnx

    x = p.example_batch(opts.batch_size)
    path = export_onnx(p.model, x, folder / "model.onnx", opset=opts.opset)
    check = verify_onnx(p.model, path, x, atol=opts.atol)
    if not check.ok:
        raise ModelError(
            f"stage '{stage.id}': onnxruntime output differs from PyTorch by "
            f"{check.max_abs_diff:.3g} > atol {opts.atol}"
        )
    timing: dict[str, Any] = {"onnx_max_abs_diff": check.max_abs_diff}
    ref_stage = p.reference_stage()
    if ref_stage is not None and ref_stage.index < stage.index:
        ref_path = export_onnx(p.load_stage(ref_stage), x, folder / "reference.onnx", opset=opts.opset)
        ref_ms, ms = ort_latency_ms([ref_path, path], x, runs=opts.latency_runs)
        timing.update(
            {
                "ort_latency_ms_reference": ref_ms,
                "ort_latency_ms": ms,
                "ort_speedup": ref_ms / ms,
                "reference": ref_stage.id,
            }
        )
    else:
        timing["ort_latency_ms"] = ort_latency_ms([path], x, runs=opts.latency_runs)[0]
    return {"artifact": path.name, "onnx_ok": True}, timing


def _evaluate(p: Pipeline, stage: StageSpec, folder: Path) -> Result:
    opts = stage.options
    # measured on the model as deployed: masks baked in (a masked module multiplies by its mask each call)
    m = model_metrics(plain_copy(p.model), p.example_batch(opts.batch_size), latency_runs=opts.latency_runs)
    deterministic = {k: m[k] for k in ("macs", "macs_sparse", "size_compressed_bytes")}
    return deterministic, {"latency_ms": m["latency_ms"], "latency": m["latency"]}


STAGE_FUNCTIONS: dict[str, Callable[[Pipeline, StageSpec, Path], Result]] = {
    "train": _train,
    "finetune": _train,
    "distill": _distill,
    "prune": _prune,
    "quantize": _quantize,
    "export": _export,
    "evaluate": _evaluate,
}


def run_stage(p: Pipeline, stage: StageSpec, folder: Path) -> Result:
    """Run ``stage`` on the pipeline, writing artifacts into ``folder``; add ``seconds`` to timing."""
    start = time.perf_counter()
    metrics, timing = STAGE_FUNCTIONS[stage.kind](p, stage, folder)
    timing["seconds"] = time.perf_counter() - start
    return metrics, timing
