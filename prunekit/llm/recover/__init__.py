"""Recovery fine-tuning of pruned LLMs that keeps their sparsity: distillation from the dense
model (logit KL with temperature, optional hidden-state MSE) or LoRA adapters merged with
the mask re-applied; bf16 autocast, resumable checkpoints, DDP / FSDP2 under ``torchrun``.

Example:
    >>> RecoverConfig(method="distill", tokens=2_000_000, seqlen=512, batch_size=8).steps
    489
"""

from prunekit.llm.recover.config import RECOVER_METHODS, RecoverConfig
from prunekit.llm.recover.loop import RecoverResult, block_zeros, recover
from prunekit.llm.recover.lora import attach_lora, keep_masks, merge_lora
from prunekit.llm.recover.masks import ZeroHolder, block_weights

__all__ = [
    "RECOVER_METHODS",
    "RecoverConfig",
    "RecoverResult",
    "recover",
    "block_zeros",
    "attach_lora",
    "keep_masks",
    "merge_lora",
    "ZeroHolder",
    "block_weights",
]
