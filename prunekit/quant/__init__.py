"""Quantization after pruning: int8 per-channel symmetric (zeros stay zero) and k-means
weight sharing, plus an int8 CPU inference path."""

from prunekit.quant.apply import (
    LayerQuant,
    QuantizeConfig,
    QuantRecord,
    quantize_,
    record_from_tensors,
    record_to_tensors,
)
from prunekit.quant.codebook import kmeans_codebook, nearest_codes, share_weights
from prunekit.quant.int8 import channel_scales, dequantize_symmetric, quantize_symmetric
from prunekit.quant.modules import Int8Conv2d, Int8Linear, to_int8_inference

__all__ = [
    "QuantizeConfig",
    "LayerQuant",
    "QuantRecord",
    "quantize_",
    "record_to_tensors",
    "record_from_tensors",
    "kmeans_codebook",
    "nearest_codes",
    "share_weights",
    "channel_scales",
    "quantize_symmetric",
    "dequantize_symmetric",
    "Int8Linear",
    "Int8Conv2d",
    "to_int8_inference",
]
