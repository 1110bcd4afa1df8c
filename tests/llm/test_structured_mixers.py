"""Blocks without standard attention (Mamba, hybrids, RWKV): heads n/a, MLPs pruned, layers removed."""

import pytest
import torch
from torch import nn

from prunekit.errors import UnsupportedOpError
from prunekit.llm.structured import (
    StructuredConfig,
    block_layouts,
    prune_heads,
    structured_prune,
)
from prunekit.llm.structured.mixers import channels_used_elsewhere, mlp_layout, neuron_rows
from tests.llm.conftest import fresh_reload_diff, save_with_logits, transformers
from tests.llm.test_structured_discover import _Model

IDS = {"input_ids": torch.randint(3, 64, (2, 12), generator=torch.Generator().manual_seed(3))}


def tiny_mamba(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.MambaConfig(hidden_size=32, num_hidden_layers=2, vocab_size=64, state_size=8,
                                   expand=2, time_step_rank=4, use_cache=False)
    return transformers.MambaForCausalLM(cfg).eval()


def tiny_jamba(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.JambaConfig(hidden_size=32, num_hidden_layers=4, vocab_size=64, intermediate_size=64,
                                   num_attention_heads=4, num_key_value_heads=2, attn_layer_period=2,
                                   attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1,
                                   num_experts=4, num_experts_per_tok=2, mamba_d_state=8, mamba_dt_rank=4,
                                   use_cache=False, use_mamba_kernels=False, tie_word_embeddings=False)
    return transformers.JambaForCausalLM(cfg).eval()


def tiny_rwkv(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.RwkvConfig(hidden_size=32, num_hidden_layers=2, vocab_size=64, intermediate_size=48,
                                  attention_hidden_size=32, context_length=64, use_cache=False)
    return transformers.RwkvForCausalLM(cfg).eval()


def _save(model, folder):
    save_with_logits(model, folder, IDS)


def test_a_mamba_block_has_no_heads_and_no_mlp_and_heads_are_not_applicable():
    model = tiny_mamba()
    layouts = block_layouts(model)
    assert [(lay.attention, lay.mlp, lay.experts) for lay in layouts.values()] == [(None, None, None)] * 2
    before = sum(p.numel() for p in model.parameters())
    plan = structured_prune(model, [IDS], StructuredConfig(heads=0.25, mlp=0.25))
    assert set(plan["not_applicable"]) == {"heads", "mlp"}
    assert "MambaBlock" in plan["not_applicable"]["heads"]
    assert sum(p.numel() for p in model.parameters()) == before
    with pytest.raises(UnsupportedOpError, match=r"backbone\.layers\.0 \(MambaBlock\).*no attention heads"):
        prune_heads(model, {0: [0]})


def test_mamba_layer_removal_reloads_in_a_fresh_process(tmp_path):
    model = tiny_mamba()
    plan = structured_prune(model, [IDS], StructuredConfig(layers=1))
    assert len(plan["layers"]) == 1 and model.config.num_hidden_layers == 1
    assert not hasattr(model.config, "prunekit_layer_shapes")
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


def test_jamba_hybrid_prunes_attention_heads_and_mlp_and_leaves_the_mamba_mixers(tmp_path):
    model = tiny_jamba()
    layouts = block_layouts(model)
    assert [lay.attention is not None for lay in layouts.values()] == [False, True, False, True]
    assert [lay.mlp is not None for lay in layouts.values()] == [True, False, True, False]  # MoE at odd blocks
    mamba_in = model.model.layers[0].mamba.in_proj.weight.shape
    plan = structured_prune(model, [IDS], StructuredConfig(heads=0.5, mlp=0.25))
    assert plan["not_applicable"] == {}
    assert sorted(plan["heads"]) == [1, 3] and all(len(v) == 1 for v in plan["heads"].values())
    assert sorted(plan["mlp"]) == [0, 2] and all(len(v) == 16 for v in plan["mlp"].values())
    assert model.model.layers[0].mamba.in_proj.weight.shape == mamba_in
    assert model.model.layers[0].feed_forward.down_proj.weight.shape == (32, 48)
    assert model.model.layers[1].feed_forward.experts.down_proj.shape == (4, 32, 48)
    assert model.model.layers[1].self_attn.k_proj.weight.shape == (8, 32)
    # uniform: dense MLPs and experts keep 48, attention blocks 2 of 4 heads; plain from_pretrained
    assert not hasattr(model.config, "prunekit_layer_shapes")
    assert (model.config.intermediate_size, model.config.num_attention_heads) == (48, 2)
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


def test_rwkv_time_mixing_is_left_and_its_channel_mixing_mlp_is_pruned(tmp_path):
    model = tiny_rwkv()
    lay = block_layouts(model)[0]
    assert lay.attention is None
    assert lay.mlp.inp == "feed_forward.value" and set(lay.mlp.outs) == {"feed_forward.key"}
    plan = structured_prune(model, [IDS], StructuredConfig(heads=0.25, mlp=0.25))
    assert list(plan["not_applicable"]) == ["heads"]
    assert model.config.intermediate_size == 36
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


class _SSMLike(nn.Module):
    """in_proj -> (x, z); x passes a depthwise conv, is mixed across channels by a matrix
    parameter (like Mamba's state-space scan through B/C) and gated by z."""

    def __init__(self, mixing: bool = True):
        super().__init__()
        self.mixing = mixing
        self.in_proj = nn.Linear(8, 32)
        self.conv = nn.Conv1d(16, 16, 3, groups=16, padding=2)
        self.A = nn.Parameter(torch.randn(16, 16) * 0.1) if mixing else None
        self.out_proj = nn.Linear(16, 8)

    def forward(self, h):
        x, z = self.in_proj(h).chunk(2, dim=-1)
        x = self.conv(x.transpose(1, 2))[..., : h.shape[1]].transpose(1, 2)
        if self.mixing:
            x = x @ self.A
        return h + self.out_proj(x * torch.sigmoid(z))


class _GLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(8, 12), nn.Linear(8, 12), nn.Linear(12, 8)

    def forward(self, h):
        return h + self.down(torch.nn.functional.silu(self.gate(h)) * self.up(h))


def _record(block, width=8):
    """The probe's record for a block called on random hidden states."""
    linears = {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear)}
    rec = {"linears": linears, "leaves": {}, "inputs": {}, "order": [], "hidden": width}

    def hook(path):
        def fn(_m, args, out):
            rec["order"].append(path)
            rec["inputs"][path] = args[0]
            rec["leaves"][path] = leaf = out.detach().requires_grad_(True)
            return leaf.clone()
        return fn

    handles = [m.register_forward_hook(hook(p)) for p, m in linears.items()]
    with torch.enable_grad():
        block(torch.randn(1, 5, width, generator=torch.Generator().manual_seed(0)))
    for h in handles:
        h.remove()
    return rec


def test_channels_mixed_on_the_way_are_not_mlp_neurons():
    ssm = _SSMLike()
    rec = _record(ssm)
    assert neuron_rows(rec, "out_proj", ["in_proj"], 16) is None  # z rows exclusive, x rows reach every column
    assert mlp_layout(rec, ssm, ("",), set()) is None


def test_channels_read_by_another_parameter_are_not_mlp_neurons():
    ssm = _SSMLike(mixing=False)  # elementwise all the way, but the depthwise conv is sized by the channels
    rec = _record(ssm)
    rows = neuron_rows(rec, "out_proj", ["in_proj"], 16)
    assert rows == {"in_proj": tuple((j, j + 16) for j in range(16))}
    assert channels_used_elsewhere(ssm, ["out_proj", "in_proj"], 16, ("",)) == "conv.weight"
    assert mlp_layout(rec, ssm, ("",), set()) is None


def test_a_glu_mlp_maps_each_neuron_to_its_gate_and_up_rows():
    glu = _GLU()
    rec = _record(glu)
    lay = mlp_layout(rec, glu, ("",), set())
    assert lay.inp == "down" and lay.size == 12
    assert lay.outs == {"gate": tuple((j,) for j in range(12)), "up": tuple((j,) for j in range(12))}


class _TwoStreams(nn.Module):
    """A block carrying two copies of the hidden state (hyper-connections), with a GLU MLP."""

    def __init__(self):
        super().__init__()
        self.mlp = _GLU()

    def forward(self, hidden_states):
        x = hidden_states.unflatten(-1, (2, 8)).mean(-2)
        return hidden_states + self.mlp(x).repeat(1, 1, 2)


class _StreamsModel(_Model):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(16, 16)  # two streams of the config's hidden size 8
        self.layers = nn.ModuleList([_TwoStreams(), _TwoStreams()])


def test_a_block_carrying_several_streams_is_read_at_the_config_hidden_size():
    lay = block_layouts(_StreamsModel())[1]
    assert lay.attention is None
    assert lay.mlp.inp == "mlp.down" and lay.mlp.size == 12 and set(lay.mlp.outs) == {"mlp.gate", "mlp.up"}


def test_a_producer_silenced_by_zero_weights_keeps_the_elementwise_order():
    glu = _GLU()
    with torch.no_grad():
        glu.up.weight.zero_()  # xLSTM-style zero init: no gradient reaches the gate's rows
        glu.up.bias.zero_()
    lay = mlp_layout(_record(glu), glu, ("",), set())
    assert lay.outs == {"gate": tuple((j,) for j in range(12)), "up": tuple((j,) for j in range(12))}


class _MixerThenMLP(nn.Module):
    """A mixer whose input projection is as wide as a multiple of the MLP, then a GLU MLP."""

    def __init__(self):
        super().__init__()
        self.mixer = nn.ModuleDict({"in_proj": nn.Linear(8, 24), "out_proj": nn.Linear(12, 8)})
        self.mlp = _GLU()

    def forward(self, h):
        x, z = self.mixer["in_proj"](h).chunk(2, dim=-1)
        return self.mlp(h + self.mixer["out_proj"](x * torch.sigmoid(z)))


def test_another_mixers_input_projection_is_not_taken_for_an_mlp_producer():
    block = _MixerThenMLP()
    lay = mlp_layout(_record(block), block, ("",), set())  # the probe stops gradients at out_proj's output
    assert lay.inp == "mlp.down" and set(lay.outs) == {"mlp.gate", "mlp.up"}


def test_the_mlp_found_after_pruning_is_the_one_pruned():
    """LongCat-Flash has two equally wide MLPs per block; after one is pruned, the layout must
    still name it (the saved per-block shapes are read from it), not its unpruned twin."""
    import sys
    from pathlib import Path

    from prunekit.llm.structured import StructuredConfig, block_layouts, structured_prune

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from llm_families_zoo import build, example_ids

    model = build("longcat_flash")
    before = {i: lay.mlp.inp for i, lay in block_layouts(model).items() if lay.mlp is not None}
    assert before
    structured_prune(model, [{"input_ids": example_ids(length=16)}], StructuredConfig(mlp=0.25))
    after = {i: lay.mlp.inp for i, lay in block_layouts(model).items() if lay.mlp is not None}
    assert after == before
