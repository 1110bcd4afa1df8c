"""Python size attributes (``self.split_sizes``, ``self.shape``, ``self.head_dim``) are
updated after a cut, recorded in the plan and replayed by ``load_pruned`` in a fresh
process; ambiguous ones are refused; modules with a surgery rule keep their rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from structured_helpers import (
    MODELS,
    AttentionNet,
    BlurNet,
    HiddenSource,
    SplitSizes,
    StoredDim,
    TwoSameSizes,
    UnequalSplit,
    kill_units,
    size_attrs,
)
from torch import nn

import prunekit
from prunekit.errors import ModelError
from prunekit.structured import (
    StructuredConfig,
    StructuredPruner,
    get_plan,
    load_pruned,
    prune_channels_,
    save_pruned,
)
from prunekit.surgery.stale_sizes import AmbiguousSizeError

HERE = Path(__file__).resolve().parent


def _prune_dead(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make the units the pruner picks dead, prune them; outputs before and after."""
    model.eval()
    pruner = StructuredPruner(model, x, StructuredConfig(ratio=0.5))
    kill_units(model, pruner)
    with torch.no_grad():
        before = model(x)
    pruner.apply()
    with torch.no_grad():
        after = model(x)
    return before, after


def test_stored_split_sizes_follow_the_cut():
    torch.manual_seed(0)
    model, x = SplitSizes(), torch.randn(2, 3, 8, 8)
    before, after = _prune_dead(model, x)
    assert model.split_sizes == [2, 2, 2, 2]
    assert model.stem.out_channels == 8 and [m.groups for m in model.mix] == [2, 2, 2, 2]
    assert model.head.out_channels == 4
    assert torch.allclose(before, after, atol=1e-5)


def test_stored_dim_and_stored_view_shape_follow_the_cut():
    torch.manual_seed(0)
    model, x = StoredDim(), torch.randn(2, 3, 8, 8)
    before, after = _prune_dead(model, x)
    assert model.dim == 6 and model.scale.shape == (6, 1, 1)
    assert isinstance(model.scale.shape, tuple) and model.conv.out_channels == 6
    assert torch.allclose(before, after, atol=1e-5)


def test_stored_head_dim_follows_the_cut_and_the_product_reshape_works():
    torch.manual_seed(0)
    model, x = AttentionNet(), torch.randn(2, 5, 16)
    before, after = _prune_dead(model, x)
    attn = model.attn
    assert (attn.num_heads, attn.head_dim) == (2, 4)
    assert attn.qkv.out_features == 24 and attn.proj.in_features == 8
    assert attn.scale == 8 ** -0.5  # the trained attention scale is kept
    assert torch.allclose(before, after, atol=1e-5)


def test_unequal_stored_split_sizes_shrink_piece_by_piece():
    torch.manual_seed(0)
    model, x = UnequalSplit(), torch.randn(2, 3, 8, 8)
    before, after = _prune_dead(model, x)
    a, b, c = model.split_indexes
    assert isinstance(model.split_indexes, tuple) and (a + c, b) == (6, 2)
    assert model.stem.out_channels == 8 and model.dw.groups == 2
    assert torch.allclose(before, after, atol=1e-5)


def test_a_depthwise_conv_groups_attribute_follows_the_cut():
    torch.manual_seed(0)
    model, x = BlurNet(), torch.randn(2, 3, 8, 8)
    before, after = _prune_dead(model, x)
    assert model.blur.channels == 4 and model.blur.filt.shape == (4, 1, 3, 3)
    assert torch.allclose(before, after, atol=1e-5)


def test_plan_records_the_attribute_updates():
    model = StoredDim()
    prune_channels_(model, torch.randn(2, 3, 8, 8), StructuredConfig(ratio=0.5))
    plan = get_plan(model)
    assert plan["format"] == "prunekit.structured.plan/2"
    attrs = sorted(plan["steps"][0]["attrs"], key=lambda a: a["module"])
    assert attrs == [{"module": "", "name": "dim", "before": 12, "after": 6},
                     {"module": "scale", "name": "shape", "before": [12, 1, 1],
                      "after": [6, 1, 1]}]


def test_plan_without_attribute_updates_keeps_format_1():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    prune_channels_(model, torch.randn(1, 4), StructuredConfig(ratio=0.5))
    plan = get_plan(model)
    assert plan["format"] == "prunekit.structured.plan/1" and "attrs" not in plan["steps"][0]


