"""``SparseInferenceConfig``: which formats ``sparse_inference_`` may choose, and how it times them."""

from __future__ import annotations

from dataclasses import dataclass

from prunekit.config.base import ConfigBase, check_choice, check_fraction, check_positive_int
from prunekit.errors import ConfigError
from prunekit.sparse_runtime.formats import KINDS, VALUE_DTYPES


@dataclass(frozen=True)
class SparseInferenceConfig(ConfigBase):
    """Settings of :func:`prunekit.sparse_inference_`.

    Attributes:
        formats: pattern kinds that may be chosen: ``"unstructured"`` (bitmask or 16-bit
            column indices), ``"nm"`` (layers whose zeros are 2:4 or 4:8), ``"block"``
            (1x4, 1x16, 4x1, 4x4, 4x16 blocks, offered where the zeros form such blocks).
        value_dtype: ``"float32"`` (exact), ``"bfloat16"`` or ``"int8"`` (per-row scales).
        threads: torch threads while timing and for the report (None: the current setting).
        min_sparsity: layers sparser than this are tried; denser ones stay dense.
        min_speedup: a sparse format replaces the dense layer only if it is at least this
            much faster (median over rounds); otherwise the layer stays dense.
        rounds: timing rounds (dense and each format interleaved in every round).
        cache: ``"cold"`` times every call with the layer's weights evicted from the CPU
            caches (how layers run inside a model too big to stay cached: LLM decoding),
            ``"warm"`` with them cached (small models run again and again), ``"auto"``:
            cold when the eligible weights together exceed the L2 cache.
        exclude: module names (or name prefixes) never converted, e.g. ``("lm_head",)``.
        print_table: print the per-layer report as a table when done.

    Example:
        >>> SparseInferenceConfig(value_dtype="int8").formats
        ('unstructured', 'nm', 'block')
    """

    formats: tuple[str, ...] = KINDS
    value_dtype: str = "float32"
    threads: int | None = None
    min_sparsity: float = 0.25
    min_speedup: float = 1.03
    rounds: int = 7
    cache: str = "auto"
    exclude: tuple[str, ...] = ()
    print_table: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(self.formats))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        bad = [f for f in self.formats if f not in KINDS]
        if bad or not self.formats:
            raise ConfigError(f"formats must be a non-empty subset of {list(KINDS)}, got {list(self.formats)}")
        if self.value_dtype not in VALUE_DTYPES:
            raise ConfigError(f"value_dtype must be one of {list(VALUE_DTYPES)}, got {self.value_dtype!r}")
        if self.threads is not None:
            check_positive_int("threads", self.threads)
        check_fraction("min_sparsity", self.min_sparsity)
        if not isinstance(self.min_speedup, (int, float)) or self.min_speedup < 1.0:
            raise ConfigError(f"min_speedup must be a number >= 1.0, got {self.min_speedup!r}")
        check_positive_int("rounds", self.rounds)
        check_choice("cache", self.cache, ("auto", "cold", "warm"))
