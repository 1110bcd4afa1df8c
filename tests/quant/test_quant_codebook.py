"""k-means weight sharing: at most 2^bits shared values per layer, zeros stay zero."""

import torch
from torch import nn

from prunekit.masks import SparsifyConfig, get_mask, sparsify_
from prunekit.quant import QuantizeConfig, kmeans_codebook, nearest_codes, quantize_, share_weights


def test_few_distinct_values_give_an_exact_codebook():
    values = torch.tensor([0.5, -0.25, 0.5, 0.125])
    centroids, codes = kmeans_codebook(values, bits=2)
    assert centroids.tolist() == [-0.25, 0.125, 0.5]
    assert torch.equal(centroids[codes.long()], values)


def test_kmeans_codebook_size_error_and_determinism():
    torch.manual_seed(0)
    values = torch.randn(2000)
    c1, k1 = kmeans_codebook(values, bits=4)
    c2, k2 = kmeans_codebook(values, bits=4)
    assert torch.equal(c1, c2) and torch.equal(k1, k2)
    assert len(c1) == 16 and torch.all(c1[1:] > c1[:-1])
    err = (c1[k1.long()] - values).abs()
    # k-means beats the evenly spaced grid it starts from (16 levels over the range)
    grid = torch.linspace(float(values.min()), float(values.max()), 16)
    grid_err = (grid[nearest_codes(values, grid).long()] - values).abs()
    assert err.max() < 0.3 and (err**2).mean() < 0.8 * (grid_err**2).mean()
    assert torch.equal(nearest_codes(values, c1), k1)


def test_share_weights_keeps_zeros():
    torch.manual_seed(0)
    w = torch.randn(20, 30)
    w[w.abs() < 0.8] = 0
    shared, centroids = share_weights(w, bits=3)
    assert torch.equal(shared == 0, w == 0)
    assert len(torch.unique(shared[shared != 0])) <= 8


def test_quantize_codebook_on_pruned_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(40, 20), nn.ReLU(), nn.Linear(20, 5))
    sparsify_(net, SparsifyConfig(amount=0.7))
    record = quantize_(net, QuantizeConfig(scheme="codebook", bits=3))
    for i in (0, 2):
        w = net[i].weight
        assert torch.all(w[~get_mask(net[i])] == 0)
        nz = torch.unique(w[w != 0])
        assert len(nz) <= 8
        assert set(nz.tolist()) <= set(record[str(i)].params.tolist())
