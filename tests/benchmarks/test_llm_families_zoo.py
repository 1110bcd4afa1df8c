"""The tiny-config zoo (``benchmarks/llm_families_zoo.py``): sizes that depend on the tiny ones
(multi-head latent attention, partial rotary, expert groups) are derived so the families build."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from llm_families_zoo import build, derived_sizes, example_ids, tiny_config  # noqa: E402


def test_mla_dims_scale_with_the_head_width():
    """DeepSeek-V3's defaults (head 64, rope 64 + nope 128 = 192, v 128) scaled to a head of 8."""
    out = derived_sizes({"qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "qk_head_dim": 192,
                         "v_head_dim": 128, "kv_lora_rank": 512, "q_lora_rank": None,
                         "num_key_value_heads": 128, "n_group": 8, "topk_group": 4,
                         "first_k_dense_replace": 3}, head_dim=64)
    assert out == {"qk_rope_head_dim": 8, "qk_nope_head_dim": 16, "qk_head_dim": 24, "v_head_dim": 16,
                   "kv_lora_rank": 32, "num_key_value_heads": 8, "n_group": 4, "topk_group": 2,
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
