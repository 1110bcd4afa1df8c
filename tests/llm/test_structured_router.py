"""Routers that are a chain of modules (ZAYA's MLP router with a trailing "skip" output):
found by structure, statistics from what the experts receive, expert removal, reload."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.llm.blocks import find_blocks
from prunekit.llm.structured import (
    LAYER_SHAPES_FIELD,
    StructuredConfig,
    block_layouts,
    expert_statistics,
    remove_experts,
    structured_prune,
)
from prunekit.llm.structured.router import count_attributes, find_router, router_vectors
from tests.llm.conftest import fresh_reload_diff, main_output, save_with_logits, transformers  # noqa: F401  (skips without transformers)

IDS = {"input_ids": torch.randint(3, 128, (2, 16), generator=torch.Generator().manual_seed(1))}


def zaya():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from llm_families_zoo import build

    return build("zaya").eval()


def _never_route_and_skip(model, expert: int) -> None:
    """In every block: expert ``expert`` gets a logit of about -100 (never picked, and its
    softmax share is ~1e-44, so removing it changes no other weight); the trailing skip
    output is made competitive (no balancing penalty, larger logits) so some tokens pick it."""
    for block in find_blocks(model)[1]:
        gate = block.mlp.gate
        fc2, out = gate.router_mlp.fc2, gate.router_mlp.out_proj
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            fc2.weight[0].zero_()
            fc2.bias[0] = 20.0  # channel 0 after GELU is the constant 20
            out.weight[expert].zero_()
            out.weight[expert, 0] = -5.0
            out.weight[-1] = torch.randn(out.weight.shape[1], generator=g) * 0.5
            out.weight[-1, 0] = 0.0
            gate.balancing_biases[-1] = 0.0


def test_zaya_router_is_the_final_linear_of_its_mlp_chain():
    model = zaya()
    lay = block_layouts(model)[0].experts
    assert lay.module == "mlp.experts" and lay.router == "mlp.gate.router_mlp.out_proj"
    assert lay.n_experts == 8
    block = find_blocks(model)[1][0]
    assert list(router_vectors(block, lay.router, lay.module, 8)) == ["mlp.gate.balancing_biases"]


def test_removing_a_never_routed_zaya_expert_keeps_logits_and_the_skip_slot():
    model = zaya()
    _never_route_and_skip(model, 3)
    stats = expert_statistics(model, [IDS])
    tokens, top_k = 32, model.config.num_experts_per_tok
    for s in stats.values():
        assert s["frequency"][3] == 0 and s["contribution"][3] == 0
        assert 0 < s["frequency"].sum() < tokens * top_k  # picks of the skip slot are not an expert's
    before = main_output(model, IDS)
    remove_experts(model, {0: [3], 1: [3]})
    gate = model.model.layers[0].mlp.gate
    assert gate.router_mlp.out_proj.weight.shape == (8, 256)  # 7 experts + the skip row
    assert gate.num_experts == 7 and gate.num_router_classes == 8 and model.config.num_experts == 7
    assert model.model.layers[0].mlp.experts.gate_up_proj.shape[0] == 7
    assert gate.balancing_biases.tolist()[-1] == 0.0 and gate.balancing_biases.shape == (8,)
    assert (main_output(model, IDS) - before).abs().max() <= 1e-5


def test_removing_a_routed_zaya_expert_changes_logits():
    model = zaya()
    stats = expert_statistics(model, [IDS])
    busiest = int(stats[0]["frequency"].argmax())
    before = main_output(model, IDS)
    remove_experts(model, {0: [busiest]})
    assert (main_output(model, IDS) - before).abs().max() > 1e-4



@pytest.mark.parametrize("scope", ["layer", "global"])
def test_zaya_experts_quarter_round_trip_in_a_fresh_process(scope, tmp_path):
    model = zaya()
    plan = structured_prune(model, [IDS], StructuredConfig(experts=0.25, scope=scope))
    assert sum(plan["experts_before"].values()) - sum(plan["experts_after"].values()) == 4
    assert hasattr(model.config, LAYER_SHAPES_FIELD) == (plan["experts_after"][0] != plan["experts_after"][1])
    save_with_logits(model, tmp_path, IDS)
    assert fresh_reload_diff(tmp_path) <= 1e-4


def test_a_chain_router_is_found_by_structure_not_names():
    block = nn.Module()
    block.moe = nn.Module()
    block.moe.experts = nn.Module()
    block.moe.shared = nn.Sequential(nn.Linear(8, 5), nn.Linear(5, 8))  # 5 rows, but declares no experts
    block.moe.scorer = nn.Module()
    block.moe.scorer.num_local_experts = 4
    block.moe.scorer.a = nn.Linear(8, 16)
    block.moe.scorer.b = nn.Linear(16, 4)
    assert find_router(block, "moe.experts", 4, 8) == "moe.scorer.b"
    block.moe.scorer.num_local_experts = 3  # declares another count: no router for 4 experts
    assert find_router(block, "moe.experts", 4, 8) is None


def test_output_counts_follow_only_on_the_routing_chain():
    m = nn.Module()
    m.num_experts, m.num_router_classes, m.layer_idx, m.top_k, m.flag = 8, 9, 9, 1, True
    assert count_attributes(m, 8, 6, 1, chain=True) == {"num_experts": 6, "num_router_classes": 7}
    assert count_attributes(m, 8, 6, 1, chain=False) == {"num_experts": 6}
    assert count_attributes(m, 8, 6, 0, chain=True) == {"num_experts": 6}
