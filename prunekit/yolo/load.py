"""Load an Ultralytics YOLO model for pruning: from a model yaml or a user's ``.pt``.

``ultralytics`` (AGPL-3.0) is an optional extra, ``pip install 'prunekit[yolo]'``; it is
imported only here and in ``prunekit.surgery.ultralytics_rules``, never by prunekit's
core, and without its side effects on numpy / torch print settings.

Example:
    >>> import pytest
    >>> if not ultralytics_available():
    ...     pytest.skip("needs the optional yolo extra (ultralytics)")
    >>> model = load_yolo("yolov8n.yaml")
    >>> type(model).__name__, yolo_task(model)
    ('DetectionModel', 'detect')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from prunekit.errors import ConfigError, require

#: prediction heads prunekit prunes around (their outputs are kept); ``Detect`` subclasses
HEAD_TASKS = {"Detect": "detect", "v10Detect": "detect", "Segment": "segment",
              "Segment26": "segment", "Pose": "pose", "Pose26": "pose", "OBB": "obb",
              "OBB26": "obb"}


def ultralytics_available() -> bool:
    """Whether the optional ``ultralytics`` package imports (print settings kept)."""
    from prunekit.surgery.ultralytics_rules import import_ultralytics

    try:
        import_ultralytics()
    except ImportError:
        return False
    return True


def require_ultralytics() -> Any:
    """``import ultralytics`` (print settings kept, ``MissingDependencyError`` with the
    install command when absent) and register the YOLO surgery rules."""
    from prunekit.surgery.ultralytics_rules import import_ultralytics, register_ultralytics_rules

    try:
        ultralytics = import_ultralytics()
    except ImportError:
        require("ultralytics", extra="yolo")  # raises with the install command
        raise
    register_ultralytics_rules()
    return ultralytics


def yolo_task(model: nn.Module) -> str:
    """``detect`` / ``segment`` / ``pose`` / ``obb`` from a YOLO model's head.

    Raises:
        ConfigError: ``model`` is not an Ultralytics model ending in a ``Detect`` head
            (classification, RT-DETR and YOLO-World models are not supported).
    """
    require_ultralytics()
    from ultralytics.nn.modules.head import Detect

    layers = getattr(model, "model", None)
    head = layers[-1] if isinstance(layers, nn.Sequential) and len(layers) else None
    if not isinstance(head, Detect):
        raise ConfigError(
            f"a {type(model).__name__} ending in {type(head).__name__} is not a YOLO "
            "detection / segmentation / pose / OBB model (its last layer must be an "
            "ultralytics Detect head); give e.g. yolo11n.yaml, yolov8n-seg.yaml or such a .pt")
    for klass in type(head).__mro__:
        if klass.__name__ in HEAD_TASKS:
            return HEAD_TASKS[klass.__name__]
    return "detect"


def load_yolo(spec: str | os.PathLike[str], nc: int | None = None) -> nn.Module:
    """A YOLO detection / segmentation / pose / OBB model, in eval mode, ready to prune.

    Args:
        spec: an Ultralytics model yaml (``yolo11n.yaml``, ``yolov8s-seg.yaml``, or a path
            to your own yaml: random weights) or a local ``.pt`` checkpoint written by
            Ultralytics (``model.save(...)``, a training run's ``best.pt``). Nothing is
            downloaded. A ``.pt`` is unpickled by Ultralytics' own loader: load only
            checkpoints you trust.
        nc: for a yaml, the number of classes (default: the yaml's, 80 for COCO).

    Returns:
        The Ultralytics ``DetectionModel`` (or ``SegmentationModel``, ``PoseModel``,
        ``OBBModel``) itself; the YOLO surgery rules are registered. Prune it with
        ``prune_channels_``, train it with :func:`prunekit.yolo.as_yolo`.

    Raises:
        MissingDependencyError: ultralytics is not installed.
        ConfigError: ``spec`` is neither a known yaml nor an existing ``.pt`` file, or
            not a model with a YOLO ``Detect`` head.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    require_ultralytics()
    from ultralytics import YOLO

    text = str(spec)
    if nc is not None and (not text.endswith((".yaml", ".yml")) or nc < 1):
        raise ConfigError(f"nc={nc}: a class count >= 1 can only be given with a model yaml "
                          "(a .pt keeps the head it was trained with)")
    if text.endswith((".yaml", ".yml")):
        try:
            yolo = YOLO(text)
        except FileNotFoundError as exc:
            raise ConfigError(f"no such ultralytics model yaml {text!r} ({exc}); e.g. "
                              "yolo11n.yaml, yolov8n-seg.yaml, yolo11n-pose.yaml") from None
        model = yolo.model
        if nc is not None and nc != model.yaml.get("nc"):
            model = yolo.task_map[yolo.task]["model"](model.yaml, nc=nc, verbose=False)
            model.task = yolo.task
    elif text.endswith(".pt"):
        if not Path(text).is_file():
            raise ConfigError(
                f"no such file {text!r}: give a .pt checkpoint you have (prunekit downloads "
                "no weights) or a model yaml such as yolo11n.yaml")
        model = YOLO(text).model
    else:
        raise ConfigError(f"{text!r} is neither a model yaml (yolo11n.yaml) nor an "
                          "Ultralytics .pt checkpoint")
    yolo_task(model)
    return model.float().eval()
