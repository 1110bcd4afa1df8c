"""Fine-tune, validate, predict and export a pruned YOLO with Ultralytics' own engine.

Ultralytics' ``YOLO.train`` normally rebuilds the network from its yaml (and copies
matching weights in), which would throw the pruned widths away. :func:`as_yolo` wraps
the pruned model in a ``YOLO`` whose trainer returns that very model, so
``model.train(data=...)`` fine-tunes it with Ultralytics' losses, augmentation, EMA
and checkpoints, and ``val`` / ``predict`` / ``export`` run it as is. The input side it
was pruned at (recorded in the plan) becomes the default ``imgsz``.

Single-process training only (CPU or one GPU): Ultralytics' multi-GPU mode re-imports
the trainer class in new processes, which a wrapped model cannot follow.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from prunekit.errors import ConfigError
from prunekit.structured.plan import get_plan, recorded_input
from prunekit.yolo.load import require_ultralytics, yolo_task


def recorded_imgsz(model: nn.Module) -> int | None:
    """The square input side ``model`` was pruned at (from its plan), or None.

    Example:
        >>> from torch import nn
        >>> m = nn.Linear(2, 2)
        >>> m.__dict__["_prunekit_plan"] = {"steps": [{"input": [1, 3, 320, 320]}]}
        >>> recorded_imgsz(m)
        320
    """
    shape = recorded_input(get_plan(model))
    if isinstance(shape, list) and len(shape) == 4 and all(isinstance(s, int) for s in shape):
        return max(shape[2], shape[3])
    return None


def _check_classes(model: nn.Module, data: dict) -> None:
    head_nc = getattr(model.model[-1], "nc", None)
    if head_nc is not None and data.get("nc") is not None and int(data["nc"]) != int(head_nc):
        raise ConfigError(
            f"the dataset has {data['nc']} classes, the pruned model's head predicts {head_nc}: "
            f"a pruned model cannot be rebuilt with another head. Prune a model with "
            f"nc={data['nc']} (e.g. one trained on this dataset), or give a dataset yaml "
            f"with {head_nc} names")


def as_yolo(model: nn.Module) -> Any:
    """An Ultralytics ``YOLO`` around ``model`` (a pruned ``DetectionModel`` or subclass)
    whose ``train`` / ``val`` / ``predict`` / ``export`` use ``model`` itself.

    After ``train`` the wrapper holds the trained model (Ultralytics reloads its best
    checkpoint, the prunekit plan included), so ``save_pruned(yolo.model, dir)`` works.

    Raises:
        ConfigError: ``model`` is not a YOLO detection / segmentation / pose / OBB model,
            or (at ``train``) the dataset's class count differs from the head's.

    Example:
        >>> import pytest
        >>> from prunekit.yolo import load_yolo, ultralytics_available
        >>> if not ultralytics_available():
        ...     pytest.skip("needs the optional yolo extra (ultralytics)")
        >>> yolo = as_yolo(load_yolo("yolov8n.yaml"))
        >>> type(yolo).__name__, yolo.task
        ('PrunedYOLO', 'detect')
    """
    require_ultralytics()
    from ultralytics import YOLO
    from ultralytics.cfg import DEFAULT_CFG_DICT

    task = yolo_task(model)
    name = str((getattr(model, "yaml", None) or {}).get("yaml_file") or f"yolo-{task}.yaml")
    imgsz = recorded_imgsz(model)

    class PrunedYOLO(YOLO):
        """``YOLO`` holding a given (pruned) model instead of building one from a yaml."""

        def _new(self, cfg: str, task: str | None = None, verbose: bool = False) -> None:
            self.cfg, self.task, self.model, self.model_name = cfg, task, model, cfg
            self.overrides.update(model=cfg, task=task)
            if imgsz is not None:
                self.overrides["imgsz"] = imgsz
            self.model.args = {**DEFAULT_CFG_DICT, **self.overrides}
            self.model.task = task

        @property
        def task_map(self) -> dict[str, dict[str, Any]]:
            tasks = {k: dict(v) for k, v in super().task_map.items()}
            wrapper = self

            class KeepModelTrainer(tasks[self.task]["trainer"]):
                """The task's trainer, training the wrapped model instead of a new one."""

                def get_model(self, cfg: Any = None, weights: Any = None, verbose: bool = True):
                    _check_classes(wrapper.model, self.data)
                    return wrapper.model

            tasks[self.task]["trainer"] = KeepModelTrainer
            return tasks

    return PrunedYOLO(name if name.endswith((".yaml", ".yml")) else f"{name}.yaml", task=task)
