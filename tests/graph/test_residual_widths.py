"""Residual widths that follow whole heads: ``C // num_heads`` with the default attention
scale (the residual keeps head_dim channels per head kept), class attention's separate
q / k / v splits losing the same heads, a LayerScale over a concatenation of a class
token's attention output and the patch tokens, and the debug listing of frozen dims."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.graph import build_dependency_graph
from prunekit.graph.explain import explain_frozen
from prunekit.structured import StructuredConfig, StructuredPruner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "structured"))
from structured_helpers import check_equivalence  # noqa: E402


def traced(model: nn.Module, *shape: int) -> tuple[torch.Tensor, object]:
    """A seeded input of ``shape`` and the dependency graph of ``model`` on it."""
    torch.manual_seed(0)
    x = torch.randn(*shape)
    return x, build_dependency_graph(model, x)


def dead_cut(model: nn.Module, x: torch.Tensor) -> tuple[StructuredPruner, float]:
    """Zero exactly the units the default allocation removes (ties included), prune them;
    the relative output change (0 when every removed unit was dead)."""
    model.eval()
    pruner = StructuredPruner(model, x, StructuredConfig(ratio=0.5))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for c in pruner.choices:
            for (tensor, dim), index in c.group.index.items():
                if tensor in params and len(c.remove):
                    params[tensor].index_fill_(dim, index[c.remove].reshape(-1), 0.0)
        before = model(x)
        pruner.apply()
        after = model.eval()(x)
    assert after.shape == before.shape
    return pruner, ((after - before).abs().max() / before.abs().max()).item()


class WindowAttention(nn.Module):
    """DaViT / Swin style: head size ``C // num_heads`` from the input's width, fused SDPA
    with its default scale ``1/sqrt(head_dim)`` (so head dims cannot shrink)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(self.mix(q, k, v).transpose(1, 2).reshape(B, N, C))

    def mix(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


class ResidualNet(nn.Module):
    def __init__(self, dim: int = 32, num_heads: int = 4, depth: int = 2):
        super().__init__()
        self.embed = nn.Linear(6, dim)
        self.blocks = nn.ModuleList(WindowAttention(dim, num_heads) for _ in range(depth))
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        x = self.embed(x)
        for blk in self.blocks:
            x = x + blk(x)
        return self.head(x)


def test_residual_width_follows_whole_heads_of_head_dim_channels():
    model = ResidualNet()
    x, graph = traced(model, 2, 5, 6)
    resid = graph.group_of("embed.weight", 0)
    heads = graph.group_of("blocks.0.qkv.weight", 0)
    assert resid is not None and heads is not None
    assert (resid.size, heads.size) == (32, 4)
    assert (resid.id, heads.id, 8) in graph.ties  # kept(residual) == 8 * kept(heads)
    pruner, err = dead_cut(model, x)
    assert err < 1e-5
    assert model.embed.out_features == 16  # 2 heads x 8 channels
    for blk in model.blocks:
        assert blk.num_heads == 2 and blk.qkv.out_features == 48  # head size unchanged


class ChannelAttention(WindowAttention):
    """DaViT's channel attention: the same ``C // num_heads`` split, explicit scale, so
    head dims shrink (the residual keeps num_heads channels per dim kept)."""

    def mix(self, q, k, v):
        attn = (k.transpose(-1, -2) * 0.5 @ v).softmax(dim=-1)
        return (attn @ q.transpose(-1, -2)).transpose(-1, -2)


def test_two_ties_on_one_residual_keep_a_multiple_of_both():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6)
    model = ResidualNet(dim=48, num_heads=6, depth=1)  # whole heads of 8 channels
    model.blocks.append(ChannelAttention(48, 6))  # 6 heads whose dims shrink
    graph = build_dependency_graph(model, x)
    resid = graph.group_of("embed.weight", 0).id
    assert {f for a, _, f in graph.ties if a == resid} == {8, 6}
    dead_cut(model, x)  # the softmax over channels is not exact: only the widths count
    assert model.embed.out_features == 24  # lcm(8, 6) = 24: half of 48
    assert model.blocks[0].num_heads == 3 and model.blocks[0].qkv.out_features == 72
    assert model.blocks[1].num_heads == 6 and model.blocks[1].qkv.out_features == 72


