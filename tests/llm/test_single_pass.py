"""One forward per block: linears pruned inside the forward, as their inputs arrive."""

import pytest
import torch

from prunekit.llm.blocks import find_blocks
from prunekit.llm.config import LLMPruneConfig
from prunekit.llm.prune import prune_llm
from prunekit.llm.sequential import BlockInputs, mergeable
from tests.llm.conftest import tiny_llama


def _count_block_calls(model, length=32):
    """Calibration calls of each block (rows of ``length`` tokens); the one-row, 8-token forward
    that checks whether autocast runs (``calib_dtype="auto"``) is not a calibration call."""
    calls = []
    for i, block in enumerate(find_blocks(model)[1]):
        block.register_forward_hook(
            lambda _m, _a, out, _i=i: calls.append((_i, out.shape[0])) if out.shape[1] == length else None)
    return calls


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_single_pass_runs_each_block_once_and_matches_two_passes_where_inputs_agree(method):
    windows = torch.randint(0, 128, (8, 32), generator=torch.Generator().manual_seed(0))
    one, two = tiny_llama(seed=1).eval(), tiny_llama(seed=1).eval()
    calls_one, calls_two = _count_block_calls(one), _count_block_calls(two)
    r1 = prune_llm(one, windows, LLMPruneConfig(method, 0.5, batch_size=4), progress=False)
    r2 = prune_llm(two, windows, LLMPruneConfig(method, 0.5, batch_size=4, single_pass_mb=0), progress=False)
    assert calls_one == [(0, 8), (1, 8)]  # one call per block, all 8 windows at once
    assert calls_two == [(0, 4), (0, 4), (0, 4), (0, 4), (1, 4), (1, 4), (1, 4), (1, 4)]
    assert r1.measured_sparsity == pytest.approx(0.5, abs=0.01)
    assert r2.measured_sparsity == pytest.approx(0.5, abs=0.01)
    # q/k/v of block 0 read the same input in both schemes: same result exactly
    a, b = find_blocks(one)[1][0].self_attn, find_blocks(two)[1][0].self_attn
    for name in ("q_proj", "k_proj", "v_proj"):
        torch.testing.assert_close(getattr(a, name).weight, getattr(b, name).weight, rtol=1e-5, atol=1e-6)
    # the next layers see the pruned q/k/v outputs in the single pass ("true sequential")
    assert not torch.equal(a.o_proj.weight, b.o_proj.weight)


def test_batches_that_differ_beyond_the_batch_dimension_do_not_merge():
    h = torch.zeros(2, 4, 8)
    same = BlockInputs([h, h[:1]], [(), ()], [{"mask": None, "pos": torch.arange(4)[None]}] * 2)
    assert mergeable(same)
    longer = BlockInputs([h, torch.zeros(2, 5, 8)], [(), ()], [{}, {}])
    assert not mergeable(longer)
    per_batch = BlockInputs([h, h], [(), ()], [{"mask": torch.ones(2, 4)}, {"mask": torch.ones(2, 4)}])
    assert not mergeable(per_batch)  # a tensor with a batch dimension cannot be shared


def test_budget_too_small_falls_back_to_two_passes():
    windows = torch.randint(0, 128, (8, 32), generator=torch.Generator().manual_seed(0))
    model = tiny_llama(seed=1).eval()
    calls = _count_block_calls(model)
    prune_llm(model, windows, LLMPruneConfig("wanda", 0.5, batch_size=8, single_pass_mb=0), progress=False)
    assert calls == [(0, 8), (0, 8), (1, 8), (1, 8)]
