"""Head dims or whole heads (prunekit.graph.head_modes): attention with the default scale
and a per-head relative-position table loses whole heads; rotary tables shared by the
heads shrink with head-dim pairs."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.graph import build_dependency_graph
from prunekit.graph.atoms import AtomTable
from prunekit.graph.head_modes import DIMS, HEADS, SplitModes
from prunekit.structured import StructuredConfig, prune_channels_

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "structured"))
from structured_helpers import check_equivalence  # noqa: E402


def test_a_split_whose_head_dims_collapse_takes_whole_heads():
    t = AtomTable()
    w = t.dim_atoms("qkv.weight", 0, 8, producer=True)
    modes = SplitModes(t)
    i = modes.add(("attn", 0), w.view(1, 2, 4), [1, 2])
    modes.couple(i, DIMS, w, torch.zeros_like(w))  # head dims cannot shrink
    comp, chosen = modes.resolve()
    assert chosen == {("attn", 0): HEADS}
    units = [int(comp[a]) for a in w]
    assert units[:4] == [units[0]] * 4 and units[4:] == [units[4]] * 4 and units[0] != units[4]


def test_a_split_with_removable_head_dims_keeps_them():
    t = AtomTable()
    w = t.dim_atoms("qkv.weight", 0, 8, producer=True)
    modes = SplitModes(t)
    modes.add(("attn", 0), w.view(1, 2, 4), [1, 2])
    comp, chosen = modes.resolve()
    assert chosen == {}
    assert [int(comp[a]) for a in w[:4]] == [int(comp[a]) for a in w[4:]]  # dim i of both heads
    assert len({int(comp[a]) for a in w}) == 4


class BiasedAttention(nn.Module):
    """timm-style attention: fused SDPA with the default scale, and a relative-position
    bias table ``(2N - 1, heads)`` gathered per head and passed as the mask."""

    def __init__(self, dim=32, num_heads=4, tokens=6):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.table = nn.Parameter(torch.randn(2 * tokens - 1, num_heads))
        pos = torch.arange(tokens)
        self.register_buffer("index", (pos[:, None] - pos[None, :] + tokens - 1).reshape(-1),
                             persistent=False)
        self.tokens = tokens

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        bias = self.table[self.index].reshape(N, N, -1).permute(2, 0, 1).unsqueeze(0)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(x.transpose(1, 2).reshape(B, N, -1))


class AttnNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(5, 32)
        self.attn = BiasedAttention()
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        h = self.embed(x)
        return self.head(h + self.attn(h))


def traced(model: nn.Module, *shape: int):
    """(model in eval mode, a seeded input of ``shape``, its dependency graph)."""
    torch.manual_seed(0)
    x = torch.randn(*shape)
    return model.eval(), x, build_dependency_graph(model.eval(), x)


def test_default_scale_attention_loses_whole_heads_and_their_bias_rows():
    torch.manual_seed(0)
    model, x, graph = traced(AttnNet(), 1, 6, 5)
    heads = graph.group_of("attn.qkv.weight", 0)
    assert heads is not None and heads.size == 4  # one unit per head
    assert heads.index[("attn.qkv.weight", 0)].shape == (4, 24)  # q, k, v rows of a head
    assert graph.group_of("attn.table", 1) is heads
    with torch.no_grad():
        before = model(x)
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    assert model.attn.num_heads == 2 and model.attn.head_dim == 8  # the scale is unchanged
    assert tuple(model.attn.table.shape) == (11, 2)
    assert model(x).shape == before.shape


def test_whole_heads_removed_dead_leave_outputs_unchanged():
    torch.manual_seed(0)
    stats = check_equivalence(AttnNet(), torch.randn(1, 6, 5), atol=1e-5)
    assert stats["groups"] >= 2 and stats["params_after"] < stats["params_before"]


class RotaryAttention(nn.Module):
    """Llama-style: explicit scale, rotary cos / sin from an ``inv_freq`` buffer shared by
    every head (``rotate_half`` pairs dim i with i + D/2); projections not named like
    Hugging Face's, so no lookalike rule applies."""

    def __init__(self, dim=32, num_heads=2):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.wq, self.wk = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.wv, self.wo = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.register_buffer("inv_freq", 1.0 / 100 ** (torch.arange(0, self.head_dim, 2) /
                                                       self.head_dim), persistent=False)

    def forward(self, x):
        B, N, _ = x.shape
        freqs = torch.arange(N, dtype=torch.float32)[:, None] * self.inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]

        def rot(t):
            a, b = t[..., : t.shape[-1] // 2], t[..., t.shape[-1] // 2:]
            return torch.cat([-b, a], dim=-1)

        q, k, v = (p(x).view(B, N, -1, self.head_dim).transpose(1, 2)
                   for p in (self.wq, self.wk, self.wv))
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        out = F.scaled_dot_product_attention(q, k, v, scale=0.25)
        return self.wo(out.transpose(1, 2).reshape(B, N, -1))


def test_rotary_head_dims_go_in_pairs_with_the_frequencies():
    torch.manual_seed(0)
    model, x, graph = traced(RotaryAttention(), 1, 5, 32)
    qk = graph.group_of("wq.weight", 0)
    assert qk is not None and graph.group_of("inv_freq", 0) is qk
    assert qk.size == 8  # pairs (i, i + 8) of the 16 head dims
    rows = qk.index[("wq.weight", 0)]
    assert rows.shape == (8, 4)  # 2 heads x the pair
    assert sorted(rows[0].tolist()) == [0, 8, 16, 24]
    stats = check_equivalence(model, x, atol=1e-5)
    assert stats["groups"] >= 2
    assert model.inv_freq.numel() == 4 and model.wq.out_features == 16
