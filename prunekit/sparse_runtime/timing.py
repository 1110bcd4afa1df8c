"""Interleaved micro-timing: every candidate measured in every round, medians compared."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flush_tensors(tensors: list[torch.Tensor]) -> None:
    """Evict these tensors' bytes from the CPU caches (no-op without the compiled kernels)."""
    op = getattr(getattr(torch.ops, "prunekit_sparse", None), "flush_cache", None)
    for t in tensors:
        if t is not None and t.device.type == "cpu" and t.numel():
            op(t)


def time_candidates(
    fns: dict[str, Callable[[], object]], rounds: int = 7, device: torch.device | None = None,
    min_us: float = 300.0, cold: dict[str, list[torch.Tensor]] | None = None,
) -> dict[str, float]:
    """Median microseconds per call of each function, measured in interleaved rounds.

    Each function first runs twice (warm-up) and is repeated inside a round until one
    measurement spans about ``min_us``, so short kernels are not timer noise; running
    every candidate in every round makes load drift hit all of them alike.

    With ``cold`` (candidate -> the tensors it reads, e.g. its weights), every timed call
    starts with those tensors evicted from the caches (the eviction is not timed): how a
    layer runs inside a model whose weights do not stay cached between calls. Cold calls
    are timed one by one, ``3 * rounds`` of them.

    Example:
        >>> out = time_candidates({"a": lambda: sum(range(100)), "b": lambda: None}, rounds=3)
        >>> sorted(out), out["a"] > 0
        (['a', 'b'], True)
    """
    dev = device or torch.device("cpu")
    if cold is not None:
        return _time_cold(fns, cold, 3 * rounds, dev)
    reps: dict[str, int] = {}
    for name, fn in fns.items():
        fn()
        _sync(dev)
        start = time.perf_counter()
        fn()
        _sync(dev)
        one = max((time.perf_counter() - start) * 1e6, 1.0)
        reps[name] = max(1, min(200, int(min_us / one)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(reps[name]):
                fn()
            _sync(dev)
            samples[name].append((time.perf_counter() - start) * 1e6 / reps[name])
    return {name: statistics.median(v) for name, v in samples.items()}


def _time_cold(
    fns: dict[str, Callable[[], object]], cold: dict[str, list[torch.Tensor]], calls: int, dev: torch.device
) -> dict[str, float]:
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(calls):
        for name, fn in fns.items():
            flush_tensors(cold.get(name, []))
            start = time.perf_counter()
            fn()
            _sync(dev)
            samples[name].append((time.perf_counter() - start) * 1e6)
    return {name: statistics.median(v) for name, v in samples.items()}
