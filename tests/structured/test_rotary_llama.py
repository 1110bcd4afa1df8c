"""The generic tracer prunes Llama-family models: rotary cos / sin broadcast over the
heads couple head-dim pairs with the rotary frequencies, so query/key head dims shrink
in pairs (with ``inv_freq``), dead units leave the logits unchanged, and the pruned model
reloads in a fresh process (``load_pruned``) and via ``prunekit prune --model hf:``."""

import json
import subprocess
import sys

import pytest
import torch

from prunekit.cli.main import main
from prunekit.graph import build_dependency_graph
from prunekit.structured import StructuredConfig, StructuredPruner, prune_channels_, save_pruned

transformers = pytest.importorskip("transformers")
sys.path.insert(0, __file__.rsplit("/", 1)[0])
from structured_helpers import exact_choices, kill_units  # noqa: E402

FAMILIES = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "qwen2": ("Qwen2Config", "Qwen2ForCausalLM")}

RELOAD = r"""
import sys, torch, transformers
import prunekit
kind, cls, folder = sys.argv[1], sys.argv[2], sys.argv[3]
config = getattr(transformers, kind).from_json_file(folder + "/hf_config.json")
model = getattr(transformers, cls)(config).eval()
prunekit.load_pruned(model, folder)
with torch.no_grad():
    torch.save(model(torch.load(folder + "/ids.pt")).logits, folder + "/y.pt")
"""


def tiny(family: str):
    kind, cls = FAMILIES[family]
    config = getattr(transformers, kind)(
        vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    return getattr(transformers, cls)(config).eval(), kind, cls


def ids() -> dict:
    return {"input_ids": torch.randint(0, 96, (1, 12), generator=torch.Generator().manual_seed(1))}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_rotary_pairs_are_one_group_with_the_frequencies(family):
    model, _, _ = tiny(family)
    graph = build_dependency_graph(model, ids())
    qk = graph.group_of("model.layers.0.self_attn.q_proj.weight", 0)
    assert qk is not None and graph.group_of("model.rotary_emb.inv_freq", 0) is qk
    assert qk.size == 8  # 16 head dims in pairs (i, i + 8)
    assert qk.index[("model.layers.0.self_attn.q_proj.weight", 0)].shape == (8, 8)  # 4 heads x 2
    assert graph.group_of("model.layers.1.self_attn.k_proj.weight", 0) is qk  # one shared table


@pytest.mark.parametrize("family", list(FAMILIES))
def test_dead_head_dims_prune_to_identical_logits(family):
    model, _, _ = tiny(family)
    pruner = StructuredPruner(model, ids(), StructuredConfig(ratio=0.5))
    assert exact_choices(pruner) >= 3
    kill_units(model, pruner)
    with torch.no_grad():
        before = model(**ids()).logits
    pruner.apply()
    with torch.no_grad():
        after = model(**ids()).logits
    assert model.model.layers[0].self_attn.q_proj.out_features < 64
    assert torch.allclose(after, before, atol=1e-5)


def test_pruned_llama_reloads_in_a_fresh_process_with_equal_logits(tmp_path):
    model, kind, cls = tiny("llama")
    prune_channels_(model, ids(), StructuredConfig(ratio=0.5))
    attn = model.model.layers[0].self_attn
    assert attn.head_dim == 8 and attn.q_proj.out_features == 32
    assert model.model.rotary_emb.inv_freq.numel() == 4
    with torch.no_grad():
        expected = model(**ids()).logits
    save_pruned(model, tmp_path)
    model.config.to_json_file(tmp_path / "hf_config.json")
    torch.save(ids()["input_ids"], tmp_path / "ids.pt")
    out = subprocess.run([sys.executable, "-c", RELOAD, kind, cls, str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert torch.allclose(torch.load(tmp_path / "y.pt"), expected, atol=1e-5)


def test_cli_prunes_a_llama_folder(tmp_path):
    model, _, _ = tiny("llama")
    folder = tmp_path / "llama"
    model.model.save_pretrained(str(folder))
    out = tmp_path / "out"
    assert main(["prune", "--model", f"hf:{folder}", "--ratio", "0.5", "--seq-len", "16",
                 "--threads", "1", "--latency-runs", "1", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["after"]["macs"] < 0.75 * metrics["before"]["macs"]
    from prunekit.structured import load_pruned

    reloaded = load_pruned(transformers.AutoModel.from_pretrained(str(folder)).eval(), out)
    assert sum(p.numel() for p in reloaded.parameters()) == metrics["after"]["params"]
    assert reloaded(torch.randint(0, 96, (2, 9)))[0].shape == (2, 9, 64)
