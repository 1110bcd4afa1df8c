"""Knowledge distillation for recovery: soft targets with temperature mixed with the task
loss, and optional hidden-feature matching."""

from prunekit.distill.capture import capture_outputs
from prunekit.distill.config import DistillConfig
from prunekit.distill.losses import distillation_loss, feature_loss, kd_loss
from prunekit.distill.trainer import distill

__all__ = ["DistillConfig", "distill", "kd_loss", "distillation_loss", "feature_loss", "capture_outputs"]
