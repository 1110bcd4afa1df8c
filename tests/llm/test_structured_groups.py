"""LLM heads / neurons / experts as groups of the one engine (prunekit.llm.structured.groups)."""

import torch

from prunekit.llm.structured.groups import head_group, mlp_group, removal_keep
from prunekit.llm.structured.prune import collect_structured_scores
from prunekit.llm.structured.surgery import block_layouts, prune_heads
from tests.llm.conftest import example_inputs, tiny_gpt2, tiny_llama


def _old_head_scores(model, batches):
    """The LLM head score as computed before the engine's "activation" importance:
    ``||W_o[:, j]|| * ||X_j||`` per o_proj input column, summed over a KV group's columns."""
    sq = {}
    hooks = [layer.self_attn.o_proj.register_forward_pre_hook(
        lambda m, a, _i=i: sq.__setitem__(_i, sq.get(_i, 0) + a[0].detach().float().reshape(-1, a[0].shape[-1])
                                          .square().sum(0)))
        for i, layer in enumerate(model.model.layers)]
    with torch.no_grad():
        for b in batches:
            model(**b)
    for h in hooks:
        h.remove()
    out = {}
    for i, layer in enumerate(model.model.layers):
        cols = layer.self_attn.o_proj.weight.detach().float().norm(dim=0) * sq[i].clamp_min(0).sqrt()
        out[i] = torch.stack([cols[u * 32:(u + 1) * 32].sum() for u in range(2)])  # 2 KV groups x 2 heads x 16
    return out


def test_llama_head_scores_unchanged():
    model = tiny_llama()
    batches = [example_inputs("llama")]
    new = collect_structured_scores(model, batches)["heads"]
    old = _old_head_scores(model, batches)
    for i in old:
        assert new[i].dtype == torch.float32
        assert torch.equal(new[i], old[i]), (new[i], old[i])


def test_llama_head_group_keep_request():
    model = tiny_llama()
    lay = block_layouts(model, [1])[1]
    g = head_group("model.layers.1", model.model.layers[1], lay.attention)
    assert g.size == 2 and g.consumers == [("model.layers.1.self_attn.o_proj.weight", 1)]
    keep = removal_keep(model, [(g, [0])])
    p = "model.layers.1.self_attn."
    assert keep[p + "q_proj.weight"][0].tolist() == list(range(32, 64))   # 2 query heads x 16
    assert keep[p + "k_proj.weight"][0].tolist() == list(range(16, 32))   # 1 KV head x 16
    assert keep[p + "v_proj.weight"][0].tolist() == list(range(16, 32))
    assert keep[p + "o_proj.weight"][1].tolist() == list(range(32, 64))
    assert set(keep) == {p + n for n in ("q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight")}


def test_llama_mlp_group_and_gpt2_conv1d_dims():
    model = tiny_llama()
    lay = block_layouts(model, [0])[0]
    g = mlp_group("model.layers.0", model.model.layers[0], lay.mlp)
    keep = removal_keep(model, [(g, [3, 5])])
    kept = [j for j in range(128) if j not in (3, 5)]
    assert keep["model.layers.0.mlp.down_proj.weight"][1].tolist() == kept
    assert keep["model.layers.0.mlp.gate_proj.weight"][0].tolist() == kept
    assert keep["model.layers.0.mlp.up_proj.weight"][0].tolist() == kept
    gpt2 = tiny_gpt2()
    lay = block_layouts(gpt2, [0])[0]
    g = head_group("transformer.h.0", gpt2.transformer.h[0], lay.attention)
    keep = removal_keep(gpt2, [(g, [1])])
    # Conv1D stores [in, out]: rows of c_attn are its dim 1, c_proj's input columns its dim 0
    rows = keep["transformer.h.0.attn.c_attn.weight"]
    assert set(rows) == {1} and len(rows[1]) == 3 * 48
    assert keep["transformer.h.0.attn.c_attn.bias"][0].tolist() == rows[1].tolist()
    assert keep["transformer.h.0.attn.c_proj.weight"][0].tolist() == list(range(16)) + list(range(32, 64))


def test_prune_heads_through_groups_keeps_running():
    model = tiny_llama()
    prune_heads(model, {0: [1], 1: [0]})
    assert model.model.layers[0].self_attn.q_proj.weight.shape == (32, 64)
    assert model.model.layers[1].self_attn.o_proj.weight.shape == (64, 32)
    with torch.no_grad():
        assert model(**example_inputs("llama")).logits.shape == (2, 24, 128)
