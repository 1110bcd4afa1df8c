"""All model metrics of one stage in one dict (the shape the reports and JSON use)."""

from __future__ import annotations

from typing import Any

from torch import nn

from prunekit.metrics.latency import measure_latency
from prunekit.metrics.macs import count_macs, count_sparse_macs
from prunekit.metrics.params import count_nonzero, count_params
from prunekit.metrics.size import size_on_disk


def model_metrics(
    model: nn.Module, example_input: Any, latency_runs: int = 30, threads: int | None = None
) -> dict[str, Any]:
    """Return ``params``, ``nonzero``, ``size_bytes``, ``size_compressed_bytes``, ``macs``,
    ``macs_sparse``, ``latency_ms`` and the latency conditions, for one example batch.

    Example:
        >>> import torch
        >>> m = model_metrics(nn.Linear(4, 2), torch.zeros(1, 4), latency_runs=3)
        >>> (m["params"], m["macs"])
        (10, 8)
    """
    size = size_on_disk(model)
    latency = measure_latency(model, example_input, runs=latency_runs, threads=threads)
    return {
        "params": count_params(model),
        "nonzero": count_nonzero(model),
        "size_bytes": size.dense_bytes,
        "size_compressed_bytes": size.compressed_bytes,
        "macs": count_macs(model, example_input),
        "macs_sparse": count_sparse_macs(model, example_input),
        "latency_ms": latency.median_ms,
        "latency": latency.to_dict(),
    }
