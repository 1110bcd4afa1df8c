"""Shared by the graph tests: prune a test model at ratio 0.5 with its output shape
checked, and reload pruned models with ``load_pruned`` in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from prunekit.structured import StructuredConfig, prune_channels_, save_pruned

HERE = Path(__file__).resolve().parent

RELOAD = r"""
import importlib, json, sys, torch
sys.path.insert(0, sys.argv[1])
Net = importlib.import_module(sys.argv[4]).Net
import prunekit
errors = {}
for kind in sys.argv[3].split(","):
    folder = sys.argv[2] + "/" + kind
    model = prunekit.load_pruned(Net(kind).eval(), folder)
    x = torch.load(folder + "/x.pt")
    with torch.no_grad():
        errors[kind] = (model(x) - torch.load(folder + "/y.pt")).abs().max().item()
print(json.dumps(errors))
"""


def prune_kind(net: Callable[[str], torch.nn.Module], example: Callable[[str], torch.Tensor],
               kind: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """``prune_half`` of ``net(kind)`` built with seed 0 (the pattern tests' models)."""
    torch.manual_seed(0)
    return prune_half(net(kind).eval(), example(kind))


def prune_half(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.nn.Module, torch.Tensor]:
    """``prune_channels_`` at ratio 0.5; the output shape must not change."""
    with torch.no_grad():
        shape = model(x).shape
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    with torch.no_grad():
        assert model(x).shape == shape
    return model, x


def fresh_reload_errors(folder: Path, module: str, kinds, pruned: Callable) -> dict[str, float]:
    """Prune every kind (``pruned(kind) -> (model, x)``), save it under ``folder``, reload
    each with ``module.Net(kind)`` in a new process; the largest output difference per kind."""
    for kind in kinds:
        model, x = pruned(kind)
        save_pruned(model, folder / kind)
        torch.save(x, folder / kind / "x.pt")
        with torch.no_grad():
            torch.save(model(x), folder / kind / "y.pt")
    out = subprocess.run([sys.executable, "-c", RELOAD, str(HERE), str(folder), ",".join(kinds),
                          module], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