class ClassAttn(nn.Module):
    """CaiT / XCiT class attention: separate q (class token only), k, v linears, each
    reshaped to ``(num_heads, C // num_heads)``, default SDPA scale."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        H = self.num_heads
        q = self.q(x[:, 0]).unsqueeze(1).reshape(B, 1, H, C // H).permute(0, 2, 1, 3)
        k = self.k(x).reshape(B, N, H, C // H).permute(0, 2, 1, 3)
        v = self.v(x).reshape(B, N, H, C // H).permute(0, 2, 1, 3)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, 1, C))


class ClassBlock(nn.Module):
    """XCiT's class-attention block: the class token's attention output concatenated
    before the patch tokens, all scaled by the LayerScale ``gamma``."""

    def __init__(self, dim: int = 32, num_heads: int = 4):
        super().__init__()
        self.embed = nn.Linear(6, dim)
        self.attn = ClassAttn(dim, num_heads)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        x = self.embed(x)
        x = x + self.gamma * torch.cat([self.attn(x), x[:, 1:]], dim=1)
        return self.head(x)


def test_class_attention_q_k_v_lose_the_same_whole_heads():
    model = ClassBlock()
    x, graph = traced(model, 2, 7, 6)
    heads = graph.group_of("attn.v.weight", 0)
    assert heads is not None and heads.size == 4
    assert graph.group_of("attn.q.weight", 0) is heads and graph.group_of("attn.k.weight", 0) is heads
    _, err = dead_cut(model, x)
    assert err < 1e-5
    assert model.attn.num_heads == 2
    assert [m.out_features for m in (model.attn.q, model.attn.k, model.attn.v)] == [16] * 3


def test_layer_scale_over_concatenated_tokens_follows_the_residual():
    model = ClassBlock()
    x, graph = traced(model, 2, 7, 6)
    resid = graph.group_of("embed.weight", 0)
    assert resid is not None and graph.group_of("gamma", 0) is resid
    dead_cut(model, x)
    assert tuple(model.gamma.shape) == (16,) and model.embed.out_features == 16


class FeatureNet(nn.Module):
    """Returns its features: the residual width is the output's and cannot shrink."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(6, 16)
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))

    def forward(self, x):
        x = self.embed(x)
        return x + self.mlp(x)


def test_explain_frozen_names_the_op_that_fixes_a_width():
    frozen = {(f.tensor, f.dim): f for f in explain_frozen(FeatureNet(), torch.randn(2, 6))}
    assert ("mlp.0.weight", 0) not in frozen  # the hidden width is prunable
    resid = frozen[("embed.weight", 0)]
    assert resid.size == 16 and any("the model's output" in r for r in resid.reasons)
    assert frozen[("embed.weight", 1)].reasons  # the input's channels: nothing produces them


class ConvAttention(nn.Module):
    """LowFormer / CPUBone style: q, k, v chunked from the last dim of a permuted conv
    output, so they are not contiguous and SDPA (default scale) takes its math fallback,
    whose ``1/sqrt(head_dim)`` reaches the tracer only as a number."""

    def __init__(self, dim: int = 8, num_heads: int = 2, head_dim: int = 8):
        super().__init__()
        self.num_heads, self.head_dim, self.num_keys = num_heads, head_dim, 3
        self.inner = num_heads * head_dim
        self.pwise = nn.Conv2d(dim, 3 * self.inner, 1, bias=False)
        self.out = nn.Conv2d(self.inner, dim, 1)

    def forward(self, x):
        N, _, h, w = x.shape
        qkv = self.pwise(x).reshape(N, self.num_heads, self.num_keys * self.head_dim, h * w)
        q, k, v = qkv.permute(0, 1, 3, 2).chunk(3, dim=3)
        values = F.scaled_dot_product_attention(q, k, v)
        return self.out(values.permute(0, 1, 3, 2).reshape(N, self.inner, h, w))


class ConvResidual(nn.Module):
    """stem -> x + mixer(x) -> head, with 8 channels in the residual."""

    def __init__(self, mixer: nn.Module):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.attn = mixer
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        return self.head(x + self.attn(x))


def ConvAttnNet() -> nn.Module:  # noqa: N802 - a model class, as the tests use it
    return ConvResidual(ConvAttention())


def test_default_scale_of_the_math_fallback_keeps_query_key_dims():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 4, 4)
    stats = check_equivalence(ConvAttnNet(), x, atol=1e-5)  # dead units: exact
    assert stats["params_after"] < stats["params_before"]
    model = ConvAttnNet().eval()
    graph = build_dependency_graph(model, x)
    heads = graph.group_of("attn.pwise.weight", 0)
    assert heads is not None and heads.size == 2  # whole heads, not head dims
    pruner, err = dead_cut(model, x)
    assert err < 1e-5
    assert model.attn.num_heads == 1 and model.attn.head_dim == 8
    assert model.attn.pwise.out_channels == 24


