"""Recipe files: YAML with ``seed``, ``data``, ``model`` and a list of ``stages``, validated on load.

Example recipe::

    name: seed-workflow
    seed: 0
    data: {dataset: digits}
    model: {name: convnet}
    stages:
      - train: {epochs: 5}
      - prune: {method: unstructured, amount: 0.8}
      - finetune: {epochs: 2}
      - evaluate: {}

Every stage is a mapping with exactly one key, the stage type, whose value holds its
options (or is empty). Unknown keys, stage types, options and stage references fail
with a ``ConfigError`` that lists what is valid.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunekit.config.base import check_positive_int
from prunekit.data.images import DATASETS
from prunekit.errors import ConfigError
from prunekit.recipes.stages import (
    STAGE_TYPES,
    TRAINING_STAGES,
    DistillOptions,
    PruneMethod,
    default_prune_methods,
    parse_stage_options,
)

TOP_KEYS = ("name", "seed", "data", "model", "stages")
DATA_KEYS = ("dataset", "train_subset", "test_subset")
MODEL_KEYS = ("name", "kwargs")
BUILTIN_MODELS = ("convnet", "lenet300100")


@dataclass(frozen=True)
class DataSpec:
    """Which dataset, optionally a fixed subset of each split (for quick runs)."""

    dataset: str = "digits"
    train_subset: int | None = None
    test_subset: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    """``convnet`` (kwargs ``widths``, ``hidden``) or ``lenet300100``, sized to the data."""

    name: str = "convnet"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageSpec:
    """One stage: its position, type, typed options and the raw options from the file."""

    index: int
    kind: str
    options: Any
    raw: dict[str, Any]

    @property
    def id(self) -> str:
        """Folder name of the stage's checkpoint, e.g. ``"02-finetune"``."""
        return f"{self.index:02d}-{self.kind}"


@dataclass(frozen=True)
class Recipe:
    """A validated recipe. ``sha256`` fingerprints its content (resume checks it)."""

    name: str
    seed: int
    data: DataSpec
    model: ModelSpec
    stages: tuple[StageSpec, ...]
    source: dict[str, Any]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.source, sort_keys=True).encode()).hexdigest()

    def teacher_stage(self, stage: StageSpec) -> StageSpec:
        """The stage whose checkpoint is the teacher of a ``distill`` stage."""
        return _resolve_teacher(self.stages, stage)


def _check_keys(section: str, data: Any, valid: tuple[str, ...]) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe '{section}' must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"recipe '{section}': unknown key(s) {unknown}; valid keys are {sorted(valid)}")
    return data


def _parse_data(data: Any) -> DataSpec:
    d = _check_keys("data", data, DATA_KEYS)
    dataset = d.get("dataset", "digits")
    if dataset not in DATASETS:
        raise ConfigError(f"recipe 'data.dataset' must be one of {sorted(DATASETS)}, got {dataset!r}")
    subsets = {k: d.get(k) for k in ("train_subset", "test_subset")}
    for key, value in subsets.items():
        if value is not None:
            check_positive_int(f"data.{key}", value)
    return DataSpec(dataset, **subsets)


def _parse_model(data: Any) -> ModelSpec:
    d = _check_keys("model", data, MODEL_KEYS)
    name = d.get("name", "convnet")
    if name not in BUILTIN_MODELS:
        raise ConfigError(f"recipe 'model.name' must be one of {list(BUILTIN_MODELS)}, got {name!r}")
    kwargs = d.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ConfigError(f"recipe 'model.kwargs' must be a mapping, got {type(kwargs).__name__}")
    return ModelSpec(name, dict(kwargs))


def _parse_stage(i: int, item: Any, seed: int, methods: dict[str, PruneMethod]) -> StageSpec:
    if not isinstance(item, dict) or len(item) != 1:
        raise ConfigError(
            f"recipe stage {i}: each stage is a mapping with one key, the stage type (one of "
            f"{list(STAGE_TYPES)}), e.g. '- train: {{epochs: 5}}'; got {item!r}"
        )
    ((kind, options),) = item.items()
    if kind not in STAGE_TYPES:
        raise ConfigError(f"recipe stage {i}: unknown stage type {kind!r}; valid stage types are {list(STAGE_TYPES)}")
    options = options or {}
    if not isinstance(options, dict):
        raise ConfigError(f"recipe stage {i} '{kind}': options must be a mapping, got {options!r}")
    sid = f"{i:02d}-{kind}"
    return StageSpec(i, kind, parse_stage_options(kind, options, seed * 1000 + i, sid, methods), dict(options))


def _resolve_teacher(stages: tuple[StageSpec, ...], stage: StageSpec) -> StageSpec:
    earlier = stages[: stage.index]
    ref = stage.options.teacher
    if ref is None:
        first_prune = next((s.index for s in earlier if s.kind == "prune"), None)
        if first_prune is None or first_prune == 0:
            raise ConfigError(
                f"stage '{stage.id}': no default teacher (the last stage before the first prune); "
                "set 'teacher' to an earlier stage id or type"
            )
        return earlier[first_prune - 1]
    matches = [s for s in earlier if ref in (s.id, s.kind)]
    if not matches:
        raise ConfigError(
            f"stage '{stage.id}': teacher {ref!r} is not an earlier stage; earlier stages are {[s.id for s in earlier]}"
        )
    return matches[-1]


def _check_order(stages: tuple[StageSpec, ...]) -> None:
    quantized = None
    for s in stages:
        if s.kind == "quantize":
            quantized = s
        elif s.kind in TRAINING_STAGES and quantized is not None:
            raise ConfigError(
                f"stage '{s.id}' trains after '{quantized.id}' and would undo the quantization; "
                "put 'quantize' after the last train/finetune/distill stage"
            )
        if s.kind == "distill":
            _resolve_teacher(stages, s)


def recipe_from_dict(data: Any, prune_methods: dict[str, PruneMethod] | None = None) -> Recipe:
    """Validate a recipe given as plain data (the parsed YAML).

    Example:
        >>> r = recipe_from_dict({"stages": [{"train": {"epochs": 1}}, {"evaluate": None}]})
        >>> [s.id for s in r.stages]
        ['00-train', '01-evaluate']
    """
    d = _check_keys("top level", data, TOP_KEYS)
    methods = prune_methods if prune_methods is not None else default_prune_methods()
    seed = check_positive_int("seed", d.get("seed", 0), allow_zero=True)
    stages_raw = d.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise ConfigError(f"recipe 'stages' must be a non-empty list of stages (types: {list(STAGE_TYPES)})")
    stages = tuple(_parse_stage(i, item, seed, methods) for i, item in enumerate(stages_raw))
    _check_order(stages)
    name = d.get("name", "recipe")
    return Recipe(str(name), seed, _parse_data(d.get("data")), _parse_model(d.get("model")), stages, dict(d))


def load_recipe(path: str | os.PathLike[str], prune_methods: dict[str, PruneMethod] | None = None) -> Recipe:
    """Read and validate a YAML recipe file.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.yaml"
        >>> _ = p.write_text("stages:\\n  - train: {epochs: 1}\\n")
        >>> load_recipe(p).stages[0].options.train.epochs
        1
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"recipe file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {str(p)!r} is not valid YAML: {exc}") from exc
    return recipe_from_dict(data, prune_methods)


__all__ = ["Recipe", "DataSpec", "ModelSpec", "StageSpec", "DistillOptions", "recipe_from_dict", "load_recipe"]
