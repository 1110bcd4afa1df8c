"""Hybrid stacks (state-space / recurrent layers beside attention layers): heads are removed in
the attention layers only, and the result reloads in a fresh process with equal logits.

The families benchmark's tiny configs keep a default's layer types, and for Jamba, Zamba 2 and
Recurrent Gemma two layers of the default hold no attention layer, so there ``heads`` is
reported not applicable; here the config puts one attention layer in the tiny stack.
"""

import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from prunekit.llm.blocks import find_blocks
from prunekit.llm.structured import StructuredConfig, block_layouts, structured_prune
from prunekit.llm.structured.storage import LAYER_SHAPES_FIELD
from tests.llm.conftest import fresh_reload_diff
from tests.llm.test_structured_mixers import _save

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from llm_families_zoo import example_ids, tiny_config  # noqa: E402

WITH_ATTENTION = {  # config fields that place an attention layer in the 2-layer tiny stack
    "jamba": {"attn_layer_offset": 1, "attn_layer_period": 2},
    "recurrent_gemma": {"block_types": ["recurrent", "attention"]},
    "zamba2": {"layers_block_type": ["mamba", "hybrid"], "hybrid_layer_ids": [1]},
}


@pytest.mark.parametrize("family", sorted(WITH_ATTENTION))
def test_heads_are_removed_in_the_attention_layers_of_a_hybrid_stack(family, tmp_path):
    config = tiny_config(family)
    for field, value in WITH_ATTENTION[family].items():
        setattr(config, field, value)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    layouts = block_layouts(model)
    with_heads = [i for i, lay in layouts.items() if lay.attentions]
    assert with_heads and len(with_heads) < len(find_blocks(model)[1])  # one kind of layer has heads, one not
    before = sum(p.numel() for p in model.parameters())
    plan = structured_prune(model, [{"input_ids": example_ids(seed=2, batch=4, length=32)}],
                            StructuredConfig(heads=0.25))
    assert not plan.get("not_applicable", {}).get("heads")
    assert sum(p.numel() for p in model.parameters()) < before
    _save(model, tmp_path)  # from_pretrained where the config says every layer's shapes, else load_pruned
    assert fresh_reload_diff(tmp_path, plain=not hasattr(model.config, LAYER_SHAPES_FIELD)) <= 1e-4
