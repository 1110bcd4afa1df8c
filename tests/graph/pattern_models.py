"""Tiny modules reproducing patterns the tracer once got wrong (one per mechanism, written
the way timm writes them); importable from a fresh interpreter (reload tests)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GatedContext(nn.Module):
    """FocalNet's modulation: one conv makes query, context and ``levels + 1`` one-channel
    gates (``torch.split`` by stored sizes); each gate scales every context channel."""

    def __init__(self, dim: int = 8, levels: int = 2):
        super().__init__()
        self.levels = levels
        self.input_split = [dim, dim, levels + 1]
        self.f = nn.Conv2d(dim, 2 * dim + levels + 1, 1)
        self.h = nn.Conv2d(dim, dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.layers = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
                                    for _ in range(levels))

    def forward(self, x):
        q, ctx, gates = torch.split(self.f(x), self.input_split, 1)
        acc = 0
        for i, layer in enumerate(self.layers):
            ctx = F.gelu(layer(ctx))
            acc = acc + ctx * gates[:, i:i + 1]
        glob = F.gelu(ctx.mean((2, 3), keepdim=True))
        acc = acc + gates[:, self.levels:] * glob  # the gate first: broadcast both ways
        return self.proj(q * self.h(acc))


class SeparateHeads(nn.Module):
    """NextViT / Twins-GSA attention: q, k and v from their own linear layers, each
    reshaped into heads, fused attention with its default scale, ``B, N, C = x.shape``."""

    def __init__(self, dim: int = 12, heads: int = 3):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = (lin(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
                   for lin in (self.q, self.k, self.v))
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class ChannelTriples(nn.Module):
    """A residual stream read in triples of channels (``view(B, 3, C // 3, N)`` mixed over
    the 3): its units are 3 channels each, while the attention after it loses heads of 4."""

    def forward(self, x):
        B, N, C = x.shape
        t = x.transpose(1, 2).reshape(B, 3, C // 3, N)
        return (t + t.flip(1)).reshape(B, C, N).transpose(1, 2)


class SubsampledKV(nn.Module):
    """Twins' global sub-sampled attention: q and kv from their own layers, reshaped with
    ``C // self.num_heads`` (the input's width), fused attention with its default scale."""

    def __init__(self, dim: int = 16, heads: int = 2):
        super().__init__()
        self.num_heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q = self.q(x).reshape(B, N, self.num_heads, C // self.num_heads).transpose(1, 2)
        kv = self.kv(x).reshape(B, -1, 2, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class CoordinateBias(nn.Module):
    """Swin-v2-cr's attention: a per-head bias computed by a small MLP from a coordinate
    buffer (parameters only, so traced lazily), added to the scores."""

    def __init__(self, dim: int = 16, heads: int = 2, tokens: int = 16):
        super().__init__()
        self.num_heads, self.tokens = heads, tokens
        self.qkv = nn.Linear(dim, 3 * dim)
        self.meta = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, heads))
        self.register_buffer("coords", torch.randn(tokens * tokens, 2))  # (query, key) pairs
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        bias = self.meta(self.coords).transpose(1, 0).reshape(self.num_heads, N, N)
        attn = (attn + bias.unsqueeze(0)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, -1))


class Net(nn.Module):
    """A stem, one pattern block in a residual, a head: image or token input by kind."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        tokens = kind in TOKENS
        width = {"gated": 8, "separate": 12, "triples": 24}.get(kind, 16)
        self.stem = nn.Linear(6, width) if tokens else nn.Conv2d(3, width, 3, padding=1)
        self.pre = ChannelTriples() if kind == "triples" else nn.Identity()
        self.block = {"gated": lambda: GatedContext(width), "separate": lambda: SeparateHeads(width),
                      "triples": lambda: SeparateHeads(width, heads=6), "subsampled": lambda: SubsampledKV(width),
                      "coords": lambda: CoordinateBias(width)}[kind]()
        self.head = nn.Linear(width, 5)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.block(self.pre(x))
        return self.head(x.mean(1) if self.kind in TOKENS else x.mean((2, 3)))


TOKENS = ("separate", "triples", "subsampled", "coords")
KINDS = ("gated", "separate", "triples", "subsampled", "coords")


def example(kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    if kind in TOKENS:
        return torch.randn(2, 16, 6, generator=gen)
    return torch.randn(2, 3, 8, 8, generator=gen)
