import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import ModelError
from prunekit.learned import MovementConfig, MovementPruning, topk_ste
from prunekit.masks import apply_mask, get_mask, is_masked
from prunekit.schedules import Gradual, OneShot


def test_topk_straight_through_gradient():
    s = torch.tensor([[0.3, 0.1], [0.2, 0.4]], requires_grad=True)
    m = topk_ste(s, 0.5)
    assert m.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    (m * torch.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    assert s.grad.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_score_gradient_is_movement():
    # dL/dS = dL/dW' * W: with L = sum(W' * c), dL/dW' = c, so dL/dS = c * W
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
    mp = MovementPruning(lin, OneShot(sparsity=0.5))
    c = torch.tensor([[1.0, 1.0], [-1.0, 2.0]])
    (lin.weight * c).sum().backward()
    assert mp.score_parameters()[0].grad.tolist() == [[1.0, -2.0], [-3.0, 1.0]]


def test_scores_follow_the_schedule_and_finalize_to_masks():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    w0 = net[0].weight.detach().clone()
    mp = MovementPruning(net, Gradual(start_step=0, end_step=30, frequency=5, final_sparsity=0.7),
                         MovementConfig(score_init="magnitude"))
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        mp.step()
    mp.finalize()
    mask = get_mask(net[0])
    assert is_masked(net[0]) and float((~mask).float().mean()) == pytest.approx(0.7, abs=0.005)
    magnitude_mask = w0.abs() >= w0.abs().flatten().kthvalue(int(0.7 * w0.numel())).values
    assert not torch.equal(mask, magnitude_mask)  # the learned mask moved away from magnitude
    assert sum(1 for n, _ in net.named_parameters() if "scores" in n) == 0


def test_refuses_already_masked_layers():
    lin = nn.Linear(2, 2)
    apply_mask(lin, "weight", torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ModelError, match="already has a parametrization"):
        MovementPruning(lin, OneShot(sparsity=0.5))
