import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import ConfigError, ModelError
from prunekit.learned import L0Config, L0Gates, default_gate_targets, deterministic_gates, prob_nonzero
from prunekit.learned.hard_concrete import log_alpha_for, sample_gates
from prunekit.models import SmallConvNet


def test_hard_concrete_formulas():
    la = torch.tensor([0.0])
    # P(z > 0) = sigmoid(log_alpha - beta * log(-gamma / zeta)) = sigmoid(2/3 * log 11)
    assert float(prob_nonzero(la)) == pytest.approx(1 / (1 + 11 ** (-2 / 3)), rel=1e-6)
    assert deterministic_gates(torch.tensor([0.0])).item() == pytest.approx(0.5)  # 0.5 * 1.2 - 0.1
    z = sample_gates(torch.full((20000,), log_alpha_for(0.7)), torch.Generator().manual_seed(0))
    assert float((z > 0).float().mean()) == pytest.approx(0.7, abs=0.02)


def test_regularisation_weight_steers_density_to_target():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
    gates = L0Gates(net, L0Config(target_sparsity=0.5, seed=0))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    x = torch.randn(128, 8)
    y = (x[:, 0] > 0).long()
    for _ in range(150):
        opt.zero_grad()
        (F.cross_entropy(net(x), y) + gates.penalty()).backward()
        opt.step()
        gates.step()
    assert gates.expected_density() == pytest.approx(0.5, abs=0.08)
    assert gates.lam > 0


def test_finalize_folds_gates_without_changing_outputs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    gates = L0Gates(net)
    with torch.no_grad():
        gates.gates["0"].log_alpha.copy_(torch.tensor([-9.0, 9.0, 0.0, -9.0, 0.5, 9.0]))
    net.eval()
    x = torch.randn(5, 4)
    before = net(x).detach()
    report = gates.finalize()
    assert report == {"0": {"units": 6, "closed": 2}}
    assert torch.allclose(net(x), before, atol=1e-6)
    assert not hasattr(net[0], "l0_gate") and not net[0]._forward_hooks
    assert bool((net[0].weight[[0, 3]] == 0).all()) and bool((net[0].bias[[0, 3]] == 0).all())


def test_conv_followed_by_batchnorm_is_gated_after_the_norm():
    net = SmallConvNet(1, 3, 8, widths=(4, 8), hidden=8)
    assert default_gate_targets(net) == ["features.1", "features.5", "classifier.1"]
    gates = L0Gates(net)
    out = net(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 3)
    gates.remove()
    assert not any(hasattr(m, "l0_gate") for m in net.modules())


def test_bad_input():
    with pytest.raises(ModelError, match="no module named"):
        L0Gates(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), modules=["7"])
    with pytest.raises(ConfigError, match="lambda_lr must be a number >= 0"):
        L0Config(lambda_lr=-1)
