"""The "activation" importance of the one engine (prunekit.structured.activation)."""

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.structured import StructuredConfig, StructuredPruner


def _hand(weight_out_in: torch.Tensor, x_channels_last: torch.Tensor) -> torch.Tensor:
    """sum over the unit's one column j of ||W[:, j]|| * ||X_j|| (one column per unit)."""
    xn = x_channels_last.reshape(-1, x_channels_last.shape[-1]).pow(2).sum(0).sqrt()
    return weight_out_in.norm(dim=0) * xn


def test_mlp_scores_equal_hand_computation():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))
    x = [torch.randn(4, 5), torch.randn(7, 5)]
    p = StructuredPruner(m, x[0], StructuredConfig(ratio=0.5, importance="activation"), data=x)
    assert len(p.scores) == 1 and p.graph.groups[0].size == 6
    with torch.no_grad():
        h = torch.cat([torch.relu(m[0](b)) for b in x])
    expect = _hand(m[2].weight.detach(), h).double()
    torch.testing.assert_close(p.scores[0], expect, rtol=1e-6, atol=1e-7)
    # the lowest-scored half goes
    assert sorted(p.choices[0].remove.tolist()) == sorted(torch.argsort(expect)[:3].tolist())


def test_cnn_scores_equal_hand_computation():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3))
    x = torch.randn(2, 3, 9, 9)
    p = StructuredPruner(m, x, StructuredConfig(ratio=0.25, importance="activation"),
                         data=[(x, torch.zeros(2))])  # (inputs, target) batches are accepted
    with torch.no_grad():
        h = torch.relu(m[0](x)).movedim(1, -1)
    w = m[2].weight.detach().movedim(1, -1).reshape(-1, 8)   # every weight of input channel j
    torch.testing.assert_close(p.scores[0], _hand(w, h).double(), rtol=1e-6, atol=1e-7)
    p.apply()
    assert m[0].out_channels == 6 and m(x).shape == (2, 4, 5, 5)


def test_activation_needs_data():
    m = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))
    with pytest.raises(ConfigError, match="activation.*calibration `data`"):
        StructuredPruner(m, torch.randn(2, 5), StructuredConfig(importance="activation"))


def _mlp_group_scores(model, x, consumer, weight_out_in):
    """The traced group whose consumer is ``consumer``: its activation scores vs the hand ones."""
    seen = []
    h = consumer.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    p = StructuredPruner(model, x, StructuredConfig(ratio=0.5, importance="activation"), data=[x])
    h.remove()
    name = next(n for n, m in model.named_modules() if m is consumer) + ".weight"
    gi = next(i for i, g in enumerate(p.graph.groups) if any(t == name for t, _ in g.members))
    g = p.graph.groups[gi]
    assert g.size == weight_out_in.shape[1]
    cols = _hand(weight_out_in, torch.cat([s.reshape(-1, s.shape[-1]) for s in seen]))
    return p, p.scores[gi], cols[g.index[next(k for k in g.index if k[0] == name)]].sum(1).double()


def test_vit_and_gpt2_conv1d_mlp_scores_equal_hand_computation():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    vit = transformers.ViTModel(transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
        image_size=16, patch_size=8)).eval()
    out = vit.layers[0].mlp.fc2
    p, got, want = _mlp_group_scores(vit, torch.randn(2, 3, 16, 16), out, out.weight.detach())
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    p.apply()
    assert out.in_features == 24
    gpt2 = transformers.GPT2Model(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50,
                                                          n_positions=16)).eval()
    proj = gpt2.h[0].mlp.c_proj  # Conv1D: weight [in, out], its input channels are dim 0
    _, got, want = _mlp_group_scores(gpt2, torch.randint(0, 50, (2, 8)), proj, proj.weight.detach().T)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
