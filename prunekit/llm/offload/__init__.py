"""Out-of-core LLM pruning: one decoder block in memory at a time, read from and written to
safetensors shards; calibration activations in memory or spilled to disk.

Example:
    >>> from prunekit.llm.offload import OutOfCoreConfig
    >>> OutOfCoreConfig(max_memory="2GB", spill="disk").spill
    'disk'
"""

from prunekit.llm.offload.activations import ActivationStore
from prunekit.llm.offload.config import OutOfCoreConfig, parse_memory, resolve_device
from prunekit.llm.offload.prune import OutOfCoreResult, prune_llm_out_of_core
from prunekit.llm.offload.shards import ShardReader, ShardWriter
from prunekit.llm.offload.skeleton import empty_model, materialize, release
from prunekit.llm.offload.streaming import outside_blocks, streamed

__all__ = [
    "ActivationStore",
    "OutOfCoreConfig",
    "OutOfCoreResult",
    "ShardReader",
    "ShardWriter",
    "empty_model",
    "materialize",
    "outside_blocks",
    "parse_memory",
    "prune_llm_out_of_core",
    "release",
    "resolve_device",
    "streamed",
]
