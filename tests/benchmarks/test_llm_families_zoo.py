"""The tiny-config zoo (``benchmarks/llm_families_zoo.py``): sizes that depend on the tiny ones
(multi-head latent attention, partial rotary, expert groups) are derived so the families build."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from llm_families_zoo import (  # noqa: E402
    EXPERTS,
    HIDDEN,
    build,
    derived_sizes,
    example_ids,
    layer_window,
    missing_values,
    per_layer_sizes,
    tiny_config,
)


def test_mla_dims_scale_with_the_head_width():
    """DeepSeek-V3's defaults (head 64, rope 64 + nope 128 = 192, v 128) scaled to a head of 8."""
    out = derived_sizes({"qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "qk_head_dim": 192,
                         "v_head_dim": 128, "kv_lora_rank": 512, "q_lora_rank": None,
                         "num_key_value_heads": 128, "n_group": 8, "topk_group": 4,
                         "first_k_dense_replace": 3}, head_dim=64)
    assert out == {"qk_rope_head_dim": 8, "qk_nope_head_dim": 16, "qk_head_dim": 24, "v_head_dim": 16,
                   "kv_lora_rank": 32, "num_key_value_heads": 8, "n_group": 2, "topk_group": 1,
                   "first_k_dense_replace": 1}
    assert out["qk_head_dim"] == out["qk_rope_head_dim"] + out["qk_nope_head_dim"]


def test_rotary_dim_shared_experts_and_layer_pattern():
    assert derived_sizes({"rotary_dim": 64}, head_dim=256) == {"rotary_dim": 4}
    assert derived_sizes({"n_shared_experts": None}, head_dim=None) == {"n_shared_experts": 1}
    assert derived_sizes({"attention_types": [[["global", "local"], 12]]}, head_dim=64) == {
        "attention_types": [[["global", "local"], 1]]}


@pytest.mark.parametrize("family", ["deepseek_v3", "minicpm3", "gptj"])
def test_families_build_and_run(family):
    model = build(family)
    cfg = tiny_config(family)
    with torch.no_grad():
        logits = model(input_ids=example_ids(length=8)).logits
    assert logits.shape == (2, 8, 128)
    assert torch.isfinite(logits).all()
    if family == "deepseek_v3":  # one dense layer, then a mixture of experts with 8 routed experts
        assert (cfg.first_k_dense_replace, cfg.n_routed_experts, cfg.qk_rope_head_dim) == (1, 8, 8)


def test_layer_counts_vocabularies_heads_and_widths():
    """Fields that depend on the depth, vocabulary, head width or hidden size follow them."""
    values = {"num_hidden_layers": 35, "num_kv_shared_layers": 15, "vocab_size_per_layer_input": 262144,
              "vocab_size": 262144,
              "hidden_size": 4096, "hidden_size_per_layer_input": 256, "num_heads": 128,
              "num_experts_per_tok": 1, "axial_pos_embds_dim": [1024, 3072], "adapter_in_dim": 4096}
    out = derived_sizes(values, head_dim=64, hidden_sizes=frozenset({4096}))
    assert out == {"num_kv_shared_layers": 0, "vocab_size_per_layer_input": 128,
                   "hidden_size_per_layer_input": 4, "num_heads": 16, "num_experts_per_tok": 1,
                   "axial_pos_embds_dim": [16, 48], "adapter_in_dim": HIDDEN}
    # every layer shared stays every layer; a head count the overrides set is left alone
    assert derived_sizes({"num_hidden_layers": 30, "num_kv_shared_layers": 30}, None) == {"num_kv_shared_layers": 2}
    assert derived_sizes({"hidden_size": 4096, "num_heads": 32}, 128, fixed=frozenset({"num_heads"})) == {}
    # a second head count keeps its ratio to the head / key-value head count (Inkling's sliding layers)
    assert derived_sizes({"hidden_size": 6144, "num_attention_heads": 64, "num_key_value_heads": 8,
                          "swa_num_attention_heads": 64, "swa_num_key_value_heads": 16}, 128) == {
        "swa_num_attention_heads": 8, "swa_num_key_value_heads": 8}


