"""Heads found where the counts live in submodules, behind a grouped output, or not at all.

Families built from the benchmark's tiny configs (``benchmarks/llm_families_zoo.py``):
removing units whose output columns are zero must leave the logits unchanged.
"""

import sys
from pathlib import Path

import pytest
import torch

from prunekit.errors import UnsupportedOpError
from prunekit.llm.blocks import find_blocks, weight_2d
from prunekit.llm.structured import StructuredConfig, block_layouts, prune_heads, structured_prune
from tests.llm.conftest import main_output

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from llm_families_zoo import build, example_ids  # noqa: E402

IDS = {"input_ids": example_ids(length=12)}


def _zero_units_and_prune(model, unit: int) -> tuple[torch.Tensor, dict]:
    _, blocks = find_blocks(model)
    layouts = {i: lay.attention for i, lay in block_layouts(model).items() if lay.attention is not None}
    with torch.no_grad():
        for i, att in layouts.items():
            weight_2d(blocks[i].get_submodule(att.o))[:, list(att.cols[unit])] = 0
    before = main_output(model, IDS)
    prune_heads(model, {i: [unit] for i in layouts})
    return before, layouts


@pytest.mark.parametrize("family", ["bailing_hybrid", "deepseek_v4"])
def test_removing_a_dead_unit_keeps_logits(family):
    """Bailing's linear attention splits q/k/v by a ``qkv_dim`` attribute; DeepSeek-V4's heads
    reach ``o_b_proj`` through the grouped ``o_a_proj`` and share one key/value head."""
    model = build(family)
    before, layouts = _zero_units_and_prune(model, 1)
    assert layouts
    after = block_layouts(model)
    for i, att in layouts.items():
        assert after[i].attention.n_heads == att.n_heads - att.heads_per_unit
    assert torch.allclose(main_output(model, IDS), before, atol=1e-5)


def test_grouped_output_keeps_its_dormant_compressor_whole():
    """DeepSeek-V4's compressor runs from 128 tokens on; the short probe never reaches it, and
    its head_dim-sized tensors (8, like the head count) must not be cut as per-head ones."""
    model = build("deepseek_v4")
    block = model.config.layer_types.index("heavily_compressed_attention")  # (the tiny stack has both types)
    lay = block_layouts(model, [block])[block].attention
    assert lay.through == ("self_attn.o_a_proj",)
    assert set(lay.rows) == {"self_attn.q_b_proj", "self_attn.kv_proj", "self_attn.o_a_proj"}
    assert lay.shared["self_attn.kv_proj"] == tuple(range(8))          # the one key/value head stays
    assert set(lay.params) == {"self_attn.sinks"}
    prune_heads(model, {block: [1, 2]})
    assert model.model.layers[block].self_attn.o_a_proj.n_groups == 6
    long = torch.randint(3, 128, (1, 200), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert model(input_ids=long, use_cache=False).logits.shape == (1, 200, 128)


def test_a_mixture_of_attention_heads_and_its_split_mlp_experts_both_prune():
    """JetMoE's queries and outputs are routed experts (3-D parameters): its heads are matched
    by heads_routed (tests/llm/test_structured_heads_routed.py), and the MLP experts (split
    over two modules) lose neurons in the same call."""
    model = build("jetmoe")
    lay = block_layouts(model, [0])[0]
    assert lay.attention is not None and lay.attention_error is None and lay.attention.o == ""
    assert lay.experts.module == "mlp" and set(lay.experts.params) == {"input_linear.weight", "output_linear.weight"}
    calib = [{"input_ids": example_ids(seed=2, batch=2, length=16)}]
    before = sum(p.numel() for p in model.parameters())
    structured_prune(model, calib, StructuredConfig(heads=0.25, mlp=0.25))
    mlp = model.model.layers[0].mlp
    assert mlp.output_linear.weight.shape == (8, 64, 72) and mlp.input_linear.weight.shape == (8, 144, 64)
    assert model.model.layers[0].self_attention.experts.output_linear.weight.shape == (8, 64, 24)
    assert sum(p.numel() for p in model.parameters()) < before
    assert main_output(model, IDS).shape == (2, 12, 128)


def test_a_router_that_also_scores_shared_experts_keeps_their_rows():
    """Inkling's router weight is [routed + shared, hidden]; removing a routed expert keeps the shared row."""
    from prunekit.llm.structured.experts import remove_experts

    model = build("inkling_text")
    lay = block_layouts(model, [0])[0].experts
    gate = find_blocks(model)[1][0].get_submodule(lay.router)
    rows = gate.weight.shape[0]
    shared = gate.weight[lay.n_experts:].detach().clone()
    remove_experts(model, {0: [3]})
    assert gate.weight.shape[0] == rows - 1 and torch.equal(gate.weight[lay.n_experts - 1:], shared)
    assert gate.num_experts == lay.n_experts - 1
    assert main_output(model, IDS).shape[-1] == 128


def test_a_head_bias_shared_by_every_block_loses_the_same_heads():
    """CPM-Ant adds one model-level relative position bias [buckets, heads] in every block."""
    model = build("cpmant")
    bias = model.cpmant.position_bias
    heads = bias.relative_attention_bias.shape[1]
    with pytest.raises(UnsupportedOpError, match="same head groups"):
        prune_heads(model, {0: [1], 1: [2]})
    assert bias.relative_attention_bias.shape[1] == heads          # undone before anything changed
    kept = torch.cat([bias.relative_attention_bias[:, :1], bias.relative_attention_bias[:, 2:]], 1).detach().clone()
    before, layouts = _zero_units_and_prune(model, 1)
    assert len(layouts) == 2
    assert torch.equal(bias.relative_attention_bias, kept) and bias.num_heads == heads - 1
    assert torch.allclose(main_output(model, IDS), before, atol=1e-4)  # logits of magnitude ~10


def test_a_removal_the_forward_cannot_take_names_the_module_where_it_fails():
    """TrOCR reshapes its attention output to the input width: the error says where."""
    model = build("trocr")
    with pytest.raises(UnsupportedOpError, match=r"in model\.decoder\.layers\.0\.self_attn \(TrOCRAttention\)"):
        prune_heads(model, {0: [1]})
