"""Attention units split between parallel projections (ZAYA's current / delayed value halves),
and a layout probe that an all-zero parameter (ZAYA's ``qk_norm.temp``) does not blind."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.errors import ModelError, UnsupportedOpError
from prunekit.llm.structured import (
    StructuredConfig,
    block_layouts,
    prune_heads,
    structured_prune,
)
from prunekit.llm.structured.heads_attrs import conv_group_attributes
from prunekit.llm.structured.heads_partition import balanced_removal, check_balanced, owner_partitions, per_part
from prunekit.llm.structured.heads_probe import nonzero_parameters
from tests.llm.conftest import fresh_reload_diff, main_output, save_with_logits, transformers  # noqa: F401  (skips without transformers)

IDS = {"input_ids": torch.randint(3, 128, (2, 16), generator=torch.Generator().manual_seed(1))}
V_CUR, V_DEL = "self_attn.qkv_proj.v_proj_current", "self_attn.qkv_proj.v_proj_delayed"


def build(family: str) -> nn.Module:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from llm_families_zoo import build as zoo_build

    return zoo_build(family).eval()


def _live_temperature(model: nn.Module) -> None:
    """Nonzero key temperatures, so the query / key rows (and their convolutions) matter."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.qk_norm.temp.copy_(torch.rand(layer.self_attn.qk_norm.temp.shape, generator=g) + 0.5)


# -- pure rules -----------------------------------------------------------------------------
def test_owner_partitions_needs_a_regular_split():
    rows = {"q": ((0,), (1,), (2,), (3,)), "a": ((0, 1), (2, 3), (), ()), "b": ((), (), (0, 1), (2, 3))}
    assert owner_partitions(rows) == {"a": (0, 1), "b": (2, 3)}
    assert owner_partitions({"q": ((0,), (1,))}) is None                                     # nothing split
    assert owner_partitions({"a": ((0,), (1,), ()), "b": ((), (), (0,))}) is None            # 2 and 1 units
    assert owner_partitions({"a": ((0,), (1,)), "b": ((), (0,))}) is None                    # unit 1 in both
    assert owner_partitions({"a": ((0,), ()), "b": ((), (0, 1))}) is None                    # 1 and 2 rows


def test_balanced_removal_takes_as_many_from_each_part_its_lowest():
    parts = {"a": (0, 1, 2, 3), "b": (4, 5, 6, 7)}
    scores = torch.tensor([4.0, 1.0, 3.0, 2.0, 0.1, 0.2, 0.3, 9.0])
    assert balanced_removal(scores, 2, parts, "x") == [1, 4]      # not the two lowest overall (4, 5)
    assert balanced_removal(scores, 1, parts, "x") == [1, 4]      # half up: never silently none
    assert balanced_removal(scores, 3, parts, "x") == [1, 3, 4, 5]  # 1.5 per part -> 2
    assert balanced_removal(scores, 8, parts, "x") == [1, 2, 3, 4, 5, 6]  # never a whole part: 3 of 4 each
    assert per_part(1, {"a": (0, 1), "b": (2, 3), "c": (4, 5)}, "x") == 1
    with pytest.raises(UnsupportedOpError, match="one group each"):
        per_part(1, {"a": (0,), "b": (1,)}, "attn")
    check_balanced([0, 5], parts, "x")
    with pytest.raises(ModelError, match="remove as many groups from each"):
        check_balanced([0, 1], parts, "x")
    with pytest.raises(ModelError, match="remove as many groups from each"):
        check_balanced(list(range(8)), parts, "x")                 # every part emptied


def test_nonzero_parameters_restores_exactly_even_on_error():
    m = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    with torch.no_grad():
        m[0].bias.zero_()
        m[1].bias.copy_(torch.tensor([-0.0, 0.0, -0.0]))
    weight = m[0].weight.detach().clone()
    with pytest.raises(RuntimeError, match="inside"):
        with nonzero_parameters(m) as changed:
            assert changed == ["0.bias", "1.bias"]
            assert bool((m[0].bias != 0).all()) and bool((m[1].bias != 0).all())
            raise RuntimeError("inside")
    assert torch.equal(m[0].weight, weight)                              # not all zero: untouched
    assert not bool(m[0].bias.any()) and not bool(torch.signbit(m[0].bias).any())
    assert torch.signbit(m[1].bias).tolist() == [True, False, True]       # -0.0 restored bit for bit


