"""Heads and neurons of attention blocks beyond q/k/v/o: followers, norms over all heads, MLA, tuples.

Each family is built from a tiny config, pruned, saved, and reloaded in one fresh Python
process that compares logits with the saved ones.
"""

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from prunekit.llm.blocks import find_blocks
from prunekit.llm.structured import (
    LAYER_SHAPES_FIELD,
    StructuredConfig,
    block_layouts,
    layer_shapes,
    save_pretrained_model,
    structured_prune,
)
from prunekit.llm.structured.heads_followers import find_followers, partition, unit_owners
from prunekit.llm.structured.heads_internal import head_indexed, heads_and_width
from tests.llm.conftest import main_output, transformers

IDS = {"input_ids": torch.randint(3, 128, (2, 12), generator=torch.Generator().manual_seed(1))}
CALIB = [{"input_ids": torch.randint(3, 128, (2, 16), generator=torch.Generator().manual_seed(2))}]
KW = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=4, vocab_size=128,
          max_position_embeddings=64, intermediate_size=96, pad_token_id=0, bos_token_id=1, eos_token_id=2,
          tie_word_embeddings=False)


def _build(family: str) -> nn.Module:
    t = transformers
    moe = dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=48)
    configs = {
        "olmo2": lambda: t.Olmo2Config(**KW),                         # q_norm / k_norm over all heads
        "bitnet": lambda: t.BitNetConfig(**KW),                       # sub-norms before o_proj / down_proj
        "olmoe": lambda: t.OlmoeConfig(**KW, **moe),                  # k_norm over all KV groups, probed
        "gpt_oss": lambda: t.GptOssConfig(**{**KW, "head_dim": 8}, num_local_experts=8,
                                          num_experts_per_tok=2),    # per-head attention sinks
        "llama4_text": lambda: t.Llama4TextConfig(**{**KW, "head_dim": 8}, num_local_experts=4,
                                                  intermediate_size_mlp=96),  # router returns a tuple
        "openai-gpt": lambda: t.OpenAIGPTConfig(n_embd=64, n_layer=2, n_head=8, vocab_size=128,
                                                n_positions=64),     # no head_dim attribute
        "doge": lambda: t.DogeConfig(**KW),                           # dt_proj reads the values
        "diffllama": lambda: t.DiffLlamaConfig(**KW),                 # value halves pair the KV groups
        "xglm": lambda: t.XGLMConfig(d_model=64, num_layers=2, attention_heads=8, ffn_dim=96,
                                     vocab_size=128, max_position_embeddings=64),  # reshape by embed_dim
    }
    torch.manual_seed(0)
    return t.AutoModelForCausalLM.from_config(configs[family]()).eval()


RELOAD = textwrap.dedent("""
    import sys, torch
    from transformers import AutoModelForCausalLM
    from prunekit.io import load_tensors
    from prunekit.llm import load_pruned
    for folder in sys.argv[1:]:
        model = load_pruned(folder, AutoModelForCausalLM).eval()
        exp = load_tensors(folder + "/expected.safetensors")
        with torch.no_grad():
            print((model(input_ids=exp["input_ids"]).logits - exp["logits"]).abs().max().item())
""")


def _save(model: nn.Module, folder) -> None:
    from prunekit.io import save_tensors

    save_pretrained_model(model, folder)
    save_tensors({"logits": main_output(model, IDS).contiguous(), "input_ids": IDS["input_ids"]},
                 folder / "expected.safetensors")


CASES = {  # family, config -> (followers expected in block 0, kept num_heads, kept intermediate)
    ("olmo2", "heads"): ({"self_attn.q_norm.weight": 48, "self_attn.k_norm.weight": 24}, 6, 96),
    ("bitnet", "heads"): ({"self_attn.attn_sub_norm.weight": 48}, 6, 96),
    ("bitnet", "mlp"): ({"mlp.ffn_sub_norm.weight": 72}, 8, 72),
    ("olmoe", "heads"): ({"self_attn.q_norm.weight": 48, "self_attn.k_norm.weight": 24}, 6, None),
    ("gpt_oss", "heads"): ({"self_attn.sinks": 6}, 6, None),
    ("llama4_text", "heads"): ({}, 6, None),
    ("openai-gpt", "heads"): ({}, 6, None),
    ("xglm", "heads"): ({}, 6, None),
    ("doge", "heads"): ({"self_attn.A": 3, "self_attn.dt_proj.weight": 3}, 6, None),
    ("diffllama", "heads"): ({}, 4, None),   # probed: 2 units of 4 heads (2 paired KV heads); 0.25 of 2 is 1
}


