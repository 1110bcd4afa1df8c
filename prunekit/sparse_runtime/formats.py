"""Sparse weight formats: pure functions from a dense weight with zeros to packed tensors and back.

One storage serves every pattern (spec in ``docs/sparse-inference.md``):

- rows are taken in **groups** of ``rows`` (1 or 4) that share one mask; columns in chunks
  of 16; one mask bit covers ``cols`` columns (1, 4 or 16) of a group;
- ``mask``: uint8 ``[groups, bytes]``, little-endian bits: bit ``i`` of a group's bit
  string is column block ``i``;
- ``values``: the kept weights, group by group, chunk by chunk, row by row inside a
  chunk (for ``rows=1`` that is plain row-major order, the order of the compact file),
  padded with 64 zeros so vector loads never read past the end;
- ``group_ptr``: int64 ``[groups + 1]``, where each group's values start;
- ``scale``: float32 per output row for int8 values (symmetric, zeros stay zero).

Formats are these settings under a name: ``unstructured`` (bitmask, rows 1, cols 1),
``nm`` (the same storage for N:M weights: 2:4 or 4:8 keep a fixed count per chunk, and
the mask is their 1-bit-per-weight index), ``block`` (``rows`` x ``cols`` blocks:
1x4, 1x16, 4x1, 4x4, 4x16).

Example:
    >>> w = torch.tensor([[0., 2., 0., 4.], [5., 0., 0., 8.]])
    >>> packed = pack(w, SparseFormat("unstructured"))
    >>> packed.values[:4].tolist(), packed.nnz
    ([2.0, 4.0, 5.0, 8.0], 4)
    >>> torch.equal(unpack(packed), w)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from prunekit.config.base import ConfigBase
from prunekit.errors import ConfigError
from prunekit.quant.int8 import quantize_symmetric

KINDS = ("unstructured", "nm", "block")
INDEXES = ("bitmask", "index16")
VALUE_DTYPES = ("float32", "bfloat16", "int8")
BLOCK_SHAPES = ((1, 4), (1, 16), (4, 1), (4, 4), (4, 16))
PAD = 64
CHUNK = 16


@dataclass(frozen=True)
class SparseFormat(ConfigBase):
    """A named storage: pattern kind, block shape and value dtype.

    Attributes:
        kind: ``"unstructured"``, ``"nm"`` or ``"block"``.
        rows: rows sharing one mask (1 or 4; ``block`` only).
        cols: columns per mask bit (1, 4 or 16; ``block`` only).
        dtype: value dtype, ``"float32"``, ``"bfloat16"`` or ``"int8"``.
        index: ``"bitmask"`` (one bit per ``rows x cols`` block) or ``"index16"`` (a 16-bit
            column index per value; rows=cols=1, ``in_features <= 65536``): more bytes at
            low sparsity, less work at high sparsity.

    Example:
        >>> SparseFormat("block", rows=4, cols=1).label
        'block4x1'
    """

    kind: str = "unstructured"
    rows: int = 1
    cols: int = 1
    dtype: str = "float32"
    index: str = "bitmask"

    def __post_init__(self) -> None:
        if self.index not in INDEXES:
            raise ConfigError(f"format index must be one of {list(INDEXES)}, got {self.index!r}")
        if self.index == "index16" and self.kind == "block":
            raise ConfigError("index16 stores single weights; use index='bitmask' for block formats")
        if self.kind not in KINDS:
            raise ConfigError(f"format kind must be one of {list(KINDS)}, got {self.kind!r}")
        if self.dtype not in VALUE_DTYPES:
            raise ConfigError(f"value dtype must be one of {list(VALUE_DTYPES)}, got {self.dtype!r}")
        if self.kind == "block":
            if (self.rows, self.cols) not in BLOCK_SHAPES:
                raise ConfigError(
                    f"block shape {self.rows}x{self.cols} is not supported; use one of "
                    f"{[f'{r}x{c}' for r, c in BLOCK_SHAPES]}"
                )
        elif (self.rows, self.cols) != (1, 1):
            raise ConfigError(f"{self.kind} format has rows=cols=1, got {self.rows}x{self.cols}")

    @property
    def label(self) -> str:
        base = f"block{self.rows}x{self.cols}" if self.kind == "block" else self.kind
        return base + ("+index16" if self.index == "index16" else "")


@dataclass(frozen=True)
class PackedWeight:
    """A weight in the shared storage (see the module docstring)."""

    values: torch.Tensor
    index: torch.Tensor
    group_ptr: torch.Tensor
    scale: torch.Tensor | None
    shape: tuple[int, int]
    format: SparseFormat
    nnz: int

    @property
    def nbytes(self) -> int:
        """Bytes held: values, mask, group offsets and scales."""
        parts = [self.values, self.index, self.group_ptr] + ([self.scale] if self.scale is not None else [])
        return sum(t.numel() * t.element_size() for t in parts)


def _padded(weight: torch.Tensor, rows: int) -> tuple[torch.Tensor, int, int]:
    n, k = weight.shape
    chunks = -(-k // CHUNK)
    if k == chunks * CHUNK:
        return weight, n // rows, chunks
    out = torch.zeros(n, chunks * CHUNK, dtype=weight.dtype)
    out[:, :k] = weight
    return out, n // rows, chunks


def block_mask(weight: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Bool ``[groups, blocks]``: which ``rows x cols`` blocks hold a non-zero (columns padded to 16).

    Example:
        >>> block_mask(torch.tensor([[0., 1.] + [0.] * 14, [0.] * 16]), 2, 4).tolist()
        [[True, False, False, False]]
    """
    n = weight.shape[0]
    if n % rows:
        raise ConfigError(f"block rows={rows} does not divide the {n} output rows")
    w, groups, chunks = _padded(weight.detach().cpu(), rows)
    nz = (w != 0).reshape(groups, rows, chunks * CHUNK // cols, cols)
    return nz.any(dim=3).any(dim=1)


def _pack_bits(bits: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(bits.numpy(), axis=1, bitorder="little").copy())


def fits(shape: tuple[int, ...] | torch.Size, fmt: SparseFormat) -> bool:
    """Whether a ``[out, in]`` weight can take ``fmt`` (block columns never cover padding).

    Example:
        >>> fits((8, 20), SparseFormat("block", rows=4, cols=4)), fits((8, 32), SparseFormat("block", rows=4, cols=4))
        (False, True)
    """
    n, k = shape
    if fmt.index == "index16" and k > 65536:
        return False
    return n % fmt.rows == 0 and (fmt.cols == 1 or k % CHUNK == 0)


def stored_count(weight: torch.Tensor, fmt: SparseFormat) -> int:
    """How many values ``fmt`` stores for ``weight`` (its non-zeros plus zeros inside kept blocks)."""
    return int(block_mask(weight, fmt.rows, fmt.cols).sum()) * fmt.rows * fmt.cols


def pack(weight: torch.Tensor, fmt: SparseFormat) -> PackedWeight:
    """Pack a 2-D weight (zeros are pruned weights) into ``fmt``; lossless for float32.

    bfloat16 rounds each value; int8 stores ``round(w / scale)`` with
    ``scale = max|row| / 127`` per output row.
    """
    if weight.dim() != 2:
        raise ConfigError(f"pack expects a 2-D weight [out, in], got shape {tuple(weight.shape)}")
    w = weight.detach().cpu().float()
    n, k = w.shape
    rows, cols = fmt.rows, fmt.cols
    if not fits(w.shape, fmt):
        raise ConfigError(
            f"format {fmt.label} needs out_features divisible by {rows} and, for blocks wider than one "
            f"column, in_features divisible by {CHUNK}; the weight is {n}x{k}"
        )
    blocks = block_mask(w, rows, cols)  # [groups, chunks*16/cols]
    padded, groups, chunks = _padded(w, rows)
    elem = blocks.repeat_interleave(cols, dim=1)  # [groups, chunks*16]
    by_chunk = padded.reshape(groups, rows, chunks, CHUNK).permute(0, 2, 1, 3)
    keep = elem.reshape(groups, chunks, 1, CHUNK).expand(groups, chunks, rows, CHUNK)
    values = by_chunk[keep]
    counts = elem.sum(dim=1) * rows
    group_ptr = torch.zeros(groups + 1, dtype=torch.int64)
    group_ptr[1:] = torch.cumsum(counts, 0)
    scale = None
    if fmt.dtype == "int8":  # the same per-row symmetric int8 as prunekit.quant (zeros stay zero)
        codes, scale = quantize_symmetric(w, 8, axis=0)
        padded_codes, _, _ = _padded(codes, rows)
        values = padded_codes.reshape(groups, rows, chunks, CHUNK).permute(0, 2, 1, 3)[keep]
    elif fmt.dtype == "bfloat16":
        values = values.to(torch.bfloat16)
    values = torch.cat([values, torch.zeros(PAD, dtype=values.dtype)])
    if fmt.index == "index16":
        columns = torch.nonzero(elem, as_tuple=True)[1]  # row-major order = the values' order
        index = torch.cat([columns.to(torch.int32), torch.zeros(PAD, dtype=torch.int32)])
        index = index.to(torch.int16) if k <= 32768 else (index - 65536 * (index >= 32768)).to(torch.int16)
    else:
        index = _pack_bits(blocks)
    return PackedWeight(
        values=values,
        index=index,
        group_ptr=group_ptr,
        scale=scale,
        shape=(n, k),
        format=fmt,
        nnz=int((w != 0).sum()),
    )


def unpack(packed: PackedWeight) -> torch.Tensor:
    """The dense float32 weight a packed one stands for (dequantized for bf16 / int8)."""
    fmt = packed.format
    n, k = packed.shape
    rows, cols = fmt.rows, fmt.cols
    groups, chunks = n // rows, -(-k // CHUNK)
    if fmt.index == "index16":
        count = int(packed.group_ptr[-1])
        columns = packed.index[:count].to(torch.int64) % 65536
        row_of = torch.repeat_interleave(torch.arange(n), packed.group_ptr.diff())
        elem = torch.zeros(n, chunks * CHUNK, dtype=torch.bool)
        elem[row_of, columns] = True
    else:
        bits = np.unpackbits(packed.index.numpy(), axis=1, bitorder="little")[:, : chunks * CHUNK // cols]
        elem = torch.from_numpy(bits.astype(bool)).repeat_interleave(cols, dim=1)
    keep = elem.reshape(groups, chunks, 1, CHUNK).expand(groups, chunks, rows, CHUNK)
    count = int(packed.group_ptr[-1])
    values = packed.values[:count].float()
    if packed.scale is not None:
        row_of = torch.arange(n).reshape(groups, 1, rows, 1).expand(groups, chunks, rows, CHUNK)[keep]
        values = values * packed.scale[row_of]
    by_chunk = torch.zeros(groups, chunks, rows, CHUNK)
    by_chunk[keep] = values
    return by_chunk.permute(0, 2, 1, 3).reshape(n, chunks * CHUNK)[:, :k].contiguous()


def nm_pattern(
    weight: torch.Tensor, candidates: tuple[tuple[int, int], ...] = ((2, 4), (4, 8))
) -> tuple[int, int] | None:
    """The first ``(n, m)`` such that every group of ``m`` consecutive inputs has at most ``n`` non-zeros.

    Example:
        >>> nm_pattern(torch.tensor([[1., 0., 0., 2., 0., 3., 4., 0.]]))
        (2, 4)
    """
    k = weight.shape[-1]
    for n, m in candidates:
        if k % m == 0 and bool(((weight != 0).reshape(-1, m).sum(dim=1) <= n).all()):
            return (n, m)
    return None
