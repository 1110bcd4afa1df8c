"""Weight reconstruction after masking: same masks, closer outputs."""

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.llm.config import LLMPruneConfig
from prunekit.llm.methods.reconstruct import reconstruct_masked
from prunekit.llm.prune import prune_llm
from tests.llm.conftest import tiny_llama


def test_reconstruction_is_least_squares_on_the_mask():
    torch.manual_seed(0)
    x = torch.randn(512, 32) @ (torch.eye(32) + 0.3 * torch.randn(32, 32))  # correlated, full rank
    w = torch.randn(16, 32)
    keep = torch.rand(16, 32) > 0.5
    gram = x.T @ x
    new = reconstruct_masked(w, keep, gram, percdamp=0.01)  # default 30 ADMM steps
    assert bool((new[~keep] == 0).all())
    # the exact minimiser of (w - v) Hd (w - v)^T over v supported on the mask, row by row
    # (Hd = H + 0.01 * mean(diag H) I): v_S = w_S + Hd_SS^-1 Hd_S,~S w_~S
    hd = gram.double() + 0.01 * gram.diagonal().mean().double() * torch.eye(32, dtype=torch.double)
    exact = torch.zeros(16, 32, dtype=torch.double)
    for r in range(16):
        s, o = keep[r], ~keep[r]
        exact[r, s] = w[r, s].double() + torch.linalg.solve(hd[s][:, s], hd[s][:, o] @ w[r, o].double())

    def objective(v):
        d = w.double() - v.double()
        return float((d @ hd * d).sum())

    assert objective(exact) <= objective(new) <= 1.01 * objective(exact)  # measured: 0.5% above
    assert objective(new) < 0.6 * objective(w * keep)
    many = reconstruct_masked(w, keep, gram, iterations=1000)
    assert torch.allclose(many.double(), exact, atol=5e-3)


def _logits_error(model, dense, ids):
    with torch.no_grad():
        return float((model(input_ids=ids).logits - dense(input_ids=ids).logits).pow(2).mean())


@pytest.mark.parametrize("method,pattern", [("magnitude", None), ("wanda", "2:4"), ("sparsegpt", None)])
def test_layer_reconstruction_keeps_masks_and_moves_outputs_less(method, pattern):
    windows = torch.randint(0, 128, (8, 32), generator=torch.Generator().manual_seed(0))
    dense = tiny_llama(seed=1).eval()
    plain, refit = tiny_llama(seed=1).eval(), tiny_llama(seed=1).eval()
    prune_llm(plain, windows, LLMPruneConfig(method, 0.6, pattern=pattern), progress=False)
    cfg = LLMPruneConfig(method, 0.6, pattern=pattern, reconstruct="layer")
    result = prune_llm(refit, windows, cfg, progress=False)
    # the re-fit keeps the method's mask: magnitude's everywhere; Wanda's in the layers that
    # read the first block's input (q/k/v; the layers after them, and later blocks, see the
    # re-fitted layers' outputs, so their statistics differ on purpose)
    assert result.measured_sparsity == pytest.approx(0.5 if pattern else 0.6, abs=0.01)
    same_masks = {"magnitude": ("layers.",), "wanda": ("layers.0.self_attn.q", "layers.0.self_attn.k",
                                                       "layers.0.self_attn.v")}.get(method, ())
    checked = 0
    for (n, a), (_, b) in zip(plain.named_parameters(), refit.named_parameters()):
        if any(s in n for s in same_masks) and n.endswith("proj.weight"):
            assert torch.equal(a == 0, b == 0), n
            assert not torch.equal(a, b), n  # and the kept weights did change
            checked += 1
    assert checked == {"magnitude": 14, "wanda": 3}.get(method, 0)
    held_out = torch.randint(0, 128, (4, 32), generator=torch.Generator().manual_seed(1))
    assert _logits_error(refit, dense, held_out) < _logits_error(plain, dense, held_out)


def test_reconstruct_choice_is_validated():
    with pytest.raises(ConfigError, match="reconstruct must be one of"):
        LLMPruneConfig(reconstruct="blocks")
    assert LLMPruneConfig("magnitude", reconstruct="layer").needs_calibration