class SplitFromAttributes(nn.Module):
    """EfficientViT (MSRA) style: q, k, v split with sizes written from integer attributes
    (``[self.key_dim, self.key_dim, self.val_dim]``), updated after the cut."""

    def __init__(self, dim: int = 8, key_dim: int = 4, val_dim: int = 6):
        super().__init__()
        self.key_dim, self.val_dim, self.scale = key_dim, val_dim, 0.5
        self.qkv = nn.Conv2d(dim, 2 * key_dim + val_dim, 1)
        self.proj = nn.Conv2d(val_dim, dim, 1)

    def forward(self, x):
        B, _, H, W = x.shape
        q, k, v = self.qkv(x).split([self.key_dim, self.key_dim, self.val_dim], dim=1)
        q, k, v = q.flatten(2), k.flatten(2), v.flatten(2)
        attn = ((q * self.scale).transpose(-2, -1) @ k).softmax(dim=-1)
        return self.proj((v @ attn.transpose(-2, -1)).view(B, self.val_dim, H, W))


def SplitNet() -> nn.Module:  # noqa: N802
    return ConvResidual(SplitFromAttributes())


def test_split_sizes_written_from_attributes_shrink():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 3, 3)
    stats = check_equivalence(SplitNet(), x, atol=1e-5)
    assert stats["groups"] == 3  # residual, query/key dims, value dims
    model = SplitNet().eval()
    _, err = dead_cut(model, x)
    assert err < 1e-5
    assert (model.attn.key_dim, model.attn.val_dim) == (2, 3)
    assert model.attn.qkv.out_channels == 7


class TwoScales(nn.Module):
    """CoaT's parallel block: several inputs of one width; a tensor computed from one of
    them is reshaped with its own ``C`` (``B, N, C = x.shape``), not the first input's."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.mix = nn.Linear(dim, dim)

    def forward(self, x1, x2):
        cur = self.mix(x2)
        B, N, C = cur.shape
        img = F.avg_pool2d(cur.transpose(1, 2).reshape(B, C, 2, 2), 1)
        return x1, x2 + img.reshape(B, C, -1).transpose(1, 2)


class TwoScaleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed1, self.embed2 = nn.Linear(3, 8), nn.Linear(3, 8)
        self.block = TwoScales()
        self.head1, self.head2 = nn.Linear(8, 2), nn.Linear(8, 2)

    def forward(self, x):
        x1, x2 = self.block(self.embed1(x), self.embed2(x))
        return self.head1(x1) + self.head2(x2)


def test_a_width_read_from_one_of_several_inputs_ties_nothing():
    x, graph = traced(TwoScaleNet(), 1, 4, 3)
    assert graph.group_of("embed1.weight", 0) is not graph.group_of("embed2.weight", 0)
    assert graph.ties == []
    stats = check_equivalence(TwoScaleNet(), x, atol=1e-5)
    assert stats["groups"] == 2  # the two widths (mix writes into the second), both exact


class StoredWidthAttention(WindowAttention):
    """timm's ``Attention``: head size and output width read from attributes
    (``self.head_dim``, ``self.attn_dim``), not from the input's width."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__(dim, num_heads)
        self.head_dim, self.attn_dim = dim // num_heads, dim

    def forward(self, x):
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(self.mix(q, k, v).transpose(1, 2).reshape(B, N, self.attn_dim))


def test_a_tie_guessed_from_a_stored_width_yields_to_a_computed_one():
    model = ResidualNet(dim=48, num_heads=3, depth=0)
    model.blocks.append(StoredWidthAttention(48, 3))  # 3 heads of 16: a guessed tie
    model.blocks.append(ChannelAttention(48, 3))  # C // 3: the residual keeps 3 x dims
    x, graph = traced(model, 2, 5, 6)
    resid = graph.group_of("embed.weight", 0).id
    assert [f for a, _, f in graph.ties if a == resid] == [3]
    assert [f for a, _, f in graph.soft_ties if a == resid] == [16]
    dead_cut(model, x)
    assert model.embed.out_features == 24  # not frozen by lcm(16, 3) = 48
    assert model.blocks[0].num_heads == 2 and model.blocks[0].proj.in_features == 32
