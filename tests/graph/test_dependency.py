"""Dependency analysis on hand-built models with known couplings."""

import pytest
import torch
from torch import nn

from prunekit.graph import build_dependency_graph
from prunekit.graph.atoms import connected_components


def _members(graph):
    return [sorted(g.index) for g in graph.groups]


def test_residual_add_couples_producers_and_their_norms():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.b = nn.Conv2d(8, 8, 1)
            self.head = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            y = self.a(x)
            return self.head(y + self.b(y))

    g = build_dependency_graph(Res(), torch.zeros(1, 3, 4, 4))
    assert _members(g) == [[("a.bias", 0), ("a.weight", 0), ("b.bias", 0), ("b.weight", 0),
                            ("b.weight", 1), ("head.weight", 1)]]
    assert g.groups[0].size == 8 and g.groups[0].exact


def test_concat_splits_consumer_input_between_two_groups():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 6, 1)
            self.head = nn.Conv2d(10, 2, 1)

        def forward(self, x):
            return self.head(torch.cat([self.a(x), self.b(x)], 1))

    g = build_dependency_graph(Cat(), torch.zeros(1, 3, 4, 4))
    by_size = {grp.size: grp for grp in g.groups}
    assert by_size[4].index[("head.weight", 1)].reshape(-1).tolist() == [0, 1, 2, 3]
    assert by_size[6].index[("head.weight", 1)].reshape(-1).tolist() == [4, 5, 6, 7, 8, 9]


def test_depthwise_conv_removes_whole_groups():
    m = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 16, 3, groups=8), nn.Conv2d(16, 2, 1))
    g = build_dependency_graph(m, torch.zeros(1, 3, 6, 6))
    (grp,) = g.groups
    assert grp.size == 8
    assert grp.index[("1.weight", 0)][3].tolist() == [6, 7]  # 2 outputs per input channel


def test_channel_shuffle_couples_positions_across_groups():
    class Shuffle(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.head = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            y = self.a(x)
            n, c, h, w = y.shape
            y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
            return self.head(y)

    g = build_dependency_graph(Shuffle(), torch.zeros(1, 3, 4, 4))
    (grp,) = g.groups
    assert grp.size == 4  # channel j and j + 4 go together
    assert grp.index[("a.weight", 0)].tolist() == [[0, 4], [1, 5], [2, 6], [3, 7]]


def test_flatten_into_linear_maps_channels_to_feature_blocks():
    m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten(), nn.Linear(4 * 2 * 2, 3))
    g = build_dependency_graph(m, torch.zeros(1, 3, 2, 2))
    (grp,) = g.groups
    assert grp.index[("2.weight", 1)][1].tolist() == [4, 5, 6, 7]


def test_layernorm_groups_are_marked_inexact_and_output_is_protected():
    m = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 16), nn.GELU(),
                      nn.Linear(16, 3))
    g = build_dependency_graph(m, torch.zeros(2, 4))
    exact = {grp.size: grp.exact for grp in g.groups}
    assert exact == {8: False, 16: True}
    assert all(("4.weight", 0) not in grp.index for grp in g.groups)


def test_connected_components_small():
    comp = connected_components(6, __import__("numpy").array([0, 2, 4]),
                                __import__("numpy").array([1, 3, 3]))
    assert comp.tolist() == [0, 0, 2, 2, 2, 5]


def test_model_forward_error_is_a_model_error():
    from prunekit.errors import ModelError

    with pytest.raises(ModelError):
        build_dependency_graph(nn.Linear(4, 2), torch.zeros(1, 5))


class _Picks(nn.Module):
    """Channels that end in an index-producing op: their positions are the result."""

    def __init__(self, op):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 1)
        self.b = nn.Conv2d(6, 5, 1)
        self.op = op

    def forward(self, x):
        return self.op(self.b(torch.relu(self.a(x))))


