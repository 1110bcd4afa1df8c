"""``stack`` and ``cat`` along a dim the labels do not vary by (feature maps stacked and
summed, as YOLOv9's ``CBFuse`` does; batches concatenated) couple their inputs position
by position; ``cat`` along the channels keeps each input's channels its own."""

import torch
from torch import nn

from prunekit.graph import build_dependency_graph
from prunekit.structured import StructuredConfig, prune_channels_


class Joined(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1)
        self.head = nn.Conv2d(8, 2, 1) if how != "cat1" else nn.Conv2d(16, 2, 1)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        if self.how == "stack":
            return self.head(torch.stack([a, b]).sum(0))
        if self.how == "cat0":
            return self.head(torch.cat([a, b], 0))
        return self.head(torch.cat([a, b], 1))


def _group(graph, member):
    return sorted(next(g for g in graph.groups if member in g.index).index)


def test_stack_then_sum_couples_the_stacked_channels_exactly():
    graph = build_dependency_graph(Joined("stack"), torch.zeros(1, 3, 4, 4))
    assert _group(graph, ("a.weight", 0)) == [("a.bias", 0), ("a.weight", 0), ("b.bias", 0),
                                             ("b.weight", 0), ("head.weight", 1)]
    assert len(graph.groups) == 1 and graph.groups[0].size == 8 and graph.groups[0].exact


def test_a_batch_cat_couples_its_inputs_and_a_channel_cat_does_not():
    graph = build_dependency_graph(Joined("cat0"), torch.zeros(1, 3, 4, 4))
    assert ("b.weight", 0) in _group(graph, ("a.weight", 0))
    graph = build_dependency_graph(Joined("cat1"), torch.zeros(1, 3, 4, 4))
    assert ("b.weight", 0) not in _group(graph, ("a.weight", 0)) and len(graph.groups) == 2


def test_a_stacked_model_prunes_and_runs():
    torch.manual_seed(0)
    model = Joined("stack").eval()
    x = torch.randn(2, 3, 4, 4)
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    assert model.a.out_channels == model.b.out_channels == model.head.in_channels == 4
    assert model(x).shape == (2, 2, 4, 4)
