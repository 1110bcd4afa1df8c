"""Labels broadcast over tokens stay broadcast views (``prunekit.graph.atoms.distinct``):
a linear layer's output channels, a residual add, a GELU, a class token joined to the
patch tokens and a LayerNorm keep one label per channel in memory, however many tokens."""

import torch
from torch import nn

from prunekit.graph.atoms import distinct
from prunekit.graph.tracer import run_traced


class TokenMLP(nn.Module):
    def __init__(self, dim: int = 8):
        super().__init__()
        self.embed = nn.Linear(6, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        x = self.embed(x)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(x))))
        return self.head(x[:, 0])


def test_labels_of_token_activations_hold_one_slice_per_channel():
    model = TokenMLP().eval()
    seen = {}
    for name in ("embed", "norm", "fc1", "fc2"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: seen.setdefault(name, o))
    ctx, _ = run_traced(model, torch.randn(1, 1000, 6))
    sizes = {name: distinct(ctx.lab(t)).numel() for name, t in seen.items()}
    assert sizes == {"embed": 8, "norm": 8, "fc1": 32, "fc2": 8}
    assert all(ctx.lab(t).shape == t.shape for t in seen.values())  # the full shape, viewed
