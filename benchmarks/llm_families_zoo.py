"""Tiny causal-LM configs for every family in transformers' ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``.

``tiny_config(family)`` takes the family's default config and shrinks it with the same
overrides for every family (hidden 64, 2 layers, 8 heads / 4 KV heads, intermediate 96,
8 experts with top-2 for mixtures of experts, vocabulary 128; an encoder-decoder's
decoder gets 3 layers to its encoder's 2), passed through the
config's own ``attribute_map`` so GPT-2's ``n_embd`` or Falcon's ``num_kv_heads`` get
them too, and into nested sub-configs (``text_config``, ``vision_config``) so a multimodal
model's towers are tiny as well. Nothing is listed per family; a family whose model does
not build and run from that config is reported with the error.

Example:
    >>> cfg = tiny_config("llama")
    >>> cfg.hidden_size, cfg.num_hidden_layers
    (64, 2)
"""

from __future__ import annotations

from typing import Any

import torch

HIDDEN, LAYERS, HEADS, KV_HEADS, INTERMEDIATE, VOCAB = 64, 2, 8, 4, 96, 128
EXPERTS, TOP_K, EXPERT_INTERMEDIATE, SHARED_INTERMEDIATE = 8, 2, 48, 80

OVERRIDES: dict[str, Any] = {
    "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS, "num_kv_heads": KV_HEADS, "intermediate_size": INTERMEDIATE,
    "ffn_dim": INTERMEDIATE, "n_inner": INTERMEDIATE, "ffn_hidden_size": INTERMEDIATE,
    "head_dim": HIDDEN // HEADS, "vocab_size": VOCAB, "max_position_embeddings": 128,
    "n_positions": 128, "num_local_experts": EXPERTS, "num_experts": EXPERTS,
    "num_experts_per_tok": TOP_K, "moe_intermediate_size": EXPERT_INTERMEDIATE,
    "shared_expert_intermediate_size": SHARED_INTERMEDIATE, "pad_token_id": 0, "bos_token_id": 1,
    "eos_token_id": 2, "tie_word_embeddings": False, "use_cache": False,
    "partial_rotary_factor": 0.5,
    # encoder-decoder stacks: the decoder one deeper, so a layer count naming the wrong stack shows
    "encoder_layers": LAYERS, "decoder_layers": LAYERS + 1,
}


def families() -> list[str]:
    """Every model type transformers maps to a causal-LM class, sorted."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def _overrides(default: Any) -> dict[str, Any]:
    """The tiny overrides for one config object, through its ``attribute_map``; nested
    sub-configs (``text_config``, ``vision_config``, ...) are shrunk the same way."""
    cls = type(default)
    known = set(default.to_dict())
    reverse = dict(getattr(cls, "attribute_map", {}) or {})
    kwargs: dict[str, Any] = {}
    for name, value in OVERRIDES.items():
        native = reverse.get(name, name)
        if native in known or name in known:
            if name == "partial_rotary_factor" and default.to_dict().get(native) is None:
                continue
            kwargs[native] = value
    from transformers import PretrainedConfig

    for name in known:
        sub = getattr(default, name, None)
        if isinstance(sub, PretrainedConfig):
            values = sub.to_dict()
            depth = values.get(dict(getattr(type(sub), "attribute_map", {}) or {}).get(
                "num_hidden_layers", "num_hidden_layers"))
            # per-layer lists (layer_types) sized for the default depth are rebuilt by the class
            values = {k: v for k, v in values.items() if not (isinstance(v, list) and len(v) == depth)}
            kwargs[name] = {**values, **_overrides(sub)}
    return kwargs


def tiny_config(family: str) -> Any:
    """The family's default config with the tiny overrides applied where it has the field
    (in its sub-configs too: a multimodal model's text and vision towers)."""
    from transformers import CONFIG_MAPPING

    cls = CONFIG_MAPPING[family]
    return cls(**_overrides(cls()))


def build(family: str, seed: int = 0) -> torch.nn.Module:
    """The family's causal-LM class built from :func:`tiny_config` with seeded random weights."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family), dtype=torch.float32)
    return model.eval()


def example_ids(seed: int = 1, batch: int = 2, length: int = 16) -> torch.Tensor:
    """Random token ids above the special ids 0-2."""
    return torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))
