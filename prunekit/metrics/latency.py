"""Measured inference latency: warm-up, then the median of N timed forward passes."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from prunekit.metrics.macs import _call


@dataclass(frozen=True)
class LatencyResult:
    """Latency of one forward pass in milliseconds, with the conditions it was measured in."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    warmup: int
    threads: int
    batch_size: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batch_size(example_input: Any) -> int:
    first = example_input
    if isinstance(first, dict):
        first = next(iter(first.values()))
    elif isinstance(first, (tuple, list)):
        first = first[0]
    return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() else 1


def measure_latency(
    model: nn.Module,
    example_input: Any,
    warmup: int = 5,
    runs: int = 30,
    threads: int | None = None,
) -> LatencyResult:
    """Time ``model(example_input)`` in eval mode without gradients.

    Args:
        model: the model (its train/eval mode is restored afterwards).
        example_input: a tensor, tuple of tensors or kwargs dict; its first dim is the batch.
        warmup: untimed passes first.
        runs: timed passes; the median is reported.
        threads: torch intra-op threads during the measurement (restored afterwards);
            None keeps the current setting.

    Returns:
        A ``LatencyResult``.

    Example:
        >>> r = measure_latency(nn.Linear(8, 8), torch.zeros(4, 8), warmup=1, runs=3)
        >>> r.batch_size
        4
    """
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: list[float] = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                _call(model, example_input)
            sync()
            for _ in range(runs):
                start = time.perf_counter()
                _call(model, example_input)
                sync()
                times.append((time.perf_counter() - start) * 1000.0)
    finally:
        model.train(was_training)
        torch.set_num_threads(previous_threads)
    times.sort()
    q = statistics.quantiles(times, n=10) if len(times) >= 2 else [times[0]] * 9
    return LatencyResult(
        median_ms=statistics.median(times),
        p10_ms=q[0],
        p90_ms=q[-1],
        runs=runs,
        warmup=warmup,
        threads=threads if threads is not None else previous_threads,
        batch_size=_batch_size(example_input),
        device=str(device),
    )
