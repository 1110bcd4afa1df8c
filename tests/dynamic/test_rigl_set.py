import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.dynamic import (
    DynamicConfig,
    DynamicSparsity,
    cosine_update_fraction,
    drop_and_grow,
    layer_densities,
)
from prunekit.errors import ConfigError, ModelError
from prunekit.masks import get_mask


def net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 3))


def active(model: nn.Module) -> list[int]:
    return [int(get_mask(m).sum()) for m in model if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_sparsity_is_constant_after_every_update(method):
    torch.manual_seed(0)
    model = net()
    dyn = DynamicSparsity(model, DynamicConfig(sparsity=0.8, method=method, update_every=2, alpha=0.5,
                                               end_step=40, seed=1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    dyn.optimizer = opt
    start_counts, start_sparsity = active(model), dyn.sparsity
    masks_seen = {tuple(get_mask(model[0]).flatten().tolist())}
    for _ in range(20):
        opt.zero_grad()
        x = torch.randn(16, 12)
        F.cross_entropy(model(x), torch.randint(0, 3, (16,))).backward()
        opt.step()
        if dyn.step():
            assert active(model) == start_counts  # per layer, exactly
            assert dyn.sparsity == start_sparsity
            masks_seen.add(tuple(get_mask(model[0]).flatten().tolist()))
    assert dyn.updates == 10
    assert len(masks_seen) > 5  # the masks really moved
    assert start_sparsity == pytest.approx(0.8, abs=2e-3)
    dyn.remove()


def test_drop_and_grow_hand_example():
    w = torch.tensor([[0.9, -0.1, 0.0], [0.5, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    grad = torch.tensor([[0.0, 0.0, 0.2], [0.0, 3.0, 1.0]])
    new, grown = drop_and_grow(w, mask, grad.abs(), fraction=2 / 3)
    # drop the 2 smallest active |w| (0.1 and 0.5); grow the 2 largest |g| among the rest
    assert new.tolist() == [[True, False, False], [False, True, True]]
    assert grown.tolist() == [[False, False, False], [False, True, True]]


def test_rigl_grows_by_gradient_and_new_weights_start_at_zero():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6, bias=False))
    dyn = DynamicSparsity(model, DynamicConfig(sparsity=0.5, update_every=1, alpha=1.0, end_step=100,
                                               distribution="uniform"))
    before = get_mask(model[0]).clone()
    model(torch.randn(4, 6)).pow(2).sum().backward()
    grad = dyn._grads[0].clone()
    dyn.step()
    after = get_mask(model[0])
    grown = after & ~before
    inactive_after_drop_scores = grad.abs()[~before]
    assert int(after.sum()) == int(before.sum())
    # the grown connections have the largest dense-gradient magnitudes among previously inactive ones
    if int(grown.sum()):
        kth_largest = inactive_after_drop_scores.sort().values[-int(grown.sum())]
        assert float(grad.abs()[grown].min()) >= float(kth_largest) - 1e-7
    assert bool((model[0].weight[grown] == 0).all())
    dyn.remove()


def test_cosine_fraction_and_erk():
    assert cosine_update_fraction(0, 0.3, 100) == pytest.approx(0.3)
    assert cosine_update_fraction(100, 0.3, 100) == 0.0
    shapes = [(300, 784), (100, 300), (10, 100)]
    dens = layer_densities(shapes, 0.9, "erk")
    sizes = [a * b for a, b in shapes]
    assert sum(d * n for d, n in zip(dens, sizes)) / sum(sizes) == pytest.approx(0.1)
    assert dens[0] < dens[1] < dens[2] == 1.0  # small layers stay denser


def test_rigl_without_backward_and_bad_config():
    model = net()
    dyn = DynamicSparsity(model, DynamicConfig(sparsity=0.5, update_every=1, end_step=10))
    with pytest.raises(ModelError, match="after a backward pass"):
        dyn.step()
    with pytest.raises(ConfigError, match="method must be one of"):
        DynamicConfig(method="snfs")
    with pytest.raises(ConfigError, match="update_every must be a positive integer, got 0"):
        DynamicConfig(update_every=0)
