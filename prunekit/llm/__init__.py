"""One-shot pruning of Hugging Face transformers: magnitude, Wanda, SparseGPT, N:M, OWL,
structured head / MLP / layer removal, perplexity, save and reload.

See ``docs/llm-pruning.md`` for the user journey. Importing this package does not
import transformers (it is loaded when a model is).

Example:
    >>> from prunekit.llm import LLMPruneConfig
    >>> LLMPruneConfig(method="sparsegpt", pattern="2:4").target_sparsity
    0.5
"""

from prunekit.llm.calibration import calibration_windows, causal_lm_batches, tokenize_text
from prunekit.llm.config import METHODS, LLMPruneConfig
from prunekit.llm.evaluate import GenerationSpeed, generation_speed, perplexity
from prunekit.llm.loading import load_causal_lm, load_model, load_tokenizer
from prunekit.llm.prune import LLMPruneResult, block_sparsity, prune_llm
from prunekit.llm.structured import (
    StructuredConfig,
    load_pruned,
    save_pretrained_model,
    structured_prune,
)

__all__ = [
    "METHODS",
    "LLMPruneConfig",
    "LLMPruneResult",
    "prune_llm",
    "block_sparsity",
    "calibration_windows",
    "causal_lm_batches",
    "tokenize_text",
    "perplexity",
    "generation_speed",
    "GenerationSpeed",
    "load_causal_lm",
    "load_model",
    "load_tokenizer",
    "save_pretrained_model",
    "load_pruned",
    "StructuredConfig",
    "structured_prune",
]
