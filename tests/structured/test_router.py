"""The "router" importance (prunekit.structured.router) on a tiny Mixtral-style block:
each statistic equals a hand computation, and the LLM expert choice is its lowest scores."""

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.llm.structured import StructuredConfig, structured_prune
from prunekit.llm.structured.experts import expert_members, expert_statistics, find_experts
from prunekit.llm.structured.groups import experts_group
from prunekit.structured.router import router_scores

transformers = pytest.importorskip("transformers")

H, E, INNER, K = 16, 8, 8, 2


def _tiny_mixtral():
    torch.manual_seed(0)
    cfg = transformers.MixtralConfig(hidden_size=H, intermediate_size=INNER, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=1, vocab_size=64,
                                     max_position_embeddings=32, num_local_experts=E, num_experts_per_tok=K)
    return transformers.MixtralForCausalLM(cfg).eval()


def _by_hand(moe, x):
    """frequency, mass, contribution of every expert from the block's input ``x``."""
    x = x.reshape(-1, H).double()
    w_router = moe.gate.weight.detach().double()
    probs = torch.softmax(x @ w_router.T, dim=-1)
    top, index = torch.topk(probs, K, dim=-1)
    top = top / top.sum(-1, keepdim=True)  # Mixtral renormalises its top-k weights
    gate_up, down = moe.experts.gate_up_proj.detach().double(), moe.experts.down_proj.detach().double()
    freq, mass, contrib = (torch.zeros(E, dtype=torch.float64) for _ in range(3))
    for t in range(x.shape[0]):
        for slot in range(K):
            e = int(index[t, slot])
            g, u = (gate_up[e] @ x[t]).chunk(2)
            y = down[e] @ (torch.nn.functional.silu(g) * u)
            freq[e] += 1
            mass[e] += top[t, slot]
            contrib[e] += (top[t, slot] * y).norm()
    return {"frequency": freq, "mass": mass, "contribution": contrib}


@pytest.fixture(scope="module")
def measured():
    model = _tiny_mixtral()
    moe = model.model.layers[0].mlp
    seen = []
    handle = moe.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    batches = [{"input_ids": torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))}]
    try:
        stats = expert_statistics(model, batches)
    finally:
        handle.remove()
    return model, batches, stats[0], _by_hand(moe, seen[0])


@pytest.mark.parametrize("part", ["frequency", "mass", "contribution"])
def test_router_statistics_equal_a_hand_computation(measured, part):
    model, _, stats, hand = measured
    block = model.model.layers[0]
    layout = find_experts(block, H)
    group = experts_group(expert_members("model.layers.0", block, layout), E)
    score = router_scores([group], {"model.layers.0.mlp.gate.weight": stats}, part)[0]
    assert hand["frequency"].sum() == 2 * 12 * K
    assert torch.allclose(score, hand[part], rtol=1e-4, atol=1e-5), (score, hand[part])


def test_llm_expert_choice_is_the_lowest_router_scores(measured):
    model, batches, _, hand = measured
    plan = structured_prune(model, batches, StructuredConfig(experts=0.25))
    assert plan["experts"][0] == sorted(torch.argsort(hand["contribution"])[:2].tolist())
    assert torch.allclose(torch.tensor(plan["expert_stats"][0]["contribution"], dtype=torch.float64),
                          hand["contribution"], rtol=1e-4)
    assert model.model.layers[0].mlp.experts.gate_up_proj.shape[0] == E - 2


def test_a_group_without_router_statistics_is_a_clear_error():
    g = experts_group({"moe.experts.down_proj": 0, "moe.gate.weight": 0}, 3)
    with pytest.raises(ConfigError, match="0 routers"):
        router_scores([g], {"other.gate.weight": {"contribution": torch.ones(3)}})
    with pytest.raises(ConfigError, match="3"):
        router_scores([g], {"moe.gate.weight": {"contribution": torch.ones(4)}})
    with pytest.raises(ConfigError, match="part"):
        router_scores([g], {"moe.gate.weight": {"contribution": torch.ones(3)}}, "weight")
