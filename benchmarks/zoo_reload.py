"""Fresh-process reload of ``benchmarks/zoo.py``: build the architecture, ``load_pruned``.

    python benchmarks/zoo_reload.py SOURCE NAME FOLDER

Reads ``FOLDER/x.pt`` and writes the outputs (a list of tensors) to ``FOLDER/y.pt``.
Nothing is pruned or traced in this process before ``load_pruned``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from zoo_sources import SOURCES, flat_outputs


def main(source: str, name: str, folder: str) -> None:
    from prunekit.structured import load_pruned

    torch.set_num_threads(1)
    model = load_pruned(SOURCES[source]().build(name), folder).eval()
    x = torch.load(Path(folder) / "x.pt")
    with torch.no_grad():
        torch.save(flat_outputs(model(x)), Path(folder) / "y.pt")


if __name__ == "__main__":
    main(*sys.argv[1:4])
