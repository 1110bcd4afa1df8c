"""Heads of a mixture of attention heads (JetMoE): queries / outputs are routed 3-D experts."""

import sys
from pathlib import Path

import pytest
import torch

from prunekit.errors import ModelError
from prunekit.llm.structured import (
    LAYER_SHAPES_FIELD,
    StructuredConfig,
    block_layouts,
    prune_heads,
    structured_prune,
)
from tests.llm.conftest import fresh_reload_diff, main_output, save_with_logits, transformers  # noqa: F401  (skips without transformers)

IDS = {"input_ids": torch.randint(3, 128, (2, 12), generator=torch.Generator().manual_seed(1))}


def tiny_jetmoe():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from llm_families_zoo import build

    torch.manual_seed(0)
    return build("jetmoe").eval()


def test_layout_covers_key_value_rows_query_experts_and_output_columns():
    model = tiny_jetmoe()  # 4 key/value heads of 8 channels, top-2 of 8 attention experts
    att = block_layouts(model, [0])[0].attention
    assert att.o == "" and att.n_units == 4 and att.heads_per_unit == 2 and att.head_dim == 8
    kv = att.rows["self_attention.kv_proj"]
    assert kv[1] == tuple(range(8, 16)) + tuple(range(40, 48))  # its key half and its value half
    assert att.params["self_attention.experts.input_linear.weight"] == (1, att.cols)
    assert att.params["self_attention.experts.output_linear.weight"] == (2, att.cols)
    assert att.reader == "self_attention.experts.output_linear.weight"


def test_removing_a_head_whose_output_columns_are_zero_keeps_logits():
    model = tiny_jetmoe()
    att = model.model.layers[0].self_attention
    with torch.no_grad():
        att.experts.output_linear.weight[:, :, 16:24] = 0  # unit 2 writes nothing
    before = main_output(model, IDS)
    prune_heads(model, {0: [2]})
    assert tuple(att.kv_proj.weight.shape) == (48, 64)
    assert tuple(att.experts.input_linear.weight.shape) == (8, 24, 64)
    assert tuple(att.experts.output_linear.weight.shape) == (8, 64, 24)
    assert (att.num_key_value_heads, att.num_heads, att.kv_projection_size, att.experts.hidden_size) == (3, 6, 24, 24)
    assert att.experts.input_size == 64  # the model width stays
    assert (main_output(model, IDS) - before).abs().max().item() <= 1e-5
    assert model.config.num_key_value_heads == 4  # block 1 keeps its heads: per-layer shapes recorded
    assert getattr(model.config, LAYER_SHAPES_FIELD)[0]["num_kv_heads"] == 3


def test_removing_every_head_is_an_error_and_changes_nothing():
    model = tiny_jetmoe()
    with pytest.raises(ModelError, match="keep at least one"):
        prune_heads(model, {0: [0, 1, 2, 3]})
    assert tuple(model.model.layers[0].self_attention.kv_proj.weight.shape) == (64, 64)



@pytest.mark.parametrize("scope", ["layer", "global"])
def test_structured_heads_round_trip_in_a_fresh_process(scope, tmp_path):
    model = tiny_jetmoe()
    plan = structured_prune(model, [IDS], StructuredConfig(heads=0.25, scope=scope))
    assert sum(len(v) for v in plan["heads"].values()) == 2  # a quarter of 2 x 4 units
    save_with_logits(model, tmp_path, IDS)
    assert fresh_reload_diff(tmp_path) <= 1e-4


def test_an_attention_class_that_cannot_be_rebuilt_is_an_error_and_changes_nothing():
    from prunekit.errors import UnsupportedOpError

    model = tiny_jetmoe()
    att = model.model.layers[0].self_attention

    class JetMoeAttentionNeedingMore(type(att)):
        def __init__(self, config, layer_idx, extra):  # not buildable as cls(config, layer_idx)
            super().__init__(config, layer_idx)

    att.__class__ = JetMoeAttentionNeedingMore
    before = main_output(model, IDS)
    with pytest.raises(UnsupportedOpError, match="JetMoeAttentionNeedingMore: cannot rebuild it"):
        prune_heads(model, {0: [1]})
    assert tuple(att.kv_proj.weight.shape) == (64, 64) and att.num_key_value_heads == 4
    assert tuple(att.experts.output_linear.weight.shape) == (8, 64, 32)
    assert torch.equal(main_output(model, IDS), before)
