"""Layouts found by probing the block: fused q/k/v, gate_up, MQA, ALiBi, parallel blocks."""

import pytest
import torch
from torch import nn

from prunekit.errors import UnsupportedOpError
from prunekit.llm.blocks import find_blocks, weight_2d
from prunekit.llm.structured import block_layouts, layer_shapes, prune_heads, prune_mlp_neurons
from prunekit.llm.structured.discover import discover_layout
from prunekit.llm.structured.families import table_layout
from tests.llm.conftest import main_output, tiny_llama, transformers

KW = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=8, vocab_size=128,
          max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _tiny(family: str):
    torch.manual_seed(0)
    t = transformers
    configs = {
        "gpt_neox": lambda: t.GPTNeoXConfig(**KW, intermediate_size=96),
        "phi": lambda: t.PhiConfig(**KW, intermediate_size=96, partial_rotary_factor=0.5),
        "phi3": lambda: t.Phi3Config(**KW, num_key_value_heads=4, intermediate_size=96),
        "bloom": lambda: t.BloomConfig(**{k: v for k, v in KW.items() if k != "max_position_embeddings"}),
        "falcon": lambda: t.FalconConfig(**KW),  # multi-query: one key/value head
        "starcoder2": lambda: t.Starcoder2Config(**KW, num_key_value_heads=4, intermediate_size=96),
    }
    return t.AutoModelForCausalLM.from_config(configs[family]()).eval()


IDS = {"input_ids": torch.randint(3, 128, (2, 12), generator=torch.Generator().manual_seed(1))}


def test_probe_finds_the_same_layout_as_the_name_table_on_llama():
    model = tiny_llama()
    table = table_layout(find_blocks(model)[1][0], model.config)
    found = discover_layout(model, 0)
    assert found.attention.rows == table.attention.rows
    assert found.attention.cols == table.attention.cols
    assert (found.attention.heads_per_unit, found.attention.head_dim) == (2, 16)
    assert found.mlp.inp == "mlp.down_proj" and found.mlp.outs == table.mlp.outs


@pytest.mark.parametrize("family,units,per", [("gpt_neox", 8, 1), ("phi", 8, 1), ("phi3", 4, 2),
                                              ("bloom", 8, 1), ("falcon", 8, 1), ("starcoder2", 4, 2)])
def test_removing_a_unit_whose_output_columns_are_zero_keeps_logits(family, units, per):
    model = _tiny(family)
    lay = block_layouts(model, [0])[0].attention
    assert (lay.n_units, lay.heads_per_unit) == (units, per)
    block = find_blocks(model)[1][0]
    with torch.no_grad():
        weight_2d(block.get_submodule(lay.o))[:, list(lay.cols[1])] = 0
    before = main_output(model, IDS)
    prune_heads(model, {0: [1]})
    assert layer_shapes(model)[0]["num_heads"] == (units - 1) * per
    assert torch.allclose(main_output(model, IDS), before, atol=1e-5)


def test_fused_qkv_rows_of_gpt_neox_are_interleaved_per_head():
    lay = block_layouts(_tiny("gpt_neox"), [0])[0].attention
    rows = lay.rows["attention.query_key_value"]
    assert rows[0] == tuple(range(0, 24)) and rows[1] == tuple(range(24, 48))  # [head, (q, k, v), 8]


def test_bloom_keeps_the_alibi_slopes_of_its_remaining_heads():
    model = _tiny("bloom")
    block = find_blocks(model)[1][1]
    lay = block_layouts(model, [1])[1].attention
    with torch.no_grad():
        weight_2d(block.get_submodule(lay.o))[:, list(lay.cols[0]) + list(lay.cols[5])] = 0
    before = main_output(model, IDS)
    prune_heads(model, {1: [0, 5]})
    assert layer_shapes(model)[1]["alibi_heads"] == [1, 2, 3, 4, 6, 7]
    assert model.config.n_head == 8  # the slopes are computed for the original heads
    assert torch.allclose(main_output(model, IDS), before, atol=1e-5)


@pytest.mark.parametrize("family,fused", [("phi", False), ("phi3", True)])
def test_mlp_neurons_found_for_fc1_fc2_and_fused_gate_up(family, fused):
    model = _tiny(family)
    mlp = block_layouts(model, [0])[0].mlp
    assert mlp.size == 96
    rows = next(iter(mlp.outs.values()))
    assert rows[5] == ((5, 101) if fused else (5,))
    with torch.no_grad():
        weight_2d(find_blocks(model)[1][0].get_submodule(mlp.inp))[:, [5, 9]] = 0
    before = main_output(model, IDS)
    prune_mlp_neurons(model, {0: [5, 9]})
    assert layer_shapes(model)[0]["intermediate_size"] == 94
    assert torch.allclose(main_output(model, IDS), before, atol=1e-5)


class _NoAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(8, 8)
        self.out = nn.Linear(8, 8)

    def forward(self, hidden_states):
        return self.out(self.mix(hidden_states))


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.config = transformers.PretrainedConfig(hidden_size=8, num_attention_heads=2, vocab_size=16)
        self.embed = nn.Embedding(16, 8)
        self.layers = nn.ModuleList([_NoAttention(), _NoAttention()])

    def forward(self, input_ids, **_):
        h = self.embed(input_ids)
        for layer in self.layers:
            h = layer(h)
        return h


def test_a_block_without_an_attention_module_has_no_heads_and_removing_them_is_named_in_the_error():
    layouts = block_layouts(_Model())
    assert layouts[0].attention is None
    with pytest.raises(UnsupportedOpError, match=r"layers\.0 \(_NoAttention\): this block's token mixer has no"):
        prune_heads(_Model(), {0: [1]})
