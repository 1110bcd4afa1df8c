"""Learned masks: movement pruning (top-k scores, straight-through) and L0 hard-concrete
gates on structured units steered to a target sparsity."""

from prunekit.learned.hard_concrete import deterministic_gates, prob_nonzero, sample_gates
from prunekit.learned.l0 import HardConcreteGate, L0Config, L0Gates, default_gate_targets
from prunekit.learned.movement import MovementConfig, MovementPruning, topk_ste

__all__ = [
    "MovementConfig",
    "MovementPruning",
    "topk_ste",
    "L0Config",
    "L0Gates",
    "HardConcreteGate",
    "default_gate_targets",
    "sample_gates",
    "deterministic_gates",
    "prob_nonzero",
]
