"""Heterogeneous configs (transformers' ``per_layer_config``): structured pruning reads them,
a block removal filters the per-layer overrides with the blocks, and the pruned model reloads
in a fresh process with the same logits."""

import json
import subprocess
import sys

import pytest
import torch

from prunekit.llm import StructuredConfig, save_pretrained_model, structured_prune
from prunekit.llm.structured.per_layer import global_access, live_values, per_layer_list, set_field

transformers = pytest.importorskip("transformers")


def _tiny_gemma4(layers: int = 3, seed: int = 0):
    """Gemma 4 text: sliding layers with head 8, global layers with head 16 (per-layer)."""
    torch.manual_seed(seed)
    cfg = transformers.Gemma4TextConfig(
        hidden_size=32, intermediate_size=48, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, global_head_dim=16, vocab_size=64, vocab_size_per_layer_input=64,
        hidden_size_per_layer_input=0, max_position_embeddings=64, sliding_window=4, use_cache=False,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"][:layers - 1] + ["full_attention"])
    return transformers.Gemma4ForCausalLM(cfg).eval()


def test_per_layer_values_round_trip():
    model = _tiny_gemma4()
    cfg = model.config
    assert per_layer_list(cfg) == [{}, {"head_dim": 16}, {"head_dim": 16}]
    assert live_values(cfg)["per_layer_config"] == per_layer_list(cfg)
    with global_access(cfg):
        assert cfg.head_dim == 8
    with pytest.raises(RuntimeError):  # outside the context the ambiguity is back
        _ = cfg.head_dim
    assert "allow_global_per_layer_attribute_access" not in cfg.to_dict()
    set_field(cfg, "per_layer_config", [{}, {}, {"head_dim": 16}])
    assert cfg.per_layer_config[1].head_dim == 8 and cfg.per_layer_config[2].head_dim == 16


def test_heads_and_a_layer_removed_reload_in_a_fresh_process(tmp_path):
    model = _tiny_gemma4()
    ids = torch.randint(3, 64, (2, 10), generator=torch.Generator().manual_seed(1))
    calib = [{"input_ids": torch.randint(3, 64, (4, 16), generator=torch.Generator().manual_seed(2))}]
    plan = structured_prune(model, calib, StructuredConfig(heads=0.25, layers=1))
    assert len(plan["layers"]) == 1 and any(plan["heads"].values())
    kept = [i for i in range(3) if i not in plan["layers"]]
    assert per_layer_list(model.config) == [{"head_dim": 16} if i else {} for i in kept]  # filtered, renumbered
    with torch.no_grad():
        want = model(input_ids=ids).logits
    save_pretrained_model(model, tmp_path)
    torch.save(ids, tmp_path / "ids.pt")  # (test input only; the model is safetensors)
    code = (
        "import sys, json, torch, transformers\n"
        "from prunekit.llm.structured import load_pruned\n"
        "m = load_pruned(sys.argv[1], transformers.AutoModelForCausalLM)\n"
        "ids = torch.load(sys.argv[1] + '/ids.pt')\n"
        "with torch.no_grad(): out = m(input_ids=ids, use_cache=False).logits\n"
        "print(json.dumps(out.flatten().tolist()))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    got = torch.tensor(json.loads(proc.stdout.strip().splitlines()[-1])).reshape(want.shape)
    assert (got - want).abs().max().item() <= 1e-4
