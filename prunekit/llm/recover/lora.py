"""LoRA adapters (``peft``) on a pruned model, merged back with the mask re-applied.

A merged adapter adds a dense low-rank update ``B @ A`` to every weight, which would fill
the pruned zeros (a 40% sparse model comes back 33% sparse). :func:`merge_lora` merges and
then multiplies each block weight by the keep-mask recorded before the adapters were
attached, so the merged model has exactly the zeros it had before recovery.

Example:
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> m = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
    ...     num_attention_heads=2, num_key_value_heads=1, vocab_size=50))
    >>> keep = keep_masks(m)
    >>> peft_model = attach_lora(m, RecoverConfig(method="lora", lora_rank=2))
    >>> merged = merge_lora(peft_model, keep)
    >>> sorted(merged.state_dict()) == sorted(m.state_dict())
    True
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.errors import ModelError, require
from prunekit.llm.blocks import find_linears
from prunekit.llm.layers import block_prefix, find_layers, join_name
from prunekit.llm.recover.config import RecoverConfig
from prunekit.llm.recover.masks import block_weights


def keep_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """``name -> (weight != 0)`` for every block linear weight of the (pruned) model."""
    return {name: p.detach() != 0 for name, p in block_weights(model).items()}


def lora_targets(model: nn.Module) -> list[str]:
    """Full module names of the block linears (what the adapters wrap)."""
    path, blocks = find_layers(model)
    return [join_name(block_prefix(path, blocks, i), name) for i, block in enumerate(blocks)
            for name in find_linears(block)]


def attach_lora(model: nn.Module, config: RecoverConfig) -> nn.Module:
    """Wrap ``model`` in a peft ``PeftModel`` with LoRA adapters on every block linear.

    Only the adapters train; the pruned base weights are frozen, so their zeros hold.
    """
    peft = require("peft", extra="hf")
    lora = peft.LoraConfig(
        r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=lora_targets(model), bias="none",
    )
    return peft.get_peft_model(model, lora)


@torch.no_grad()
def merge_lora(peft_model: nn.Module, keep: dict[str, torch.Tensor]) -> nn.Module:
    """Merge the adapters into the base weights, re-apply ``keep`` and return the plain model."""
    if not hasattr(peft_model, "merge_and_unload"):
        raise ModelError(f"merge_lora expects a peft PeftModel, got {type(peft_model).__name__}")
    model = peft_model.merge_and_unload()
    params = dict(model.named_parameters())
    missing = sorted(set(keep) - set(params))
    if missing:
        raise ModelError(f"after merging, the model has no parameter(s) {missing[:4]}; "
                         "keep masks must come from keep_masks() on the same model")
    for name, mask in keep.items():
        params[name].mul_(mask.to(params[name].device))
    return model
