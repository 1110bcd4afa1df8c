"""Removing whole blocks: the config's per-layer fields found and checked, reload in a fresh process."""

import pytest
import torch

from prunekit.errors import UnsupportedOpError
from prunekit.llm.blocks import find_blocks
from prunekit.llm.structured import remove_layers
from prunekit.llm.structured.layer_fields import config_after_removal, removable_layers
from tests.llm.conftest import fresh_reload_diff, transformers
from tests.llm.test_structured_mixers import _save, tiny_jamba, tiny_rwkv


def tiny_bart_decoder(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.BartConfig(d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
                                  decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48,
                                  vocab_size=64, max_position_embeddings=64)
    return transformers.BartForCausalLM(cfg).eval()


def tiny_modernbert_decoder(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.ModernBertDecoderConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                               intermediate_size=48, vocab_size=64, max_position_embeddings=64,
                                               pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1,
                                               sep_token_id=2)
    return transformers.ModernBertDecoderForCausalLM(cfg).eval()


def test_a_decoder_with_its_own_layer_count_lowers_that_count_and_reloads(tmp_path):
    model = tiny_bart_decoder()
    assert len(find_blocks(model)[1]) == 3 and model.config.num_hidden_layers == 2  # the encoder's count
    remove_layers(model, [1])
    assert model.config.decoder_layers == 2
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


def test_periodic_hybrid_patterns_shift_when_the_first_block_goes(tmp_path):
    model = tiny_jamba()  # [mamba, attention+MoE, mamba, attention+MoE]: offsets 1 of period 2
    assert config_after_removal(model, [0]) == {"num_hidden_layers": 3, "attn_layer_offset": 0,
                                                "expert_layer_offset": 0}
    assert config_after_removal(model, [3]) == {"num_hidden_layers": 3}
    remove_layers(model, [0])
    assert [type(b).__name__ for b in model.model.layers] == [
        "JambaAttentionDecoderLayer", "JambaMambaDecoderLayer", "JambaAttentionDecoderLayer"]
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


def test_a_first_block_built_differently_is_refused_and_the_next_best_is_taken():
    model = tiny_modernbert_decoder()  # block 0 has no attention norm (an Identity), the others do
    assert config_after_removal(model, [0]) is None
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UnsupportedOpError, match=r"remove_layers: removing model\.layers \[0\]"):
        remove_layers(model, [0])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.config.num_hidden_layers == 3 and len(model.model.layers) == 3
    assert removable_layers(model, [0, 2, 1], 1) == [2]


def test_a_config_the_class_cannot_initialise_is_refused():
    model = tiny_rwkv()  # transformers' RWKV init divides by num_hidden_layers - 1: one block cannot be built
    assert config_after_removal(model, [0]) is None
    with pytest.raises(UnsupportedOpError, match=r"cannot remove 1 block\(s\)"):
        removable_layers(model, [0, 1], 1)


@pytest.mark.parametrize("vision_layers", [2, 3])
def test_the_text_layers_are_found_before_a_vision_tower(vision_layers):
    torch.manual_seed(0)
    cfg = transformers.GitConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                                 vocab_size=64, max_position_embeddings=64,
                                 vision_config={"hidden_size": 32, "num_hidden_layers": vision_layers,
                                                "num_attention_heads": 4, "intermediate_size": 48,
                                                "image_size": 16, "patch_size": 8})
    model = transformers.GitForCausalLM(cfg).eval()
    path, blocks = find_blocks(model)  # the vision tower is a sub-model with a config of its own
    assert (path, len(blocks)) == ("git.encoder.layer", 2)


