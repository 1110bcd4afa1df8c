"""Plan round trip (safetensors + JSON, replay on a fresh instance), atomicity, bad input."""

import json

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError, ModelError, TargetUnreachableError, UnsupportedOpError
from prunekit.structured import (
    StructuredConfig,
    StructuredPruner,
    get_plan,
    load_pruned,
    prune_channels_,
    save_pruned,
)

torchvision = pytest.importorskip("torchvision")


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(model, state):
    now = model.state_dict()
    return now.keys() == state.keys() and all(
        now[k].shape == state[k].shape and torch.equal(now[k], state[k]) for k in state
    )


def test_plan_round_trip_on_a_fresh_instance(tmp_path):
    x = torch.randn(1, 3, 32, 32)
    model = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    prune_channels_(model, x, StructuredConfig(ratio=0.5, round_to=8))
    save_pruned(model, tmp_path)
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["steps"] and (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))
    fresh = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    load_pruned(fresh, tmp_path)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    assert sum(p.numel() for p in fresh.parameters()) == sum(p.numel() for p in model.parameters())


def test_two_prune_steps_replay(tmp_path):
    x = torch.randn(1, 3, 32, 32)
    model = torchvision.models.resnet18(num_classes=10).eval()
    prune_channels_(model, x, StructuredConfig(ratio=0.25))
    prune_channels_(model, x, StructuredConfig(ratio=0.25))
    assert len(get_plan(model)["steps"]) == 2
    save_pruned(model, tmp_path)
    fresh = load_pruned(torchvision.models.resnet18(num_classes=10).eval(), tmp_path)
    with torch.no_grad():
        assert torch.allclose(fresh(x), model(x))


def test_load_on_wrong_architecture_is_an_error(tmp_path):
    x = torch.randn(1, 3, 32, 32)
    model = torchvision.models.resnet18(num_classes=10).eval()
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    save_pruned(model, tmp_path)
    with pytest.raises(ModelError, match="same architecture"):
        load_pruned(torchvision.models.resnet34(num_classes=10), tmp_path)


