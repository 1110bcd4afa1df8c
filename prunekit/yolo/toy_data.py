"""A tiny generated detection dataset in YOLO format, for trying a pipeline offline.

Grey squares and rectangles of one class (``box``) on a dark noisy background; labels are
exact. Nothing is downloaded; the images are written as PNG with Pillow (a matplotlib
dependency, so always present).

Example:
    >>> import tempfile, yaml
    >>> data = write_box_dataset(tempfile.mkdtemp(), images=4, size=32)
    >>> cfg = yaml.safe_load(data.read_text())
    >>> cfg["names"], len(list((data.parent / "labels" / "train").glob("*.txt")))
    ({0: 'box'}, 4)
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import yaml

from prunekit.errors import ConfigError
from prunekit.io import atomic_write_bytes, atomic_write_text


def write_box_dataset(folder: str | os.PathLike[str], images: int = 16, size: int = 64,
                      boxes: int = 2, val_images: int = 4, seed: int = 0) -> Path:
    """Write ``images`` training and ``val_images`` validation images of ``size`` x
    ``size`` with ``boxes`` boxes each.

    Layout: ``folder/images/{train,val}/*.png``, ``folder/labels/{train,val}/*.txt``
    (``class cx cy w h``, normalised) and ``folder/data.yaml``.

    Returns:
        The path of ``data.yaml`` (give it to ``train(data=...)``).
    """
    if images < 1 or val_images < 1 or boxes < 1 or size < 16:
        raise ConfigError(f"write_box_dataset needs images >= 1, val_images >= 1, boxes >= 1 "
                          f"and size >= 16, got images={images}, val_images={val_images}, "
                          f"boxes={boxes}, size={size}")
    root = Path(folder)
    rng = np.random.default_rng(seed)
    for split, count in (("train", images), ("val", val_images)):
        _write_split(root, split, count, size, boxes, rng)
    data = root / "data.yaml"
    atomic_write_text(data, yaml.safe_dump({"path": str(root.resolve()), "train": "images/train",
                                            "val": "images/val", "names": {0: "box"}}))
    return data


def _write_split(root: Path, split: str, count: int, size: int, boxes: int,
                 rng: np.random.Generator) -> None:
    from PIL import Image

    img_dir, lab_dir = root / "images" / split, root / "labels" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    lo, hi = max(4, size // 6), max(5, size // 2)
    for i in range(count):
        img = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
        lines = []
        for _ in range(boxes):
            w, h = (int(v) for v in rng.integers(lo, hi, 2))
            x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            img[y0:y0 + h, x0:x0 + w] = rng.integers(170, 255)
            lines.append(f"0 {(x0 + w / 2) / size:.6f} {(y0 + h / 2) / size:.6f} "
                         f"{w / size:.6f} {h / size:.6f}")
        png = io.BytesIO()
        Image.fromarray(img).save(png, format="PNG")
        atomic_write_bytes(img_dir / f"{i:04d}.png", png.getvalue())
        atomic_write_text(lab_dir / f"{i:04d}.txt", "\n".join(lines) + "\n")
