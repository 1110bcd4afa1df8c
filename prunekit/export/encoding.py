"""Byte encodings of the compact format (pure functions: arrays in, bytes out, and back).

- positions as a **bitmask**: one bit per element, MSB first (``numpy.packbits``);
- positions as **delta8**: for each non-zero, the gap to the previous one minus 1, one
  byte each; a gap of 255 or more is written as that many 255 bytes "carry" markers
  followed by the remainder (``gap = 255 * carries + last byte``);
- codes **bit-packed** at ``bits`` bits each, MSB first;
- a **codec** over any of these bytes: ``none`` or ``zstd`` (the ``zstandard`` package).
"""

from __future__ import annotations

import numpy as np

from prunekit.errors import ConfigError, require

CODECS = ("none", "zstd")


def bitmask_encode(nonzero: np.ndarray) -> bytes:
    """Pack a flat bool array into bytes, 8 elements per byte, MSB first.

    Example:
        >>> bitmask_encode(np.array([1, 0, 0, 0, 0, 0, 0, 1, 1], dtype=bool))
        b'\\x81\\x80'
    """
    return np.packbits(nonzero.astype(bool).reshape(-1)).tobytes()


def bitmask_decode(data: bytes, count: int) -> np.ndarray:
    """Inverse of ``bitmask_encode``: a flat bool array of ``count`` elements.

    Example:
        >>> bitmask_decode(b'\\x81\\x80', 9).astype(int).tolist()
        [1, 0, 0, 0, 0, 0, 0, 1, 1]
    """
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count).astype(bool)


def delta8_encode(indices: np.ndarray) -> bytes:
    """Encode sorted flat indices as gap bytes with 255-carries (see module docstring).

    Example:
        >>> list(delta8_encode(np.array([0, 3, 300])))
        [0, 2, 255, 41]
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        return b""
    gaps = np.diff(idx, prepend=-1) - 1
    if (gaps < 0).any():
        raise ValueError("delta8 needs strictly increasing indices")
    carries, last = np.divmod(gaps, 255)
    lengths = carries + 1
    out = np.full(int(lengths.sum()), 255, dtype=np.uint8)
    out[np.cumsum(lengths) - 1] = last
    return out.tobytes()


def delta8_decode(data: bytes) -> np.ndarray:
    """Inverse of ``delta8_encode``: the int64 flat indices.

    Example:
        >>> delta8_decode(bytes([0, 2, 255, 41])).tolist()
        [0, 3, 300]
    """
    b = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    if b.size == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero(b != 255)
    totals = np.cumsum(b)[ends]
    gaps = np.diff(totals, prepend=0)
    return np.cumsum(gaps + 1) - 1


def bitpack(codes: np.ndarray, bits: int) -> bytes:
    """Pack integer codes < 2^bits at ``bits`` bits each, MSB first.

    Example:
        >>> bitpack(np.array([1, 2, 3]), 2)
        b'l'
    """
    c = np.asarray(codes, dtype=np.uint8).reshape(-1, 1)
    planes = np.unpackbits(c, axis=1)[:, 8 - bits :]
    return np.packbits(planes.reshape(-1)).tobytes()


def bitunpack(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of ``bitpack``: ``count`` uint8 codes.

    Example:
        >>> bitunpack(b'l', 2, 3).tolist()
        [1, 2, 3]
    """
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count * bits).reshape(count, bits)
    padded = np.zeros((count, 8), dtype=np.uint8)
    padded[:, 8 - bits :] = flat
    return np.packbits(padded, axis=1).reshape(-1)


def compress(data: bytes, codec: str, level: int = 19) -> bytes:
    """Apply ``codec`` (``none`` or ``zstd``) to ``data``.

    Example:
        >>> len(compress(bytes(1000), "zstd")) < 50
        True
    """
    if codec == "none":
        return data
    if codec == "zstd":
        zstd = require("zstandard", "export")
        return zstd.ZstdCompressor(level=level).compress(data)
    raise ConfigError(f"codec must be one of {list(CODECS)}, got {codec!r}")


def decompress(data: bytes, codec: str) -> bytes:
    """Inverse of ``compress``."""
    if codec == "none":
        return data
    if codec == "zstd":
        zstd = require("zstandard", "export")
        return zstd.ZstdDecompressor().decompress(data)
    raise ConfigError(f"unknown codec {codec!r} in file; known: {list(CODECS)}")
