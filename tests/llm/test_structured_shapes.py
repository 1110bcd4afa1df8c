"""``sync_config`` (prunekit/llm/structured/shapes.py): the config written after structured
pruning rebuilds the same model, buffers included."""

import sys
from pathlib import Path

import torch

from prunekit.llm.structured import StructuredConfig, load_pruned, save_pretrained_model, structured_prune

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from llm_families_zoo import build, example_ids  # noqa: E402


def test_mla_head_dim_kept_when_no_weight_needs_it(tmp_path):
    """Youtu's multi-head latent attention: ``head_dim`` is the rotary width (8) while a head's
    output width is ``v_head_dim`` (16). Removing MLP neurons must not write 16 into
    ``head_dim`` (no weight shape depends on it, but the rotary tables do)."""
    from transformers import AutoModelForCausalLM

    model = build("youtu")
    ids = example_ids(length=8)
    structured_prune(model, [{"input_ids": example_ids(seed=2, batch=2, length=16)}], StructuredConfig(mlp=0.25))
    assert model.config.head_dim == 8
    assert model.config.intermediate_size == 72
    with torch.no_grad():
        want = model(input_ids=ids).logits
    save_pretrained_model(model, tmp_path)
    got = load_pruned(tmp_path, AutoModelForCausalLM)(input_ids=ids).logits
    assert (got - want).abs().max().item() <= 1e-5
