"""Surgery: generic slicing, attribute sync per layer type, user-registered rules, undo."""

import torch
from torch import nn

from prunekit.structured import StructuredConfig, prune_channels_
from prunekit.surgery import SurgeryRule, apply_keep, register_surgery_rule, rule_for


def test_apply_and_restore_is_exact():
    m = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.Conv2d(6, 2, 1)).eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    keep = torch.tensor([0, 2, 5])
    snap = apply_keep(m, {"0.weight": {0: keep}, "0.bias": {0: keep}, "1.weight": {0: keep},
                          "1.bias": {0: keep}, "1.running_mean": {0: keep},
                          "1.running_var": {0: keep}, "2.weight": {1: keep}})
    assert (m[0].out_channels, m[1].num_features, m[2].in_channels) == (3, 3, 3)
    assert m(torch.zeros(1, 3, 5, 5)).shape == (1, 2, 3, 3)
    snap.restore()
    assert (m[0].out_channels, m[1].num_features, m[2].in_channels) == (6, 6, 6)
    assert all(torch.equal(m.state_dict()[k], v) for k, v in before.items())


class Scale(nn.Module):
    """A user layer whose forward reads an attribute that must follow its parameter."""

    def __init__(self, n):
        super().__init__()
        self.gain = nn.Parameter(torch.rand(n))
        self.n = n

    def forward(self, x):
        return x * self.gain.view(1, self.n, 1, 1)


def test_user_registered_rule_keeps_its_layer_working():
    register_surgery_rule(Scale, SurgeryRule(sync=lambda m: setattr(m, "n", m.gain.shape[0])))
    assert rule_for(Scale(2)) is not None
    m = nn.Sequential(nn.Conv2d(3, 8, 1), Scale(8), nn.Conv2d(8, 2, 1)).eval()
    prune_channels_(m, torch.zeros(1, 3, 4, 4), StructuredConfig(ratio=0.5))
    assert m[1].n == 4 and m[1].gain.shape == (4,)
    assert m(torch.zeros(1, 3, 4, 4)).shape == (1, 2, 4, 4)


def test_multihead_attention_rule_updates_dims():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(4, 16)
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
            self.out = nn.Linear(16, 3)

        def forward(self, x):
            h = self.inp(x)
            h = h + self.attn(h, h, h, need_weights=False)[0]
            return self.out(h)

    m = Block().eval()
    x = torch.randn(1, 5, 4)
    prune_channels_(m, x, StructuredConfig(ratio=0.5))
    assert (m.attn.embed_dim, m.attn.head_dim) == (8, 4)
    assert m(x).shape == (1, 5, 3)
