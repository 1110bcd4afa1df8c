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
# routed experts per router group (``n_group``): 4, so removing a quarter of the experts removes
# one from every group and each group keeps more than ``TOP_K``
GROUP_EXPERTS = 4
# Data a default config lacks and its model needs, which no config-shape rule can derive (a real
# checkpoint's config holds it). The only per-family entries; each says why.
NEEDS_DATA: dict[str, dict[str, Any]] = {
    # ``layer_types`` defaults to None and the model indexes ``config.layer_types[i]`` ("conv" or
    # "full_attention", the keys of its mask mapping): one of each
    "lfm2_moe": {"layer_types": ["conv", "full_attention"]},
}
# dbrx stays unbuilt on purpose (docs/llm-pruning.md): with the data it needs (``attn_config``'s
# ``rope_theta`` and ``clip_qkv``) it builds and prunes unstructured, but its heads (the fused qkv is
# split by the attention's ``hidden_size`` attribute) and its experts (2-D stacked ``w1`` / ``v1`` /
# ``w2``, not found) do not prune yet
# the narrowest per-head width a ``*_head_dim`` shrinks to: the tiny rotary width, so a sparse
# indexer's ``index_head_dim`` still holds the rotary part (DeepSeek-V4)
ROTARY = int(HIDDEN // HEADS * OVERRIDES["partial_rotary_factor"])
# dense layers before the first MoE layer (DeepSeek's ``first_k_dense_replace``): one, so the
# second of the two layers is a mixture of experts
FIRST_DENSE = 1


def derived_sizes(values: dict[str, Any], head_dim: int | None,
                  hidden_sizes: frozenset[int] = frozenset(), fixed: frozenset[str] = frozenset(OVERRIDES),
                  ) -> dict[str, Any]:
    """Sizes that depend on the tiny ones, from a config's default ``values`` (its ``to_dict()``)
    and its default per-head width ``head_dim`` (``None`` when it has none). Pure arithmetic,
    one rule per attribute pattern, no family names:

    - every ``*_head_dim`` (MLA's ``qk_rope_head_dim`` / ``qk_nope_head_dim`` / ``qk_head_dim`` /
      ``v_head_dim``, a sparse indexer's ``index_head_dim``) is scaled by the factor that takes
      the default head width to the tiny one, so their sums and ratios still hold (at least
      :data:`ROTARY` wide where the tiny overrides set the rotary fraction);
    - ``*_ffn_dim`` (an encoder-decoder's ``encoder_ffn_dim`` / ``decoder_ffn_dim``) is the tiny
      intermediate size, as ``ffn_dim`` is;
    - ``rotary_dim`` (GPT-J, CodeGen) is the tiny head width times ``partial_rotary_factor``;
    - ``*_lora_rank`` (MLA's ``q_lora_rank`` / ``kv_lora_rank``) is half the tiny hidden size,
      and with a ``kv_lora_rank`` (multi-head latent attention: every head decodes its own key and
      value from one latent) ``num_key_value_heads`` equals the head count;
    - expert groups (``n_group`` / ``topk_group``) shrink so each group holds
      :data:`GROUP_EXPERTS` routed experts (a 25% expert removal then takes the same number from
      every group, as group-limited routing needs) and the same fraction of groups is kept;
    - a repeated layer pattern (GPT-Neo's ``attention_types = [[["global", "local"], 12]]``)
      repeats only as often as the tiny depth holds;
    - a count of layers ``num_*_layers`` above the tiny depth (Gemma's ``num_kv_shared_layers``)
      keeps its share of the stack, rounded down (all of it stays all of it);
    - a width ``*_dim`` / ``*_size`` equal to one of the default config tree's hidden sizes
      (``hidden_sizes``; a vision adapter's ``adapter_in_dim``) is the tiny hidden size (not a
      window, chunk, vocabulary or head size that happens to be equal);
    - any other head count (an encoder-decoder's ``decoder_attention_heads``, a sliding layer's
      ``swa_num_key_value_heads``) keeps its ratio to the config's head (or key/value head)
      count, and without one (Mamba-2's ``num_heads``) heads x head width / hidden size, so the
      widths still add up (not one in ``fixed``, the names the tiny overrides set, GPT-2's
      ``n_head`` through its alias);
    - a default top-k below :data:`TOP_K` (a router made for top-1) is kept;
    - a second vocabulary larger than the tiny one (``vocab_size_per_layer_input``,
      ``unpadded_vocab_size``; within a factor 2 of the main one, not a hash-bucket count) is the
      tiny vocabulary;
      integer lists that sum to the hidden size (Reformer's ``axial_pos_embds_dim``) are scaled
      to it; a ``hidden_size_*`` width (Gemma's ``hidden_size_per_layer_input``) keeps its ratio
      to the hidden size;
    - ``n_shared_experts`` / ``num_shared_experts`` left ``None`` by the default become 1, and
      ``first_k_dense_replace`` at most :data:`FIRST_DENSE`.

    Fields the default leaves ``None`` stay ``None`` (an optional low-rank query stays off).

    Example:
        >>> derived_sizes({"qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "qk_head_dim": 192,
        ...                "kv_lora_rank": 512, "n_group": 8, "topk_group": 4}, head_dim=64)
        {'qk_rope_head_dim': 8, 'qk_nope_head_dim': 16, 'qk_head_dim': 24, 'kv_lora_rank': 32, \
'n_group': 2, 'topk_group': 1}
    """
    tiny_head = HIDDEN // HEADS
    depth = values.get("num_hidden_layers")
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        if name.endswith("_head_dim") and head_dim:
            out[name] = max(ROTARY if values.get("partial_rotary_factor") else 2,
                            2 * round(value * tiny_head / head_dim / 2))
        elif name == "rotary_dim":
            out[name] = int(tiny_head * OVERRIDES["partial_rotary_factor"])
        elif name.endswith("_lora_rank"):
            out[name] = HIDDEN // 2
        elif name.endswith("_ffn_dim") and name not in OVERRIDES:  # an encoder-decoder's encoder_/decoder_ffn_dim
            out[name] = INTERMEDIATE
        elif name == "first_k_dense_replace" or (name.startswith("num_dense") and name.endswith("_layers")):
            out[name] = min(value, FIRST_DENSE)
        elif (name.startswith("num_") and name.endswith("_layers") and name not in OVERRIDES
              and isinstance(depth, int) and LAYERS < value <= depth):
            out[name] = LAYERS if value == depth else value * LAYERS // depth
        elif (name == "num_heads" or name.endswith("_heads")) and name not in fixed and head_dim \
                and isinstance(values.get("hidden_size"), int):
            kv = "key_value_heads" in name  # the same kind of count as the base it follows
            base, tiny = (values.get("num_key_value_heads"), KV_HEADS) if kv else \
                (values.get("num_attention_heads"), HEADS) if "attention_heads" in name else (None, 0)
            out[name] = max(1, round(value * tiny / base) if isinstance(base, int) and base > 0 else
                            round(value * head_dim / tiny_head * HIDDEN / values["hidden_size"]))
        elif name == "num_experts_per_tok" and value < TOP_K:
            out[name] = value
        elif ("vocab" in name and name != "vocab_size" and value > VOCAB and isinstance(values.get("vocab_size"), int)
              and values["vocab_size"] // 2 <= value <= 2 * values["vocab_size"]):  # a vocabulary like the main one
            out[name] = VOCAB
        elif (name.endswith(("_dim", "_size")) and value in hidden_sizes and name not in OVERRIDES
              and not any(word in name for word in ("window", "chunk", "vocab", "head"))):
            out[name] = HIDDEN
        elif name.startswith("hidden_size_") and isinstance(values.get("hidden_size"), int):
            out[name] = max(2, 2 * round(value * HIDDEN / values["hidden_size"] / 2))
    repeats = values.get("attention_types")
    if isinstance(repeats, list) and all(isinstance(r, list) and len(r) == 2 for r in repeats):
        out["attention_types"] = [[list(pattern), max(1, LAYERS // len(pattern))]
                                  for pattern, _ in repeats[:1]]
    groups = values.get("n_group")
    if isinstance(groups, int) and groups > 0:
        new = max(1, min(groups, EXPERTS // GROUP_EXPERTS))
        out["n_group"] = new
        top = values.get("topk_group")
        if isinstance(top, int):
            out["topk_group"] = max(1, min(new, round(top * new / groups)))
    hidden = values.get("hidden_size")
    for name, value in values.items():  # widths that add up to the hidden size (Reformer's axial dims)
        if (isinstance(value, (list, tuple)) and len(value) > 1 and isinstance(hidden, int)
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value) and sum(value) == hidden):
            out[name] = [HIDDEN * v // hidden for v in value[:-1]]
            out[name].append(HIDDEN - sum(out[name]))
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


def _attr(config: Any, name: str) -> Any:
    """``config.name`` or ``None``; on a heterogeneous config (transformers' ``per_layer_config``)
    the global value of a per-layer attribute, which plain ``getattr`` refuses to read."""
    read = getattr(config, "_getattr_without_heterogeneous_validation", None)
    return read(name, None) if read is not None else getattr(config, name, None)


def layer_window(default_types: list, tiny_types: list, depth: int = LAYERS) -> list | None:
    """When the tiny stack (``tiny_types``, as the config class rebuilds it for the tiny depth)
    lacks a layer type the default stack (``default_types``) has, the last ``depth`` consecutive
    default layers that hold every type (so a model whose last layer must be global keeps it);
    ``None`` when the tiny stack already has every type or no such window exists.

    Example:
        >>> layer_window(["sliding"] * 5 + ["full"], ["sliding", "sliding"])
        ['sliding', 'full']
    """
    kinds = {str(t) for t in default_types}
    if {str(t) for t in tiny_types} >= kinds:
        return None
    for start in range(len(default_types) - depth, -1, -1):
        window = list(default_types[start:start + depth])
        if {str(t) for t in window} == kinds:
            return window
    return None


def per_layer_sizes(layer: dict[str, Any], default_global: dict[str, Any], tiny_global: dict[str, Any],
                    head_dim: int | None) -> dict[str, Any]:
    """One layer's overrides (an entry of ``per_layer_config``) shrunk like the global fields:
    the :func:`derived_sizes` rules first (``*_head_dim`` and ``head_dim`` by the head-width factor,
    so sums such as ``head_dim = qk_nope_head_dim + qk_rope_head_dim`` still hold; ``*_lora_rank``),
    then any other integer keeps its ratio to the global field (``num_attention_heads`` 64 where
    the global is 128 becomes half the tiny head count); anything else is kept.

    Example:
        >>> per_layer_sizes({"head_dim": 512, "num_attention_heads": 64, "skip": ["mlp"]},
        ...                 {"head_dim": 256, "num_attention_heads": 128},
        ...                 {"head_dim": 8, "num_attention_heads": 8}, head_dim=256)
        {'head_dim': 16, 'num_attention_heads': 4, 'skip': ['mlp']}
    """
    out: dict[str, Any] = {}
    for name, value in layer.items():
        derived = derived_sizes({name: value}, head_dim)
        if name in derived:
            out[name] = derived[name]
        elif name == "head_dim" and isinstance(value, int) and head_dim:
            out[name] = max(2, 2 * round(value * (HIDDEN // HEADS) / head_dim / 2))
        elif (isinstance(value, int) and not isinstance(value, bool)
              and isinstance(default_global.get(name), int) and default_global.get(name)
              and isinstance(tiny_global.get(name), int)):
            out[name] = max(1, round(value * tiny_global[name] / default_global[name]))
        else:
            out[name] = value
    return out


def _per_layer(default: Any, probe: Any, kwargs: dict[str, Any], head_dim: int | None,
               window_start: int | None) -> dict[int, dict[str, Any]]:
    """The tiny ``per_layer_config``: tiny layer ``i`` takes the overrides of the default layer it
    stands for (the same position in the chosen window, else the first default layer of its
    type, else the same index), shrunk by :func:`per_layer_sizes`."""
    raw = {int(k): v for k, v in (default.to_dict().get("per_layer_config") or {}).items()}
    default_types = list(_attr(default, "layer_types") or [])
    tiny_types = list(_attr(probe, "layer_types") or [])
    names = {name for layer in raw.values() for name in layer}
    default_global = {n: _attr(default, n) for n in names}
    tiny_global = {n: kwargs.get(n, _attr(probe, n)) for n in names}
    out: dict[int, dict[str, Any]] = {}
    for i in range(_attr(probe, "num_hidden_layers") or 0):
        if window_start is not None:
            source = window_start + i
        elif i < len(tiny_types) and tiny_types[i] in default_types:
            source = default_types.index(tiny_types[i])
        else:
            source = i
        if raw.get(source):
            out[i] = per_layer_sizes(raw[source], default_global, tiny_global, head_dim)
    return out


def _overrides(default: Any, base: dict[str, Any] | None = None,
               hidden_sizes: frozenset[int] = frozenset(), window: bool = True) -> dict[str, Any]:
    """The tiny overrides for one config object, through its ``attribute_map``; nested
    sub-configs (``text_config``, ``vision_config``, ...) are shrunk the same way. ``base``: the
    other keyword arguments the config will be built with (a sub-config's own values).

    A config whose tiny stack would lack one of its layer types gets the :func:`layer_window` of
    its default ``layer_types``; a heterogeneous config (``per_layer_config``) gets its per-layer
    overrides shrunk for the tiny layers (:func:`_per_layer`)."""
    cls = type(default)
    values = default.to_dict()
    known = set(values)
    reverse = dict(getattr(cls, "attribute_map", {}) or {})
    kwargs: dict[str, Any] = {}
    for name, value in OVERRIDES.items():
        native = reverse.get(name, name)
        if native in known or name in known:
            if name == "partial_rotary_factor" and values.get(native) is None:
                continue
            kwargs[native] = value
    hidden = values.get(reverse.get("hidden_size", "hidden_size"))
    heads = values.get(reverse.get("num_attention_heads", "num_attention_heads"))
    head_dim = values.get("head_dim") or (
        hidden // heads if isinstance(hidden, int) and isinstance(heads, int) and heads else None)
    # the rules read the standard names (``n_group``) too where a config spells them its own way
    # (Bailing's ``num_expert_group``), through the same ``attribute_map``
    view = {**values, **{alias: values[native] for alias, native in reverse.items() if native in values}}
    kwargs.update({reverse.get(name, name): value for name, value in derived_sizes(
        view, head_dim, hidden_sizes, frozenset(OVERRIDES) | set(kwargs)).items()})
    from transformers import PretrainedConfig

    for name in known:
        sub = _attr(default, name)
        if isinstance(sub, PretrainedConfig):
            sub_values = sub.to_dict()
            depth = sub_values.get(dict(getattr(type(sub), "attribute_map", {}) or {}).get(
                "num_hidden_layers", "num_hidden_layers"))
            # per-layer lists (layer_types) sized for the default depth are rebuilt by the class,
            # per-layer overrides are rebuilt for the tiny layers
            sub_values = {k: v for k, v in sub_values.items()
                          if not (isinstance(v, list) and len(v) == depth) and k != "per_layer_config"}
            kwargs[name] = {**sub_values, **_overrides(sub, sub_values, hidden_sizes, window)}
    kwargs.update(missing_values(values, _attr(default, "layer_types")))
    default_types = _attr(default, "layer_types")
    heterogeneous = bool(values.get("per_layer_config"))
    if not (isinstance(default_types, list) or heterogeneous):
        return kwargs
    window_start = None
    try:  # the class rebuilds its per-layer fields for the tiny depth: read them off a probe
        probe = cls(**{**(base or {}), **kwargs})
    except Exception:
        # a class that rebuilds them for its default depth whatever the depth (a hard-coded
        # per-layer pattern): give it the default stack's last layers, every per-layer list sliced
        depth = values.get(reverse.get("num_hidden_layers", "num_hidden_layers"))
        tiny = kwargs.get(reverse.get("num_hidden_layers", "num_hidden_layers"), LAYERS)
        if not isinstance(depth, int) or depth <= tiny:
            return kwargs
        window_start = depth - tiny
        kwargs.update({k: v[window_start:] for k, v in values.items()
                       if isinstance(v, list) and len(v) == depth})
        try:
            probe = cls(**{**(base or {}), **kwargs})
        except Exception:
            return kwargs
    if isinstance(default_types, list) and window_start is None and window:
        window = layer_window(default_types, list(_attr(probe, "layer_types") or []),
                              _attr(probe, "num_hidden_layers") or LAYERS)
        if window is not None:
            try:  # a config whose layer_types is derived (a read-only property) keeps its own
                cls(**{**(base or {}), **kwargs, "layer_types": window})
            except Exception:
                window = None
        if window is not None:
            window_start = max(s for s in range(len(default_types) - len(window) + 1)
                               if default_types[s:s + len(window)] == window)
            kwargs["layer_types"] = window
    if heterogeneous:
        kwargs["per_layer_config"] = _per_layer(default, probe, kwargs, head_dim, window_start)
    return kwargs


def missing_values(values: dict[str, Any], layer_types: Any) -> dict[str, Any]:
    """Values a default config leaves empty that its model reads, by config shape (no family names):

    - ``rope_parameters`` an empty dict while ``layer_types`` lists the layers: the model reads one
      entry per layer type (``rope_parameters[layer_type]``), so each type gets default RoPE;
    - a ``default_<name>`` left None while the plural ``<name>s`` lists values (X-MOD's
      ``default_language`` among its ``languages``): the first of them.

    Example:
        >>> missing_values({"rope_parameters": {}, "default_language": None, "languages": ["en_XX"]},
        ...                ["full_attention", "full_attention"])
        {'rope_parameters': {'full_attention': {'rope_type': 'default', 'rope_theta': 10000.0}}, \
'default_language': 'en_XX'}
    """
    out: dict[str, Any] = {}
    if values.get("rope_parameters") == {} and isinstance(layer_types, list) and layer_types:
        out["rope_parameters"] = {str(t): {"rope_type": "default", "rope_theta": 10000.0}
                                  for t in dict.fromkeys(layer_types)}
    for name, value in values.items():
        plural = values.get(name[len("default_"):] + "s") if name.startswith("default_") else None
        if value is None and isinstance(plural, (list, tuple)) and plural:
            out[name] = plural[0]
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in (nested dicts merged, not replaced)."""
    out = dict(base)
    for name, value in extra.items():
        out[name] = _merge(out[name], value) if isinstance(value, dict) and isinstance(out.get(name), dict) \
            else value
    return out


def tiny_config(family: str, window: bool = True) -> Any:
    """The family's default config with the tiny overrides applied where it has the field
    (in its sub-configs too: a multimodal model's text and vision towers). ``window=False``:
    the tiny stack's layer types as the class rebuilds them (no :func:`layer_window`)."""
    from transformers import CONFIG_MAPPING

    cls = CONFIG_MAPPING[family]
    default = cls()
    kwargs = _overrides(default, hidden_sizes=frozenset(_hidden_sizes(default)), window=window)
    if "is_decoder" in default.to_dict():  # built as a causal LM: a decoder (Reformer asserts it)
        kwargs["is_decoder"] = True
    return cls(**_merge(kwargs, NEEDS_DATA.get(family, {})))


def _hidden_sizes(config: Any) -> set[int]:
    """The hidden sizes of a config and of its sub-configs (a multimodal model's towers)."""
    from transformers import PretrainedConfig

    out = {v for v in [_attr(config, "hidden_size")] if isinstance(v, int) and not isinstance(v, bool)}
    for name in config.to_dict():
        sub = _attr(config, name)
        if isinstance(sub, PretrainedConfig):
            out |= _hidden_sizes(sub)
    return out


def build(family: str, seed: int = 0) -> torch.nn.Module:
    """The family's causal-LM class built from :func:`tiny_config` with seeded random weights."""
    torch.manual_seed(seed)
    try:
        model = _from_config(tiny_config(family))
    except Exception:  # a layer type the default config cannot build (Qwen4-Exp's indexer unset)
        torch.manual_seed(seed)
        model = _from_config(tiny_config(family, window=False))
    return _one_codebook_if_needed(model, seed).eval()


def _one_codebook_if_needed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A model whose ``input_ids`` pack ``num_codebooks`` streams into the batch dim (MusicGen's
    decoder reshapes them to ``(-1, num_codebooks, length)``) cannot take one plain sequence: when
    the forward on one sequence fails and the config has ``num_codebooks`` > 1, the model is
    rebuilt with one codebook (by the config field and the failed forward, not by name)."""
    codebooks = getattr(model.config, "num_codebooks", None)
    if not isinstance(codebooks, int) or codebooks <= 1:
        return model
    try:
        with torch.no_grad():
            model(input_ids=example_ids(batch=1, length=8))
        return model
    except Exception:
        config = model.config
        config.num_codebooks = 1
        torch.manual_seed(seed)
        return type(model)._from_config(config, dtype=torch.float32)


def _from_config(config: Any) -> torch.nn.Module:
    """The causal-LM class of ``config`` built from ``config``; where that fails and the class takes
    one of the composite config's sub-configs (its ``config_class``: MusicGen's ``decoder``, found by
    class, not by name), built from that sub-config."""
    from transformers import AutoModelForCausalLM, PretrainedConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    except Exception:
        cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
        wanted = getattr(cls, "config_class", None)
        subs = [sub for name in config.to_dict() if isinstance(sub := _attr(config, name), PretrainedConfig)
                and wanted is not None and not isinstance(config, wanted) and isinstance(sub, wanted)]
        if len(subs) != 1:
            raise
        return cls._from_config(subs[0], dtype=torch.float32)


def example_ids(seed: int = 1, batch: int = 2, length: int = 16) -> torch.Tensor:
    """Random token ids above the special ids 0-2."""
    return torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))
