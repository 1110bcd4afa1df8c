"""Tiny modules written the way timm writes its attention variants, for the tracer's
tests; importable from a fresh interpreter (the reload test runs in a subprocess)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TalkingHeads(nn.Module):
    """CaiT's attention: linear layers mix the heads before and after the softmax."""

    def __init__(self, dim: int = 16, heads: int = 4):
        super().__init__()
        self.num_heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj_l = nn.Linear(heads, heads)
        self.proj_w = nn.Linear(heads, heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * 0.5, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        attn = self.proj_l(attn.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).softmax(dim=-1)
        attn = self.proj_w(attn.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class CrossCovariance(nn.Module):
    """XCiT's attention over channels: ``q^T k`` is head_dim x head_dim."""

    def __init__(self, dim: int = 16, heads: int = 2):
        super().__init__()
        self.num_heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 4, 1)
        q, k, v = qkv.unbind(0)
        attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1))
        attn = (attn * self.temperature).softmax(dim=-1)
        return self.proj((attn @ v).permute(0, 3, 1, 2).reshape(B, N, C))


class StackedBranches(nn.Module):
    """Selective kernel: two branches stacked, summed for the attention, re-weighted."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.paths = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 1)])
        self.fc = nn.Conv2d(c, 2 * c, 1)

    def forward(self, x):
        x = torch.stack([p(x) for p in self.paths], dim=1)
        a = self.fc(x.sum(1).mean((2, 3), keepdim=True))
        a = a.view(x.shape[0], 2, -1, 1, 1).softmax(dim=1)
        return (x * a).sum(1)


class WeightedHeads(nn.Module):
    """EfficientViM's head: classifiers mixed by ``weights[i]`` of a small parameter."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.trunk = nn.Linear(4, c)
        self.heads = nn.ModuleList([nn.Linear(c, 5) for _ in range(3)])
        self.weights = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))

    def forward(self, x):
        h = self.trunk(x).relu()
        w = self.weights.softmax(-1)
        return torch.stack([w[i] * head(h) for i, head in enumerate(self.heads)]).sum(0)


class QuerySplit(nn.Module):
    """CrossViT's attention: ``reshape(B, N, self.num_heads, C // self.num_heads)`` with
    ``C`` the width of the input, in front of a linear layer of its own."""

    def __init__(self, dim: int = 16, heads: int = 2):
        super().__init__()
        self.num_heads = heads
        self.wq = nn.Linear(dim, dim)
        self.wk = nn.Linear(dim, dim)
        self.wv = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        h = self.num_heads
        q = self.wq(x[:, 0:1]).reshape(B, 1, h, C // h).permute(0, 2, 1, 3)
        k = self.wk(x).reshape(B, N, h, C // h).permute(0, 2, 1, 3)
        v = self.wv(x).reshape(B, N, h, C // h).permute(0, 2, 1, 3)
        attn = ((q @ k.transpose(-2, -1)) * 0.25).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, 1, C))


class Net(nn.Module):
    """``stem -> block -> head`` around one of the blocks above (tokens or pixels)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        if kind == "stacked":
            self.stem, self.block, self.head = nn.Conv2d(3, 8, 3), StackedBranches(), nn.Conv2d(8, 4, 1)
        elif kind == "weighted":
            self.stem, self.block, self.head = nn.Identity(), WeightedHeads(), nn.Identity()
        else:
            block = {"talking": TalkingHeads, "xca": CrossCovariance, "query": QuerySplit}[kind]
            self.stem, self.block, self.head = nn.Linear(6, 16), block(), nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


def example(kind: str) -> torch.Tensor:
    shapes = {"stacked": (1, 3, 10, 10), "weighted": (2, 4)}
    return torch.randn(*shapes.get(kind, (1, 5, 6)))
