"""Patterns the tracer once got wrong, each in a tiny module (``pattern_models.py``):
one-channel gates broadcast over every channel (FocalNet), q / k / v projected and split
into heads separately (NextViT, Twins), residual units of several channels tied to whole
heads by a fractional count, a lazily traced parameter-derived bias with second labels
(Swin-v2-cr), and stale sizes held by several equal attributes (HaloNet)."""

import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from pattern_models import KINDS, Net, example

from prunekit.structured import StructuredConfig, StructuredPruner, prune_channels_

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "structured"))
from graph_helpers import fresh_reload_errors, prune_kind  # noqa: E402
from structured_helpers import kill_units  # noqa: E402


def _pruned(kind):
    return prune_kind(Net, example, kind)


def test_one_channel_gates_stay_while_the_channels_they_scale_go():
    model, _ = _pruned("gated")
    b = model.block
    assert b.f.out_channels == 2 * 4 + 3  # query and context halved, the 3 gates kept
    assert [layer.out_channels for layer in b.layers] == [4, 4]
    assert (b.h.out_channels, b.proj.out_channels, model.stem.out_channels) == (4, 4, 4)


def test_separate_query_key_value_projections_lose_the_same_heads():
    model, _ = _pruned("separate")
    b = model.block
    assert b.q.out_features == b.k.out_features == b.v.out_features == 8  # 2 of 3 heads of 4
    assert b.num_heads == 2 and b.head_dim == 4
    assert model.stem.out_features == b.proj.out_features == 8  # reshape(B, N, C): C = 8


def test_residual_units_of_three_channels_tie_to_heads_of_four_by_a_fraction():
    torch.manual_seed(0)
    pruner = StructuredPruner(Net("triples").eval(), example("triples"), StructuredConfig(ratio=0.5))
    assert Fraction(4, 3) in [f for _, _, f in pruner.graph.ties]
    model, _ = _pruned("triples")
    b = model.block
    assert b.q.out_features == b.v.out_features == 12 and b.num_heads == 3  # 3 heads of 4
    assert model.stem.out_features == 12  # 4 units of 3 channels


def test_whole_heads_read_with_the_input_width_prune_the_residual_with_them():
    model, _ = _pruned("subsampled")
    b = model.block
    assert (b.q.out_features, b.kv.out_features, b.num_heads) == (8, 16, 1)
    assert model.stem.out_features == 8  # C // num_heads keeps its 8 channels per head


def test_a_lazily_traced_bias_with_second_labels_is_followed():
    model, _ = _pruned("coords")
    b = model.block
    assert b.qkv.out_features == 24 and b.proj.in_features == 8  # head dims pruned
    assert b.meta[2].out_features == 2  # the per-head bias table stays whole


def test_equal_size_attributes_each_fix_their_own_call():
    halo = pytest.importorskip("timm.layers.halo_attn")

    class Halo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.blocks = torch.nn.ModuleList(halo.HaloAttn(16, 16, num_heads=2, dim_head=8,
                                                            block_size=8, halo_size=1)
                                              for _ in range(2))
            self.head = torch.nn.Linear(16, 5)

        def forward(self, x):
            x = self.stem(x)
            for block in self.blocks:
                x = x + block(x)
            return self.head(x.mean((2, 3)))

    torch.manual_seed(0)
    model, x = Halo().eval(), torch.randn(1, 3, 16, 16)
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    with torch.no_grad():
        assert model(x).shape == (1, 5)
    for block in model.blocks:  # dim_head_qk == dim_head_v == block_size == 8 before
        assert (block.dim_head_qk, block.dim_head_v, block.block_size) == (4, 4, 8)
        assert block.q.out_channels == 8 and block.kv.out_channels == 16


@pytest.mark.parametrize("kind", KINDS)
def test_dead_units_pruned_with_their_ties_leave_the_outputs_unchanged(kind):
    torch.manual_seed(1)
    model, x = Net(kind).eval(), example(kind)
    pruner = StructuredPruner(model, x, StructuredConfig(ratio=0.5))
    removed = sum(len(c.remove) for c in pruner.choices)
    assert removed > 0
    kill_units(model, pruner)  # every chosen unit (tied groups too) made provably dead
    with torch.no_grad():
        before = model(x)
    params = sum(p.numel() for p in model.parameters())
    pruner.apply()
    with torch.no_grad():
        after = model(x)
    assert sum(p.numel() for p in model.parameters()) < params
    assert (after - before).abs().max().item() <= 1e-5 * max(1.0, before.abs().max().item())


def test_pruned_patterns_reload_in_a_fresh_process(tmp_path):
    errors = fresh_reload_errors(tmp_path, "pattern_models", KINDS, _pruned)
    assert sorted(errors) == sorted(KINDS)
    assert max(errors.values()) <= 1e-5
