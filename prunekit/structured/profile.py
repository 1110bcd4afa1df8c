"""Measure a model's per-module latency on this device and map it onto its groups.

Every module call is timed by forward hooks (exclusive time: a call's own work, its
children's time subtracted), at the batch size of interest, median over a few runs.
Each call then becomes a ``CostTerm`` over the groups whose channels it touches:

- a module that owns parameters (Conv, Linear, norms, attention) scales with the groups
  of its largest parameter's dims (a convolution's output and input channels);
- any other call (activation, pooling, a block's residual add) scales with the group of
  the channels most recently produced, i.e. the output dim of the last module with
  parameters that ran.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunekit.graph import DependencyGraph
from prunekit.structured.latency_model import CostModel, fit_two_points, split_fixed_cost
from prunekit.structured.targets import batch_of, shape_only_count


def _own_weight(module: nn.Module) -> tuple[str, torch.Tensor] | None:
    """The largest parameter the module owns directly (not via children)."""
    params = list(module.named_parameters(recurse=False))
    if not params:
        return None
    return max(params, key=lambda kv: kv[1].numel())


def _qualified(module_name: str, param_name: str) -> str:
    return f"{module_name}.{param_name}" if module_name else param_name


def _output_param(name: str, module: nn.Module) -> str | None:
    """Full name of the parameter whose dim 0 indexes the module's output channels."""
    if isinstance(module, nn.MultiheadAttention):
        return _qualified(name, "out_proj.weight")
    own = _own_weight(module)
    return None if own is None else _qualified(name, own[0])


def time_module_calls(model: nn.Module, example_input: Any, runs: int = 3,
                      warmup: int = 1, budget_s: float = 5.0) -> list[tuple[str, float]]:
    """``(module name, exclusive ms)`` for every module call of one forward, in call
    order, median over ``runs`` timed forwards (eval mode, no grad); fewer runs (at
    least one) when they would take longer than ``budget_s`` seconds.

    Example:
        >>> m = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
        >>> [n for n, _ in time_module_calls(m, torch.zeros(2, 8), runs=1)]
        ['0', '1', '']
    """
    from prunekit.structured.pruner import _call

    calls: list[list[Any]] = []  # [name, start, child_time]
    record: list[tuple[str, float]] = []

    def pre(name):
        def hook(mod, args):
            calls.append([name, time.perf_counter(), 0.0])
        return hook

    def post(name):
        def hook(mod, args, out):
            n, start, child = calls.pop()
            elapsed = time.perf_counter() - start
            if calls:
                calls[-1][2] += elapsed
            record.append((n, (elapsed - child) * 1000.0))
        return hook

    handles = []
    for name, mod in model.named_modules():
        handles.append(mod.register_forward_pre_hook(pre(name)))
        handles.append(mod.register_forward_hook(post(name)))
    was = model.training
    per_run: list[list[tuple[str, float]]] = []
    try:
        model.eval()
        with torch.inference_mode():
            for _ in range(warmup):
                _call(model, example_input)
            start = time.perf_counter()
            while len(per_run) < runs:
                record.clear()
                calls.clear()
                _call(model, example_input)
                per_run.append(list(record))
                if time.perf_counter() - start > budget_s:
                    break
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    if any(len(r) != len(per_run[0]) for r in per_run):  # data-dependent control flow
        per_run = per_run[:1]
    return [(per_run[0][i][0], statistics.median(r[i][1] for r in per_run))
            for i in range(len(per_run[0]))]


