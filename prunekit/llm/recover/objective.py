"""The recovery loss, learning-rate schedule and bf16 choice (pure functions).

Example:
    >>> s = torch.zeros(1, 3, 5); ids = torch.zeros(1, 3, dtype=torch.long)
    >>> round(float(recovery_loss(s, s, ids, RecoverConfig(kd_weight=1.0))), 6)
    0.0
    >>> lr_at(0, 100, 1e-3, 0.1), round(lr_at(99, 100, 1e-3, 0.1), 12)
    (0.0001, 0.0001)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prunekit.distill.losses import feature_loss, kd_loss
from prunekit.llm.precision import fast_bf16
from prunekit.llm.recover.config import RecoverConfig


def recovery_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    input_ids: torch.Tensor,
    config: RecoverConfig,
    student_hidden: torch.Tensor | None = None,
    teacher_hidden: torch.Tensor | None = None,
) -> torch.Tensor:
    """``kd_weight * T^2 KL(teacher || student) + (1 - kd_weight) * CE (+ hidden_weight * MSE)``.

    The KL is averaged over every token position, the cross-entropy over every predicted
    (next) token; without a teacher the loss is the cross-entropy alone. Logits are
    ``(batch, seq, vocab)``, computed in float32 whatever the autocast dtype.
    """
    vocab = student_logits.shape[-1]
    logits = student_logits.float()
    kd_weight = config.kd_weight if teacher_logits is not None else 0.0
    loss = logits.new_zeros(())
    if kd_weight > 0:
        teacher = teacher_logits.float().reshape(-1, vocab)  # type: ignore[union-attr]
        loss = loss + kd_weight * kd_loss(logits.reshape(-1, vocab), teacher, config.temperature)
    if kd_weight < 1:
        ce = F.cross_entropy(logits[:, :-1].reshape(-1, vocab), input_ids[:, 1:].reshape(-1))
        loss = loss + (1.0 - kd_weight) * ce
    if config.hidden_weight > 0 and student_hidden is not None and teacher_hidden is not None:
        loss = loss + config.hidden_weight * feature_loss(student_hidden.float(), teacher_hidden.float())
    return loss


def lr_at(step: int, total: int, peak: float, warmup: float, time_fraction: float = 0.0) -> float:
    """Learning rate of step ``step`` (0-based) of ``total``: linear warm-up over the first
    ``warmup`` of the run, then cosine decay to 10% of ``peak``. The run's progress is the
    larger of ``(step + 1) / total`` and ``time_fraction`` (the share of a time budget spent)."""
    fraction = min(1.0, max((step + 1) / total, time_fraction))
    if fraction <= warmup:
        return peak * fraction / warmup
    progress = (fraction - warmup) / (1.0 - warmup)
    return peak * (0.1 + 0.45 * (1.0 + math.cos(math.pi * progress)))


def use_bf16(setting: str, device: torch.device | str) -> bool:
    """Resolve ``RecoverConfig.bf16`` (``auto`` / ``on`` / ``off``) for ``device``."""
    if setting == "auto":
        return fast_bf16(device)
    return setting == "on"
