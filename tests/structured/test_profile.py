"""Measured cost models: MACs per module and per group, latency attribution, and the
latency-aware allocation end to end."""

import pytest
import torch
from torch import nn

from prunekit.graph import build_dependency_graph
from prunekit.metrics import count_macs
from prunekit.structured import StructuredConfig, StructuredPruner, prune_channels_
from prunekit.structured.profile import build_cost_models, module_macs, time_module_calls


class Slow(nn.Module):
    """Work that costs time in proportion to its channels but no MACs."""

    def forward(self, x):
        for _ in range(40):
            x = torch.tanh(x)
        return x


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), Slow(),            # group 0: conv0 out, conv2 in
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),        # group 1: conv2 out, conv4 in
        nn.Conv2d(32, 4, 3, padding=1),
    ).eval()


X = torch.randn(1, 3, 48, 48)


def test_module_macs_are_exclusive_and_sum_to_the_total():
    net = _net()
    per = module_macs(net, X)
    px = 48 * 48
    assert per["0"] == 3 * 32 * 9 * px and per["2"] == 32 * 32 * 9 * px
    assert per["4"] == 32 * 4 * 9 * px and per[""] == 0
    assert sum(per.values()) == count_macs(net, X)


def test_module_macs_of_a_torchvision_model_sum_to_count_macs():
    torchvision = pytest.importorskip("torchvision")
    m = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    assert sum(module_macs(m, x).values()) == count_macs(m, x)


def test_time_module_calls_lists_every_call_with_exclusive_time():
    net = _net()
    calls = time_module_calls(net, X, runs=2)
    assert [n for n, _ in calls] == ["0", "1", "2", "3", "4", ""]
    assert all(ms >= 0 for _, ms in calls)


def test_cost_models_attribute_work_to_the_right_groups():
    net = _net()
    graph = build_dependency_graph(net, X)
    assert [g.size for g in graph.groups] == [32, 32]
    lat, macs = build_cost_models(net, X, graph, runs=3)
    px = 48 * 48
    assert macs.predict(macs.sizes) == count_macs(net, X)
    assert macs.per_group().tolist() == [(3 * 32 * 9 + 32 * 32 * 9) * px,
                                         (32 * 32 * 9 + 32 * 4 * 9) * px]
    # the parameter-free Slow module is charged to group 0 (its channels), so group 0
    # costs more milliseconds per MAC than group 1
    per_ms = lat.per_group() / macs.per_group()
    assert per_ms[0] > 1.5 * per_ms[1]
    # halving group 0 halves the Slow time and conv0, and halves conv2
    groups = {t.groups for t in lat.terms}
    assert {(0,), (0, 1), (1,)} <= groups


def test_latency_allocation_prunes_the_slow_group_harder_at_equal_macs():
    uniform, aware = _net(), _net()
    target = 0.5
    dense_macs = count_macs(uniform, X)
    prune_channels_(uniform, X, StructuredConfig(target_macs=target))
    pruner = StructuredPruner(aware, X, StructuredConfig(allocation="latency"))
    lat, _ = pruner.cost_models()
    prune_channels_(aware, X, StructuredConfig(target_macs=target, allocation="latency"))
    assert count_macs(aware, X) <= target * dense_macs
    assert count_macs(uniform, X) <= target * dense_macs
    assert aware[0].out_channels < uniform[0].out_channels   # the slow group lost more
    assert aware[2].out_channels > uniform[2].out_channels   # the fast one kept more
    keep = lambda m: [m[0].out_channels, m[2].out_channels]  # noqa: E731
    assert lat.predict(keep(aware)) < lat.predict(keep(uniform))
    assert aware(X).shape == (1, 4, 48, 48)


def test_latency_allocation_failure_leaves_the_model_untouched():
    from prunekit.errors import TargetUnreachableError

    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(TargetUnreachableError):
        prune_channels_(net, X, StructuredConfig(target_macs=0.001, allocation="latency"))
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