_FRESH = """
import json, sys, torch
from structured_helpers import MODELS, size_attrs
from prunekit.structured import load_pruned
name, directory = sys.argv[1], sys.argv[2]
model = load_pruned(MODELS[name][0](), directory).eval()
x = torch.load(directory + "/x.pt")
with torch.no_grad():
    torch.save(model(x), directory + "/y.pt")
print(json.dumps(size_attrs(model)))
"""

KNOWN = {"SplitSizes": {".split_sizes": [2, 2, 2, 2]},
         "StoredDim": {".dim": 6, "scale.shape": [6, 1, 1]},
         "AttentionNet": {"attn.num_heads": 2, "attn.head_dim": 4}}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_load_pruned_replays_attributes_in_a_fresh_process(name, tmp_path):
    torch.manual_seed(0)
    factory, shape = MODELS[name]
    model, x = factory().eval(), torch.randn(*shape)
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    save_pruned(model, tmp_path)
    torch.save(x, tmp_path / "x.pt")
    root = Path(prunekit.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(HERE)]),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _FRESH, name, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    attrs = json.loads(done.stdout.strip().splitlines()[-1])
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "y.pt"), model(x))
    assert attrs == size_attrs(model)
    assert KNOWN.get(name, {}).items() <= attrs.items()
    assert attrs != size_attrs(factory())  # the fresh model's sizes did change


def test_load_pruned_refuses_a_model_whose_attribute_differs(tmp_path):
    model = StoredDim()
    prune_channels_(model, torch.randn(2, 3, 8, 8), StructuredConfig(ratio=0.5))
    save_pruned(model, tmp_path)
    other = StoredDim()
    other.dim = 11  # not what the plan saw before the cut
    with pytest.raises(ModelError, match=r"'<model>.dim' is 11, the plan expects 12"):
        load_pruned(other, tmp_path)
    assert other.conv.out_channels == 12 and other.scale.shape == (12, 1, 1)


def test_of_two_attributes_holding_the_size_the_one_the_forward_reads_is_updated():
    torch.manual_seed(0)
    model, x = TwoSameSizes(), torch.randn(2, 3, 4, 4)
    before, after = _prune_dead(model, x)
    assert (model.dim, model.hidden, model.conv.out_channels) == (4, 8, 4)
    assert torch.allclose(before, after, atol=1e-5)


def test_ambiguous_attributes_are_refused_and_the_model_restored():
    model, x = HiddenSource().eval(), torch.randn(2, 3, 4, 4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AmbiguousSizeError) as err:
        prune_channels_(model, x, StructuredConfig(ratio=0.5))
    msg = str(err.value)
    assert "'<model>' (HiddenSource)" in msg and "['dim', 'hidden']" in msg
    assert "with 8 where the pruned model needs 4" in msg
    assert "prunekit.surgery.register_surgery_rule" in msg and "\n" not in msg
    assert (model.dim, model.hidden, model.cfg, model.conv.out_channels) == (8, 8, {"dim": 8}, 8)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


class _Literal(nn.Module):
    """Reshapes with a literal: no attribute to update, the guard names the module."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(16, 48)
        self.out = nn.Linear(16, 16)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, -1, 4).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        o = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
        return self.out(o.transpose(1, 2).reshape(b, n, -1))


def test_a_literal_size_is_still_caught_by_the_guard():
    model, x = nn.Sequential(_Literal(), nn.Linear(16, 3)).eval(), torch.randn(2, 5, 16)
    with pytest.raises(ModelError, match=r"module '0' reshapes a pruned dim into 2 slices.*had 4"):
        prune_channels_(model, x, StructuredConfig(ratio=0.5))
    assert model[0].qkv.out_features == 48


def test_a_module_with_a_surgery_rule_keeps_its_rule():
    from structured_helpers import StoredAttention

    from prunekit.surgery import SurgeryRule, register_surgery_rule

    class Ruled(StoredAttention):
        pass

    register_surgery_rule(Ruled, SurgeryRule(sync=lambda m: None))  # keeps head_dim stale
    model = AttentionNet().eval()
    model.attn = Ruled()
    with pytest.raises(ModelError, match="restored"):
        prune_channels_(model, torch.randn(2, 5, 16), StructuredConfig(ratio=0.5))
    assert model.attn.head_dim == 8 and model.attn.qkv.out_features == 48