class _HardCoded(nn.Module):
    """Its forward hard-codes a channel count the tracer cannot see."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        y = self.conv(x).mean((2, 3))
        y = y.view(y.shape[0], 16)  # breaks once channels are removed
        return self.head(y)


def test_failed_surgery_leaves_the_model_exactly_as_it_was():
    model = _HardCoded().eval()
    before = _state(model)
    attrs = (model.conv.out_channels, model.head.in_features)
    with pytest.raises(ModelError, match="restored"):
        prune_channels_(model, torch.randn(1, 3, 8, 8), StructuredConfig(ratio=0.5))
    assert _same(model, before)
    assert (model.conv.out_channels, model.head.in_features) == attrs
    assert get_plan(model) is None


def test_unreachable_target_leaves_the_model_untouched():
    model = torchvision.models.resnet18(num_classes=10).eval()
    before = _state(model)
    with pytest.raises(TargetUnreachableError, match="unreachable"):
        prune_channels_(model, torch.randn(1, 3, 32, 32),
                        StructuredConfig(target_macs=0.001, max_ratio=0.5))
    assert _same(model, before)


def test_macs_target_is_met():
    from prunekit.metrics import count_macs

    x = torch.randn(1, 3, 32, 32)
    model = torchvision.models.resnet18(num_classes=10).eval()
    dense = count_macs(model, x)
    prune_channels_(model, x, StructuredConfig(target_macs=0.5, max_iterations=6))
    frac = count_macs(model, x) / dense
    assert 0.35 < frac <= 0.5


def test_params_target_is_met():
    x = torch.randn(1, 3, 32, 32)
    model = torchvision.models.resnet18(num_classes=10).eval()
    dense = sum(p.numel() for p in model.parameters())
    prune_channels_(model, x, StructuredConfig(target_params=0.6, max_iterations=6))
    assert sum(p.numel() for p in model.parameters()) / dense <= 0.6


@pytest.mark.parametrize("bad", [dict(ratio=1.5), dict(ratio=-0.1), dict(importance="nope"),
                                 dict(round_to=0), dict(target_macs=0.0),
                                 dict(target_macs=0.5, target_params=0.5)])
def test_bad_config_is_a_one_line_error(bad):
    with pytest.raises(ConfigError) as err:
        StructuredConfig(**bad)
    assert "\n" not in str(err.value)


def test_ignored_name_that_does_not_exist_is_an_error():
    model = torchvision.models.resnet18(num_classes=10)
    with pytest.raises(ConfigError, match="no module named 'layer9'"):
        prune_channels_(model, torch.randn(1, 3, 32, 32),
                        StructuredConfig(ignored_layers=("layer9",)))


def test_ignored_layers_by_name_type_and_predicate_are_untouched():
    x = torch.randn(1, 3, 32, 32)
    for ignored in (("layer1.0.conv1",), (nn.BatchNorm2d,),
                    (lambda name, m: name == "layer1.0.conv1",)):
        model = torchvision.models.resnet18(num_classes=10).eval()
        prune_channels_(model, x, StructuredConfig(ratio=0.5, ignored_layers=ignored))
        assert model.layer1[0].conv1.weight.shape == (64, 64, 3, 3)


class _CustomOp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.ops.aten._fft_r2c(x, [3], 0, False).real[..., : x.shape[-1]]


class _Weird(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(_CustomOp.apply(self.conv(x)))


def test_unsupported_op_names_the_op_and_the_module():
    with pytest.raises(UnsupportedOpError) as err:
        prune_channels_(_Weird(), torch.randn(1, 3, 8, 8))
    msg = str(err.value)
    assert "_fft_r2c" in msg and "'<model>'" in msg and "\n" not in msg


def test_interactive_choice_before_removal():
    model = torchvision.models.resnet18(num_classes=10).eval()
    pruner = StructuredPruner(model, torch.randn(1, 3, 32, 32), StructuredConfig(ratio=0.5))
    assert model.conv1.out_channels == 64  # nothing removed yet
    stem = next(c for c in pruner.choices if ("conv1.weight", 0) in c.group.index)
    assert stem.scores.shape == (64,) and len(stem.remove) == 32
    # the proposal removes the lowest scores
    assert stem.scores[stem.remove].max() <= stem.scores[
        [i for i in range(64) if i not in set(stem.remove.tolist())]].min()
    for c in pruner.choices:
        c.remove = torch.zeros(0, dtype=torch.long)
    stem.remove = torch.tensor([0, 5])
    pruner.apply()
    assert model.conv1.out_channels == 62 and model.layer1[0].conv1.out_channels == 64


def _mlp():
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 4)).eval()


def test_latency_target_search_measures_and_records_history():
    model = _mlp()
    result = prune_channels_(model, torch.randn(1, 64),
                             StructuredConfig(target_latency=1.0, latency_batch=4,
                                              latency_runs=3, max_iterations=2))
    assert result.search and all("latency" in step for step in result.search)
    assert model(torch.randn(2, 64)).shape == (2, 4)


def test_unreachable_latency_target_is_an_error_and_model_untouched():
    model = _mlp()
    before = _state(model)
    with pytest.raises(TargetUnreachableError):
        prune_channels_(model, torch.randn(1, 64),
                        StructuredConfig(target_latency=1e-4, max_ratio=0.1, latency_runs=3))
    assert _same(model, before)


@pytest.mark.parametrize("importance", ["l1", "l2", "bn_scale", "fpgm", "random", "taylor",
                                        "hessian"])
def test_every_importance_runs_and_keeps_output_shape(importance):
    x = torch.randn(2, 3, 32, 32)
    model = torchvision.models.resnet18(num_classes=10).eval()
    data = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))) for _ in range(2)]
    kwargs = dict(data=data, loss_fn=nn.functional.cross_entropy) if importance in (
        "taylor", "hessian") else {}
    prune_channels_(model, x, StructuredConfig(ratio=0.5, importance=importance,
                                               allocation="global", round_to=8), **kwargs)
    assert model(x).shape == (2, 10)
    assert model.fc.in_features % 8 == 0


def test_taylor_without_data_is_a_config_error():
    with pytest.raises(ConfigError, match="calibration"):
        prune_channels_(torchvision.models.resnet18(num_classes=10), torch.randn(1, 3, 32, 32),
                        StructuredConfig(importance="taylor"))


class _StaleHeadSize(torch.nn.Module):
    """Attention that reshapes with a head size stored at construction, no surgery rule:
    after pruning it would still run, with the channels regrouped into other heads."""

    def __init__(self, dim=16, heads=4):
        super().__init__()
        self.size_of_head = dim // heads
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.out = torch.nn.Linear(dim, dim)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, -1, self.size_of_head).transpose(1, 2) for t in (q, k, v))
        o = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
        return self.out(o.transpose(1, 2).reshape(b, n, -1))


def test_a_forward_reading_a_stored_head_size_gets_it_updated():
    torch.manual_seed(0)
    model = torch.nn.Sequential(_StaleHeadSize(), torch.nn.Linear(16, 3)).eval()
    x = torch.randn(2, 5, 16)
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    assert model[0].size_of_head == 2 and model[0].out.in_features == 8
    assert model(x).shape == (2, 5, 3)
    assert get_plan(model)["steps"][0]["attrs"] == [
        {"module": "0", "name": "size_of_head", "before": 4, "after": 2}]


class _RuledStaleHeadSize(_StaleHeadSize):
    pass


def test_a_surgery_rule_keeps_the_size_itself():
    from prunekit.surgery import SurgeryRule, register_surgery_rule

    register_surgery_rule(_RuledStaleHeadSize, SurgeryRule(
        sync=lambda m: setattr(m, "size_of_head", m.out.in_features // 4)))
    model = torch.nn.Sequential(_RuledStaleHeadSize(), torch.nn.Linear(16, 3)).eval()
    x = torch.randn(2, 5, 16)
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    assert model[0].size_of_head == 2 and model(x).shape == (2, 5, 3)
    assert "attrs" not in get_plan(model)["steps"][0]  # the rule did it, nothing to record
