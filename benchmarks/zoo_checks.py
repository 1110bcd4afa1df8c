"""The per-model checks of ``benchmarks/zoo.py`` (each runs inside a model's own process).

``run_prunekit``: prune at ratio 0.5 (default settings) and check output shapes, MACs
reduction, prune time, dead-unit output equivalence (``tests/structured``'s helpers:
units of exact groups are zeroed so that removing exactly them must not change the
outputs) and a reload with ``load_pruned`` in a fresh Python process.
``run_torch_pruning``: Torch-Pruning's ``MetaPruner`` (L2 magnitude, ``pruning_ratio=0.5``,
the classifier / detection head ignored) on the same model, same shape / MACs / time bar.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from zoo_sources import SOURCES, flat_outputs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "structured"))  # the equivalence helpers

TIME_LIMIT_S = 10.0
MIN_MACS_REDUCTION = 1.5
ATOL = 1e-4


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Same count as ``prunekit.metrics.count_macs``, without doing the arithmetic."""
    from prunekit.structured.targets import shape_only_macs

    return shape_only_macs(model, x)


def shapes(model: nn.Module, x: torch.Tensor) -> list[list[int]]:
    with torch.no_grad():
        return [list(t.shape) for t in flat_outputs(model.eval()(x))]


def max_error(after: list[torch.Tensor], before: list[torch.Tensor]) -> float:
    """Largest absolute difference relative to max(1, |before|) over all outputs."""
    if [t.shape for t in after] != [t.shape for t in before]:
        return float("inf")
    errs = [((a.float() - b.float()).abs().max() / max(1.0, b.abs().max().item())).item()
            for a, b in zip(after, before) if b.numel()]
    return max(errs, default=0.0)


def dead_unit_error(source: str, name: str, x: torch.Tensor) -> tuple[float, int]:
    """Kill units of exact groups, prune exactly them; relative output error, groups."""
    from structured_helpers import exact_choices, kill_units

    from prunekit.structured import StructuredConfig, StructuredPruner

    torch.manual_seed(0)
    model = SOURCES[source]().build(name)
    pruner = StructuredPruner(model, x, StructuredConfig(ratio=0.5))
    groups = exact_choices(pruner)
    kill_units(model, pruner)
    with torch.no_grad():
        before = flat_outputs(model(x))
    pruner.apply()
    with torch.no_grad():
        after = flat_outputs(model.eval()(x))
    return max_error(after, before), groups


def fresh_reload_error(source: str, name: str, model: nn.Module, x: torch.Tensor,
                       timeout: float) -> float:
    """save_pruned, then ``zoo_reload.py`` in a new process; relative output error."""
    from prunekit.structured import save_pruned

    with tempfile.TemporaryDirectory(prefix="zoo-reload-") as folder:
        with torch.no_grad():
            expected = flat_outputs(model.eval()(x))
        save_pruned(model, folder)
        torch.save(x, Path(folder) / "x.pt")
        script = Path(__file__).with_name("zoo_reload.py")
        out = subprocess.run([sys.executable, str(script), source, name, folder],
                             capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        if out.returncode != 0:
            tail = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
            raise RuntimeError(f"reload process failed: {tail[-1] if tail else out.returncode}")
        got = torch.load(Path(folder) / "y.pt")
    return max_error(got, expected)


def basic_problems(shape_before, shape_after, reduction: float, seconds: float) -> list[str]:
    """The checks both pruners face: output shapes kept, MACs bar met, prune time limit."""
    problems = []
    if shape_after != shape_before:
        problems.append(f"output shapes {shape_after} != {shape_before}")
    if reduction < MIN_MACS_REDUCTION:
        problems.append(f"MACs reduced only {reduction:.2f}x")
    if seconds > TIME_LIMIT_S:
        problems.append(f"pruning took {seconds:.1f}s")
    return problems


def run_prunekit(source: str, name: str, reload_timeout: float = 120.0) -> dict:
    """Prune ``name`` with prunekit and run every check; one result row."""
    from prunekit.metrics import count_params
    from prunekit.structured import StructuredConfig, prune_channels_

    src = SOURCES[source]()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = src.build(name)
    x = src.example(model, name)
    shape_before = shapes(model, x)
    params0, macs0 = count_params(model), count_macs(model, x)
    start, cpu = time.perf_counter(), time.process_time()
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    shape_after = shapes(model, x)  # a real forward: the pruned model must run
    params1, macs1 = count_params(model), count_macs(model, x)
    reduction = macs0 / max(macs1, 1)
    problems = basic_problems(shape_before, shape_after, reduction, seconds)
    row = {"model": name, "input": list(x.shape), "params_before": params0,
           "params_after": params1, "macs_before": macs0, "macs_after": macs1,
           "macs_reduction": round(reduction, 3), "prune_s": round(seconds, 3),
           "prune_cpu_s": round(cpu, 3)}  # CPU time: what a shared, loaded machine distorts least
    try:
        row["reload_err"] = fresh_reload_error(source, name, model, x, reload_timeout)
        if not row["reload_err"] <= ATOL:
            problems.append(f"fresh-process reload differs by {row['reload_err']:.2e}")
    except Exception as exc:
        problems.append("reload: " + f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    del model
    try:
        row["dead_unit_err"], row["dead_unit_groups"] = dead_unit_error(source, name, x)
        if not row["dead_unit_err"] <= ATOL:
            problems.append(f"dead units pruned change outputs by {row['dead_unit_err']:.2e}")
    except Exception as exc:
        problems.append("dead units: " + f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    row.update(ok=not problems, problems=problems)
    return row


def run_torch_pruning(source: str, name: str) -> dict:
    """Torch-Pruning 1.6 MetaPruner at pruning_ratio=0.5 on the same model and input."""
    import torch_pruning as tp

    src = SOURCES[source]()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = src.build(name)
    x = src.example(model, name)
    shape_before, macs0 = shapes(model, x), count_macs(model, x)
    start = time.perf_counter()
    pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=0.5, ignored_layers=src.classifier(model))
    pruner.step()
    seconds = time.perf_counter() - start
    shape_after, macs1 = shapes(model, x), count_macs(model, x)
    reduction = macs0 / max(macs1, 1)
    problems = basic_problems(shape_before, shape_after, reduction, seconds)
    return {"model": name, "macs_reduction": round(reduction, 3), "prune_s": round(seconds, 3),
            "ok": not problems, "problems": problems}


if __name__ == "__main__":  # debugging: python benchmarks/zoo_checks.py timm resnet10t
    print(json.dumps(run_prunekit(sys.argv[1], sys.argv[2])))
