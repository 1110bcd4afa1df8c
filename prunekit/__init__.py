"""prunekit: prune PyTorch models and prove the result.

The public API in one place::

    import prunekit
    prunekit.sparsify_(model, prunekit.SparsifyConfig(amount=0.5))   # masks, shapes kept
    ...fine-tune as usual: masked weights stay exactly zero...
    prunekit.make_permanent(model)                                    # plain module again

Concepts live in sub-packages: ``patterns`` (what shape is removed), ``importance``
(how candidates are scored), ``masks`` (zeroing with shapes kept), ``metrics``,
``train``, ``data``, ``models``, ``report``, ``workflows``, ``cli``.
"""

from prunekit._version import __version__
from prunekit.distill import DistillConfig, distill
from prunekit.dynamic import DynamicConfig, DynamicSparsity
from prunekit.errors import (
    ConfigError,
    DatasetError,
    MissingDependencyError,
    ModelError,
    PrunekitError,
    TargetUnreachableError,
    UnsupportedOpError,
)
from prunekit.export import CompactConfig, load_compact_into, save_compact
from prunekit.graph import build_dependency_graph
from prunekit.importance import Magnitude, Random
from prunekit.importance.snip import snip_prune_
from prunekit.importance.synflow import synflow_prune_
from prunekit.learned import L0Config, L0Gates, MovementPruning
from prunekit.llm import LLMPruneConfig, perplexity, prune_llm
from prunekit.lottery import LotteryConfig, export_ticket, find_ticket, load_ticket
from prunekit.masks import (
    SparsifyConfig,
    apply_mask,
    get_mask,
    load_masked,
    make_permanent,
    plain_copy,
    save_masked,
    sparsify_,
    sparsify_with_scores_,
    sparsity_report,
)
from prunekit.metrics import (
    count_macs,
    count_nonzero,
    count_params,
    measure_latency,
    model_metrics,
    size_on_disk,
)
from prunekit.patterns import NM, Block, Unstructured
from prunekit.quant import QuantizeConfig, quantize_, to_int8_inference
from prunekit.recipes import load_recipe, run_recipe
from prunekit.schedules import Gradual, Iterative, OneShot, SchedulePruner
from prunekit.sensitivity import allocate_sparsities, plot_sensitivity, sensitivity_curves
from prunekit.sparse_runtime import SparseInferenceConfig, load_sparse, save_sparse, sparse_inference_
from prunekit.structured import StructuredConfig, StructuredPruner, load_pruned, prune_channels_, save_pruned
from prunekit.surgery import SurgeryRule, register_surgery_rule

__all__ = [
    "__version__",
    "PrunekitError",
    "ConfigError",
    "ModelError",
    "DatasetError",
    "MissingDependencyError",
    "TargetUnreachableError",
    "UnsupportedOpError",
    "Magnitude",
    "Random",
    "SparsifyConfig",
    "sparsify_",
    "make_permanent",
    "apply_mask",
    "get_mask",
    "sparsity_report",
    "save_masked",
    "load_masked",
    "count_params",
    "count_nonzero",
    "count_macs",
    "measure_latency",
    "size_on_disk",
    "model_metrics",
    "sparsify_with_scores_",
    "plain_copy",
    "Unstructured",
    "NM",
    "Block",
    "OneShot",
    "Iterative",
    "Gradual",
    "SchedulePruner",
    "LotteryConfig",
    "find_ticket",
    "export_ticket",
    "load_ticket",
    "DynamicConfig",
    "DynamicSparsity",
    "L0Config",
    "L0Gates",
    "MovementPruning",
    "snip_prune_",
    "synflow_prune_",
    "sensitivity_curves",
    "allocate_sparsities",
    "plot_sensitivity",
    "DistillConfig",
    "distill",
    "QuantizeConfig",
    "quantize_",
    "to_int8_inference",
    "CompactConfig",
    "save_compact",
    "load_compact_into",
    "load_recipe",
    "run_recipe",
    "LLMPruneConfig",
    "prune_llm",
    "perplexity",
    "build_dependency_graph",
    "StructuredConfig",
    "StructuredPruner",
    "prune_channels_",
    "save_pruned",
    "load_pruned",
    "SurgeryRule",
    "register_surgery_rule",
    "SparseInferenceConfig",
    "sparse_inference_",
    "save_sparse",
    "load_sparse",
]
