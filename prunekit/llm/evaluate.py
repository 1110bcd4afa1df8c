"""Evaluation of causal LMs: sliding-window perplexity and generation speed.

Perplexity follows the Hugging Face recipe the papers' tables use: windows of
``window`` tokens every ``stride`` tokens; each window scores only its last
``stride`` tokens (all but its first when ``stride == window``), i.e. the tokens the
previous window did not score.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.config.base import check_positive_int
from prunekit.errors import ConfigError, DatasetError
from prunekit.llm.progress import layer_progress


def _windows(total: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    spans, prev_end = [], 0
    for begin in range(0, total, stride):
        end = min(begin + window, total)
        target_len = end - prev_end
        if end - begin >= 2 and target_len > 0:
            spans.append((begin, end, target_len))
        prev_end = end
        if end == total:
            break
    return spans


def perplexity(
    model: nn.Module,
    token_ids: torch.Tensor,
    *,
    window: int = 512,
    stride: int = 512,
    max_tokens: int | None = None,
    progress: bool = False,
) -> float:
    """Sliding-window perplexity of a causal LM on a 1-D sequence of token ids.

    Args:
        model: a causal LM returning ``.logits``.
        token_ids: 1-D LongTensor of the evaluation text.
        window: tokens per forward. stride: step between windows (``<= window``).
        max_tokens: only the first ``max_tokens`` tokens are used (None: all).

    Returns:
        ``exp(mean negative log-likelihood)`` over every predicted token.

    Example:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> _ = torch.manual_seed(0)
        >>> m = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
        >>> 30 < perplexity(m, torch.randint(0, 50, (300,)), window=64, stride=32) < 80
        True
    """
    check_positive_int("window", window)
    check_positive_int("stride", stride)
    if stride > window:
        raise ConfigError(f"eval stride ({stride}) must not exceed the eval window ({window})")
    ids = token_ids.reshape(-1)
    if max_tokens is not None:
        ids = ids[: check_positive_int("max_tokens", max_tokens)]
    if ids.numel() < 2:
        raise DatasetError(f"evaluation text has {ids.numel()} tokens; need at least 2")
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    spans = _windows(ids.numel(), window, stride)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), layer_progress("perplexity", len(spans), enabled=progress, unit="windows") as advance:
            for begin, end, target_len in spans:
                x = ids[begin:end].unsqueeze(0).to(device)
                logits = model(input_ids=x, use_cache=False).logits[0, :-1].float()
                targets = x[0, 1:]
                first = max(0, targets.numel() - target_len)
                if begin == 0:
                    first = 0
                losses = F.cross_entropy(logits[first:], targets[first:], reduction="sum")
                nll += losses.item()
                count += targets.numel() - first
                advance()
    finally:
        model.train(was_training)
    return math.exp(nll / count)


@dataclass
class GenerationSpeed:
    """Prefill and decode throughput of greedy generation."""

    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    prompt_tokens: int
    new_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def generation_speed(
    model: nn.Module, prompt_ids: torch.Tensor, *, new_tokens: int = 32, runs: int = 1
) -> GenerationSpeed:
    """Time a prompt forward (prefill) and greedy decoding of ``new_tokens`` tokens.

    Decode speed is ``new_tokens / (generate time - prefill time)``; the best of ``runs``.
    """
    check_positive_int("new_tokens", new_tokens)
    device = next(model.parameters()).device
    x = prompt_ids.reshape(1, -1).to(device)
    best_prefill, best_decode = math.inf, math.inf
    model.eval()
    with torch.no_grad():
        for _ in range(runs):
            t0 = time.perf_counter()
            model(input_ids=x, use_cache=True)
            prefill = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = model.generate(
                input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=new_tokens,
                min_new_tokens=new_tokens, do_sample=False, pad_token_id=0,
            )
            total = time.perf_counter() - t0
            made = out.shape[1] - x.shape[1]
            best_prefill = min(best_prefill, prefill)
            best_decode = min(best_decode, max(total - prefill, 1e-9) / max(made - 1, 1))
    return GenerationSpeed(
        prefill_tokens_per_s=x.shape[1] / best_prefill,
        decode_tokens_per_s=1.0 / best_decode,
        prompt_tokens=int(x.shape[1]),
        new_tokens=new_tokens,
    )


def speed_and_memory(model: nn.Module, prompt_ids: torch.Tensor, *, new_tokens: int = 32, runs: int = 3) -> dict:
    """Decode and prefill tokens/s, resident weight memory and the peak RSS while generating.

    Returns ``{"decode_tokens_per_s", "prefill_tokens_per_s", "weights_mb", "peak_rss_mb"}``;
    the peak is read after resetting the kernel's mark where Linux allows it (else it is
    the process's peak so far).

    Example:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> m = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
        >>> sorted(speed_and_memory(m, torch.arange(8), new_tokens=4, runs=1))
        ['decode_tokens_per_s', 'peak_rss_mb', 'prefill_tokens_per_s', 'weights_mb']
    """
    import gc

    from prunekit.llm.memory import peak_rss_mb, reset_peak_rss
    from prunekit.metrics.size import resident_bytes

    gc.collect()
    reset_peak_rss()
    speed = generation_speed(model, prompt_ids, new_tokens=new_tokens, runs=runs)
    return {
        "decode_tokens_per_s": speed.decode_tokens_per_s,
        "prefill_tokens_per_s": speed.prefill_tokens_per_s,
        "weights_mb": resident_bytes(model) / 2**20,
        "peak_rss_mb": peak_rss_mb(),
    }
