"""Shared helpers for structured-pruning tests: make chosen units dead, then prune."""

from __future__ import annotations

import torch
from torch import nn

from prunekit.structured import StructuredConfig, StructuredPruner


def kill_units(model: nn.Module, pruner: StructuredPruner) -> None:
    """Zero every parameter slice of the units the pruner will remove (provably dead)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for choice in pruner.choices:
            if len(choice.remove) == 0:
                continue
            for (tensor, dim), index in choice.group.index.items():
                if tensor in params:
                    idx = index[choice.remove].reshape(-1)
                    params[tensor].index_fill_(dim, idx, 0.0)


def exact_choices(pruner: StructuredPruner, fraction: float = 0.5, seed: int = 0) -> int:
    """Keep only removals in exact, untied groups (random units); return groups pruned."""
    ties = pruner.graph.ties + pruner.graph.soft_ties
    tied = {a for a, _, _ in ties} | {b for _, b, _ in ties}
    gen = torch.Generator().manual_seed(seed)
    n = 0
    for c in pruner.choices:
        if not c.group.exact or c.id in tied or c.size < 2:
            c.remove = torch.zeros(0, dtype=torch.long)
            continue
        k = max(1, int(c.size * fraction))
        c.remove = torch.sort(torch.randperm(c.size, generator=gen)[:k]).values
        n += 1
    return n


def check_equivalence(model: nn.Module, x: torch.Tensor, atol: float = 1e-5) -> dict:
    """Kill units in exact groups, prune them, and compare outputs; returns stats."""
    model.eval()
    pruner = StructuredPruner(model, x, StructuredConfig(ratio=0.5))
    pruned_groups = exact_choices(pruner)
    kill_units(model, pruner)
    with torch.no_grad():
        before = model(x)
    params_before = sum(p.numel() for p in model.parameters())
    pruner.apply()
    with torch.no_grad():
        after = model.eval()(x)
    params_after = sum(p.numel() for p in model.parameters())
    assert after.shape == before.shape
    err = (after - before).abs().max().item()
    assert err <= atol * max(1.0, before.abs().max().item()), f"max abs diff {err}"
    return {"groups": pruned_groups, "params_before": params_before,
            "params_after": params_after, "err": err}


# -- tiny modules that keep channel counts as Python attributes, as timm's do; importable
# from a fresh interpreter, since the load round trip runs in a subprocess
class SplitSizes(nn.Module):
    """``torch.split`` with stored ``split_sizes`` (Res2Net / InceptionNeXt style)."""

    def __init__(self, channels: int = 16, parts: int = 4) -> None:
        super().__init__()
        width = channels // parts
        self.split_sizes = [width] * parts
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.mix = nn.ModuleList(
            nn.Conv2d(width, width, 3, padding=1, groups=width) for _ in range(parts))
        self.head = nn.Conv2d(channels, 8, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(self.stem(x), self.split_sizes, dim=1)
        y = torch.cat([m(p) for m, p in zip(self.mix, parts)], dim=1)
        return self.fc(torch.relu(self.head(torch.relu(y))).mean((2, 3)))


class UnequalSplit(nn.Module):
    """Unequal stored split sizes (InceptionNeXt's ``split_indexes``): each piece
    shrinks on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.split_indexes = (8, 4, 4)
        self.stem = nn.Conv2d(3, 16, 1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.head = nn.Conv2d(16, 6, 1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, c = torch.split(self.stem(x), self.split_indexes, dim=1)
        y = torch.cat([a, self.dw(b), c], dim=1)
        return self.fc(torch.relu(self.head(torch.relu(y))).mean((2, 3)))


class Blur(nn.Module):
    """A depthwise blur with a buffer filter and ``groups=self.channels`` (timm BlurPool2d)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("filt", torch.full((channels, 1, 3, 3), 1.0 / 9))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.filt, padding=1, groups=self.channels)


class BlurNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.blur = Blur(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blur(torch.relu(self.conv(x))).mean((2, 3)))


class Scale(nn.Module):
    """Per-channel scale viewed with a stored shape (timm MetaFormer's ``Scale``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.shape = (dim, 1, 1)
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.view(self.shape)


class StoredDim(nn.Module):
    """A reshape with a stored ``dim`` and a stored-shape scale."""

    def __init__(self, dim: int = 12) -> None:
        super().__init__()
        self.dim = dim
        self.conv = nn.Conv2d(3, dim, 3, padding=1)
        self.scale = Scale(dim)
        self.fc = nn.Linear(dim, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.scale(torch.relu(self.conv(x)))
        y = y.reshape(y.shape[0], self.dim, -1).mean(-1)
        return self.fc(y)


class StoredAttention(nn.Module):
    """Attention with stored ``num_heads`` / ``head_dim`` (timm ``Attention`` style)."""

    def __init__(self, dim: int = 16, num_heads: int = 2) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim)
        return self.proj(y)


class AttentionNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = StoredAttention()
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.attn(x)).mean(1))


class TwoSameSizes(nn.Module):
    """Two attributes hold the channel count; the reshape reads ``dim`` (``hidden`` is
    a decoy that trying each in turn rules out)."""

    def __init__(self) -> None:
        super().__init__()
        self.dim = 8
        self.hidden = 8
        self.conv = nn.Conv2d(3, 8, 1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.fc(y.reshape(y.shape[0], self.dim, -1).mean(-1))


class HiddenSource(TwoSameSizes):
    """Reads the count from a dict: neither int attribute feeds the call (ambiguous)."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = {"dim": 8}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.fc(y.reshape(y.shape[0], self.cfg["dim"], -1).mean(-1))


MODELS = {"SplitSizes": (SplitSizes, (2, 3, 8, 8)), "StoredDim": (StoredDim, (2, 3, 8, 8)),
          "AttentionNet": (AttentionNet, (2, 5, 16)), "UnequalSplit": (UnequalSplit, (2, 3, 8, 8)),
          "BlurNet": (BlurNet, (2, 3, 8, 8))}
SIZE_ATTRS = ("dim", "shape", "split_sizes", "split_indexes", "head_dim", "num_heads", "channels")


def size_attrs(model: nn.Module) -> dict:
    """The size attributes of ``model``'s modules, JSON-like (tuples as lists)."""
    return {f"{n}.{k}": list(v) if isinstance(v, tuple) else v for n, m in model.named_modules()
            for k, v in vars(m).items() if k in SIZE_ATTRS}
