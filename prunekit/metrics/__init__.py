"""Metrics used everywhere: parameters, non-zeros, size on disk, MACs, latency, accuracy."""

from prunekit.metrics.accuracy import evaluate
from prunekit.metrics.latency import LatencyResult, measure_latency
from prunekit.metrics.macs import count_macs, count_sparse_macs
from prunekit.metrics.params import count_nonzero, count_params
from prunekit.metrics.size import SizeResult, resident_bytes, size_bytes, size_on_disk
from prunekit.metrics.summary import model_metrics

__all__ = [
    "evaluate",
    "count_params",
    "count_nonzero",
    "count_macs",
    "count_sparse_macs",
    "size_bytes",
    "resident_bytes",
    "size_on_disk",
    "SizeResult",
    "measure_latency",
    "LatencyResult",
    "model_metrics",
]
