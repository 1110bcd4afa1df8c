"""Mixture-of-experts: router statistics, expert removal, expert neurons, save and reload."""

import sys

import pytest
import torch

from prunekit.errors import ModelError
from prunekit.llm.blocks import find_blocks
from prunekit.llm.structured import (
    LAYER_SHAPES_FIELD,
    StructuredConfig,
    block_layouts,
    expert_statistics,
    remove_experts,
    shrink_expert_neurons,
    structured_prune,
)
from tests.llm.conftest import fresh_reload_diff, main_output, save_with_logits, transformers

IDS = {"input_ids": torch.randint(3, 128, (2, 16), generator=torch.Generator().manual_seed(1))}


def tiny_moe(family: str = "mixtral"):
    torch.manual_seed(0)
    kw = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              vocab_size=128, max_position_embeddings=64, num_experts_per_tok=2)
    if family == "qwen2_moe":
        cfg = transformers.Qwen2MoeConfig(**kw, num_experts=8, moe_intermediate_size=48,
                                          shared_expert_intermediate_size=80, intermediate_size=96)
    else:
        cfg = transformers.MixtralConfig(**kw, num_local_experts=8, intermediate_size=48)
    return transformers.AutoModelForCausalLM.from_config(cfg).eval()


def _never_route(model, expert: int) -> None:
    """Router rows in +/- pairs: every token has two positive logits, expert ``expert`` gets 0."""
    for block in find_blocks(model)[1]:
        lay = block_layouts(model)[0].experts
        w = block.get_submodule(lay.router).weight
        with torch.no_grad():
            g = torch.Generator().manual_seed(3)
            pairs = torch.randn(3, w.shape[1], generator=g) * 10
            rows = [pairs[0], -pairs[0], pairs[1], -pairs[1], pairs[2], -pairs[2], pairs[0] * 0.5]
            rows.insert(expert, torch.zeros(w.shape[1]))
            w.copy_(torch.stack(rows))


def test_removing_a_never_routed_expert_keeps_logits():
    model = tiny_moe()
    _never_route(model, 4)
    stats = expert_statistics(model, [IDS])
    assert stats[0]["frequency"][4] == 0 and stats[1]["contribution"][4] == 0
    assert stats[0]["frequency"].sum() == 2 * 32  # top-2 of 32 tokens
    before = main_output(model, IDS)
    remove_experts(model, {0: [4], 1: [4]})
    assert model.config.num_local_experts == 7
    assert block_layouts(model)[1].experts.n_experts == 7
    assert torch.allclose(main_output(model, IDS), before, atol=1e-6)


def test_removing_a_routed_expert_changes_logits():
    model = tiny_moe()
    before = main_output(model, IDS)
    stats = expert_statistics(model, [IDS])
    busiest = int(stats[0]["frequency"].argmax())
    remove_experts(model, {0: [busiest]})
    assert not torch.allclose(main_output(model, IDS), before, atol=1e-3)


def test_router_statistics_rank_experts_and_structured_prune_removes_the_weakest():
    model = tiny_moe()
    stats = expert_statistics(model, [IDS])[0]
    weakest = sorted(torch.argsort(stats["contribution"])[:2].tolist())
    plan = structured_prune(model, [IDS], StructuredConfig(experts=0.25))
    assert plan["experts"][0] == weakest
    assert plan["experts_before"] == {0: 8, 1: 8} and plan["experts_after"] == {0: 6, 1: 6}


def test_expert_neurons_with_zero_down_columns_are_removed_exactly():
    model = tiny_moe()
    lay = block_layouts(model)[0].experts
    experts = find_blocks(model)[1][0].get_submodule(lay.module)
    keep = torch.stack([torch.tensor([j for j in range(48) if j not in (e, e + 1, e + 2, e + 3)]) for e in range(8)])
    with torch.no_grad():
        for e in range(8):
            experts.down_proj[e][:, [e, e + 1, e + 2, e + 3]] = 0
    before = main_output(model, IDS)
    shrink_expert_neurons(model, {0: keep})
    assert tuple(experts.gate_up_proj.shape) == (8, 88, 64) and tuple(experts.down_proj.shape) == (8, 64, 44)
    assert torch.allclose(main_output(model, IDS), before, atol=1e-5)


def test_too_many_experts_removed_is_an_error_and_changes_nothing():
    model = tiny_moe()
    with pytest.raises(ModelError, match="top_k=2"):
        remove_experts(model, {0: list(range(7))})
    assert block_layouts(model)[0].experts.n_experts == 8



@pytest.mark.parametrize("family,scope", [("mixtral", "layer"), ("qwen2_moe", "global")])
def test_moe_round_trip_in_a_fresh_process(family, scope, tmp_path):
    model = tiny_moe(family)
    structured_prune(model, [IDS], StructuredConfig(experts=0.25, mlp=0.25, heads=0.5, scope=scope))
    uniform = not hasattr(model.config, LAYER_SHAPES_FIELD)
    assert uniform == (scope == "layer")
    save_with_logits(model, tmp_path, IDS)
    assert fresh_reload_diff(tmp_path, plain=uniform) < 1e-5


def tiny_llama4(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.Llama4TextConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, head_dim=16, intermediate_size=48,
                                        intermediate_size_mlp=96, num_local_experts=8, num_experts_per_tok=2,
                                        vocab_size=128, max_position_embeddings=64, pad_token_id=0,
                                        bos_token_id=1, eos_token_id=2)
    return transformers.AutoModelForCausalLM.from_config(cfg).eval()


