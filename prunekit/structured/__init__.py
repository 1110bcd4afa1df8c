"""Structured pruning: physically remove channels, neurons and head dims."""

from prunekit.structured.config import StructuredConfig
from prunekit.structured.plan import get_plan, load_pruned, recorded_input, replay_plan, save_pruned
from prunekit.structured.prune import prune_channels_
from prunekit.structured.pruner import GroupChoice, PruneResult, StructuredPruner

__all__ = [
    "StructuredConfig",
    "StructuredPruner",
    "GroupChoice",
    "PruneResult",
    "prune_channels_",
    "save_pruned",
    "load_pruned",
    "replay_plan",
    "get_plan",
    "recorded_input",
]
