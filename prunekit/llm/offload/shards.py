"""Read a Hugging Face checkpoint tensor by tensor, and write one shard at a time.

:class:`ShardReader` maps every tensor name to its ``.safetensors`` file (through
``model.safetensors.index.json`` or the single ``model.safetensors``) and reads only the
names asked for with ``safetensors.safe_open``. :class:`ShardWriter` writes each group of
tensors to its own shard atomically and finally the index, so the folder loads with
``from_pretrained`` (also sharded, also with ``low_cpu_mem_usage=True``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch

from prunekit.errors import ModelError
from prunekit.io import atomic_write_json, save_tensors

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


class ShardReader:
    """Where each tensor of a checkpoint folder lives, and reads of a few of them.

    Example:
        >>> import tempfile
        >>> from prunekit.io import save_tensors
        >>> d = Path(tempfile.mkdtemp()); _ = save_tensors({"a": torch.ones(2), "b": torch.zeros(3)}, d / SINGLE_NAME)
        >>> ShardReader(d).read(["b"])["b"].tolist()
        [0.0, 0.0, 0.0]
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        from safetensors import safe_open

        self.folder = Path(folder)
        index = self.folder / INDEX_NAME
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            self.files = {name: self.folder / file for name, file in weight_map.items()}
        elif (self.folder / SINGLE_NAME).is_file():
            with safe_open(str(self.folder / SINGLE_NAME), framework="pt") as fh:
                self.files = {name: self.folder / SINGLE_NAME for name in fh.keys()}
        else:
            raise ModelError(
                f"{self.folder} has neither {INDEX_NAME} nor {SINGLE_NAME}; out-of-core pruning reads "
                "safetensors checkpoints (save the model with save_pretrained first)"
            )

    def names(self) -> list[str]:
        """Every tensor name of the checkpoint."""
        return list(self.files)

    def read(self, names: Iterable[str], *, dtype: torch.dtype | None = None,
             device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The named tensors (copies owned by the caller), optionally cast and moved."""
        from safetensors import safe_open

        by_file: dict[Path, list[str]] = {}
        for name in names:
            if name not in self.files:
                raise ModelError(f"tensor {name!r} is not in the checkpoint {self.folder}")
            by_file.setdefault(self.files[name], []).append(name)
        out: dict[str, torch.Tensor] = {}
        for file, wanted in by_file.items():
            with safe_open(str(file), framework="pt") as fh:
                for name in wanted:
                    t = fh.get_tensor(name)
                    out[name] = t.to(device=device, dtype=dtype or t.dtype)  # get_tensor's is owned
        return out


class ShardWriter:
    """Write tensor groups as shards ``model-0000i-of-0000n.safetensors`` and the index.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); w = ShardWriter(d, shards=2)
        >>> _ = w.write({"a": torch.ones(2)}); _ = w.write({"b": torch.zeros(1)}); _ = w.finish()
        >>> sorted(json.loads((d / INDEX_NAME).read_text())["weight_map"].items())
        [('a', 'model-00001-of-00002.safetensors'), ('b', 'model-00002-of-00002.safetensors')]
    """

    def __init__(self, folder: str | os.PathLike[str], shards: int) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shards = shards
        self.written = 0
        self.weight_map: dict[str, str] = {}
        self.total_size = 0

    def write(self, tensors: dict[str, torch.Tensor]) -> Path:
        """Write the next shard (atomically) and return its path."""
        if self.written >= self.shards:
            raise ModelError(f"ShardWriter for {self.folder} was told {self.shards} shards; got one more")
        self.written += 1
        name = f"model-{self.written:05d}-of-{self.shards:05d}.safetensors"
        path = save_tensors(tensors, self.folder / name, metadata={"format": "pt"})
        for key, t in tensors.items():
            self.weight_map[key] = name
            self.total_size += t.numel() * t.element_size()
        return path

    def finish(self) -> Path:
        """Write ``model.safetensors.index.json``; every announced shard must be written."""
        if self.written != self.shards:
            raise ModelError(f"{self.folder}: {self.written} of {self.shards} shards written")
        index = {"metadata": {"total_size": self.total_size}, "weight_map": dict(sorted(self.weight_map.items()))}
        return atomic_write_json(self.folder / INDEX_NAME, index)
