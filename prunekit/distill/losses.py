"""Distillation losses (pure math: logits and features in, scalar loss out)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's soft-target loss: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, mean over the batch.

    The ``T^2`` factor keeps gradient magnitudes comparable across temperatures.

    Example:
        >>> z = torch.tensor([[1.0, 2.0, 3.0]])
        >>> float(kd_loss(z, z, 4.0))
        0.0
    """
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (t * t)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> torch.Tensor:
    """``alpha * kd_loss + (1 - alpha) * cross_entropy(student, targets)``.

    Example:
        >>> s = torch.tensor([[0.0, 5.0]]); y = torch.tensor([1])
        >>> round(float(distillation_loss(s, s, y, alpha=0.0)), 4) == round(float(F.cross_entropy(s, y)), 4)
        True
    """
    soft = kd_loss(student_logits, teacher_logits, temperature)
    hard = F.cross_entropy(student_logits, targets)
    return alpha * soft + (1.0 - alpha) * hard


def feature_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """Mean squared error between (projected) student and teacher hidden features (FitNets).

    Example:
        >>> float(feature_loss(torch.ones(2, 3), torch.zeros(2, 3)))
        1.0
    """
    if student_feature.shape != teacher_feature.shape:
        raise ValueError(
            f"feature shapes differ: student {tuple(student_feature.shape)} vs teacher "
            f"{tuple(teacher_feature.shape)}; only the channel dimension may differ (it is projected)"
        )
    return F.mse_loss(student_feature, teacher_feature.detach())
