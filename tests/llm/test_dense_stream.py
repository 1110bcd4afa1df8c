"""Reconstruction against the dense model's activations (the dense stream), masks held."""

import pytest
import torch

from prunekit.llm.blocks import find_blocks, find_linears
from prunekit.llm.config import LLMPruneConfig
from prunekit.llm.methods.dense_stream import DenseStream, refit_target
from prunekit.llm.prune import calibration_batches, prune_block, prune_llm
from prunekit.llm.sequential import sequential_blocks
from tests.llm.conftest import tiny_llama


def test_refit_target_is_the_damped_least_squares_solution():
    torch.manual_seed(0)
    d = torch.randn(300, 8)
    x = d @ (torch.eye(8) + 0.2 * torch.randn(8, 8)) + 0.05 * torch.randn(300, 8)
    w0 = torch.randn(5, 8)
    gram, cross = x.T @ x, x.T @ d
    got = refit_target(w0, gram, cross, percdamp=0.01)
    damp = 0.01 * float(gram.diagonal().mean())
    # normal equations of ||x W^T - d W0^T||^2 + damp ||W - W0||^2
    a = gram.double() + damp * torch.eye(8, dtype=torch.double)
    exact = torch.linalg.solve(a, cross.double() @ w0.double().T + damp * w0.double().T).T
    assert torch.allclose(got.double(), exact, atol=1e-5)
    same = refit_target(w0, d.T @ d, d.T @ d, percdamp=0.01)  # inputs that did not drift: W0
    assert torch.allclose(same, w0, atol=1e-5)


def test_stream_follows_the_dense_model_block_by_block():
    model = tiny_llama(seed=3).eval()
    ids = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(input_ids=ids, output_hidden_states=True).hidden_states
    batches = [{"input_ids": ids[:2], "use_cache": False}, {"input_ids": ids[2:], "use_cache": False}]
    stream = None
    for i, block, run in sequential_blocks(model, batches):
        if i == 0:
            stream = DenseStream(run.inputs.hidden)
        lin = find_linears(block)
        dense = stream.step(block, run.inputs.args, run.inputs.kwargs, lin)
        assert dense.inputs["self_attn.q_proj"] is dense.inputs["self_attn.k_proj"]  # shared, not copied
        assert dense.inputs["mlp.down_proj"].shape == (4, 16, 128)
        if i < 1:  # the last block's output goes through the final norm in hidden_states
            assert torch.allclose(torch.cat(dense.outputs), want[i + 1], atol=1e-5)
        with torch.no_grad():  # prune the block: the stream must not notice
            for m in lin.values():
                m.weight.mul_(m.weight.abs() > m.weight.abs().median())


def _in_sample_error(model, dense, ids):
    with torch.no_grad():
        return float((model(input_ids=ids).logits - dense(input_ids=ids).logits).pow(2).mean())


@pytest.mark.parametrize("method,pattern", [("wanda", None), ("sparsegpt", "2:4")])
def test_layer_fit_against_the_dense_model_beats_the_fit_against_the_dense_layer(method, pattern):
    windows = torch.randint(0, 128, (8, 32), generator=torch.Generator().manual_seed(0))
    dense = tiny_llama(seed=1).eval()
    streamed, local = tiny_llama(seed=1).eval(), tiny_llama(seed=1).eval()
    cfg = LLMPruneConfig(method, 0.7, pattern=pattern, reconstruct="layer")
    result = prune_llm(streamed, windows, cfg, progress=False)
    gram = True
    for _i, block, run in sequential_blocks(local, calibration_batches(windows, cfg)):  # no stream
        prune_block(block, run, cfg.target_sparsity, cfg, gram)
    assert result.measured_sparsity == pytest.approx(0.5 if pattern else 0.7, abs=0.02)
    for (_, a), (_, b) in zip(find_linears(find_blocks(streamed)[1][1]).items(),
                              find_linears(find_blocks(local)[1][1]).items()):
        assert float((a.weight == 0).float().mean()) == pytest.approx(float((b.weight == 0).float().mean()), abs=0.01)
    assert _in_sample_error(streamed, dense, windows) < _in_sample_error(local, dense, windows)