def test_a_grouped_conv_loses_whole_groups_with_the_heads():
    block = nn.Module()
    block.conv = nn.Conv1d(12, 12, 2, groups=4)                   # 4 heads of 3 channels
    block.depth = nn.Conv1d(12, 12, 2, groups=12)                 # depthwise: left to the surgery rule
    units = ((0, 1, 2, 6, 7, 8), (3, 4, 5, 9, 10, 11))           # 2 units of 2 heads each
    attrs = conv_group_attributes(block, {"conv.weight": (0, units), "depth.weight": (0, units)}, [0])
    assert [(n, v) for _, n, v in attrs] == [("groups", 2), ("in_channels", 6)]
    inside = ((0, 3, 6, 9), (1, 4, 7, 10), (2, 5, 8, 11))        # one channel of every group per unit
    assert conv_group_attributes(block, {"conv.weight": (0, inside)}, [0]) == []


# -- ZAYA ---------------------------------------------------------------------------------------
def test_zaya_layout_splits_the_groups_between_the_value_halves_and_sees_query_key_rows():
    model = build("zaya")
    temp = model.model.layers[0].self_attn.qk_norm.temp
    assert not bool(temp.any())                                  # the probe must not depend on it
    att = block_layouts(model, [0])[0].attention
    assert att.n_units == 4 and att.heads_per_unit == 2
    assert att.partitions == {V_CUR: (0, 1), V_DEL: (2, 3)}
    assert [len(r) for r in att.rows[V_CUR]] == [8, 8, 0, 0] and [len(r) for r in att.rows[V_DEL]] == [0, 0, 8, 8]
    assert [len(r) for r in att.rows["self_attn.qkv_proj.q_proj"]] == [16, 16, 16, 16]
    assert [len(r) for r in att.rows["self_attn.qkv_proj.k_proj"]] == [8, 8, 8, 8]
    assert att.params["self_attn.qk_norm.temp"] == (0, ((0,), (1,), (2,), (3,)))
    assert not bool(temp.any())                                  # restored after the probe


def test_zaya_removing_dead_groups_one_per_value_half_keeps_logits():
    model = build("zaya")
    _live_temperature(model)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[:, 16:48] = 0.0       # groups 1 and 2: columns 16..47
    before = main_output(model, IDS)
    prune_heads(model, {0: [1, 2], 1: [1, 2]})
    attn = model.model.layers[0].self_attn
    assert model.config.num_key_value_heads == 2 and model.config.num_attention_heads == 4
    assert attn.qkv_proj.v_proj_current.weight.shape == (8, 64) == attn.qkv_proj.v_proj_delayed.weight.shape
    assert attn.qkv_proj.conv_qk_grouped.groups == 6 and attn.qk_norm.temp.shape == (2,)
    assert (main_output(model, IDS) - before).abs().max() <= 1e-5


def test_zaya_removing_live_groups_changes_logits():
    model = build("zaya")
    _live_temperature(model)
    before = main_output(model, IDS)
    prune_heads(model, {0: [0, 3]})
    assert (main_output(model, IDS) - before).abs().max() > 1e-4


def test_zaya_uneven_request_is_refused_and_the_model_unchanged():
    model = build("zaya")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with pytest.raises(ModelError, match="v_proj_current.*v_proj_delayed.*as many groups from each"):
        prune_heads(model, {0: [0, 1]})
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    assert model.config.num_key_value_heads == 4



def test_zaya_heads_quarter_round_trip_in_a_fresh_process(tmp_path):
    model = build("zaya")
    _live_temperature(model)
    plan = structured_prune(model, [IDS], StructuredConfig(heads=0.25))
    for i, drop in plan["heads"].items():                        # 0.25 of 4 is 1: one from each half
        assert len(drop) == 2 and len(set(drop) & {0, 1}) == 1, (i, drop)
    assert model.config.num_key_value_heads == 2
    save_with_logits(model, tmp_path, IDS)
    assert fresh_reload_diff(tmp_path) <= 1e-4


def test_llama_control_has_no_partitions_and_keeps_its_count():
    model = build("llama")
    att = block_layouts(model, [0])[0].attention
    assert att.partitions == {}
    plan = structured_prune(model, [IDS], StructuredConfig(heads=0.25))
    n = att.n_units
    assert n == 4 and all(len(d) == 1 for d in plan["heads"].values())   # 0.25 of 4: one group, no parts
    assert sorted(plan["heads"]) == [0, 1]
    kv = model.model.layers[0].self_attn.k_proj.weight.shape[0] // att.head_dim
    assert kv == 3
