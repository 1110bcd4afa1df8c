"""The stage types of a recipe and their validated options.

Each stage type has an options parser that turns the YAML mapping into typed configs,
rejecting unknown keys with the list of valid ones. Prune methods are a registry, so
any prunekit pruning config can run as a stage: ``register_prune_method(name, config_cls,
apply_fn)`` where ``apply_fn(model, config, example_input)`` prunes in place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunekit.config.base import ConfigBase, check_choice, check_positive_int
from prunekit.distill.config import DistillConfig
from prunekit.errors import ConfigError
from prunekit.export.compact import CompactConfig
from prunekit.masks.sparsify import SparsifyConfig, sparsify_
from prunekit.quant.apply import QuantizeConfig
from prunekit.train.loops import TrainConfig

PruneApply = Callable[[nn.Module, Any, torch.Tensor], Any]


@dataclass(frozen=True)
class PruneMethod:
    """A pruning method a recipe can name: its config class and how to apply it."""

    config_cls: type[ConfigBase]
    apply: PruneApply


def _sparsify(model: nn.Module, config: SparsifyConfig, example_input: torch.Tensor) -> Any:
    return sparsify_(model, config)


def _channels(model: nn.Module, config: Any, example_input: torch.Tensor) -> Any:
    from prunekit.structured import prune_channels_

    return prune_channels_(model, example_input, config)


def default_prune_methods() -> dict[str, PruneMethod]:
    """The prune methods known to recipes by default (a fresh dict each call):
    ``unstructured`` (``SparsifyConfig``) and, when ``prunekit.structured`` is present,
    ``channels`` (``StructuredConfig``: channels physically removed)."""
    methods = {"unstructured": PruneMethod(SparsifyConfig, _sparsify)}
    try:
        from prunekit.structured import StructuredConfig
    except ImportError:
        return methods
    methods["channels"] = PruneMethod(StructuredConfig, _channels)
    return methods


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _split(options: dict[str, Any], groups: dict[str, list[str]], stage: str) -> dict[str, dict[str, Any]]:
    """Split a stage's options between config classes by field name; unknown keys fail."""
    valid = sorted({n for names in groups.values() for n in names})
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"stage '{stage}': unknown option(s) {unknown}; valid options are {valid}")
    return {g: {k: v for k, v in options.items() if k in names} for g, names in groups.items()}


def _train_config(options: dict[str, Any], seed: int) -> TrainConfig:
    opts = dict(options)
    opts.setdefault("seed", seed)
    return TrainConfig.from_dict(opts)


@dataclass(frozen=True)
class TrainOptions:
    """``train`` and ``finetune``: a ``TrainConfig`` (masks hold during fine-tuning)."""

    train: TrainConfig


@dataclass(frozen=True)
class DistillOptions:
    """``distill``: fine-tune the current model from a teacher checkpoint.

    ``teacher`` names an earlier stage (its id like ``"00-train"`` or its type like
    ``"train"``, the latest such stage); by default the last stage before the first prune.
    """

    train: TrainConfig
    distill: DistillConfig
    teacher: str | None = None


@dataclass(frozen=True)
class PruneOptions:
    """``prune``: ``method`` (a registered prune method) plus that method's config."""

    method: str
    config: Any


@dataclass(frozen=True)
class ExportOptions(ConfigBase):
    """``export``: ``format`` ``compact`` (with CompactConfig options) or ``onnx``.

    For ONNX: ``opset``, ``atol`` (the onnxruntime check), ``batch_size`` and
    ``latency_runs`` of the ORT latency measured against the reference (dense) model.
    """

    format: str = "compact"
    compact: CompactConfig = field(default_factory=CompactConfig)
    opset: int = 18
    atol: float = 1e-4
    batch_size: int = 1
    latency_runs: int = 30


@dataclass(frozen=True)
class EvaluateOptions(ConfigBase):
    """``evaluate``: full metrics (MACs, latency) on the test split; ``batch_size`` and
    ``latency_runs`` set the latency measurement."""

    batch_size: int = 1
    latency_runs: int = 30

    def __post_init__(self) -> None:
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("latency_runs", self.latency_runs)


def parse_train(options: dict[str, Any], seed: int, stage: str) -> TrainOptions:
    groups = _split(options, {"train": _names(TrainConfig)}, stage)
    return TrainOptions(_train_config(groups["train"], seed))


def parse_distill(options: dict[str, Any], seed: int, stage: str) -> DistillOptions:
    groups = _split(
        options, {"train": _names(TrainConfig), "distill": _names(DistillConfig), "teacher": ["teacher"]}, stage
    )
    teacher = groups["teacher"].get("teacher")
    if teacher is not None and not isinstance(teacher, str):
        raise ConfigError(f"stage '{stage}': teacher must be a stage id or type name, got {teacher!r}")
    return DistillOptions(_train_config(groups["train"], seed), DistillConfig.from_dict(groups["distill"]), teacher)


def parse_prune(options: dict[str, Any], methods: dict[str, PruneMethod], stage: str) -> PruneOptions:
    opts = dict(options)
    method = opts.pop("method", "unstructured")
    check_choice(f"stage '{stage}': method", method, sorted(methods))
    return PruneOptions(method, methods[method].config_cls.from_dict(opts))


def parse_quantize(options: dict[str, Any], stage: str) -> QuantizeConfig:
    return QuantizeConfig.from_dict(options)


def parse_export(options: dict[str, Any], stage: str) -> ExportOptions:
    own = [n for n in _names(ExportOptions) if n != "compact"]
    groups = _split(options, {"own": own, "compact": _names(CompactConfig)}, stage)
    opts = groups["own"]
    check_choice(f"stage '{stage}': format", opts.get("format", "compact"), ("compact", "onnx"))
    if opts.get("format", "compact") == "onnx" and groups["compact"]:
        raise ConfigError(f"stage '{stage}': options {sorted(groups['compact'])} apply to format 'compact' only")
    out = ExportOptions(**opts, compact=CompactConfig.from_dict(groups["compact"]))
    check_positive_int("opset", out.opset)
    check_positive_int("batch_size", out.batch_size)
    check_positive_int("latency_runs", out.latency_runs)
    return out


def parse_evaluate(options: dict[str, Any], stage: str) -> EvaluateOptions:
    return EvaluateOptions.from_dict(options)


#: stage types, in the order the docs list them
STAGE_TYPES = ("train", "distill", "prune", "finetune", "quantize", "export", "evaluate")

#: stages that change weights by training (they would undo a quantization)
TRAINING_STAGES = ("train", "finetune", "distill")


def parse_stage_options(
    kind: str, options: dict[str, Any], seed: int, stage: str, methods: dict[str, PruneMethod]
) -> Any:
    """Typed options of one stage (``kind`` already checked against ``STAGE_TYPES``)."""
    if kind in ("train", "finetune"):
        return parse_train(options, seed, stage)
    if kind == "distill":
        return parse_distill(options, seed, stage)
    if kind == "prune":
        return parse_prune(options, methods, stage)
    if kind == "quantize":
        return parse_quantize(options, stage)
    if kind == "export":
        return parse_export(options, stage)
    return parse_evaluate(options, stage)
