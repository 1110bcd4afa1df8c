"""Calibration text -> token windows.

Example:
    >>> ids = torch.arange(100)
    >>> w = calibration_windows(ids, nsamples=4, seqlen=16, seed=0)
    >>> tuple(w.shape), bool((w[:, 1:] - w[:, :-1] == 1).all())
    ((4, 16), True)
"""

from __future__ import annotations

from typing import Any

import torch

from prunekit.config.base import check_positive_int
from prunekit.errors import DatasetError


def tokenize_text(tokenizer: Any, text: str) -> torch.Tensor:
    """Token ids of ``text`` as a 1-D LongTensor (no special tokens added)."""
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    return ids.reshape(-1).long()


def calibration_windows(
    token_ids: torch.Tensor, nsamples: int = 64, seqlen: int = 512, seed: int = 0
) -> torch.Tensor:
    """``nsamples`` windows of ``seqlen`` consecutive tokens at random starts (seeded).

    Args:
        token_ids: 1-D token ids of the calibration text.
        nsamples: number of windows. seqlen: tokens per window. seed: start positions.

    Returns:
        LongTensor ``(nsamples, seqlen)``.

    Raises:
        DatasetError: the text has fewer tokens than one window.
    """
    check_positive_int("nsamples", nsamples)
    check_positive_int("seqlen", seqlen)
    token_ids = token_ids.reshape(-1)
    total = token_ids.numel()
    if total < seqlen:
        raise DatasetError(
            f"calibration text has {total} tokens, fewer than one window of seqlen={seqlen}; "
            "give a longer text or a smaller --seqlen"
        )
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, total - seqlen + 1, (nsamples,), generator=gen)
    return torch.stack([token_ids[s : s + seqlen] for s in starts.tolist()])


def causal_lm_batches(windows: torch.Tensor, batch_size: int = 8) -> list[dict[str, Any]]:
    """Keyword batches ``{"input_ids": ..., "use_cache": False}`` for a causal LM."""
    check_positive_int("batch_size", batch_size)
    return [
        {"input_ids": windows[i : i + batch_size], "use_cache": False}
        for i in range(0, windows.shape[0], batch_size)
    ]
