import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from prunekit.masks import get_mask
from prunekit.masks.report import overall_sparsity, sparsity_report
from prunekit.schedules import Gradual, Iterative, OneShot, SchedulePruner
from prunekit.train import TrainConfig, fit


def net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 4))


def test_pruner_follows_gradual_schedule_in_a_user_loop():
    model = net()
    schedule = Gradual(start_step=0, end_step=20, frequency=5, final_sparsity=0.8)
    pruner = SchedulePruner(model, schedule)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    for _ in range(25):
        opt.zero_grad()
        model(torch.randn(8, 10)).pow(2).mean().backward()
        opt.step()
        pruner.step()
        seen.append(round(pruner.sparsity, 3))
    assert [e.step for e in pruner.events] == [5, 10, 15, 20]
    for event in pruner.events:
        assert event.achieved == pytest.approx(schedule.sparsity_at(event.step), abs=1 / 220)
    assert seen[-1] == pytest.approx(0.8, abs=1 / 220)
    assert all(b >= a for a, b in zip(seen, seen[1:]))  # masks only grow


def test_masks_nest_across_rounds():
    model = net()
    pruner = SchedulePruner(model, Iterative(final_sparsity=0.75, rounds=2, steps_per_round=1))
    pruner.prune_now()
    first = get_mask(model[0]).clone()
    pruner.step()
    assert bool((get_mask(model[0]) <= first).all())


def test_pruner_as_fit_on_step():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 10), torch.randint(0, 4, (64,)))
    model = net()
    pruner = SchedulePruner(model, OneShot(sparsity=0.5, at_step=2))
    fit(model, data, TrainConfig(epochs=1, batch_size=16), on_step=pruner.step, progress=False)
    assert pruner.current_step == 4
    assert overall_sparsity(sparsity_report(model)) == pytest.approx(0.5, abs=1 / 280)
