"""Knowledge distillation: loss golden values, training moves the student to the teacher."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from prunekit.distill import DistillConfig, capture_outputs, distill, distillation_loss, kd_loss
from prunekit.errors import ConfigError, ModelError
from prunekit.masks import SparsifyConfig, get_mask, sparsify_
from prunekit.train import TrainConfig


def test_kd_loss_golden():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    t = torch.tensor([[0.0, 2.0, 0.0], [1.0, -1.0, 3.0]])
    temperature = 2.0
    p = F.softmax(t / temperature, dim=1)
    q = F.softmax(s / temperature, dim=1)
    manual = (p * (p.log() - q.log())).sum(dim=1).mean() * temperature**2
    assert torch.allclose(kd_loss(s, t, temperature), manual, atol=1e-6)
    assert float(kd_loss(t, t, 3.0)) == pytest.approx(0.0, abs=1e-7)
    y = torch.tensor([0, 2])
    assert torch.allclose(distillation_loss(s, t, y, temperature, alpha=0.0), F.cross_entropy(s, y))
    mixed = 0.25 * kd_loss(s, t, temperature) + 0.75 * F.cross_entropy(s, y)
    assert torch.allclose(distillation_loss(s, t, y, temperature, alpha=0.25), mixed)


def _data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 6, 6, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long()
    return TensorDataset(x, y)


def _conv(width):
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(width * 36, 4),
    )


def _mean_kl(student, teacher, data):
    with torch.no_grad():
        x = data.tensors[0]
        return float(kd_loss(student(x), teacher(x), 1.0))


def test_distill_moves_student_towards_teacher_and_leaves_teacher_alone():
    torch.manual_seed(0)
    data = _data()
    teacher = _conv(8)
    from prunekit.train import fit

    fit(teacher, data, TrainConfig(epochs=5, lr=3e-3), progress=False)
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    teacher.train()
    student = _conv(4)
    before = _mean_kl(student, teacher, data)
    losses = distill(
        student,
        teacher,
        data,
        TrainConfig(epochs=5, lr=3e-3),
        DistillConfig(temperature=2.0, alpha=1.0),
        progress=False,
    )
    after = _mean_kl(student, teacher, data)
    assert after < 0.5 * before, (before, after)
    assert losses[-1] < losses[0]
    assert teacher.training and all(p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in teacher_state.items())


def test_feature_distillation_with_projection_keeps_masks():
    torch.manual_seed(0)
    data = _data(128)
    teacher, student = _conv(8), _conv(4)
    sparsify_(student, SparsifyConfig(amount=0.5))
    mask = get_mask(student[2]).clone()
    cfg = DistillConfig(features=[["2", "2"]], feature_weight=1.0, alpha=0.5)
    with torch.no_grad(), capture_outputs(teacher, ["2"]) as tf, capture_outputs(student, ["2"]) as sf:
        teacher(data.tensors[0][:4]), student(data.tensors[0][:4])
    assert tf["2"].shape[1] == 8 and sf["2"].shape[1] == 4
    losses = distill(student, teacher, data, TrainConfig(epochs=4, lr=3e-3), cfg, progress=False)
    assert losses[-1] < losses[0]
    assert torch.equal(get_mask(student[2]), mask) and torch.all(student[2].weight[~mask] == 0)
    assert not teacher[2]._forward_hooks and not student[2]._forward_hooks


def test_bad_feature_name_names_valid_modules_and_changes_nothing():
    teacher, student = _conv(4), _conv(4)
    teacher.train()
    state = {k: v.clone() for k, v in student.state_dict().items()}
    with pytest.raises(ModelError, match="valid names include"):
        distill(
            student, teacher, _data(16), TrainConfig(epochs=1), DistillConfig(features=[["2", "nope"]]), progress=False
        )
    assert teacher.training and all(p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(student.state_dict()[k], v) for k, v in state.items())
    assert not any(m._forward_hooks for m in list(teacher.modules()) + list(student.modules()))


def test_config_validation():
    with pytest.raises(ConfigError, match="temperature"):
        DistillConfig(temperature=0)
    with pytest.raises(ConfigError, match="alpha"):
        DistillConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="pairs"):
        DistillConfig(features=["features.0"])
    with pytest.raises(ConfigError, match="valid keys"):
        DistillConfig.from_dict({"temp": 2})
