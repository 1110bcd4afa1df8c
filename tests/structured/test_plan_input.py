"""Every plan step records the shapes of the example input it was traced with."""

import json

import torch
from torch import nn

from prunekit.structured import StructuredConfig, get_plan, prune_channels_, recorded_input, save_pruned


def test_the_plan_records_the_example_input_and_saves_it(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 2, 1))
    assert recorded_input(get_plan(model)) is None  # never pruned
    prune_channels_(model, torch.zeros(1, 3, 24, 20), StructuredConfig(ratio=0.5))
    prune_channels_(model, torch.zeros(2, 3, 16, 16), StructuredConfig(ratio=0.5))
    steps = get_plan(model)["steps"]
    assert [s["input"] for s in steps] == [[1, 3, 24, 20], [2, 3, 16, 16]]
    assert recorded_input(get_plan(model)) == [2, 3, 16, 16]
    save_pruned(model, tmp_path)
    assert recorded_input(json.loads((tmp_path / "plan.json").read_text())) == [2, 3, 16, 16]
    assert model[0].out_channels == 2
