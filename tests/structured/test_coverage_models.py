"""Weights computed in the forward - weight standardisation (timm), weight / spectral
norm and prunekit's mask parametrizations, LoRA-style merges -, sliding windows
(``nn.Unfold`` / ``nn.Fold``) and recurrent layers are pruned at the parameters that own
their channels: pruning provably dead units leaves the outputs unchanged, and the pruned
model reloads in a fresh process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import prunekit
from prunekit.structured import StructuredConfig, StructuredPruner, prune_channels_, save_pruned

pytest.importorskip("timm")
from coverage_models import MODELS  # noqa: E402
from structured_helpers import exact_choices, kill_units  # noqa: E402

HERE = Path(__file__).resolve().parent

# a tensor only the derivation reaches, which must be cut with the channels it serves
# (dim 0 of it, unless given)
DERIVED_MEMBER = {
    "std_conv": ("2.weight", 1),  # standardised over its input dim
    "scaled_std_conv": ("0.gain", 0),
    "weight_norm": ("0.parametrizations.weight.original0", 0),
    "legacy_weight_norm": ("0.weight_g", 0),
    "spectral_norm": ("0.parametrizations.weight.0._u", 0),
    "masked": ("2.parametrizations.weight.0.mask", 1),
    "lora": ("0.lora_b", 0),
    "lstm": ("rnn.weight_hh_l0", 1),
    "gru": ("rnn.weight_hh_l0", 1),
    "rnn": ("rnn.weight_hh_l0", 1),
    "unfold": ("head.weight", 1),  # 4 rows per channel
    "fold": ("conv.weight", 0),  # 4 rows per channel
}


def _build(name):
    torch.manual_seed(0)
    factory, shape = MODELS[name]
    return factory(), torch.randn(*shape)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dead_units_pruned_at_the_owning_parameters_leave_outputs_unchanged(name):
    model, x = _build(name)
    pruner = StructuredPruner(model, x, StructuredConfig(ratio=0.5))
    members = {m for g in pruner.graph.groups for m in g.members}
    assert DERIVED_MEMBER[name] in members
    assert exact_choices(pruner) >= 1
    kill_units(model, pruner)
    if name.endswith("weight_norm"):  # g = 0 kills a unit; v = 0 as well would be 0 / 0
        with torch.no_grad():
            for key, v in model.named_parameters():
                if key.endswith(("original1", "weight_v")):
                    v[v == 0] = 0.5
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        before = model(x)
    pruner.apply()
    with torch.no_grad():
        after = model(x)
    assert sum(p.numel() for p in model.parameters()) < params
    assert after.shape == before.shape
    assert torch.allclose(after, before, atol=1e-5), float((after - before).abs().max())


_FRESH = """
import sys, torch
from coverage_models import MODELS
from prunekit.structured import load_pruned
for name, directory in zip(sys.argv[1::2], sys.argv[2::2]):
    model = load_pruned(MODELS[name][0](), directory)
    x = torch.load(directory + "/x.pt")
    with torch.no_grad():
        torch.save(model(x), directory + "/y.pt")
"""


@pytest.fixture(scope="module")
def reloaded(tmp_path_factory):
    """Every model pruned and saved here, then reloaded in one fresh process."""
    pruned, argv = {}, []
    for name in sorted(MODELS):
        model, x = _build(name)
        dense = sum(p.numel() for p in model.parameters())
        prune_channels_(model, x, StructuredConfig(ratio=0.5))
        folder = tmp_path_factory.mktemp(name)
        save_pruned(model, folder)
        torch.save(x, folder / "x.pt")
        pruned[name] = (model, x, dense, folder)
        argv += [name, str(folder)]
    root = Path(prunekit.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(HERE)]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _FRESH, *argv], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return pruned


@pytest.mark.parametrize("name", sorted(MODELS))
def test_pruned_model_reloads_in_a_fresh_process(name, reloaded):
    model, x, dense, folder = reloaded[name]
    tensor, dim = DERIVED_MEMBER[name]
    fresh = MODELS[name][0]()
    before = {**dict(fresh.named_parameters()), **dict(fresh.named_buffers())}
    now = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    assert now[tensor].shape[dim] < before[tensor].shape[dim]
    assert sum(p.numel() for p in model.parameters()) < dense
    with torch.no_grad():
        assert torch.equal(torch.load(folder / "y.pt"), model(x))
