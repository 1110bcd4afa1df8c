"""The frozen, validated configuration of a one-shot LLM pruning run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prunekit.config.base import ConfigBase, check_choice, check_fraction, check_positive_int
from prunekit.errors import ConfigError
from prunekit.llm.precision import CALIB_DTYPES
from prunekit.patterns.nm import NM

METHODS: tuple[str, ...] = ("magnitude", "wanda", "sparsegpt")
RECONSTRUCT: tuple[str, ...] = ("none", "layer", "block", "layer+block")


@dataclass(frozen=True)
class LLMPruneConfig(ConfigBase):
    """What to prune and how.

    Attributes:
        method: ``"magnitude"``, ``"wanda"`` or ``"sparsegpt"``.
        sparsity: fraction of each block linear's weights removed (unstructured), in [0, 1).
        pattern: an :class:`NM` (or ``"2:4"``) for semi-structured sparsity; overrides ``sparsity``.
        owl: use OWL outlier-weighted per-layer sparsities (unstructured only).
        owl_threshold: OWL's outlier factor M (score > M * mean score).
        owl_lambda: OWL's spread: per-layer sparsity within ``sparsity +- owl_lambda``.
        blocksize: SparseGPT lazy-update block width. percdamp: SparseGPT dampening.
        batch_size: calibration windows per forward.
        reconstruct: ``"none"`` or ``"layer"``: after the mask is chosen, re-fit each layer's
            kept weights to the dense layer's outputs on the calibration inputs (ADMM least
            squares with the mask fixed; works after any method or pattern); ``"block"``:
            after a block's masks are chosen, ``block_steps`` Adam steps fit the sparse
            block's outputs to the dense model's block outputs (masks held exactly; the
            last calibration batch is held out and the weights with its lowest error kept);
            ``"layer+block"``: both, the layer fit first.
        block_steps: optimiser steps of the block fit. block_lr: its Adam learning rate.
        block_bf16: run the block fit's forward and backward under bf16 autocast where the
            device supports it (weights, optimiser state and masks stay in the model's dtype).
        permute: with an N:M pattern, permute the input channels of the linears whose
            producer can absorb the permutation (o_proj, down_proj) so that important
            weights fall into different groups; the model's function is unchanged.
        single_pass_mb: when all calibration tokens fit one block forward within this many
            MB, each block is pruned inside one forward (each linear pruned as its input
            arrives; no second pass); 0 always uses two passes (statistics, then outputs).
        calib_dtype: precision of the calibration forwards: ``"auto"`` (bf16 autocast where
            the device has fast bf16 -- AMX / AVX512-BF16 CPUs, bf16 GPUs -- and the model is
            float32; else float32), ``"float32"`` or ``"bfloat16"``. Statistics are always
            accumulated in float32; see :mod:`prunekit.llm.precision`.

    Example:
        >>> LLMPruneConfig(method="sparsegpt", pattern="2:4").pattern
        NM(n=2, m=4)
    """

    method: str = "wanda"
    sparsity: float = 0.5
    pattern: NM | None = None
    owl: bool = False
    owl_threshold: float = 5.0
    owl_lambda: float = 0.08
    blocksize: int = 128
    percdamp: float = 0.01
    batch_size: int = 8
    reconstruct: str = "none"
    block_steps: int = 24
    block_lr: float = 2e-3
    block_bf16: bool = True
    permute: bool = False
    single_pass_mb: int = 2048
    calib_dtype: str = "auto"

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        check_choice("reconstruct", self.reconstruct, RECONSTRUCT)
        check_choice("calib_dtype", self.calib_dtype, CALIB_DTYPES)
        check_fraction("sparsity", self.sparsity)
        pattern: Any = self.pattern
        if isinstance(pattern, str):
            object.__setattr__(self, "pattern", NM.parse(pattern))
        elif isinstance(pattern, dict):
            object.__setattr__(self, "pattern", NM.from_dict(pattern))
        elif pattern is not None and not isinstance(pattern, NM):
            raise ConfigError(f"pattern must be NM(n, m), 'n:m' or None, got {pattern!r}")
        if self.owl and self.pattern is not None:
            raise ConfigError("owl=True needs unstructured sparsity; drop pattern or owl")
        if self.owl and not 0 <= self.owl_lambda < min(self.sparsity, 1 - self.sparsity) + 1e-12:
            raise ConfigError(
                f"owl_lambda must be in [0, min(sparsity, 1 - sparsity)), got {self.owl_lambda}"
            )
        if self.owl_threshold <= 0:
            raise ConfigError(f"owl_threshold must be positive, got {self.owl_threshold}")
        check_positive_int("blocksize", self.blocksize)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("block_steps", self.block_steps)
        check_positive_int("single_pass_mb", self.single_pass_mb, allow_zero=True)
        if not 0 < self.block_lr < 1:
            raise ConfigError(f"block_lr must be in (0, 1), got {self.block_lr}")
        if self.permute and self.pattern is None:
            raise ConfigError("permute=True only helps N:M patterns; give pattern='2:4' or drop permute")
        if not 0 <= self.percdamp < 1:
            raise ConfigError(f"percdamp must be in [0, 1), got {self.percdamp}")

    @property
    def target_sparsity(self) -> float:
        """The sparsity the run produces: the pattern's when one is given."""
        return self.pattern.sparsity if self.pattern is not None else self.sparsity

    @property
    def needs_calibration(self) -> bool:
        """Whether activations are needed (everything but plain magnitude)."""
        return self.method != "magnitude" or self.owl or self.reconstruct != "none" or self.permute

    @property
    def layer_fit(self) -> bool:
        """Whether each linear's kept weights are re-fitted by least squares."""
        return self.reconstruct in ("layer", "layer+block")

    @property
    def block_fit(self) -> bool:
        """Whether each block's kept weights are fitted to the dense block's outputs."""
        return self.reconstruct in ("block", "layer+block")
