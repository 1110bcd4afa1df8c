"""Ultralytics YOLO models: load (yaml or ``.pt``), prune, fine-tune with Ultralytics.

``ultralytics`` is AGPL-3.0 and an optional extra (``pip install 'prunekit[yolo]'``);
importing this package does not import it. The journey: ``docs/yolo.md``.

    model = load_yolo("yolo11n.yaml")              # or a .pt you trained
    prune_channels_(model, torch.rand(1, 3, 640, 640), StructuredConfig(ratio=0.5))
    as_yolo(model).train(data="data.yaml", epochs=10)   # Ultralytics' trainer, pruned model
"""

from prunekit.yolo.load import load_yolo, ultralytics_available, yolo_task
from prunekit.yolo.toy_data import write_box_dataset
from prunekit.yolo.train import as_yolo, recorded_imgsz

__all__ = ["load_yolo", "ultralytics_available", "yolo_task", "as_yolo", "recorded_imgsz",
           "write_box_dataset"]
