import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from prunekit.errors import ConfigError, ModelError
from prunekit.lottery import (
    LotteryConfig,
    apply_ticket_,
    export_ticket,
    find_ticket,
    load_ticket,
    reinit_,
    rewind_,
    snapshot,
)
from prunekit.masks import SparsifyConfig, get_mask, sparsify_
from prunekit.models import SmallConvNet
from prunekit.train import TrainConfig, fit


def small_net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def data(n: int = 64) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g))


def test_rewind_restores_saved_weights_exactly_under_the_mask():
    model = small_net()
    saved = snapshot(model)
    fit(model, data(), TrainConfig(epochs=1, batch_size=16), progress=False)
    sparsify_(model, SparsifyConfig(amount=0.6))
    rewind_(model, saved)
    for name, idx in (("0", 0), ("2", 2)):
        mask = get_mask(model[idx])
        w = model[idx].weight
        assert torch.equal(w[mask], saved[f"{name}.weight"][mask])  # bit-exact survivors
        assert bool((w[~mask] == 0).all())
        assert torch.equal(model[idx].bias, saved[f"{name}.bias"])


def test_rewind_restores_batchnorm_buffers_and_rejects_mismatch():
    net = SmallConvNet(1, 3, 8, widths=(4,), hidden=8)
    saved = snapshot(net)
    net.train()
    net(torch.randn(4, 1, 8, 8))  # moves running stats
    rewind_(net, saved)
    assert torch.equal(net.features[1].running_mean, saved["features.1.running_mean"])
    before = snapshot(net)
    bad = dict(saved)
    bad["classifier.1.weight"] = torch.zeros(2, 2)
    with pytest.raises(ModelError, match="classifier.1.weight"):
        rewind_(net, bad)
    after = snapshot(net)
    assert all(torch.equal(before[k], after[k]) for k in before)  # unchanged on failure


def test_reinit_keeps_mask_and_is_seeded():
    model = small_net()
    sparsify_(model, SparsifyConfig(amount=0.5))
    mask = get_mask(model[0]).clone()
    old = model[0].weight.detach().clone()
    reinit_(model, seed=3)
    a = model[0].weight.detach().clone()
    reinit_(model, seed=3)
    assert torch.equal(a, model[0].weight)
    assert torch.equal(get_mask(model[0]), mask)
    assert bool((a[~mask] == 0).all()) and not torch.equal(a[mask], old[mask])


def test_find_ticket_rewinds_to_iteration_k_and_reaches_final_sparsity():
    torch.manual_seed(0)
    model = small_net()
    init = snapshot(model)
    cfg = LotteryConfig(final_sparsity=0.75, rounds=2, rewind_step=2)
    history = []
    ticket = find_ticket(model, data(), TrainConfig(epochs=1, batch_size=16), cfg,
                         on_round=lambda i, s, m: history.append((i, round(s, 4))) or {"ok": 1})
    assert history == [(0, 0.0), (1, 0.5), (2, 0.75)]
    kept = sum(int(m.sum()) for m in ticket.masks.values())
    assert kept == round(0.25 * (8 * 16 + 16 * 3))
    assert not torch.equal(ticket.rewind_state["0.weight"], init["0.weight"])  # k=2, not init
    # the rewind point is the weights after exactly 2 steps of the same first run
    twin = small_net()
    rewind_(twin, init)
    steps = {}
    fit(twin, data(), TrainConfig(epochs=1, batch_size=16),
        on_step=lambda s: steps.setdefault(s, snapshot(twin)) if s == 2 else None, progress=False)
    assert torch.equal(steps[2]["0.weight"], ticket.rewind_state["0.weight"])


def test_export_and_load_ticket(tmp_path):
    model = small_net()
    ticket = find_ticket(model, data(), TrainConfig(epochs=1, batch_size=16),
                         LotteryConfig(final_sparsity=0.5, rounds=1), train_last=False)
    path = export_ticket(model, ticket, tmp_path / "ticket.safetensors")
    fresh = load_ticket(small_net(), path)
    mask = ticket.masks["0.weight"]
    assert torch.equal(get_mask(fresh[0]), mask)
    assert torch.equal(fresh[0].weight, ticket.rewind_state["0.weight"] * mask)
    other = apply_ticket_(small_net(), ticket)
    assert torch.equal(other[2].weight, fresh[2].weight)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"sparsities": (0.5, 0.4), "final_sparsity": 0.4}, "increasing"),
        ({"sparsities": (0.5, 0.8), "final_sparsity": 0.9}, "must equal final_sparsity"),
        ({"rounds": 0}, "rounds must be a positive integer"),
    ],
)
def test_bad_lottery_config(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        LotteryConfig(**kwargs)


def test_rewind_step_beyond_first_run():
    with pytest.raises(ConfigError, match="rewind_step=1000"):
        find_ticket(small_net(), data(), TrainConfig(epochs=1, batch_size=16),
                    LotteryConfig(final_sparsity=0.5, rounds=1, rewind_step=1000))