def module_macs(model: nn.Module, example_input: Any) -> dict[str, int]:
    """Exclusive MACs of every module (its own ops; children's subtracted), from one
    shape-only forward.

    Example:
        >>> m = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
        >>> module_macs(m, torch.zeros(2, 4))
        {'': 0, '0': 24}
    """
    counter = shape_only_count(model, example_input)
    root = type(model).__name__
    inclusive: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        if key == root or key.startswith(root + "."):
            inclusive[key[len(root) + 1:]] = int(sum(ops.values()) // 2)
    out = {}
    for name, mod in model.named_modules():
        if name not in inclusive:
            continue
        prefix = f"{name}." if name else ""
        children = sum(inclusive.get(prefix + c, 0) for c, _ in mod.named_children())
        out[name] = max(0, inclusive[name] - children)
    return out


def build_cost_models(
    model: nn.Module,
    example_input: Any,
    graph: DependencyGraph,
    batch: int = 1,
    runs: int = 3,
    probe: tuple[Callable[[list[int]], Any], list[int]] | None = None,
) -> tuple[CostModel, CostModel]:
    """Time ``model`` at ``batch`` and count its MACs, both over ``graph``'s groups.

    With ``probe = (cut, keep)`` the model is also measured cut to ``keep`` units per
    group (``cut(keep)`` prunes and returns an object with ``restore()``), and each term
    is fitted through both points: the part that did not shrink (a softmax over a fixed
    number of heads, kernels that run less efficiently when narrow) becomes fixed cost
    instead of being credited to the groups.

    Args:
        model: the model (not modified).
        example_input: a batch-1 example input; it is repeated to ``batch`` rows.
        graph: its dependency graph (ignored groups already dropped).
        batch: batch size the latency is measured at.
        runs: timed forwards (median per call).
        probe: optional second measuring point, see above.

    Returns:
        ``(latency, macs)``: ``CostModel`` in milliseconds (at ``batch``) and in MACs (at
        batch 1); ``predict(sizes)`` of each is the whole network's measured total.

    Example:
        >>> from prunekit.graph import build_dependency_graph
        >>> m = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 4, 3))
        >>> x = torch.zeros(1, 3, 16, 16)
        >>> lat, macs = build_cost_models(m, x, build_dependency_graph(m, x), runs=1)
        >>> macs.predict(macs.sizes), macs.per_group().tolist()
        (167616.0, [167616.0])
    """
    key_of = {key: g.id for g in graph.groups for key in g.index}
    sizes = tuple(g.size for g in graph.groups)
    x = batch_of(example_input, batch)
    ms_dense, groups_of_module = _by_groups(model, time_module_calls(model, x, runs=runs), key_of)
    macs_dense = _macs_by_groups(model, example_input, groups_of_module)
    if probe is None:
        return (CostModel(*split_fixed_cost(ms_dense), sizes),
                CostModel(*split_fixed_cost(macs_dense), sizes))
    cut, probe_keep = probe
    frac = [k / n for k, n in zip(probe_keep, sizes)]
    snap = cut(probe_keep)
    try:
        ms_probe, _ = _by_groups(model, time_module_calls(model, x, runs=runs), key_of)
        macs_probe = _macs_by_groups(model, example_input, groups_of_module)
    finally:
        snap.restore()
    return (CostModel(*fit_two_points(ms_dense, ms_probe, frac), sizes),
            CostModel(*fit_two_points(macs_dense, macs_probe, frac), sizes))


def _by_groups(model: nn.Module, calls: list[tuple[str, float]],
               key_of: dict[tuple[str, int], int]):
    """Sum call costs per tuple of groups (``()`` = fixed); also each module's groups."""
    modules = dict(model.named_modules())
    by: dict[tuple[int, ...], float] = defaultdict(float)
    groups_of_module: dict[str, tuple[int, ...]] = {}
    current: tuple[int, ...] = ()
    for name, ms in calls:
        mod = modules[name]
        own = _own_weight(mod)
        if own is not None:
            full = _qualified(name, own[0])
            groups = tuple(sorted({key_of[(full, d)] for d in range(own[1].dim())
                                   if (full, d) in key_of}))
            out = _output_param(name, mod)
            current = (key_of[(out, 0)],) if (out, 0) in key_of else ()
        else:
            groups = current
        groups_of_module.setdefault(name, groups)
        by[groups] += ms
    return dict(by), groups_of_module


def _macs_by_groups(model: nn.Module, example_input: Any,
                    groups_of_module: dict[str, tuple[int, ...]]) -> dict[tuple[int, ...], float]:
    by: dict[tuple[int, ...], float] = defaultdict(float)
    for name, macs in module_macs(model, example_input).items():
        by[groups_of_module.get(name, ())] += macs
    return dict(by)
