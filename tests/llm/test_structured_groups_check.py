"""The traced dependency graph and the Layout groups describe the same tensor slices
(prunekit.llm.structured.groups_check): MLP neurons are the same units; attention heads
are the same slices cut the other way (the tracer removes head dims across heads, the
Layout whole heads); GPT-2's fused c_attn is not traced into groups at all."""

import pytest
import torch

from prunekit.graph import build_dependency_graph
from prunekit.llm.structured.groups import head_group, mlp_group
from prunekit.llm.structured.groups_check import compare_units
from prunekit.llm.structured.surgery import block_layouts

transformers = pytest.importorskip("transformers")
IDS = torch.arange(8).reshape(1, 8)


def _traced_and_layout(model, prefix, block):
    graph = build_dependency_graph(model, IDS)
    lay = block_layouts(model)[0]
    return graph, head_group(prefix, block, lay.attention), mlp_group(prefix, block, lay.mlp)


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                   max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(cfg).eval()
    return _traced_and_layout(model, "model.layers.0", model.model.layers[0])


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=4, vocab_size=96, n_positions=64,
                                  bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    return _traced_and_layout(model, "transformer.h.0", model.transformer.h[0])


@pytest.mark.parametrize("fixture", ["llama", "gpt2"])
def test_mlp_neurons_are_the_same_units(fixture, request):
    graph, _, mlp = request.getfixturevalue(fixture)
    c = compare_units(mlp, graph.groups)
    assert [(m.relation, m.consistent, m.layout_units, m.traced_units) for m in c.members] == \
        [("same", True, mlp.size, mlp.size)] * len(mlp.members)
    assert c.traced_only == []


def test_llama_heads_are_the_same_slices_cut_as_head_dims(llama):
    graph, heads, _ = llama
    c = compare_units(heads, graph.groups)
    a = "model.layers.0.self_attn."
    # 2 KV groups (Layout) vs 4 rotary head-dim pairs on q/k and 8 head dims on v/o (tracer);
    # every traced unit takes the same number of rows of each KV group: a grid, no index missing
    got = {m.tensor: (m.relation, m.grid, m.layout_units, m.traced_units) for m in c.members}
    assert got == {a + "q_proj.weight": ("crossed", True, 2, 4), a + "k_proj.weight": ("crossed", True, 2, 4),
                   a + "v_proj.weight": ("crossed", True, 2, 8), a + "o_proj.weight": ("crossed", True, 2, 8)}
    assert [m.detail for m in c.members] == [f"each traced unit takes [{k}] indices of each Layout unit"
                                             for k in (4, 2, 1, 2)]
    assert c.traced_only == [("model.rotary_emb.inv_freq", 0)]  # the tracer's head dims carry the frequencies


def test_gpt2_fused_attention_has_no_traced_head_groups(gpt2):
    graph, heads, _ = gpt2
    c = compare_units(heads, graph.groups)
    assert {m.relation for m in c.members} == {"coverage"}
    assert all(m.traced_units == 0 and m.detail.endswith("0 only traced") for m in c.members)
    reason = graph.drop_reasons[("transformer.h.0.attn.c_attn.weight", 1)]
    assert any("surgery rule of transformer.h.0.attn" in r for r in reason)
