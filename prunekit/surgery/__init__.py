"""Structured surgery: slice tensors, update layer attributes, undo on failure."""

from prunekit.surgery.apply import Snapshot, apply_keep
from prunekit.surgery.registry import (
    SurgeryRule,
    Tie,
    register_surgery_rule,
    register_torchvision_rules,
    rule_for,
    sync_modules,
)

__all__ = [
    "Snapshot",
    "apply_keep",
    "SurgeryRule",
    "Tie",
    "register_surgery_rule",
    "register_torchvision_rules",
    "rule_for",
    "sync_modules",
]
