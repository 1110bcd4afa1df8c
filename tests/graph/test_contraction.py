"""Attention variants the tracer follows through matrix products, reductions and
indexing (``graph/contraction.py``, ``graph/dual.py``): talking heads, cross-covariance
attention, stacked branches, a parameter read by position, ``C // num_heads``."""

import sys
from pathlib import Path

import pytest
import torch
from attention_models import Net, example

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "structured"))
from graph_helpers import fresh_reload_errors, prune_kind  # noqa: E402
from structured_helpers import check_equivalence  # noqa: E402

KINDS = ["talking", "xca", "stacked", "weighted", "query"]


def _pruned(kind):
    return prune_kind(Net, example, kind)


def test_talking_heads_keep_the_heads_and_prune_the_head_dims():
    model, _ = _pruned("talking")
    b = model.block
    assert b.proj_w.out_features == 4  # heads meet v's heads: kept
    assert (b.proj_l.out_features, b.proj_w.in_features) == (2, 2)  # mixed heads between
    assert b.qkv.out_features == 24 and b.proj.in_features == 8  # 4 heads x 2 of 4 dims


def test_cross_covariance_attention_prunes_query_key_and_value_dims_together():
    model, _ = _pruned("xca")
    b = model.block
    assert (b.qkv.out_features, b.proj.in_features) == (24, 8)
    assert b.temperature.shape == (2, 1, 1)  # per head, read across channels: kept


def test_stacked_branches_lose_the_same_channels():
    model, _ = _pruned("stacked")
    b = model.block
    assert [p.out_channels for p in b.paths] == [4, 4]
    assert (b.fc.in_channels, b.fc.out_channels, model.head.in_channels) == (4, 8, 4)


def test_a_parameter_read_by_position_is_not_cut():
    model, _ = _pruned("weighted")
    assert model.block.weights.shape == (3,)
    assert model.block.trunk.out_features == 4


def test_a_reshape_by_the_input_width_ties_the_widths():
    model, _ = _pruned("query")
    b = model.block
    assert model.stem.out_features == 8
    assert b.wq.out_features == b.wk.out_features == b.wv.out_features == 8


@pytest.mark.parametrize("kind", KINDS)
def test_dead_units_pruned_leave_the_outputs_unchanged(kind):
    torch.manual_seed(1)
    stats = check_equivalence(Net(kind), example(kind), atol=1e-5)
    assert stats["params_after"] < stats["params_before"]


def test_pruned_models_reload_in_a_fresh_process(tmp_path):
    errors = fresh_reload_errors(tmp_path, "attention_models", KINDS, _pruned)
    assert sorted(errors) == sorted(KINDS)
    assert max(errors.values()) <= 1e-5
