"""Block reconstruction: masks held exactly, block outputs closer to the dense block's."""

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.llm.blocks import find_blocks, find_linears
from prunekit.llm.config import LLMPruneConfig
from prunekit.llm.methods.block_fit import block_error, cosine_lr, fit_block
from prunekit.llm.precision import fast_bf16
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


def _toy_block(seed=0, batches=3):
    gen = torch.Generator().manual_seed(seed)
    block = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    x = [torch.randn(64, 8, generator=gen) for _ in range(batches)]
    targets = [block(h).detach() for h in x]
    with torch.no_grad():
        for lin in (block[0], block[2]):
            lin.weight.mul_(torch.rand(lin.weight.shape, generator=gen) > 0.5)
    return block, x, targets


def test_cosine_lr_numbers():
    assert cosine_lr(1.0, 0, 4) == pytest.approx(1.0)
    assert cosine_lr(1.0, 2, 4) == pytest.approx(0.5)
    assert cosine_lr(2e-3, 4, 4) == pytest.approx(0.0)


def test_holdout_keeps_the_best_weights_and_a_diverging_fit_falls_back_to_the_start():
    block, x, targets = _toy_block()
    start = [p.detach().clone() for p in block.parameters()]
    fit = fit_block(block, x, [()] * 3, [{}] * 3, targets, steps=40, lr=1e-2)
    assert fit.heldout_before is not None and fit.heldout_after is not None
    assert fit.heldout_after < 0.6 * fit.heldout_before  # measured: 0.44x
    assert 0 < fit.best_step <= 40 and fit.best_step % 2 == 0  # checked after each pass over 2 batches
    assert block_error(block, x[2:], [()], [{}], targets[2:]) == pytest.approx(fit.heldout_after)
    # lr 0.9 on weights of size 0.3 blows the fit up: the held-out batch keeps the starting weights
    block2, x2, t2 = _toy_block()
    fit2 = fit_block(block2, x2, [()] * 3, [{}] * 3, t2, steps=10, lr=0.9)
    assert fit2.best_step == 0 and fit2.heldout_after == fit2.heldout_before
    assert all(torch.equal(a, b) for a, b in zip(start, block2.parameters()))


def test_single_batch_trains_on_it_and_reports_no_heldout():
    block, x, targets = _toy_block(batches=1)
    fit = fit_block(block, x, [()], [{}], targets, steps=30, lr=1e-2)
    assert fit.heldout_before is None and fit.error_after < 0.5 * fit.error_before


def test_bf16_fit_keeps_masks_exact_and_weights_in_their_dtype():
    block, x, targets = _toy_block(seed=3)
    zeros = [lin.weight == 0 for lin in (block[0], block[2])]
    fit = fit_block(block, x, [()] * 3, [{}] * 3, targets, steps=40, lr=1e-2, bf16=True)
    assert fit.error_after < 0.6 * fit.error_before
    for lin, z in zip((block[0], block[2]), zeros):
        assert lin.weight.dtype == torch.float32
        assert torch.equal(lin.weight == 0, z)
    assert isinstance(fast_bf16(torch.device("cpu")), bool)
    assert fast_bf16(torch.device("meta")) is False
