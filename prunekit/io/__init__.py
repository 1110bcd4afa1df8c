"""Atomic file writing and safetensors helpers (no pickle for user-facing files)."""

from prunekit.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, atomic_write_with
from prunekit.io.tensors import load_state_into, load_tensors, save_tensors, state_dict_bytes

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_with",
    "save_tensors",
    "load_tensors",
    "load_state_into",
    "state_dict_bytes",
]