def test_stacked_experts_of_llama4_are_scored_by_their_slice_of_the_output():
    from prunekit.llm.structured.experts import stacked_contribution

    x = torch.cat([torch.ones(2, 3), torch.zeros(2, 3), 2 * torch.ones(2, 3)])  # 3 experts x 2 tokens
    assert stacked_contribution(x, x, 3).tolist() == pytest.approx([2 * 3 ** 0.5, 0.0, 4 * 3 ** 0.5])
    assert stacked_contribution(torch.ones(5, 3), torch.ones(5, 3), 3) is None  # rows not split by expert
    model = tiny_llama4()
    stats = expert_statistics(model, [IDS])
    assert sorted(stats) == [0, 1] and stats[0]["frequency"].sum() == 2 * 32  # top-2 of 32 tokens
    chosen = stats[0]["frequency"] > 0
    assert bool((stats[0]["contribution"][chosen] > 0).all()) and bool((stats[0]["contribution"][~chosen] == 0).all())


def test_llama4_expert_removal_updates_router_rows_and_counts_and_reloads(tmp_path):
    model = tiny_llama4()
    moe = model.model.layers[0].feed_forward
    plan = structured_prune(model, [IDS], StructuredConfig(experts=0.25))
    assert plan["experts_before"] == {0: 8, 1: 8} and plan["experts_after"] == {0: 6, 1: 6}
    assert moe.experts.gate_up_proj.shape[0] == moe.router.weight.shape[0] == moe.num_experts == 6
    assert moe.router.num_experts == moe.experts.num_experts == model.config.num_local_experts == 6
    save_with_logits(model, tmp_path, IDS)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


def test_removing_a_never_routed_llama4_expert_keeps_logits():
    model = tiny_llama4()
    _never_route(model, 5)
    stats = expert_statistics(model, [IDS])
    assert stats[0]["frequency"][5] == 0 and stats[1]["contribution"][5] == 0
    before = main_output(model, IDS)
    remove_experts(model, {0: [5], 1: [5]})
    assert model.config.num_local_experts == 7
    assert (main_output(model, IDS) - before).abs().max() < 1e-5


def tiny_grouped_moe(n_experts: int):
    """DeepSeek-V3-style group-limited routing: 4 groups of consecutive experts, 2 groups chosen."""
    torch.manual_seed(0)
    cfg = transformers.DeepseekV3Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, vocab_size=128,
        max_position_embeddings=64, intermediate_size=96, moe_intermediate_size=32, n_routed_experts=n_experts,
        n_shared_experts=1, num_experts_per_tok=2, n_group=4, topk_group=2, first_k_dense_replace=1,
        q_lora_rank=32, kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16)
    return transformers.AutoModelForCausalLM.from_config(cfg).eval()


def test_grouped_router_loses_the_same_number_of_experts_in_every_group():
    model = tiny_grouped_moe(16)
    plan = structured_prune(model, [IDS], StructuredConfig(experts=0.25))
    removed = plan["experts"][1]
    assert len(removed) == 4
    assert sorted(e // 4 for e in removed) == [0, 1, 2, 3]  # one from each group of 4
    assert plan["experts_after"] == {1: 12}
    with torch.no_grad():
        assert torch.isfinite(model(**IDS).logits).all()


def test_grouped_router_refuses_a_removal_that_cannot_keep_groups_even():
    model = tiny_grouped_moe(8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(Exception, match="n_group=4"):
        structured_prune(model, [IDS], StructuredConfig(experts=0.25))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_experts_whose_module_takes_only_hidden_states_are_scored_by_ablation():
    """JetMoE's MoE module holds its router and splits its experts over ``input_linear`` /
    ``output_linear`` (3-D, ``num_experts`` each); its forward takes only the hidden states.
    Contributions come from re-running it with one expert's slices zeroed: 0 for a never-routed
    expert, whose removal (every sibling, the router rows and counts) keeps the logits."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from llm_families_zoo import build

    model = build("jetmoe").eval()
    lay = block_layouts(model)[0].experts
    assert lay.module == "mlp" and lay.router == "mlp.router.layer"
    _never_route(model, 4)
    stats = expert_statistics(model, [IDS])
    for s in stats.values():
        assert s["frequency"].sum() == 2 * 32  # top-2 of 32 tokens, counted once despite the re-runs
        assert s["frequency"][4] == 0 and s["contribution"][4] == 0
        # routed experts add something (one picked once, with a gate of ~1e-20, may round to 0)
        assert bool((s["contribution"][s["frequency"] >= 5] > 0).all())
    before = main_output(model, IDS)
    remove_experts(model, {0: [4], 1: [4]})
    mlp = model.model.layers[0].mlp
    assert mlp.input_linear.weight.shape[0] == mlp.output_linear.weight.shape[0] == 7
    assert mlp.router.layer.weight.shape[0] == 7 and mlp.router.num_experts == 7
    assert mlp.input_linear.num_experts == mlp.output_linear.num_experts == 7
    # the attention's experts share num_local_experts: the config keeps 8, the blocks record 7
    assert model.model.layers[0].self_attention.experts.router.layer.weight.shape[0] == 8
    assert model.config.num_local_experts == 8
    assert [s["num_experts"] for s in getattr(model.config, LAYER_SHAPES_FIELD)] == [7, 7]
    assert (main_output(model, IDS) - before).abs().max() <= 1e-5