def test_grouped_router_keeps_four_experts_per_group():
    out = derived_sizes({"n_group": 8, "topk_group": 4}, head_dim=None)
    assert EXPERTS // out["n_group"] >= 4 and 1 <= out["topk_group"] <= out["n_group"]


def test_layer_window_and_per_layer_overrides():
    assert layer_window(["s"] * 5 + ["f"], ["s", "s"]) == ["s", "f"]
    assert layer_window(["s", "f"] * 3, ["s", "f"]) is None
    assert layer_window(["a", "b", "c"], ["a", "a"]) is None  # no 2-layer window holds all three
    out = per_layer_sizes({"head_dim": 512, "qk_nope_head_dim": 192, "kv_lora_rank": 1024,
                           "num_attention_heads": 64, "skip": ["mlp"]},
                          {"head_dim": 256, "num_attention_heads": 128}, {"head_dim": 8, "num_attention_heads": 8},
                          head_dim=256)
    assert out == {"head_dim": 16, "qk_nope_head_dim": 6, "kv_lora_rank": HIDDEN // 2,
                   "num_attention_heads": 4, "skip": ["mlp"]}


@pytest.mark.parametrize("family", ["gemma4_text", "dots3_note_text"])
def test_heterogeneous_configs_keep_their_per_layer_differences(family):
    """Gemma 4 (a wider head on its global layers) and Dots3 (fewer heads on its sliding layers):
    the tiny stack holds both layer types and the per-layer overrides, shrunk, on the right one."""
    cfg = tiny_config(family)
    assert cfg.is_heterogeneous and len(set(cfg.layer_types)) == 2
    layers = cfg.per_layer_config
    model = build(family)
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=example_ids(length=8)).logits).all()
    if family == "gemma4_text":
        full = cfg.layer_types.index("full_attention")
        assert (layers[full].head_dim, layers[1 - full].head_dim) == (16, 8)
    else:
        sliding = cfg.layer_types.index("sliding_attention")
        assert layers[sliding].num_attention_heads == layers[1 - sliding].num_attention_heads // 2


def test_missing_values_follow_the_config_shape():
    """An empty per-layer-type RoPE table gets one default entry per type; a ``default_<x>`` left
    None takes the first of its ``<x>s``; nothing else is touched."""
    out = missing_values({"rope_parameters": {}, "default_language": None, "languages": ("en_XX", "de_DE")},
                         ["sliding_attention", "full_attention", "sliding_attention"])
    assert out == {"rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                       "full_attention": {"rope_type": "default", "rope_theta": 10000.0}},
                   "default_language": "en_XX"}
    assert missing_values({"rope_parameters": {"rope_theta": 1.0}, "default_x": None, "xs": []}, ["a"]) == {}
    assert missing_values({"rope_parameters": {}}, None) == {}


@pytest.mark.parametrize("family", ["lfm2_moe", "xmod", "musicgen", "cohere_compass_text"])
def test_families_that_needed_data_or_a_sub_config_build_and_run(family):
    """lfm2_moe with its listed data; xmod and cohere_compass_text by the config-shape
    rules; MusicGen from its composite config's decoder sub-config, with one codebook."""
    model = build(family)
    with torch.no_grad():
        logits = model(input_ids=example_ids(length=8)).logits
    assert logits.shape == (2, 8, 128) and torch.isfinite(logits).all()
    assert model.config.hidden_size == HIDDEN
    if family == "lfm2_moe":  # one dense layer, then a mixture of experts
        assert model.config.num_dense_layers == 1 and model.config.layer_types == ["conv", "full_attention"]
    if family == "musicgen":
        assert model.config.num_codebooks == 1 and type(model.config).__name__ == "MusicgenDecoderConfig"
