"""``run_recipe``: run a recipe's stages, checkpointing each, resuming after a crash.

Output folder::

    DIR/run.json              recipe fingerprint (a resumed run must use the same recipe)
    DIR/recipe.yaml           the recipe as run
    DIR/stages/NN-<type>/     one folder per finished stage: model.safetensors,
                              [quant.safetensors], state.json, [exported files]
    DIR/metrics.json          every stage's metrics, written when the run ends

A stage is built in ``DIR/stages/.tmp-NN-<type>-<pid>/`` and renamed into place only when
everything in it is written, so a killed run (even SIGKILL) leaves only whole stages.
Running again on the same DIR skips the finished stages, loads the last checkpoint and
continues; every stage reseeds from ``(seed, stage index)``, so the final metrics equal
those of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prunekit._version import __version__
from prunekit.errors import ConfigError
from prunekit.io.atomic import atomic_write_json, atomic_write_text
from prunekit.metrics import size_bytes
from prunekit.recipes.context import build_data, build_model, load_checkpoint, save_checkpoint, stage_metrics
from prunekit.recipes.execute import Pipeline, run_stage
from prunekit.recipes.schema import Recipe
from prunekit.recipes.stages import PruneMethod, default_prune_methods
from prunekit.train.seed import seed_everything


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prepare(recipe: Recipe, out: Path, restart: bool) -> Path:
    stages_dir = out / "stages"
    run_file = out / "run.json"
    if run_file.exists():
        info = json.loads(run_file.read_text())
        if info.get("recipe_sha256") != recipe.sha256:
            if not restart:
                raise ConfigError(
                    f"{out} holds a run of a different recipe ({info.get('recipe_name')!r}); "
                    "use another --out folder, or --restart to discard its stages"
                )
            shutil.rmtree(stages_dir, ignore_errors=True)
    elif stages_dir.exists() and any(stages_dir.iterdir()):
        raise ConfigError(f"{out} has a 'stages' folder but no run.json; use another --out folder")
    if restart:
        shutil.rmtree(stages_dir, ignore_errors=True)
    stages_dir.mkdir(parents=True, exist_ok=True)
    for leftover in stages_dir.glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    import yaml

    atomic_write_text(out / "recipe.yaml", yaml.safe_dump(recipe.source, sort_keys=False))
    atomic_write_json(run_file, {"recipe_name": recipe.name, "recipe_sha256": recipe.sha256, "prunekit": __version__})
    return stages_dir


def finished_stages(recipe: Recipe, stages_dir: Path) -> int:
    """How many leading stages have a complete checkpoint in ``stages_dir``."""
    n = 0
    for stage in recipe.stages:
        if not (stages_dir / stage.id / "state.json").exists():
            break
        n += 1
    return n


def run_recipe(
    recipe: Recipe,
    out_dir: str | os.PathLike[str],
    progress: bool = True,
    restart: bool = False,
    prune_methods: dict[str, PruneMethod] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) ``recipe`` into ``out_dir``; return the summary also written to
    ``metrics.json``: ``{"recipe", "stages": {stage id: state}}``.

    Args:
        recipe: a validated ``Recipe`` (``load_recipe``).
        out_dir: the run folder; created if needed, resumed if it holds finished stages.
        progress: show progress bars.
        restart: discard the folder's finished stages first.
        prune_methods: the prune method registry (default: ``default_prune_methods()``).
        log: called with one line per stage (e.g. ``print``).

    Example:
        >>> import tempfile
        >>> from prunekit.recipes.schema import recipe_from_dict
        >>> r = recipe_from_dict({"data": {"train_subset": 64, "test_subset": 32},
        ...     "model": {"name": "lenet300100"}, "stages": [{"train": {"epochs": 1}}]})
        >>> sorted(run_recipe(r, tempfile.mkdtemp(), progress=False)["stages"])
        ['00-train']
    """
    log = log or (lambda _line: None)
    out = Path(out_dir)
    stages_dir = _prepare(recipe, out, restart)
    data = build_data(recipe.data)
    seed_everything(recipe.seed)
    model = build_model(recipe.model, data)
    pipeline = Pipeline(
        recipe,
        data,
        model,
        stages_dir,
        prune_methods or default_prune_methods(),
        dense_bytes=size_bytes(model),
        progress=progress,
    )
    done = finished_stages(recipe, stages_dir)
    if done:
        last = recipe.stages[done - 1]
        pipeline.record = load_checkpoint(stages_dir / last.id, pipeline.model)
        log(f"resuming after stage {last.id} ({done}/{len(recipe.stages)} finished)")
    for stage in recipe.stages[done:]:
        seed_everything(recipe.seed * 1000 + stage.index)
        tmp = stages_dir / f".tmp-{stage.id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        extra, timing = run_stage(pipeline, stage, tmp)
        save_checkpoint(tmp, pipeline.model, pipeline.record)
        metrics = {**stage_metrics(pipeline.model, pipeline.record, data), **extra}
        state = {"id": stage.id, "type": stage.kind, "options": stage.raw, "metrics": metrics, "timing": timing}
        atomic_write_json(tmp / "state.json", state)
        os.rename(tmp, stages_dir / stage.id)
        _fsync_dir(stages_dir)
        log(
            f"stage {stage.id}: accuracy {100 * metrics['accuracy']:.2f}%, non-zero {metrics['nonzero']:,}, "
            f"compact {metrics['compact_bytes']:,} B, {timing['seconds']:.1f} s"
        )
    summary = {
        "recipe": recipe.name,
        "dense_bytes": pipeline.dense_bytes,
        "stages": {s.id: json.loads((stages_dir / s.id / "state.json").read_text()) for s in recipe.stages},
    }
    atomic_write_json(out / "metrics.json", summary)
    return summary
