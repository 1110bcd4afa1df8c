"""Tiny pruned Llamas for the recovery tests (run as a script by the subprocess tests too)."""

from __future__ import annotations

import copy

import torch
import transformers

from prunekit.llm import LLMPruneConfig, StructuredConfig, prune_llm, structured_prune

VOCAB = 96


def tiny_dense(seed: int = 0, layers: int = 2) -> transformers.LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=VOCAB,
                                   max_position_embeddings=64, tie_word_embeddings=True)
    return transformers.LlamaForCausalLM(cfg)


def text_ids(n: int = 4096, seed: int = 1) -> torch.Tensor:
    """A learnable token stream: a noisy repeating pattern."""
    g = torch.Generator().manual_seed(seed)
    base = torch.arange(n) % 17 + 3
    noise = torch.randint(0, VOCAB, (n,), generator=g)
    return torch.where(torch.rand(n, generator=g) < 0.1, noise, base)


def pruned_pair(kind: str, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(dense teacher, pruned student)``: ``kind`` is "wanda" (50% unstructured),
    "structured" (heads and MLP neurons removed) or "both"."""
    dense = tiny_dense(seed)
    student = copy.deepcopy(dense)
    windows = text_ids(8 * 32).reshape(8, 32)
    if kind in ("structured", "both"):
        structured_prune(student, [{"input_ids": windows, "use_cache": False}],
                         StructuredConfig(heads=0.5, mlp=0.25))
    if kind in ("wanda", "both"):
        prune_llm(student, windows, LLMPruneConfig("wanda", 0.5), progress=False)
    return dense, student
