"""ONNX export of pruned models, verified in onnxruntime, with ORT latency.

Masks are baked into a copy first (the user's model is untouched), so the exported graph
holds plain weights; structurally pruned models export as the smaller dense models they are.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunekit.errors import ModelError, require
from prunekit.io.atomic import atomic_write_bytes
from prunekit.masks.parametrize import plain_copy


@dataclass(frozen=True)
class OnnxCheck:
    """Result of running the exported file in onnxruntime against PyTorch."""

    max_abs_diff: float
    atol: float
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _inputs(example_input: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    if isinstance(example_input, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in example_input):
        return tuple(example_input)
    raise ModelError("ONNX export takes a tensor or a tuple of tensors as example_input")


def export_onnx(
    model: nn.Module,
    example_input: Any,
    path: str | os.PathLike[str],
    opset: int = 18,
    dynamic_batch: bool = True,
) -> Path:
    """Export ``model`` (masks baked into a copy) to one ONNX file, written atomically.

    Args:
        model: any model prunekit pruned (masked or structurally pruned).
        example_input: a tensor (or tuple of tensors) with a batch dimension first.
        path: the ``.onnx`` file to write (weights embedded, no external data file).
        opset: ONNX opset version.
        dynamic_batch: let the batch dimension vary in the exported graph.

    Returns:
        The path.

    Example:
        >>> import tempfile
        >>> p = export_onnx(nn.Linear(4, 2), torch.zeros(1, 4), tempfile.mkdtemp() + "/m.onnx")
        >>> p.stat().st_size > 0
        True
    """
    require("onnx", "export")
    inputs = _inputs(example_input)
    plain = plain_copy(model).eval()
    names = [f"input_{i}" for i in range(len(inputs))] if len(inputs) > 1 else ["input"]
    dynamic_axes = {n: {0: "batch"} for n in [*names, "output"]} if dynamic_batch else None
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    plain,
                    inputs,
                    str(tmp_path),
                    input_names=names,
                    output_names=["output"],
                    opset_version=opset,
                    dynamic_axes=dynamic_axes,
                    dynamo=False,
                )
        except Exception as exc:  # the exporter raises many types; name the model and cause
            raise ModelError(f"ONNX export of {type(model).__name__} failed: {type(exc).__name__}: {exc}") from exc
        return atomic_write_bytes(path, tmp_path.read_bytes())


def ort_session(path: str | os.PathLike[str], threads: int | None = None) -> Any:
    """An onnxruntime CPU ``InferenceSession`` for ``path`` (``threads`` intra-op threads)."""
    ort = require("onnxruntime", "export")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _feed(session: Any, inputs: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
    return {i.name: t.detach().cpu().numpy() for i, t in zip(session.get_inputs(), inputs, strict=True)}


def verify_onnx(model: nn.Module, path: str | os.PathLike[str], example_input: Any, atol: float = 1e-4) -> OnnxCheck:
    """Run the ONNX file in onnxruntime and compare with ``model`` in PyTorch (eval mode).

    Example:
        >>> import tempfile
        >>> lin, x = nn.Linear(4, 2), torch.randn(3, 4)
        >>> verify_onnx(lin, export_onnx(lin, x, tempfile.mkdtemp() + "/m.onnx"), x).ok
        True
    """
    inputs = _inputs(example_input)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(*inputs)
    finally:
        model.train(was_training)
    session = ort_session(path)
    got = session.run(None, _feed(session, inputs))[0]
    diff = float(np.abs(got - expected.detach().cpu().numpy()).max()) if got.size else 0.0
    return OnnxCheck(max_abs_diff=diff, atol=atol, ok=bool(diff <= atol))


def ort_latency_ms(
    paths: list[str | os.PathLike[str]], example_input: Any, warmup: int = 5, runs: int = 30, threads: int | None = None
) -> list[float]:
    """Median onnxruntime latency (ms) of each file, timed interleaved (file 1, 2, ..., 1, 2, ...)
    so machine load affects all alike.

    Example:
        >>> import tempfile
        >>> p = export_onnx(nn.Linear(4, 2), torch.zeros(1, 4), tempfile.mkdtemp() + "/m.onnx")
        >>> len(ort_latency_ms([p], torch.zeros(1, 4), warmup=1, runs=3))
        1
    """
    inputs = _inputs(example_input)
    sessions = [ort_session(p, threads) for p in paths]
    feeds = [_feed(s, inputs) for s in sessions]
    for s, f in zip(sessions, feeds, strict=True):
        for _ in range(warmup):
            s.run(None, f)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(runs):
        for i, (s, f) in enumerate(zip(sessions, feeds, strict=True)):
            start = time.perf_counter()
            s.run(None, f)
            times[i].append((time.perf_counter() - start) * 1000.0)
    return [statistics.median(t) for t in times]
