import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError, ModelError
from prunekit.importance.snip import prune_with_scores_, snip_prune_, snip_scores
from prunekit.importance.synflow import synflow_prune_, synflow_scores
from prunekit.masks import get_mask


def tiny() -> nn.Sequential:
    """x(2) -> W1 (2x2) -> W2 (1x2), no bias, no nonlinearity: easy to do by hand."""
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 4.0]]))
        net[1].weight.copy_(torch.tensor([[5.0, -6.0]]))
    return net


def test_snip_scores_hand_checked():
    # L = W2 W1 x with x = (1, 2): dL/dW1[i, j] = W2[i] * x[j]; dL/dW2[i] = (W1 x)[i]
    # W1 x = (1 - 4, 3 + 8) = (-3, 11)
    # |W1 * g| = |[[1*5*1, -2*5*2], [3*-6*1, 4*-6*2]]| = [[5, 20], [18, 48]]
    # |W2 * g| = |[5 * -3, -6 * 11]| = [15, 66]
    net = tiny()
    scores = snip_scores(net, [(torch.tensor([[1.0, 2.0]]), None)], loss_fn=lambda m, x, y: m(x).sum())
    assert scores["0"].tolist() == [[5.0, 20.0], [18.0, 48.0]]
    assert scores["1"].tolist() == [[15.0, 66.0]]
    assert net[0].weight.grad is None  # the model's gradients are left as they were


def test_snip_cross_entropy_matches_autograd_and_sums_batches():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    b1 = (torch.randn(5, 3), torch.randint(0, 2, (5,)))
    b2 = (torch.randn(5, 3), torch.randint(0, 2, (5,)))
    scores = snip_scores(net, [b1, b2])
    loss = sum(nn.functional.cross_entropy(net(x), y) for x, y in (b1, b2))
    g = torch.autograd.grad(loss, net[0].weight)[0]
    assert torch.allclose(scores["0"], (g * net[0].weight).abs(), atol=1e-6)


def test_synflow_scores_hand_checked():
    # R = 1^T |W2| |W1| 1 ; |W1| 1 = (3, 7); score W1[i, j] = |W2[i]| * |W1[i, j]| ;
    # score W2[i] = |W2[i]| * (|W1| 1)[i]
    net = tiny()
    scores = synflow_scores(net, (2,))
    assert scores["0"].tolist() == [[5.0, 10.0], [18.0, 24.0]]
    assert scores["1"].tolist() == [[15.0, 42.0]]
    assert net[0].weight.tolist() == [[1.0, -2.0], [3.0, 4.0]]  # signs untouched


def test_synflow_prune_is_data_free_and_keeps_every_layer_alive():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                        nn.Linear(64, 10))
    reached = synflow_prune_(net, (64,), 0.99, iterations=20)
    assert reached == pytest.approx(0.99, abs=1e-3)
    for i in (1, 3, 5):
        assert int(get_mask(net[i]).sum()) > 0  # no layer collapse
    # scoring again on a masked model keeps the masked weights at score 0
    assert float(synflow_scores(net, (64,))["1"][~get_mask(net[1])].abs().sum()) == 0.0


def test_snip_prune_and_errors():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert snip_prune_(net, [(torch.randn(8, 4), torch.randint(0, 2, (8,)))], 0.75) == 0.75
    with pytest.raises(ConfigError, match="at least one batch"):
        snip_scores(nn.Linear(2, 2), [])
    with pytest.raises(ModelError, match="scores name 'nope'"):
        prune_with_scores_(net, {"nope": torch.ones(2)}, 0.5)
    with pytest.raises(ModelError, match="no Linear/Conv"):
        synflow_scores(nn.ReLU(), (2,))


def test_snip_leaves_batchnorm_statistics_untouched():
    from prunekit.models import SmallConvNet

    net = SmallConvNet(1, 3, 8, widths=(4,), hidden=8)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    snip_prune_(net, [(torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,)))], 0.5)
    assert torch.equal(net.features[1].running_mean, before["features.1.running_mean"])
    assert int(net.features[1].num_batches_tracked) == 0
