import pytest
import torch

from prunekit.llm.methods import (
    magnitude_keep_mask,
    sparsegpt_prune,
    wanda_keep_mask,
    wanda_scores,
)
from prunekit.patterns.nm import NM


def test_wanda_mask_equals_hand_computed_per_row_ranking():
    w = torch.tensor([[1.0, -2.0, 3.0, 0.5], [4.0, 1.0, -1.0, 2.0]])
    sq = torch.tensor([4.0, 1.0, 0.25, 100.0])  # input norms 2, 1, 0.5, 10
    # scores row0: [2, 2, 1.5, 5] -> drop the two smallest: 1.5 (col 2), then tie 2/2 -> col 0
    # scores row1: [8, 1, 0.5, 20] -> drop col 2 and col 1
    assert wanda_scores(w, sq).tolist() == [[2.0, 2.0, 1.5, 5.0], [8.0, 1.0, 0.5, 20.0]]
    keep = wanda_keep_mask(w, sq, 0.5)
    assert keep.tolist() == [[False, True, False, True], [True, False, False, True]]


def test_wanda_ranking_is_per_row_not_per_layer():
    w = torch.tensor([[10.0, 20.0], [0.1, 0.2]])
    keep = wanda_keep_mask(w, torch.ones(2), 0.5)
    assert keep.sum(1).tolist() == [1, 1]  # magnitude over the layer would drop the whole row 1
    assert magnitude_keep_mask(w, 0.5).tolist() == [[True, True], [False, False]]


@pytest.mark.parametrize("pattern", [NM(2, 4), NM(4, 8)])
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_every_nm_group_has_exactly_n_kept(method, pattern):
    torch.manual_seed(1)
    w = torch.randn(8, 32)
    x = torch.randn(128, 32)
    if method == "magnitude":
        keep = magnitude_keep_mask(w, 0.5, pattern)
    elif method == "wanda":
        keep = wanda_keep_mask(w, (x**2).sum(0), 0.5, pattern)
    else:
        new_w, keep = sparsegpt_prune(w, x.T @ x, 0.5, pattern, blocksize=16)
        assert torch.all(new_w[~keep] == 0)
        assert (new_w.reshape(8, -1, pattern.m) != 0).sum(-1).le(pattern.n).all()
    groups = keep.reshape(8, -1, pattern.m).sum(-1)
    assert torch.all(groups == pattern.n)
    zeros = (~keep).reshape(8, -1, pattern.m).sum(-1)
    assert torch.all(zeros == pattern.m - pattern.n)


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.7])
def test_unstructured_masks_hit_the_sparsity(sparsity):
    torch.manual_seed(2)
    w, x = torch.randn(16, 64), torch.randn(256, 64)
    for keep in (
        magnitude_keep_mask(w, sparsity),
        wanda_keep_mask(w, (x**2).sum(0), sparsity),
        sparsegpt_prune(w, x.T @ x, sparsity, blocksize=32)[1],
    ):
        assert abs((1 - keep.float().mean().item()) - sparsity) < 0.02


def _correlated_inputs(n=512, d=64, rank=8, seed=3):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, rank, generator=g)
    mix = torch.randn(rank, d, generator=g)
    return z @ mix + 0.05 * torch.randn(n, d, generator=g)


@pytest.mark.parametrize("pattern", [None, NM(2, 4)])
def test_sparsegpt_reconstruction_error_below_magnitude_and_wanda_on_correlated_inputs(pattern):
    x = _correlated_inputs()
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(4))
    ref = x @ w.T

    def err(new_w):
        return ((x @ new_w.T - ref) ** 2).sum().item() / (ref**2).sum().item()

    w_mag = w * magnitude_keep_mask(w, 0.5, pattern)
    w_wanda = w * wanda_keep_mask(w, (x**2).sum(0), 0.5, pattern)
    w_sgpt, keep = sparsegpt_prune(w, x.T @ x, 0.5, pattern, blocksize=16)
    assert abs(keep.float().mean().item() - 0.5) < 0.01
    e_mag, e_wanda, e_sgpt = err(w_mag), err(w_wanda), err(w_sgpt)
    assert e_sgpt < 0.5 * e_mag, (e_sgpt, e_mag)
    assert e_sgpt < e_wanda, (e_sgpt, e_wanda)


def test_sparsegpt_handles_dead_inputs_and_keeps_dtype():
    x = torch.randn(100, 16)
    x[:, 3] = 0
    w = torch.randn(4, 16, dtype=torch.float64)
    new_w, keep = sparsegpt_prune(w, x.T @ x, 0.5)
    assert new_w.dtype == torch.float64 and torch.isfinite(new_w).all()
    assert torch.all(new_w[:, 3] == 0)


def _reference_sparsegpt(w, H, sparsity, pattern, blocksize, percdamp=0.01):
    """The published column-by-column loop (Frantar & Alistarh, Algorithm 1), for comparison."""
    from prunekit.llm.methods.sparsegpt import inverse_hessian_cholesky

    W = w.clone().float()
    Hinv = inverse_hessian_cholesky(H, percdamp)
    cols = W.shape[1]
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
        if pattern is None:
            tmp = W1**2 / torch.diag(Hinv1).reshape(1, -1) ** 2
            thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
            mask1 = tmp < thresh
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(i2 - i1):
            w_col, d = W1[:, i], Hinv1[i, i]
            if pattern is not None and i % pattern.m == 0:
                tmp = W1[:, i:i + pattern.m] ** 2 / torch.diag(Hinv1)[i:i + pattern.m].reshape(1, -1) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, pattern.m - pattern.n, dim=1, largest=False)[1], True)
            q = w_col.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err = (w_col - q) / d
            W1[:, i:] -= err.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W


@pytest.mark.parametrize("pattern", [None, NM(2, 4)])
def test_sparsegpt_matches_the_published_column_loop(pattern):
    torch.manual_seed(5)
    x = _correlated_inputs(n=256, d=48, rank=12)
    w = torch.randn(20, 48)
    ours, _ = sparsegpt_prune(w, x.T @ x, 0.5, pattern, blocksize=16)
    ref = _reference_sparsegpt(w, x.T @ x, 0.5, pattern, blocksize=16)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4)