def test_lists_that_only_look_per_layer_are_kept_whole(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.FalconH1Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      intermediate_size=48, vocab_size=64, max_position_embeddings=64,
                                      mamba_d_ssm=64, mamba_n_heads=8, mamba_d_head=8, mamba_d_state=16,
                                      mamba_chunk_size=16, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = transformers.FalconH1ForCausalLM(cfg).eval()
    # two layers, and two-element lists that are not per layer: [min, max] and [gate, down] multipliers
    assert len(model.config.time_step_limit) == 2 and len(model.config.mlp_multipliers) == 2
    assert config_after_removal(model, [1]) == {"num_hidden_layers": 1}
    remove_layers(model, [1])
    assert len(model.config.time_step_limit) == 2 and len(model.config.mlp_multipliers) == 2
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


def test_a_layer_split_that_must_add_up_is_kept_valid(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.DoryConfig(hidden_size=32, num_hidden_layers=3, n_input_layers=1, n_output_layers=1,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=8, intermediate_size=48,
                                  vocab_size=64, max_position_embeddings=64, pad_token_id=0)
    model = transformers.DoryForCausalLM(cfg).eval()
    # strict validation: n_input_layers + n_recurrent_layers + n_output_layers == num_hidden_layers
    updates = config_after_removal(model, [1])
    assert updates["num_hidden_layers"] == 2 and len(updates["layer_types"]) == 2
    c = model.config
    assert sum(updates.get(k, getattr(c, k)) for k in ("n_input_layers", "n_recurrent_layers", "n_output_layers")) == 2
    remove_layers(model, [1])
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


def test_a_multimodal_model_edits_its_text_config(tmp_path):
    torch.manual_seed(0)
    text = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 48,
            "vocab_size": 64, "max_position_embeddings": 64}
    cfg = transformers.FuyuConfig(text_config=text, vocab_size=64, hidden_size=32, patch_size=4)
    model = transformers.FuyuForCausalLM(cfg).eval()
    assert find_blocks(model)[0] == "model.language_model.layers"
    assert config_after_removal(model, [1]) == {"num_hidden_layers": 2}  # of config.text_config
    remove_layers(model, [1])
    assert model.config.text_config.num_hidden_layers == 2
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


def tiny_smollm3(layers: int, interval: int, seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.SmolLM3Config(hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                                     num_key_value_heads=2, intermediate_size=48, vocab_size=64,
                                     max_position_embeddings=64, no_rope_layer_interval=interval,
                                     pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return transformers.SmolLM3ForCausalLM(cfg).eval()


@pytest.mark.parametrize("layers,interval,drop,kept", [(3, 2, 0, [0, 1]), (2, 4, 0, [1]), (2, 4, 1, [1])])
def test_a_per_layer_flag_list_that_reads_as_indices_follows_the_kept_blocks(layers, interval, drop, kept, tmp_path):
    model = tiny_smollm3(layers, interval)  # no_rope_layers: one 0/1 flag per layer, [1, 0, 1] or [1, 1]
    flags = list(model.config.no_rope_layers)
    assert kept == [f for i, f in enumerate(flags) if i != drop]
    uses_rope = [b.self_attn.use_rope for i, b in enumerate(model.model.layers) if i != drop]
    # read as layer indices, [1, 0, 1] without block 0 would become [0, 0]: rope lost on the last block
    assert config_after_removal(model, [drop])["no_rope_layers"] == kept
    remove_layers(model, [drop])
    assert model.config.no_rope_layers == kept
    assert [b.self_attn.use_rope for b in model.model.layers] == uses_rope
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


class _FirstBlockFlagged(transformers.LlamaForCausalLM):
    """A Llama whose first block's attention is built with a flag no config field sets."""

    def __init__(self, config):
        super().__init__(config)
        self.model.layers[0].self_attn.first = True
        for block in self.model.layers[1:]:
            block.self_attn.first = False


def test_a_block_attribute_no_config_field_explains_is_refused_not_reloaded_differently():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=48, vocab_size=64, max_position_embeddings=64)
    model = _FirstBlockFlagged(cfg).eval()
    # same parameters either way: only the attribute tells the rebuilt block 0 from the kept old block 1
    assert config_after_removal(model, [0]) is None
    with pytest.raises(UnsupportedOpError, match=r"remove_layers: removing model\.layers \[0\]"):
        remove_layers(model, [0])
    assert config_after_removal(model, [2]) == {"num_hidden_layers": 2}
    assert removable_layers(model, [0, 2], 1) == [2]


def test_layer_index_attributes_of_kept_blocks_are_renumbered():
    torch.manual_seed(0)  # RwkvBlock, its attention and feed-forward keep the block index as layer_id
    cfg = transformers.RwkvConfig(hidden_size=32, num_hidden_layers=3, vocab_size=64, intermediate_size=48,
                                  attention_hidden_size=32, context_length=64, use_cache=False)
    model = transformers.RwkvForCausalLM(cfg).eval()
    remove_layers(model, [1])
    assert [(b.layer_id, b.attention.layer_id, b.feed_forward.layer_id) for b in model.rwkv.blocks] == [
        (0, 0, 0), (1, 1, 1)]


def tiny_olmo_hybrid(layer_types: list[str], seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.OlmoHybridConfig(hidden_size=32, num_hidden_layers=len(layer_types), layer_types=layer_types,
                                        num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
                                        vocab_size=64, max_position_embeddings=64, linear_num_key_heads=4,
                                        linear_num_value_heads=4, linear_key_head_dim=8, linear_value_head_dim=8,
                                        pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return transformers.AutoModelForCausalLM.from_config(cfg).eval()


def test_a_depth_the_class_refuses_makes_layer_removal_not_applicable():
    from prunekit.llm.structured import StructuredConfig, structured_prune
    from prunekit.llm.structured.layer_fields import DepthNotBuildableError

    model = tiny_olmo_hybrid(["linear_attention", "full_attention"])  # the validator wants one of each
    with pytest.raises(DepthNotBuildableError, match=r"OlmoHybridConfig builds no model with 1 layer\(s\) "
                                                     r"\(.*expects at least one"):
        removable_layers(model, [0, 1], 1)
    ids = {"input_ids": torch.randint(3, 64, (1, 8), generator=torch.Generator().manual_seed(1))}
    before = sum(p.numel() for p in model.parameters())
    plan = structured_prune(model, [ids], StructuredConfig(layers=1))
    assert plan["layers"] == [] and "builds no model with 1 layer(s)" in plan["not_applicable"]["layers"]
    assert sum(p.numel() for p in model.parameters()) == before and len(model.model.layers) == 2
    # RWKV: transformers' initialisation divides by num_hidden_layers - 1, so no 1-layer RWKV exists
    with pytest.raises(DepthNotBuildableError, match=r"RwkvConfig builds no model with 1 layer\(s\) "
                                                     r"\(ZeroDivisionError"):
        removable_layers(tiny_rwkv(), [1, 0], 1)


def test_a_deeper_hybrid_drops_a_layer_and_its_layer_type_and_reloads(tmp_path):
    model = tiny_olmo_hybrid(["linear_attention", "full_attention", "linear_attention", "full_attention"])
    remove_layers(model, [2])
    assert model.config.layer_types == ["linear_attention", "full_attention", "full_attention"]
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


def test_attributes_outside_the_blocks_follow_the_edited_config(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.BeamConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  head_dim=8, intermediate_size=48, vocab_size=64, max_position_embeddings=64,
                                  layer_types=["sliding_attention", "full_attention"],
                                  mlp_layer_types=["dense", "dense"], sliding_window=4,
                                  pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    # the rotary module keeps the sorted set of layer types: a reload of one sliding layer has one
    assert model.model.rotary_emb.layer_types == ["full_attention", "sliding_attention"]
    remove_layers(model, [1])
    assert model.config.layer_types == ["sliding_attention"]
    assert model.model.rotary_emb.layer_types == ["sliding_attention"]
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


def tiny_gpt_neo(seed: int = 0):
    torch.manual_seed(seed)  # 4 layers in a run-length pattern: global, local, global, local
    cfg = transformers.GPTNeoConfig(hidden_size=32, num_layers=4, attention_types=[[["global", "local"], 2]],
                                    num_heads=4, intermediate_size=48, vocab_size=64, max_position_embeddings=64,
                                    window_size=4, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return transformers.GPTNeoForCausalLM(cfg).eval()


@pytest.mark.parametrize("drop,kinds,runs", [
    ([1], ["global", "global", "local"], [[["global"], 2], [["local"], 1]]),
    ([0, 1], ["global", "local"], [[["global"], 1], [["local"], 1]]),
    ([0, 3], ["local", "global"], [[["local"], 1], [["global"], 1]]),
])
def test_a_run_length_layer_pattern_is_encoded_again_for_the_kept_blocks(drop, kinds, runs, tmp_path):
    model = tiny_gpt_neo()
    # every block keeps its own copy of the expanded per-layer list (attention_layers)
    assert model.transformer.h[0].attn.attention_layers == ["global", "local", "global", "local"]
    before = [model.transformer.h[i].attn.attention_type for i in range(4) if i not in drop]
    remove_layers(model, drop)
    assert model.config.attention_types == runs and model.config.attention_layers == kinds
    assert [b.attn.attention_type for b in model.transformer.h] == before == kinds
    assert all(b.attn.attention_layers == kinds for b in model.transformer.h)  # what a reload builds
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


def test_a_residual_scale_of_the_depth_keeps_its_value_by_solving_its_numeric_field(tmp_path):
    torch.manual_seed(0)  # MiniCPM3 scales each residual branch by scale_depth / sqrt(num_hidden_layers)
    cfg = transformers.MiniCPM3Config(hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=4, head_dim=8, kv_lora_rank=16,
                                      q_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8,
                                      vocab_size=64, max_position_embeddings=64, scale_depth=1.4,
                                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    scale = model.model.layers[0].residual_scale
    assert scale == pytest.approx(1.4 / 3 ** 0.5)
    updates = config_after_removal(model, [1])
    assert updates["num_hidden_layers"] == 2
    assert updates["scale_depth"] == pytest.approx(1.4 * (2 / 3) ** 0.5, rel=1e-12)
    remove_layers(model, [1])
    assert all(b.residual_scale == pytest.approx(scale, rel=1e-12) for b in model.model.layers)
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


def tiny_hrm(seed: int = 0):
    torch.manual_seed(seed)  # two stacks (L_module, H_module) built from one num_layers_per_stack
    cfg = transformers.HrmTextConfig(hidden_size=32, intermediate_size=48, num_attention_heads=4, head_dim=8,
                                     num_layers_per_stack=2, H_cycles=1, L_cycles=1, L_bp_cycles=[1],
                                     vocab_size=64, max_position_embeddings=64, use_cache=False,
                                     pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return transformers.AutoModelForCausalLM.from_config(cfg).eval()


def test_block_lists_tied_by_one_count_make_a_single_removal_not_applicable():
    from prunekit.llm.structured import StructuredConfig, structured_prune
    from prunekit.llm.structured.layer_fields import TiedDepthError

    model = tiny_hrm()
    path = find_blocks(model)[0]
    with pytest.raises(TiedDepthError, match=r"builds 2 block lists from one layer count .*num_layers_per_stack=2"
                       ) as info:
        removable_layers(model, [0, 1], 1)
    assert sorted(info.value.tied) == ["model.H_module.layers", "model.L_module.layers"] and info.value.tied[0] == path
    ids = {"input_ids": torch.randint(3, 64, (1, 8), generator=torch.Generator().manual_seed(1))}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = structured_prune(model, [ids], StructuredConfig(layers=1))
    assert plan["layers"] == [] and "cannot be removed alone" in plan["not_applicable"]["layers"]
    # two blocks (one per tied list) could exist, but that removal is not implemented: an error, nothing changed
    with pytest.raises(UnsupportedOpError, match=r"cannot remove 2 block\(s\).*ask for layers=0"):
        structured_prune(model, [ids], StructuredConfig(layers=2))
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.config.num_layers_per_stack == 2


@pytest.mark.parametrize("drop", [[0], [2]])
def test_a_layer_kept_in_parallel_lists_loses_its_entry_in_every_list(drop, tmp_path):
    from prunekit.llm.structured.layer_fields import removal_plan

    torch.manual_seed(0)  # XLM: attentions, layer_norm1, ffns, layer_norm2, indexed together by the forward
    cfg = transformers.XLMConfig(vocab_size=64, emb_dim=32, n_layers=3, n_heads=4, max_position_embeddings=64,
                                 causal=True, n_langs=1, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = transformers.XLMWithLMHeadModel(cfg).eval()
    parts = ["transformer.attentions", "transformer.layer_norm1", "transformer.ffns", "transformer.layer_norm2"]
    assert find_blocks(model)[0] in parts
    lists, updates = removal_plan(model, drop)
    assert sorted(lists) == sorted(parts) and updates == {"num_hidden_layers": 2}
    kept = [model.transformer.ffns[i] for i in range(3) if i not in drop]
    remove_layers(model, drop)
    assert all(len(model.get_submodule(p)) == 2 for p in parts) and model.transformer.n_layers == 2
    assert list(model.transformer.ffns) == kept
    assert [a.layer_id for a in model.transformer.attentions] == [0, 1]
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) < 1e-5


class _DepthScaled(transformers.LlamaForCausalLM):
    """A Llama whose blocks keep ``initializer_range / num_hidden_layers`` (a float of a numeric
    field and the depth); with ``outside`` the model keeps that field outside the blocks too."""

    outside = False

    def __init__(self, config):
        super().__init__(config)
        for block in self.model.layers:
            block.scale = config.initializer_range / config.num_hidden_layers
        if self.outside:
            self.model.init_range = config.initializer_range


class _DepthScaledOutside(_DepthScaled):
    outside = True


def test_a_solved_field_must_leave_everything_outside_the_blocks_unchanged():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=48, vocab_size=64, max_position_embeddings=64,
                                   initializer_range=0.02)
    model = _DepthScaled(cfg).eval()
    updates = config_after_removal(model, [1])  # only the blocks read it: solved for 3 layers
    assert updates["num_hidden_layers"] == 3 and updates["initializer_range"] == pytest.approx(0.015, rel=1e-12)
    # the same field also sets an attribute outside the blocks: not a free unknown, refused
    assert config_after_removal(_DepthScaledOutside(cfg).eval(), [1]) is None


def test_a_pair_that_also_reads_per_layer_is_kept_whole_by_the_forward_check(tmp_path):
    """Mamba-2's ``time_step_limit = (0.0, inf)`` in a 2-layer model: cut to one entry it still
    builds and passes the rebuild check, but the kept block then indexes ``dt_limit[1]``; only
    running both readings tells them apart, and the whole pair is kept."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from llm_families_zoo import build

    model = build("mamba2").eval()
    assert len(model.config.time_step_limit) == len(find_blocks(model)[1]) == 2
    for drop in ([0], [1]):
        assert config_after_removal(model, drop) == {"num_hidden_layers": 1}
    remove_layers(model, [0])
    assert tuple(model.config.time_step_limit) == (0.0, float("inf"))
    _save(model, tmp_path)
    assert fresh_reload_diff(tmp_path, plain=True) <= 1e-4
