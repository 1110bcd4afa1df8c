"""N:M channel permutation: folded into the producers (same function), more score kept, 2:4 holds."""

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.llm.blocks import find_blocks, find_linears, weight_2d
from prunekit.llm.config import LLMPruneConfig
from prunekit.llm.hooks import collect_input_stats
from prunekit.llm.methods.permute import balanced_permutation, nm_retained
from prunekit.llm.methods.permute_fold import (
    apply_fold_,
    consumer_scores,
    foldable_pairs,
    pair_permutation,
    permute_block_,
)
from prunekit.llm.methods.wanda import wanda_scores
from prunekit.llm.prune import prune_llm
from prunekit.llm.sequential import sequential_blocks
from tests.llm.conftest import tiny_llama, tiny_opt
from tests.llm.test_reconstruct import _logits_error


def test_balanced_permutation_on_a_hand_example():
    # the three important channels share the first group: 2:4 loses 7 in it
    s = torch.tensor([[9.0, 8.0, 7.0, 1.0, 1.0, 1.0, 1.0, 6.0]])
    perm = balanced_permutation(s, 2, 4)
    assert sorted(perm.tolist()) == list(range(8))
    assert nm_retained(s, 2, 4) == 24.0
    assert nm_retained(s[:, perm], 2, 4) == 30.0  # 9 + 8 | 7 + 6: the best possible


def test_balanced_permutation_raises_retained_score_on_random_scores():
    g = torch.Generator().manual_seed(0)
    s = torch.rand(64, 128, generator=g) * torch.rand(128, generator=g) ** 2  # uneven channels
    perm = balanced_permutation(s, 2, 4)
    assert sorted(perm.tolist()) == list(range(128))
    before, after = nm_retained(s, 2, 4), nm_retained(s[:, perm], 2, 4)
    assert after > 1.02 * before  # measured: about +6%


@pytest.mark.parametrize("make", [tiny_llama, tiny_opt])
def test_folded_permutation_leaves_logits_unchanged(make):
    model = make().eval()
    ids = torch.randint(2, 128, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    g = torch.Generator().manual_seed(5)
    folded = 0
    for block in find_blocks(model)[1]:
        for pair in foldable_pairs(block):
            w = weight_2d(find_linears(block)[pair.consumer])
            cperm, pperm = pair_permutation(pair, torch.rand(w.shape, generator=g), 2, 4)
            assert not torch.equal(cperm, torch.arange(len(cperm)))
            apply_fold_(block, pair, cperm, pperm)
            folded += 1
    assert folded == 4  # attention and MLP of both blocks
    with torch.no_grad():
        after = model(input_ids=ids).logits
    assert torch.allclose(after, before, atol=1e-5)


def test_permute_block_keeps_function_and_raises_wanda_retained_score():
    model = tiny_llama(seed=3).eval()
    ids = torch.randint(2, 128, (4, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    batches = [{"input_ids": ids, "use_cache": False}]
    for _i, block, run in sequential_blocks(model, batches):
        linears = find_linears(block)
        with collect_input_stats(linears, gram=False) as stats:
            run()
        kept_before = {n: nm_retained(wanda_scores(weight_2d(linears[n]), stats[n].sq_norm), 2, 4)
                       for n in ("self_attn.o_proj", "mlp.down_proj")}
        done = permute_block_(block, stats, "wanda", 2, 4)
        assert sorted(done) == ["mlp.down_proj", "self_attn.o_proj"]
        for n, old in kept_before.items():
            # the statistics were permuted with the weights: scores are the same set, kept more
            scores = consumer_scores(weight_2d(linears[n]), stats[n], "wanda")
            assert nm_retained(scores, 2, 4) > old, n
    with torch.no_grad():
        after = model(input_ids=ids).logits
    assert torch.allclose(after, before, atol=1e-5)


def _uneven_llama():
    """A tiny Llama whose o_proj / down_proj input channels differ in importance, as trained
    LLMs' do (random init makes every channel alike, and then no permutation can help)."""
    model = tiny_llama(seed=1).eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for block in find_blocks(model)[1]:
            for lin in (block.self_attn.o_proj, block.mlp.down_proj):
                lin.weight.mul_(torch.exp(1.5 * torch.randn(lin.weight.shape[1], generator=g)))
    return model


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_prune_with_permute_holds_2_4_and_moves_outputs_less(method):
    windows = torch.randint(0, 128, (8, 32), generator=torch.Generator().manual_seed(0))
    dense = _uneven_llama()
    plain, permuted = _uneven_llama(), _uneven_llama()
    prune_llm(plain, windows, LLMPruneConfig(method, pattern="2:4"), progress=False)
    r = prune_llm(permuted, windows, LLMPruneConfig(method, pattern="2:4", permute=True), progress=False)
    assert r.measured_sparsity == pytest.approx(0.5, abs=1e-6)
    for block in find_blocks(permuted)[1]:
        for name, lin in find_linears(block).items():
            w = weight_2d(lin)
            assert ((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) <= 2).all(), name
    held_out = torch.randint(0, 128, (4, 32), generator=torch.Generator().manual_seed(1))
    assert _logits_error(permuted, dense, held_out) < _logits_error(plain, dense, held_out)


def test_permute_needs_a_pattern():
    with pytest.raises(ConfigError, match="permute"):
        LLMPruneConfig("wanda", 0.5, permute=True)
    assert LLMPruneConfig("magnitude", pattern="2:4", permute=True).needs_calibration
