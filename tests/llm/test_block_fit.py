"""Block reconstruction: masks held exactly, block outputs closer to the dense block's."""

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.llm.blocks import find_blocks, find_linears
from prunekit.llm.config import LLMPruneConfig
from prunekit.llm.methods.block_fit import block_error, fit_block
from prunekit.llm.prune import prune_llm
from prunekit.llm.sequential import sequential_blocks
from tests.llm.conftest import tiny_llama
from tests.llm.test_reconstruct import _logits_error


def _windows(seed=0, n=8):
    return torch.randint(0, 128, (n, 32), generator=torch.Generator().manual_seed(seed))


def test_fit_block_holds_masks_and_lowers_the_block_error():
    model = tiny_llama(seed=1).eval()
    batches = [{"input_ids": _windows()[i : i + 4], "use_cache": False} for i in (0, 4)]
    for _i, block, run in sequential_blocks(model, batches):
        dense = run(keep_outputs=True)
        with torch.no_grad():
            for lin in find_linears(block).values():
                lin.weight.mul_(torch.rand(lin.weight.shape, generator=torch.Generator().manual_seed(3)) > 0.6)
        zeros = {n: lin.weight == 0 for n, lin in find_linears(block).items()}
        inp = run.inputs
        start = block_error(block, inp.hidden, inp.args, inp.kwargs, dense)
        fit = fit_block(block, inp.hidden, inp.args, inp.kwargs, dense, steps=40, lr=1e-3)
        assert fit.error_before == pytest.approx(start)
        assert fit.error_after < 0.7 * fit.error_before  # measured: about 0.3x
        for n, lin in find_linears(block).items():
            assert torch.equal(lin.weight == 0, zeros[n]), n
        assert block_error(block, inp.hidden, inp.args, inp.kwargs, dense) == pytest.approx(fit.error_after)
        break


@pytest.mark.parametrize("method,pattern", [("wanda", None), ("sparsegpt", "2:4")])
def test_block_reconstruction_keeps_masks_and_outputs_closer(method, pattern):
    windows = _windows()
    dense = tiny_llama(seed=1).eval()
    plain, fitted = tiny_llama(seed=1).eval(), tiny_llama(seed=1).eval()
    prune_llm(plain, windows, LLMPruneConfig(method, 0.6, pattern=pattern), progress=False)
    cfg = LLMPruneConfig(method, 0.6, pattern=pattern, reconstruct="block", block_steps=20, block_lr=1e-3)
    result = prune_llm(fitted, windows, cfg, progress=False)
    assert result.measured_sparsity == pytest.approx(0.5 if pattern else 0.6, abs=0.01)
    # block 0 sees the same inputs in both runs, so its masks are the method's exactly
    b_plain, b_fit = find_blocks(plain)[1][0], find_blocks(fitted)[1][0]
    for (n, a), (_, b) in zip(find_linears(b_plain).items(), find_linears(b_fit).items()):
        assert torch.equal(a.weight == 0, b.weight == 0), n
    assert len(result.block_errors) == 2
    assert all(after < before for before, after in result.block_errors)
    held_out = _windows(seed=1, n=4)
    assert _logits_error(fitted, dense, held_out) < _logits_error(plain, dense, held_out)


def test_layer_then_block_is_at_least_as_close_as_layer_alone_on_block_error():
    windows = _windows()
    a, b = tiny_llama(seed=2).eval(), tiny_llama(seed=2).eval()
    ra = prune_llm(a, windows, LLMPruneConfig("wanda", 0.6, reconstruct="block", block_steps=10,
                                              block_lr=1e-3), progress=False)
    rb = prune_llm(b, windows, LLMPruneConfig("wanda", 0.6, reconstruct="layer+block", block_steps=10,
                                              block_lr=1e-3), progress=False)
    # the layer fit runs first, so the block fit starts from a closer block
    assert rb.block_errors[0][0] < ra.block_errors[0][0]
    assert rb.block_errors[0][1] <= rb.block_errors[0][0]


def test_block_options_are_validated():
    with pytest.raises(ConfigError, match="block_steps"):
        LLMPruneConfig(reconstruct="block", block_steps=0)
    with pytest.raises(ConfigError, match="block_lr"):
        LLMPruneConfig(reconstruct="block", block_lr=0.0)
    assert LLMPruneConfig("magnitude", reconstruct="block").needs_calibration
