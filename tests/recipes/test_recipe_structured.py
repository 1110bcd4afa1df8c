"""A recipe with channel pruning (prunekit.structured): the plan is checkpointed and replayed."""

import pytest
import torch

from prunekit.masks import effective_state_dict
from prunekit.recipes import recipe_from_dict, run_recipe
from prunekit.recipes.context import build_data, build_model, load_checkpoint

pytest.importorskip("prunekit.structured")
pytest.importorskip("onnxruntime")

RECIPE = {
    "name": "channels",
    "data": {"dataset": "digits", "train_subset": 256, "test_subset": 128},
    "model": {"name": "convnet", "kwargs": {"widths": [8, 16], "hidden": 32}},
    "stages": [
        {"train": {"epochs": 4, "lr": 0.003}},
        {"prune": {"method": "channels", "ratio": 0.5}},
        {"finetune": {"epochs": 1}},
        {"prune": {"amount": 0.5}},
        {"distill": {"epochs": 1}},
        {"quantize": {"scheme": "int8"}},
        {"export": {"format": "compact"}},
        {"export": {"format": "onnx", "latency_runs": 3}},
    ],
}


def test_channel_pruned_recipe_checkpoints_replay_and_export(tmp_path):
    recipe = recipe_from_dict(RECIPE)
    summary = run_recipe(recipe, tmp_path, progress=False)
    m = {sid: s["metrics"] for sid, s in summary["stages"].items()}
    assert m["01-prune"]["params"] < 0.6 * m["00-train"]["params"]
    assert (tmp_path / "stages" / "01-prune" / "plan.json").exists()
    assert m["06-export"]["roundtrip_exact"] is True
    assert summary["stages"]["07-export"]["metrics"]["onnx_ok"] is True
    # a fresh model takes the checkpoint: plan replayed, masks and quantized weights loaded
    data = build_data(recipe.data)
    fresh = build_model(recipe.model, data)
    load_checkpoint(tmp_path / "stages" / "07-export", fresh)
    assert fresh.features[0].out_channels == 4
    x = data.test.tensors[0][:8]
    again = build_model(recipe.model, data)
    load_checkpoint(tmp_path / "stages" / "05-quantize", again)
    fresh.eval(), again.eval()
    assert torch.equal(fresh(x), again(x))
    assert set(effective_state_dict(fresh)) == set(effective_state_dict(again))
