import math

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError, ModelError
from prunekit.importance import Magnitude, Random
from prunekit.masks import SparsifyConfig, get_mask, sparsify_
from prunekit.masks.report import overall_sparsity


def two_layer_net() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 4.0]]))
        net[2].weight.copy_(torch.tensor([[0.5, 6.0], [-7.0, 8.0]]))
    return net


def test_global_magnitude_on_hand_computed_weights():
    net = two_layer_net()
    sparsify_(net, SparsifyConfig(amount=0.5, scope="global"))
    # |w| sorted: 0.5, 1, 2, 3 | 4, 6, 7, 8 -> prune the four smallest
    assert net[0].weight.tolist() == [[0.0, 0.0], [0.0, 4.0]]
    assert net[2].weight.tolist() == [[0.0, 6.0], [-7.0, 8.0]]


def test_layer_scope_on_hand_computed_weights():
    net = two_layer_net()
    sparsify_(net, SparsifyConfig(amount=0.5, scope="layer"))
    assert net[0].weight.tolist() == [[0.0, 0.0], [3.0, 4.0]]
    assert net[2].weight.tolist() == [[0.0, 0.0], [-7.0, 8.0]]


def test_count_amount_and_report():
    net = two_layer_net()
    rows = sparsify_(net, SparsifyConfig(amount=3))
    assert sum(r.numel - r.nonzero for r in rows) == 3
    assert overall_sparsity(rows) == pytest.approx(3 / 8)


def test_iterative_sparsify_keeps_old_mask_and_reaches_total():
    net = two_layer_net()
    sparsify_(net, SparsifyConfig(amount=0.25, importance=Random(seed=3)))
    first = [get_mask(net[0]).clone(), get_mask(net[2]).clone()]
    rows = sparsify_(net, SparsifyConfig(amount=0.75, importance=Random(seed=4)))
    assert overall_sparsity(rows) == pytest.approx(0.75)
    for old, layer in zip(first, (net[0], net[2])):
        assert not (get_mask(layer) & ~old).any()  # nothing pruned before comes back


def test_filter_fn_limits_layers():
    net = two_layer_net()
    sparsify_(net, SparsifyConfig(amount=0.5), filter_fn=lambda name, m: name == "2")
    assert get_mask(net[0]) is None
    assert int((net[2].weight == 0).sum()) == 2


@pytest.mark.parametrize("opt_name", ["adamw", "adam", "sgd"])
def test_masked_weights_stay_exactly_zero_through_optimizer_steps(opt_name):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    # warm the optimizer first so momentum is non-zero everywhere before pruning
    make = {
        "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
        "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1),
        "sgd": lambda p: torch.optim.SGD(p, lr=1e-2, momentum=0.9, weight_decay=0.1),
    }[opt_name]
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    sparsify_(net, SparsifyConfig(amount=0.6))
    masks = [get_mask(net[0]).clone(), get_mask(net[2]).clone()]
    opt = make(net.parameters())
    for _ in range(25):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    for layer, mask in zip((net[0], net[2]), masks):
        assert torch.count_nonzero(layer.weight[~mask]) == 0
        assert torch.count_nonzero(layer.weight[mask]) == int(mask.sum())  # the rest trains


def test_bad_amounts_rejected_with_clear_messages():
    for bad in (1.0, -0.1, 1.5, math.nan, "0.5", None, True):
        with pytest.raises(ConfigError, match="amount"):
            SparsifyConfig(amount=bad)
    with pytest.raises(ConfigError, match="scope must be one of"):
        SparsifyConfig(amount=0.5, scope="everything")
    with pytest.raises(ConfigError, match="importance"):
        SparsifyConfig(amount=0.5, importance="magnitude")
    with pytest.raises(ConfigError, match="Magnitude.p"):
        Magnitude(p=3)


def test_count_larger_than_model_rejected_and_model_unchanged():
    net = two_layer_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ConfigError, match="exceeds the 8 prunable weights"):
        sparsify_(net, SparsifyConfig(amount=9))
    assert get_mask(net[0]) is None
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_model_without_prunable_layer():
    net = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ModelError, match="no Linear/Conv layer"):
        sparsify_(net, SparsifyConfig(amount=0.5))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ModelError, match="no layer passed filter_fn"):
        sparsify_(two_layer_net(), SparsifyConfig(amount=0.5), filter_fn=lambda n, m: False)


def test_failure_midway_leaves_model_exactly_as_it_was(monkeypatch):
    net = two_layer_net()
    sparsify_(net, SparsifyConfig(amount=0.25, scope="layer"))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    import prunekit.masks.sparsify as mod

    calls = {"n": 0}
    real = mod.apply_mask

    def failing(module, name, mask):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        real(module, name, mask)

    monkeypatch.setattr(mod, "apply_mask", failing)
    with pytest.raises(RuntimeError):
        sparsify_(net, SparsifyConfig(amount=0.75))
    after = net.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_failure_on_dense_model_restores_plain_layers(monkeypatch):
    net = two_layer_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    import prunekit.masks.sparsify as mod

    real = mod.apply_mask
    seen = []

    def failing(module, name, mask):
        seen.append(module)
        if len(seen) == 2:
            raise RuntimeError("boom")
        real(module, name, mask)

    monkeypatch.setattr(mod, "apply_mask", failing)
    with pytest.raises(RuntimeError):
        sparsify_(net, SparsifyConfig(amount=0.5))
    assert type(net[0]) is nn.Linear and get_mask(net[0]) is None
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_config_dict_round_trip_and_unknown_keys():
    cfg = SparsifyConfig(amount=0.7, importance=Random(seed=5), scope="layer")
    again = SparsifyConfig.from_dict(cfg.to_dict())
    assert again == cfg
    expected = r"unknown key\(s\) \['amout'\]; valid keys are \['amount', 'importance', 'pattern', 'scope'\]"
    with pytest.raises(ConfigError, match=expected):
        SparsifyConfig.from_dict({"amout": 0.5})
    with pytest.raises(ConfigError, match="amount \\(sparsity\\) is required"):
        SparsifyConfig.from_dict({})
    with pytest.raises(ConfigError, match="importance type must be one of"):
        SparsifyConfig.from_dict({"amount": 0.5, "importance": {"type": "Nope"}})
