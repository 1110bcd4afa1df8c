"""Export: the compact sparse file format (safetensors container) and ONNX export."""

from prunekit.export.compact import CompactConfig, decode_compact, encode_compact
from prunekit.export.compact_io import compact_bytes, load_compact, load_compact_into, save_compact
from prunekit.masks.parametrize import plain_copy

__all__ = [
    "CompactConfig",
    "encode_compact",
    "decode_compact",
    "compact_bytes",
    "save_compact",
    "load_compact",
    "load_compact_into",
    "plain_copy",
]