def test_pruned_families_reload_in_a_fresh_process_with_equal_logits(tmp_path):
    folders = []
    for (family, what), (followers, heads, inter) in CASES.items():
        model = _build(family)
        path, blocks = find_blocks(model)
        structured_prune(model, CALIB, StructuredConfig(**{what: 0.25}))
        shapes = layer_shapes(model)[0]
        assert shapes["num_heads"] == heads, family
        if inter is not None:
            assert shapes["intermediate_size"] == inter, family
        for name, size in followers.items():
            assert blocks[0].get_parameter(name).shape[0] == size, (family, name)
        if family == "doge":  # its input columns are the kept value rows: 3 groups x 8
            assert blocks[0].self_attn.dt_proj.weight.shape == (3, 24)
        folder = tmp_path / f"{family}-{what}"
        _save(model, folder)
        folders.append(str(folder))
    out = subprocess.run([sys.executable, "-c", RELOAD, *folders], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    diffs = [float(v) for v in out.stdout.split()]
    assert len(diffs) == len(folders) and max(diffs) <= 1e-5, dict(zip(folders, diffs))


def test_olmoe_keeps_whole_kv_groups_although_k_norm_spans_every_group():
    model = _build("olmoe")
    att = block_layouts(model, [0])[0].attention
    assert (att.n_units, att.heads_per_unit, att.n_kv_heads) == (4, 2, 4)
    structured_prune(model, CALIB, StructuredConfig(heads=0.25))
    # OlmoeConfig has no head_dim field (6 heads would mean 64 // 6): the shapes are recorded for load_pruned
    assert [(s["num_heads"], s["num_kv_heads"], s["head_dim"]) for s in getattr(model.config, LAYER_SHAPES_FIELD)] \
        == [(6, 3, 8), (6, 3, 8)]
    assert main_output(model, IDS).shape == (2, 12, 128)


def test_removing_a_group_whose_output_is_zero_keeps_logits_and_drops_its_sinks():
    from prunekit.llm.structured import prune_heads

    model = _build("gpt_oss")
    block = find_blocks(model)[1][0]
    att = block_layouts(model, [0])[0].attention
    assert att.params == {"self_attn.sinks": (0, ((0, 1), (2, 3), (4, 5), (6, 7)))}
    sinks = block.self_attn.sinks.detach().clone()
    with torch.no_grad():
        block.get_submodule(att.o).weight[:, list(att.cols[2])] = 0
    before = main_output(model, IDS)
    prune_heads(model, {0: [2]})
    assert torch.allclose(main_output(model, IDS), before, atol=1e-5)
    assert torch.equal(block.self_attn.sinks.detach(), sinks[[0, 1, 2, 3, 6, 7]])


def test_unit_owners_and_partition_on_hand_made_tensors():
    scale = torch.ones(6, requires_grad=True)      # per channel, 3 units of 2
    shared = torch.ones(2, requires_grad=True)     # every unit reads both entries
    x = torch.arange(1.0, 7.0)
    target = x * scale * torch.cat([shared, shared, shared])
    owners = unit_owners(target.unsqueeze(0), ((0, 1), (2, 3), (4, 5)), [scale, shared])
    assert owners[0].tolist() == [0, 0, 1, 1, 2, 2]
    assert partition(owners[0], 3) == (0, ((0, 1), (2, 3), (4, 5)))
    assert partition(owners[1], 3) is None                      # shared: stays whole


def test_followers_are_not_searched_where_a_region_has_no_candidate():
    model = _build("openai-gpt")
    block = find_blocks(model)[1][0]
    att = block_layouts(model, [0])[0].attention
    assert find_followers(model, block, att.module, att.o, att.cols, set(att.rows) | {att.o}) == ({}, {})


def test_low_rank_bottlenecks_are_internal_and_v_head_dim_comes_from_the_head_count():
    t, f = True, False
    q_a = [torch.tensor([f, f])] * 2                             # feeds q_b_proj only
    q_b = [torch.tensor([t, f]), torch.tensor([f, t])]
    rope = [torch.tensor([t, f])] * 2                            # shared rotary key + internal rows
    rows = [[q_a[h], q_b[h], rope[h]] for h in range(2)]
    assert head_indexed(rows) == [1]

    class MLA:
        num_heads = 4
    assert heads_and_width(MLA(), None, 4 * 16, 24) == 16         # o_proj reads v_head_dim per head


@pytest.mark.parametrize("family", ["ernie4_5_moe"])
def test_grouped_score_correction_bias_loses_removed_experts(family):
    t = transformers
    cfg = t.Ernie4_5_MoeConfig(**KW, moe_num_experts=8, moe_k=2, moe_intermediate_size=48)
    torch.manual_seed(0)
    model = t.AutoModelForCausalLM.from_config(cfg).eval()
    structured_prune(model, CALIB, StructuredConfig(experts=0.25))
    block = find_blocks(model)[1][1]
    bias = [p for n, p in block.named_parameters() if n.endswith("e_score_correction_bias")]
    assert bias and bias[0].shape[-1] == 6
    assert main_output(model, IDS).shape == (2, 12, 128)


def test_a_removal_the_forward_cannot_take_is_undone_and_named():
    from prunekit.errors import UnsupportedOpError
    from prunekit.llm.structured import prune_heads

    t = transformers
    torch.manual_seed(0)
    cfg = t.TrOCRConfig(d_model=64, decoder_layers=2, decoder_attention_heads=8, decoder_ffn_dim=96,
                        vocab_size=128, max_position_embeddings=64)
    model = t.TrOCRForCausalLM(cfg).eval()  # reshapes its attention output to the input width
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    before = main_output(model, IDS)
    with pytest.raises(UnsupportedOpError, match="no longer runs after the removal"):
        prune_heads(model, {0: [1]})
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    assert block_layouts(model, [0])[0].attention.n_heads == 8
    assert torch.equal(main_output(model, IDS), before)


class _Mixer(nn.Module):
    """Splits its input into 4 heads of 4 and merges them back with ``merge`` (a probe target)."""

    def __init__(self, merge):
        super().__init__()
        self.heads, self.merge = 4, merge

    def forward(self, x):
        y = x[..., : self.heads * 4].reshape(*x.shape[:-1], self.heads, 4)
        return self.merge(y, x)


class _Tiny(nn.Module):
    config = None

    def __init__(self, merge):
        super().__init__()
        self.emb, self.mix = nn.Embedding(128, 16), _Mixer(merge)

    def forward(self, input_ids, use_cache=False):
        return self.mix(self.emb(input_ids))


def test_a_failure_is_tied_to_the_input_width_only_when_the_reshape_proves_it():
    from prunekit.llm.structured.heads_check import diagnose

    tied = _Tiny(lambda y, x: y.reshape(*x.shape[:-1], x.shape[-1]))  # like TrOCR: the input's width
    tied.mix.heads = 3  # as after removing a head: 12 columns no longer fill the 16 of the input
    failure = diagnose(tied)
    assert failure.module == "mix (_Mixer)" and failure.input_width == 16
    assert failure.reshape == ((1, 8, 3, 4), (1, 8, 16)) and failure.ties_input_width()
    other = _Tiny(lambda y, x: y.reshape(*x.shape[:-1], 5, 4))  # a fixed size that is not the input width
    other.mix.heads = 3
    failure = diagnose(other)
    assert failure.module == "mix (_Mixer)" and failure.reshape == ((1, 8, 3, 4), (1, 8, 5, 4))
    assert not failure.ties_input_width()
    assert diagnose(_Tiny(lambda y, x: y.reshape(*x.shape[:-1], 16))).module is None  # runs: no failure


def test_heads_tied_to_the_hidden_size_are_not_applicable_and_others_still_prune():
    """TrOCR reshapes its attention output to the input width: heads are n/a with the reason,
    nothing changes, the MLP is still pruned; GPT-2 and Llama heads still prune."""
    from prunekit.llm.structured.heads_check import TiedWidthError

    t = transformers
    torch.manual_seed(0)
    cfg = t.TrOCRConfig(d_model=64, decoder_layers=2, decoder_attention_heads=8, decoder_ffn_dim=96,
                        vocab_size=128, max_position_embeddings=64)
    model = t.TrOCRForCausalLM(cfg).eval()
    before = main_output(model, IDS)
    with pytest.raises(TiedWidthError, match="no longer runs after the removal"):
        from prunekit.llm.structured import prune_heads
        prune_heads(model, {0: [1]})
    n = sum(p.numel() for p in model.parameters())
    plan = structured_prune(model, CALIB, StructuredConfig(heads=0.25))
    assert "ties heads x head_dim to the hidden size" in plan["not_applicable"]["heads"]
    assert "model.decoder.layers.0.self_attn (TrOCRAttention)" in plan["not_applicable"]["heads"]
    assert plan["heads"] == {} and sum(p.numel() for p in model.parameters()) == n
    assert torch.equal(main_output(model, IDS), before)
    plan = structured_prune(model, CALIB, StructuredConfig(heads=0.25, mlp=0.25))
    assert "heads" in plan["not_applicable"] and sum(p.numel() for p in model.parameters()) < n
    from tests.llm.conftest import tiny_gpt2, tiny_llama

    for make in (tiny_gpt2, tiny_llama):
        m = make().eval()
        n = sum(p.numel() for p in m.parameters())
        plan = structured_prune(m, CALIB, StructuredConfig(heads=0.25))
        assert "heads" not in plan["not_applicable"] and any(plan["heads"].values())
        assert sum(p.numel() for p in m.parameters()) < n
