"""Several attentions per block in a module list (LongCat-Flash's ``self_attn.0`` / ``self_attn.1``):
each its own head layout, pruned alike, reloaded with ``from_pretrained`` in a fresh process."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.errors import ModelError
from prunekit.llm.blocks import find_blocks
from prunekit.llm.structured import StructuredConfig, block_layouts, prune_heads, structured_prune
from prunekit.llm.structured.mixers import attention_paths
from tests.llm.conftest import fresh_reload_diff, main_output
from tests.llm.test_structured_mixers import _save

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from llm_families_zoo import build, example_ids  # noqa: E402

IDS = {"input_ids": example_ids()}


def test_every_attention_of_a_module_list_gets_its_own_head_layout():
    model = build("longcat_flash")
    block = find_blocks(model)[1][0]
    assert "Attention" not in type(block.self_attn[0]).__name__  # found by its list's name, not its class
    lay = block_layouts(model, [0])[0]
    assert [a.module for a in lay.attentions] == ["self_attn.0", "self_attn.1"]
    assert all(a.o == f"{a.module}.o_proj" and a.n_units == 8 for a in lay.attentions)
    assert lay.mlp is not None and not lay.mlp.inp.startswith("self_attn")


def test_siblings_of_another_class_or_that_never_ran_are_not_attentions():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.o = nn.Linear(4, 4), nn.Linear(4, 4)

    block = nn.Module()
    block.attn = nn.ModuleList([Attention(), Attention(), nn.Linear(4, 4)])
    assert attention_paths(block) == ["attn.0", "attn.1"]
    assert attention_paths(block, ran={"attn.0.q", "attn.0.o"}) == ["attn.0"]


def test_heads_of_both_attentions_go_alike_and_reload_with_from_pretrained(tmp_path):
    model = build("longcat_flash").eval()
    plan = structured_prune(model, [{"input_ids": example_ids(seed=2, batch=4, length=32)}],
                            StructuredConfig(heads=0.25))
    assert not plan["not_applicable"]
    assert sorted(plan["heads"]) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(len(v) == 2 for v in plan["heads"].values())
    for block in find_blocks(model)[1]:
        assert [a.o_proj.in_features for a in block.self_attn] == [96, 96]  # 6 of 8 heads of 16 channels
    assert model.config.num_attention_heads == 6 and getattr(model.config, "prunekit_layer_shapes", None) is None
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) <= 1e-4


def test_a_head_whose_output_columns_are_zero_goes_without_changing_the_logits():
    model = build("longcat_flash").eval()
    block = find_blocks(model)[1][0]
    atts = block_layouts(model, [0])[0].attentions
    with torch.no_grad():
        block.get_submodule(atts[0].o).weight[:, list(atts[0].cols[3])] = 0
        block.get_submodule(atts[1].o).weight[:, list(atts[1].cols[5])] = 0
    before = main_output(model, IDS)
    prune_heads(model, {(0, 0): [3], (0, 1): [5]})
    assert [a.o_proj.in_features for a in block.self_attn] == [112, 112]
    assert (main_output(model, IDS) - before).abs().max() <= 1e-5


def test_attentions_of_one_block_losing_different_counts_is_refused_before_any_change():
    model = build("longcat_flash")
    n = sum(p.numel() for p in model.parameters())
    with pytest.raises(ModelError, match=r"self_attn\.0.*self_attn\.1.*as many units"):
        prune_heads(model, {(0, 0): [3], (0, 1): [1, 5]})
    with pytest.raises(ModelError, match="attention 2 out of range"):
        prune_heads(model, {(0, 2): [3]})
    assert sum(p.numel() for p in model.parameters()) == n
