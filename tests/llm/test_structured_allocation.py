"""The LLM remover chooses its units with the structured engine's allocation
(prunekit.structured.allocate): the same units as the LLM-only ``_lowest`` it replaced."""

import pytest
import torch

from prunekit.llm.structured.prune import _lowest, collect_structured_scores
from prunekit.structured.allocate import global_keep, global_lowest
from tests.llm.conftest import transformers


def _old_lowest(scores, fraction, scope):
    """The LLM allocation before it was shared (prune.py at 2038187), kept as the oracle."""
    if fraction == 0:
        return {}
    if scope == "layer":
        out = {}
        for i, s in enumerate(scores):
            k = min(int(fraction * s.numel() + 0.5), s.numel() - 1)
            out[i] = torch.argsort(s)[:k].tolist()
        return out
    flat = torch.cat([s / s.sum().clamp_min(1e-12) for s in scores])
    owner = torch.cat([torch.full((s.numel(),), i) for i, s in enumerate(scores)])
    local = torch.cat([torch.arange(s.numel()) for s in scores])
    chosen = {i: [] for i in range(len(scores))}
    for j in torch.argsort(flat)[: int(round(fraction * flat.numel()))].tolist():
        i = int(owner[j])
        if len(chosen[i]) < scores[i].numel() - 1:
            chosen[i].append(int(local[j]))
    return chosen


@pytest.fixture(scope="module")
def llama_scores():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                   num_attention_heads=8, num_key_value_heads=8, vocab_size=128,
                                   max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(0, 128, (2, 16), generator=g)}]
    return collect_structured_scores(model, batches)


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("kind", ["heads", "neurons"])
def test_tiny_llama_units_are_the_same_as_the_llm_only_allocation(llama_scores, kind, fraction, scope):
    scores = [llama_scores[kind][i] for i in sorted(llama_scores[kind])]
    new, old = _lowest(scores, fraction, scope), _old_lowest(scores, fraction, scope)
    assert new == old  # same units, same order (lowest first)
    assert sum(map(len, new.values())) > 0


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_blocks_of_different_widths_and_the_last_unit_rule(scope):
    g = torch.Generator().manual_seed(3)
    scores = [torch.rand(n, generator=g) for n in (2, 5, 16, 1)]
    scores[0] *= 1e-6  # a block far below the others: global stops at its last unit
    for fraction in (0.25, 0.5, 0.75, 1.0):
        new = _lowest(scores, fraction, scope)
        assert new == _old_lowest(scores, fraction, scope)
        assert all(len(new[i]) < s.numel() for i, s in enumerate(scores))
        assert new[3] == []


def _old_global_keep(scores, ratio, max_ratio):
    import math

    sizes = [len(s) for s in scores]
    n_remove = int(math.floor(sum(sizes) * ratio + 1e-9))
    flat = torch.cat([s.double() / (s.double().mean() + 1e-12) for s in scores])
    owner = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    cap = [min(int(math.floor(n * max_ratio + 1e-9)), n - 1) for n in sizes]
    removed, left = [0] * len(sizes), n_remove
    for i in owner[torch.argsort(flat, stable=True)].tolist():
        if left == 0:
            break
        if removed[i] < cap[i]:
            removed[i] += 1
            left -= 1
    return [n - r for n, r in zip(sizes, removed)]


def test_traced_global_allocation_is_the_same_function_with_mean_normalisation_and_refill():
    g = torch.Generator().manual_seed(4)
    scores = [torch.rand(n, generator=g) * (10 ** k) for k, n in enumerate((8, 3, 32, 5))]
    for ratio in (0.1, 0.3, 0.6, 0.95):
        for max_ratio in (0.5, 0.9):
            keep = global_keep(scores, ratio, max_ratio)
            assert keep == _old_global_keep(scores, ratio, max_ratio)
            removed = global_lowest([s.double() for s in scores], sum(len(s) for s in scores) - sum(keep),
                                    "mean", [len(s) - k for s, k in zip(scores, keep)])
            assert [len(r) for r in removed] == [len(s) - k for s, k in zip(scores, keep)]
