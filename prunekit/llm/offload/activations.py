"""The calibration hidden states between blocks: in memory, or spilled to disk.

One entry per calibration batch. On disk every entry is a raw file read back through a
memory map (``torch.from_file``) only while it is used, so the resident set holds one
batch at a time, whatever the number of calibration windows.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch


class ActivationStore:
    """A list of tensors kept in memory or, with ``folder``, in files.

    It serves as a block's ``BlockInputs.hidden`` (:mod:`prunekit.llm.sequential`): entries
    are read onto ``device``, written back to the CPU (or the files).

    Example:
        >>> import tempfile
        >>> store = ActivationStore(folder=tempfile.mkdtemp())
        >>> store.append(torch.arange(6.0).reshape(2, 3))
        >>> store[0] = store[0] * 2
        >>> store[0].tolist(), store.on_disk
        ([[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]], True)
        >>> store.close()
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> None:
        #: entries are read onto this device (and stored on the CPU)
        self.device = device
        self._memory: list[torch.Tensor] = []
        self._meta: list[tuple[tuple[int, ...], torch.dtype]] = []
        self._folder = Path(tempfile.mkdtemp(prefix="prunekit-activations-", dir=folder)) if folder else None

    @property
    def on_disk(self) -> bool:
        return self._folder is not None

    def __len__(self) -> int:
        return len(self._meta)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for index in range(len(self)):
            yield self[index]

    def layout(self) -> tuple[list[tuple[int, ...]], int]:
        """Every entry's shape and the element size, without reading them (see
        :func:`prunekit.llm.sequential.hidden_layout`)."""
        itemsize = torch.empty(0, dtype=self._meta[0][1]).element_size() if self._meta else 4
        return [shape for shape, _ in self._meta], itemsize

    def nbytes(self) -> int:
        """Bytes of every stored tensor."""
        return sum(math.prod(shape) * torch.empty(0, dtype=dt).element_size() for shape, dt in self._meta)

    def append(self, value: torch.Tensor) -> None:
        self._meta.append(((0,), value.dtype))
        if not self.on_disk:
            self._memory.append(value)
        self[len(self._meta) - 1] = value

    def __setitem__(self, index: int, value: torch.Tensor) -> None:
        value = value.detach()
        self._meta[index] = (tuple(value.shape), value.dtype)
        if not self.on_disk:
            self._memory[index] = value.to("cpu")
            return
        path = self._path(index)
        tmp = path.with_suffix(".tmp")
        data = value.to("cpu").contiguous()
        with open(tmp, "wb") as fh:
            if data.numel():
                data.reshape(-1).view(torch.uint8).numpy().tofile(fh)
        os.replace(tmp, path)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not self.on_disk:
            return self._memory[index].to(self.device)
        shape, dtype = self._meta[index]
        numel = math.prod(shape)
        if numel == 0:
            return torch.empty(shape, dtype=dtype, device=self.device)
        mapped = torch.from_file(str(self._path(index)), shared=False, size=numel, dtype=dtype)
        out = mapped.clone().reshape(shape)  # owned copy; the map is released with `mapped`
        del mapped
        return out.to(self.device)

    def spill(self, folder: str | os.PathLike[str]) -> None:
        """Move every entry to files in a new temporary folder under ``folder``; later ones follow."""
        if self.on_disk:
            return
        self._folder = Path(tempfile.mkdtemp(prefix="prunekit-activations-", dir=folder))
        entries, self._memory = self._memory, []
        for index, value in enumerate(entries):
            self[index] = value
        del entries

    def _path(self, index: int) -> Path:
        return Path(self._folder or ".") / f"hidden-{index:06d}.bin"

    def close(self) -> None:
        """Drop every entry and delete the spill folder."""
        self._memory.clear()
        self._meta.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    def __del__(self) -> None:  # a forgotten store still removes its files
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
