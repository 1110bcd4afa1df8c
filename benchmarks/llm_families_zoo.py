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
    "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_layers": LAYERS,
    "num_attention_heads": HEADS,
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
# dense layers before the first MoE layer (DeepSeek's ``first_k_dense_replace``): one, so the
# second of the two layers is a mixture of experts
FIRST_DENSE = 1


def derived_sizes(values: dict[str, Any], head_dim: int | None) -> dict[str, Any]:
    """Sizes that depend on the tiny ones, from a config's default ``values`` (its ``to_dict()``)
    and its default per-head width ``head_dim`` (``None`` when it has none). Pure arithmetic,
    one rule per attribute pattern, no family names:

    - every ``*_head_dim`` (MLA's ``qk_rope_head_dim`` / ``qk_nope_head_dim`` / ``qk_head_dim`` /
      ``v_head_dim``, a sparse indexer's ``index_head_dim``) is scaled by the factor that takes
      the default head width to the tiny one, so their sums and ratios still hold;
    - ``rotary_dim`` (GPT-J, CodeGen) is the tiny head width times ``partial_rotary_factor``;
    - ``*_lora_rank`` (MLA's ``q_lora_rank`` / ``kv_lora_rank``) is half the tiny hidden size,
      and with a ``kv_lora_rank`` (multi-head latent attention: every head decodes its own key and
      value from one latent) ``num_key_value_heads`` equals the head count;
    - expert groups (``n_group`` / ``topk_group``) shrink so each group still holds ``TOP_K``
      experts and the same fraction of groups is kept;
    - a repeated layer pattern (GPT-Neo's ``attention_types = [[["global", "local"], 12]]``)
      repeats only as often as the tiny depth holds;
    - ``n_shared_experts`` / ``num_shared_experts`` left ``None`` by the default become 1, and
      ``first_k_dense_replace`` at most :data:`FIRST_DENSE`.

    Fields the default leaves ``None`` stay ``None`` (an optional low-rank query stays off).

    Example:
        >>> derived_sizes({"qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "qk_head_dim": 192,
        ...                "kv_lora_rank": 512, "n_group": 8, "topk_group": 4}, head_dim=64)
        {'qk_rope_head_dim': 8, 'qk_nope_head_dim': 16, 'qk_head_dim': 24, 'kv_lora_rank': 32, \
'n_group': 4, 'topk_group': 2}
    """
    tiny_head = HIDDEN // HEADS
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        if name.endswith("_head_dim") and head_dim:
            out[name] = max(2, 2 * round(value * tiny_head / head_dim / 2))
        elif name == "rotary_dim":
            out[name] = int(tiny_head * OVERRIDES["partial_rotary_factor"])
        elif name.endswith("_lora_rank"):
            out[name] = HIDDEN // 2
        elif name == "first_k_dense_replace":
            out[name] = min(value, FIRST_DENSE)
    repeats = values.get("attention_types")
    if isinstance(repeats, list) and all(isinstance(r, list) and len(r) == 2 for r in repeats):
        out["attention_types"] = [[list(pattern), max(1, LAYERS // len(pattern))]
                                  for pattern, _ in repeats[:1]]
    groups = values.get("n_group")
    if isinstance(groups, int) and groups > 0:
        new = max(1, min(groups, EXPERTS // TOP_K))
        out["n_group"] = new
        top = values.get("topk_group")
        if isinstance(top, int):
            out["topk_group"] = max(1, min(new, round(top * new / groups)))
    for name in ("n_shared_experts", "num_shared_experts"):
        if name in values and values[name] is None:
            out[name] = 1
    if values.get("kv_lora_rank") is not None and "num_key_value_heads" in values:
        out["num_key_value_heads"] = HEADS
    return out


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
    values = default.to_dict()
    head_dim = values.get("head_dim") or (
        values.get(reverse.get("hidden_size", "hidden_size"))
        // values.get(reverse.get("num_attention_heads", "num_attention_heads"), 1)
        if isinstance(values.get(reverse.get("hidden_size", "hidden_size")), int)
        and isinstance(values.get(reverse.get("num_attention_heads", "num_attention_heads")), int)
        else None)
    # the rules read the standard names (``n_group``) too where a config spells them its own way
    # (Bailing's ``num_expert_group``), through the same ``attribute_map``
    view = {**values, **{alias: values[native] for alias, native in reverse.items() if native in values}}
    kwargs.update({reverse.get(name, name): value for name, value in derived_sizes(view, head_dim).items()})
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
