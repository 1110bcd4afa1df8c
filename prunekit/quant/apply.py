"""``quantize_``: quantize the weights of a (pruned) model in place, keeping zeros zero.

The model stays a float model whose prunable weights now hold exactly the quantized
values (``q * scale`` for int8, a centroid for the codebook); masks are kept. The
returned ``QuantRecord`` holds the scales / codebooks, so the compact file format can
store the integer codes and the int8 inference modules can be built from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit.config.base import ConfigBase, check_choice, check_positive_int
from prunekit.errors import ConfigError, ModelError
from prunekit.masks.sparsify import FilterFn, prunable_layers
from prunekit.quant.codebook import check_codebook_bits, nearest_codes, share_weights
from prunekit.quant.int8 import dequantize_symmetric, quantize_symmetric

SCHEMES = ("int8", "codebook")


@dataclass(frozen=True)
class QuantizeConfig(ConfigBase):
    """How to quantize prunable weights.

    Attributes:
        scheme: ``"int8"`` (per-output-channel symmetric int8, for inference and storage)
            or ``"codebook"`` (k-means weight sharing per layer, for storage).
        bits: codebook size in bits (1..8); must be 8 for ``"int8"``.
        seed: random state of k-means.

    Example:
        >>> QuantizeConfig(scheme="codebook", bits=5).to_dict()
        {'scheme': 'codebook', 'bits': 5, 'seed': 0}
    """

    scheme: str = "int8"
    bits: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("scheme", self.scheme, SCHEMES)
        check_positive_int("seed", self.seed, allow_zero=True)
        if self.scheme == "int8" and self.bits != 8:
            raise ConfigError(
                f"bits must be 8 for scheme 'int8' (got {self.bits!r}); use scheme 'codebook' for fewer bits"
            )
        check_codebook_bits(self.bits)


@dataclass(frozen=True)
class LayerQuant:
    """The quantization of one weight tensor: ``params`` is the per-channel scale (int8,
    channels along ``axis``) or the sorted codebook (codebook)."""

    scheme: str
    bits: int
    params: torch.Tensor
    axis: int = 0

    def codes(self, weight: torch.Tensor) -> torch.Tensor:
        """Integer codes of a weight holding exactly this quantization's values
        (int8 for ``int8``; uint8 codes of the non-zero entries, in flat order, for ``codebook``)."""
        if self.scheme == "int8":
            q, _ = quantize_symmetric(weight, 8, self.axis, scale=self.params)
            return q
        return nearest_codes(weight[weight != 0], self.params)

    def dequantize(
        self, codes: torch.Tensor, shape: tuple[int, ...] | None = None, nonzero: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Values from codes: the full tensor for int8; for codebook the tensor of ``shape``
        with ``centroids[codes]`` at the ``nonzero`` positions."""
        if self.scheme == "int8":
            return dequantize_symmetric(codes, self.params, self.axis)
        if shape is None or nonzero is None:
            raise ValueError("codebook dequantize needs shape and nonzero positions")
        out = torch.zeros(shape, dtype=torch.float32)
        out[nonzero] = self.params[codes.long()]
        return out


#: layer name (as in ``named_modules``) -> its weight's quantization
QuantRecord = dict[str, LayerQuant]


def _quantize_weight(weight: torch.Tensor, config: QuantizeConfig) -> tuple[torch.Tensor, LayerQuant]:
    if config.scheme == "int8":
        q, scale = quantize_symmetric(weight, 8, axis=0)
        return dequantize_symmetric(q, scale, 0).to(weight.dtype), LayerQuant("int8", 8, scale)
    shared, centroids = share_weights(weight.detach().float(), config.bits, config.seed)
    return shared.to(weight.dtype), LayerQuant("codebook", config.bits, centroids)


def quantize_(model: nn.Module, config: QuantizeConfig, filter_fn: FilterFn | None = None) -> QuantRecord:
    """Quantize every prunable layer's weight in place; return the ``QuantRecord``.

    Zeros stay exactly zero and masks stay on. All layers are computed before any is
    written, so a failure leaves the model unchanged.

    Example:
        >>> net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> rec = quantize_(net, QuantizeConfig(scheme="codebook", bits=2))
        >>> sorted(rec), len(torch.unique(net[0].weight))
        (['0', '2'], 4)
    """
    if not isinstance(config, QuantizeConfig):
        raise ConfigError(f"config must be a QuantizeConfig, got {type(config).__name__}")
    layers = prunable_layers(model, filter_fn)
    if not layers:
        raise ModelError(f"nothing to quantize in {type(model).__name__}: no Linear/Conv layer")
    results = []
    with torch.no_grad():
        for name, module in layers:
            results.append((name, module, *_quantize_weight(module.weight, config)))
        for _, module, values, _ in results:
            target = (
                module.parametrizations.weight.original
                if parametrize.is_parametrized(module, "weight")
                else module.weight
            )
            target.copy_(values)
    return {name: lq for name, _, _, lq in results}


def record_to_tensors(record: QuantRecord) -> tuple[dict[str, torch.Tensor], str]:
    """Serialise a record to ``({"<layer>": params}, json of scheme/bits/axis)``.

    Example:
        >>> t, meta = record_to_tensors({"fc": LayerQuant("int8", 8, torch.ones(2))})
        >>> list(t), json.loads(meta)["fc"]["scheme"]
        (['fc'], 'int8')
    """
    tensors = {name: lq.params.contiguous() for name, lq in record.items()}
    meta = {name: {"scheme": lq.scheme, "bits": lq.bits, "axis": lq.axis} for name, lq in record.items()}
    return tensors, json.dumps(meta, sort_keys=True)


def record_from_tensors(tensors: dict[str, torch.Tensor], meta: str) -> QuantRecord:
    """Inverse of ``record_to_tensors``."""
    info = json.loads(meta)
    return {
        name: LayerQuant(d["scheme"], int(d["bits"]), tensors[name], int(d.get("axis", 0))) for name, d in info.items()
    }
