"""A pruned YOLO fine-tunes with Ultralytics' own trainer (``as_yolo(model).train``) on a
tiny generated YOLO-format dataset, and its loss falls.

Needs the optional ``yolo`` extra (``ultralytics``, AGPL, not in ``.[all]``): skipped
without it; ``.ci/run`` installs it so CI runs this test.
"""

import os
import statistics

import pytest
import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
from prunekit.yolo import ultralytics_available  # noqa: E402

if not ultralytics_available():
    pytest.skip("needs the optional yolo extra (pip install 'prunekit[yolo]')", allow_module_level=True)

from prunekit.errors import ConfigError  # noqa: E402
from prunekit.metrics import count_params  # noqa: E402
from prunekit.structured import StructuredConfig, get_plan, prune_channels_  # noqa: E402
from prunekit.yolo import as_yolo, load_yolo, recorded_imgsz, write_box_dataset  # noqa: E402

# fixed, augmentation-free settings: what changes the loss is the optimiser alone
TRAIN = dict(epochs=1, batch=8, nbs=8, workers=0, device="cpu", val=False, plots=False, mosaic=0,
             hsv_h=0, hsv_s=0, hsv_v=0, fliplr=0, translate=0, scale=0, warmup_epochs=0, amp=False,
             optimizer="AdamW", lr0=0.003, seed=0, deterministic=True, verbose=False, exist_ok=True)


def _batch_loss(trainer):
    items = trainer.loss_items
    values = items.values() if isinstance(items, dict) else items
    return float(sum(float(v) for v in values))


def test_a_pruned_yolo_fine_tunes_with_ultralytics_and_its_loss_falls(tmp_path):
    data = write_box_dataset(tmp_path / "boxes", images=160, size=64, val_images=4)
    torch.manual_seed(0)
    model = load_yolo("yolo11n.yaml", nc=1)
    dense_params = count_params(model)
    prune_channels_(model, torch.rand(1, 3, 64, 64), StructuredConfig(ratio=0.5))
    pruned_params = count_params(model)
    assert pruned_params < dense_params / 2
    yolo = as_yolo(model)
    assert yolo.model is model and yolo.overrides["imgsz"] == 64 == recorded_imgsz(model)

    losses: list[float] = []
    yolo.add_callback("on_train_batch_end", lambda trainer: losses.append(_batch_loss(trainer)))
    yolo.train(data=str(data), project=str(tmp_path / "runs"), name="ft", **TRAIN)

    assert len(losses) == 20  # 160 images / batch 8, one epoch
    # From random weights the YOLO loss first rises (its task-aligned assigner weights
    # boxes by the IoU they reach, ~0 at first), then falls as the model fits the boxes.
    peak = max(losses[:8])
    assert statistics.mean(losses[-4:]) < 0.75 * peak, losses
    # still the same, pruned Ultralytics model (reloaded from Ultralytics' best.pt), plan kept
    trained = yolo.model
    assert type(trained).__name__ == "DetectionModel" and count_params(trained) == pruned_params
    assert get_plan(trained) is not None and recorded_imgsz(trained) == 64


def test_training_on_a_dataset_with_another_class_count_is_refused(tmp_path):
    data = write_box_dataset(tmp_path / "boxes", images=2, size=32, val_images=1)
    model = load_yolo("yolov8n.yaml")  # 80 classes
    with pytest.raises(ConfigError, match="1 classes.*predicts 80"):
        as_yolo(model).train(data=str(data), project=str(tmp_path / "runs"), name="x", **TRAIN)
