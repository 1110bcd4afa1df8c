import torch
from torch import nn
from torch.utils.data import TensorDataset

from prunekit.train import TrainConfig, evaluate, fit, seed_everything


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TensorDataset(x, y)


def test_fit_is_deterministic_and_learns():
    data = _data()
    results = []
    for _ in range(2):
        seed_everything(0)
        net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
        losses = fit(net, data, TrainConfig(epochs=15, lr=2e-2), progress=False)
        results.append((losses, [p.detach().clone() for p in net.parameters()], evaluate(net, data)))
    (l1, p1, e1), (l2, p2, e2) = results
    assert l1 == l2 and all(torch.equal(a, b) for a, b in zip(p1, p2))
    assert l1[-1] < l1[0]
    assert e1["accuracy"] > 0.9


def test_on_step_called_every_step_and_custom_loss():
    data = _data()
    steps = []
    calls = {"n": 0}

    def loss_fn(model, x, y):
        calls["n"] += 1
        return nn.functional.cross_entropy(model(x), y)

    cfg = TrainConfig(epochs=2, batch_size=64)
    fit(nn.Linear(6, 2), data, cfg, loss_fn=loss_fn, on_step=steps.append, progress=False)
    assert steps == list(range(1, 9)) and calls["n"] == 8


def test_evaluate_hand_computed():
    lin = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    data = TensorDataset(torch.tensor([[1.0], [-1.0], [2.0], [-3.0]]), torch.tensor([0, 1, 1, 1]))
    out = evaluate(lin, data)
    assert out["accuracy"] == 0.75
