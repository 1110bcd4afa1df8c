"""Structured pruning of transformers: attention heads, MLP neurons, experts, whole blocks.

The models stay normal transformers models; see :mod:`.storage` for save / reload.
"""

from prunekit.llm.structured.experts import expert_statistics, remove_experts, shrink_expert_neurons
from prunekit.llm.structured.prune import StructuredConfig, structured_prune
from prunekit.llm.structured.shapes import apply_layer_shapes, layer_shapes, sync_config
from prunekit.llm.structured.storage import LAYER_SHAPES_FIELD, load_pruned, save_pretrained_model
from prunekit.llm.structured.surgery import block_layouts, prune_heads, prune_mlp_neurons, remove_layers

__all__ = [
    "StructuredConfig",
    "structured_prune",
    "prune_heads",
    "prune_mlp_neurons",
    "remove_layers",
    "remove_experts",
    "shrink_expert_neurons",
    "expert_statistics",
    "block_layouts",
    "sync_config",
    "layer_shapes",
    "apply_layer_shapes",
    "save_pretrained_model",
    "load_pruned",
    "LAYER_SHAPES_FIELD",
]
