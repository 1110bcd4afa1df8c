"""``distill``: train a student from a teacher with ``prunekit.train.fit``.

The student and any feature projections are trained together; the teacher runs in
eval mode without gradients. Masks on the student hold (they are parametrizations).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from prunekit.distill.capture import capture_outputs
from prunekit.distill.config import DistillConfig
from prunekit.distill.losses import distillation_loss, feature_loss
from prunekit.errors import ConfigError
from prunekit.train.loops import TrainConfig, fit


class _Projection(nn.Module):
    """Maps student channels to teacher channels (1x1 conv for maps, linear otherwise)."""

    def __init__(self, student_shape: torch.Size, teacher_shape: torch.Size) -> None:
        super().__init__()
        if student_shape[2:] != teacher_shape[2:]:
            raise ConfigError(
                f"feature pair shapes {tuple(student_shape)} and {tuple(teacher_shape)} differ beyond "
                "the channel dimension; pick layers with the same spatial size"
            )
        s, t = student_shape[1], teacher_shape[1]
        if s == t:
            self.proj: nn.Module = nn.Identity()
        elif len(student_shape) == 4:
            self.proj = nn.Conv2d(s, t, 1, bias=False)
        else:
            self.proj = nn.Linear(s, t, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.proj, nn.Linear) and x.dim() > 2:
            return self.proj(x.movedim(1, -1)).movedim(-1, 1)
        return self.proj(x)


class _Student(nn.Module):
    """The student plus its feature projections, so ``fit`` optimises both."""

    def __init__(self, student: nn.Module, projections: nn.ModuleList) -> None:
        super().__init__()
        self.student = student
        self.projections = projections


def _build_projections(
    student: nn.Module, teacher: nn.Module, config: DistillConfig, example: torch.Tensor
) -> nn.ModuleList:
    s_names = [s for s, _ in config.features]
    t_names = [t for _, t in config.features]
    was = student.training
    student.eval()
    with (
        torch.no_grad(),
        capture_outputs(student, s_names, "student") as sf,
        capture_outputs(teacher, t_names, "teacher") as tf,
    ):
        student(example)
        teacher(example)
    student.train(was)
    return nn.ModuleList(_Projection(sf[s].shape, tf[t].shape) for s, t in config.features)


def distill(
    student: nn.Module,
    teacher: nn.Module,
    train_data: Dataset,
    train_config: TrainConfig,
    config: DistillConfig | None = None,
    progress: bool = True,
) -> list[float]:
    """Train ``student`` in place from ``teacher``; return the mean loss of each epoch.

    Loss per batch: ``alpha * T^2 * KL(teacher/T || student/T) + (1 - alpha) * CE`` plus
    ``feature_weight * sum MSE(proj(student feature), teacher feature)`` over ``config.features``.

    Args:
        student: the model to train (e.g. a pruned copy; masks hold).
        teacher: the model to learn from (e.g. the dense model); left unchanged.
        train_data: a map-style dataset of ``(x, y)``.
        train_config: epochs, lr, batch size, seed (as for ``fit``).
        config: ``DistillConfig``.
        progress: show a progress bar.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
        >>> teacher, student = nn.Linear(4, 2), nn.Linear(4, 2)
        >>> len(distill(student, teacher, data, TrainConfig(epochs=2), progress=False))
        2
    """
    config = config or DistillConfig()
    teacher_was_training = teacher.training
    requires_grad = [(p, p.requires_grad) for p in teacher.parameters()]
    s_names = [s for s, _ in config.features]
    t_names = [t for _, t in config.features]

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = teacher(x)
            teacher_feats = dict(t_store)
        logits = model.student(x)
        loss = distillation_loss(logits, teacher_logits, y, config.temperature, config.alpha)
        for proj, s, t in zip(model.projections, s_names, t_names, strict=True):
            loss = loss + config.feature_weight * feature_loss(proj(s_store[s]), teacher_feats[t])
        return loss

    try:
        teacher.eval()
        for p, _ in requires_grad:
            p.requires_grad_(False)
        example = train_data[0][0].unsqueeze(0)
        projections = _build_projections(student, teacher, config, example) if config.features else nn.ModuleList()
        wrapper = _Student(student, projections)
        with (
            capture_outputs(student, s_names, "student") as s_store,
            capture_outputs(teacher, t_names, "teacher") as t_store,
        ):
            return fit(wrapper, train_data, train_config, loss_fn=loss_fn, progress=progress, description="distill")
    finally:
        teacher.train(teacher_was_training)
        for p, flag in requires_grad:
            p.requires_grad_(flag)
