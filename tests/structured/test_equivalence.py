"""Output equivalence on real torchvision architectures.

For each model: choose units in every exact group, make them provably dead (zero all
their parameter slices), prune them physically, and check the outputs match to 1e-5.
"""

import pytest
import torch

torchvision = pytest.importorskip("torchvision")
from structured_helpers import check_equivalence  # noqa: E402

tvm = torchvision.models


def _small_vit():
    return tvm.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                 hidden_dim=32, mlp_dim=64, num_classes=10)


def _small_swin(v2=False):
    from torchvision.models.swin_transformer import (
        PatchMergingV2,
        SwinTransformer,
        SwinTransformerBlockV2,
    )
    extra = dict(block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2) if v2 else {}
    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                           window_size=[4, 4], num_classes=10, **extra)


def _small_maxvit():
    from torchvision.models.maxvit import MaxVit
    return MaxVit(input_size=(32, 32), stem_channels=16, partition_size=2,
                  block_channels=[16, 32], block_layers=[1, 1], head_dim=8,
                  stochastic_depth_prob=0.0, num_classes=10)


CASES = {
    "resnet18": (lambda: tvm.resnet18(num_classes=10), 32),
    "densenet121": (lambda: tvm.densenet121(num_classes=10), 32),
    "mobilenet_v2": (lambda: tvm.mobilenet_v2(num_classes=10), 32),
    "mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(num_classes=10), 32),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(num_classes=10), 32),
    "shufflenet_v2_x0_5": (lambda: tvm.shufflenet_v2_x0_5(num_classes=10), 32),
    "convnext_tiny": (lambda: tvm.convnext_tiny(num_classes=10), 32),
    "regnet_x_400mf": (lambda: tvm.regnet_x_400mf(num_classes=10), 32),
    "regnet_y_400mf": (lambda: tvm.regnet_y_400mf(num_classes=10), 32),
    "squeezenet1_1": (lambda: tvm.squeezenet1_1(num_classes=10), 64),
    "mnasnet0_5": (lambda: tvm.mnasnet0_5(num_classes=10), 32),
    "googlenet": (lambda: tvm.googlenet(num_classes=10, init_weights=False), 32),
    "inception_v3": (lambda: tvm.inception_v3(num_classes=10, init_weights=False), 80),
    "vit": (_small_vit, 32),
    "swin": (_small_swin, 32),
    "swin_v2": (lambda: _small_swin(v2=True), 32),
    "maxvit": (_small_maxvit, 32),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_dead_units_prune_to_identical_outputs(name):
    build, size = CASES[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(1, 3, size, size)
    stats = check_equivalence(model, x)
    assert stats["groups"] >= 1
    assert stats["params_after"] < stats["params_before"]




class _AroundAttention(torch.nn.Module):
    """Linear -> attention -> Linear: the residual width and the head dims (tied:
    width = heads x head_dim) can both be pruned exactly (no norm in between)."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.a = torch.nn.Linear(8, 16)
        if kind == "mha":
            self.attn = torch.nn.MultiheadAttention(16, 4, batch_first=True)
        else:
            from torchvision.models.swin_transformer import ShiftedWindowAttention

            self.attn = ShiftedWindowAttention(16, [2, 2], [0, 0], 4)
        self.b = torch.nn.Linear(16, 8)

    def forward(self, x):
        h = self.a(x)
        if self.kind == "mha":
            return self.b(self.attn(h, h, h, need_weights=False)[0])
        return self.b(self.attn(h))


@pytest.mark.parametrize("kind,shape", [("mha", (2, 5, 8)), ("swin", (1, 4, 4, 8))])
def test_pruned_head_dims_keep_the_trained_attention_scale(kind, shape):
    from structured_helpers import kill_units

    from prunekit.structured import StructuredConfig, StructuredPruner

    torch.manual_seed(0)
    model = _AroundAttention(kind).eval()
    x = torch.randn(*shape)
    pruner = StructuredPruner(model, x, StructuredConfig(ratio=0.5))
    by_size = {c.size: c for c in pruner.choices}
    residual, head_dims = by_size[16], by_size[4]
    residual.remove = torch.tensor([1, 3, 4, 6, 9, 11, 12, 15])  # 8 of 16 kept
    head_dims.remove = torch.tensor([0, 2])  # 2 of 4 dims in every head: 4 x 2 = 8
    kill_units(model, pruner)
    with torch.no_grad():
        before = model(x)
    pruner.apply()
    assert model.attn.qkv.in_features == 8 if kind == "swin" else model.attn.head_dim == 2
    with torch.no_grad():
        after = model(x)
    # attention now divides by sqrt(2) instead of sqrt(4); q carries the difference
    assert torch.allclose(after, before, atol=1e-5), (after - before).abs().max()


class _GroupedQueryAttention(torch.nn.Module):
    """4 query heads share 2 key/value heads (``enable_gqa``); head size read from the
    weights, so pruning head dims needs no rule."""

    def __init__(self, dim=16, heads=4, kv_heads=2, head=4):
        super().__init__()
        self.heads, self.kv_heads = heads, kv_heads
        self.q = torch.nn.Linear(dim, heads * head)
        self.k = torch.nn.Linear(dim, kv_heads * head)
        self.v = torch.nn.Linear(dim, kv_heads * head)
        self.o = torch.nn.Linear(heads * head, dim)

    def forward(self, x):
        b, n, _ = x.shape
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)
        k = self.k(x).view(b, n, self.kv_heads, -1).transpose(1, 2)
        v = self.v(x).view(b, n, self.kv_heads, -1).transpose(1, 2)
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True, scale=0.5)
        return self.o(o.transpose(1, 2).reshape(b, n, -1))


def test_grouped_query_attention_prunes_value_dims_exactly():
    torch.manual_seed(0)
    stats = check_equivalence(_GroupedQueryAttention().eval(), torch.randn(2, 5, 16))
    assert stats["groups"] >= 1 and stats["params_after"] < stats["params_before"]


class _DefaultScaleAttention(_GroupedQueryAttention):
    """Same, but SDPA's default scale 1/sqrt(head_dim): query/key dims must stay."""

    def forward(self, x):
        b, n, _ = x.shape
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)
        k = self.k(x).view(b, n, self.kv_heads, -1).transpose(1, 2)
        v = self.v(x).view(b, n, self.kv_heads, -1).transpose(1, 2)
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        return self.o(o.transpose(1, 2).reshape(b, n, -1))


def test_default_attention_scale_keeps_query_key_dims_and_prunes_values():
    from prunekit.structured import StructuredConfig, prune_channels_

    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)
    assert check_equivalence(_DefaultScaleAttention().eval(), x)["groups"] >= 1
    model = _DefaultScaleAttention().eval()
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    assert model.q.out_features == 16 and model.k.out_features == 8  # temperature kept
    assert model.v.out_features == 4 and model.o.in_features == 8  # value dims halved