@pytest.mark.parametrize("op", [
    lambda y: y.argmax(dim=1).float(),
    lambda y: y.max(dim=1).indices.float(),
    lambda y: y.topk(2, dim=1).indices.float(),
    lambda y: y.mean((2, 3)).sort(dim=1).indices.float(),
    lambda y: (y > 0).nonzero().float().sum(0),
])
def test_channels_an_index_op_searches_are_fixed(op):
    g = build_dependency_graph(_Picks(op), torch.randn(1, 3, 4, 4))
    assert _members(g) == [[("a.bias", 0), ("a.weight", 0), ("b.weight", 1)]]


def test_max_over_space_keeps_channels_prunable():
    class SpatialMax(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 6, 1)
            self.head = nn.Linear(6, 2)

        def forward(self, x):
            return self.head(self.a(x).flatten(2).max(dim=2).values)

    g = build_dependency_graph(SpatialMax(), torch.randn(1, 3, 4, 4))
    assert _members(g) == [[("a.bias", 0), ("a.weight", 0), ("head.weight", 1)]]


class _SoftmaxOver(nn.Module):
    """Softmax over the hidden features (inexact) then over tokens (exact)."""

    def __init__(self, softmax):
        super().__init__()
        self.softmax = softmax
        self.a = nn.Linear(6, 8)
        self.b = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = self.softmax(self.a(x), -1)
        return self.head(self.softmax(self.b(h), 1))


@pytest.mark.parametrize("softmax", [torch.softmax, torch.ops.aten._safe_softmax],
                         ids=["softmax", "_safe_softmax"])
def test_safe_softmax_is_followed_like_softmax(softmax):
    g = build_dependency_graph(_SoftmaxOver(softmax), torch.zeros(2, 5, 6))
    by_first = {min(grp.index)[0]: (grp.size, grp.exact) for grp in g.groups}
    assert by_first == {"a.bias": (8, False), "b.bias": (8, True)}


class _ChannelAttention(nn.Module):
    """XCiT-style attention over channels with a per-head temperature (heads, 1, 1)."""

    def __init__(self, heads=2, dim=8):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 4, 1).unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(-1)
        return self.head((attn @ v).mean((1, 2, 3)).unsqueeze(-1).expand(b, c))


def test_a_per_head_scale_broadcast_over_channel_scores_is_not_pruned_alone():
    g = build_dependency_graph(_ChannelAttention(), torch.zeros(2, 5, 8))
    assert not any(t == "temperature" for grp in g.groups for t, _ in grp.index)
    assert g.groups  # the rest stays prunable


class _BiasedAttention(nn.Module):
    """A learned per-head bias passed to SDPA as its mask (timm CoAtNet's relative
    position bias)."""

    def __init__(self, heads=2, dim=8, tokens=5):
        super().__init__()
        self.heads = heads
        self.bias = nn.Parameter(torch.zeros(heads, tokens, tokens))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, 3)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        o = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=self.bias, scale=0.5)
        return self.proj(o.transpose(1, 2).reshape(b, n, -1))


def test_an_attention_mask_from_parameters_is_kept_whole():
    g = build_dependency_graph(_BiasedAttention(), torch.zeros(2, 5, 8))
    assert not any(t == "bias" for grp in g.groups for t, _ in grp.index)
    assert any(("qkv.weight", 0) in grp.index for grp in g.groups)  # head dims still go


def test_a_sum_over_split_slices_keeps_the_channels_it_adds_up():
    class Radix(nn.Module):  # timm ResNeSt's split attention: (B, R*C) -> (B, R, C) -> sum
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)
            self.fc = nn.Conv2d(4, 3, 1)

        def forward(self, x):
            y = self.conv(x)
            y = y.reshape(y.shape[0], 2, 4, *y.shape[2:]).sum(dim=1)
            return self.fc(y)

    g = build_dependency_graph(Radix(), torch.zeros(1, 3, 4, 4))
    (grp,) = g.groups
    assert grp.size == 4 and ("fc.weight", 1) in grp.index and grp.exact
    assert grp.index[("conv.weight", 0)].tolist() == [[0, 4], [1, 5], [2, 6], [3, 7]]
