"""The classic workflow in one call: train -> prune -> fine-tune -> make permanent -> compare.

``run_demo`` returns the metrics dict that ``prunekit demo`` writes as ``metrics.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prunekit._version import __version__
from prunekit.config.base import ConfigBase, check_choice, check_fraction, check_positive_int
from prunekit.data.images import DATASETS, load_dataset
from prunekit.io.tensors import save_tensors
from prunekit.masks.parametrize import effective_state_dict, make_permanent
from prunekit.masks.report import overall_sparsity, sparsity_report
from prunekit.masks.sparsify import SparsifyConfig, sparsify_
from prunekit.metrics.summary import model_metrics
from prunekit.models.small import MODELS, build_model
from prunekit.train.loops import TrainConfig, evaluate, fit
from prunekit.train.seed import seed_everything

#: baseline epochs per dataset when not given (sized for a 2-core CPU)
DEFAULT_EPOCHS = {"digits": 12, "mnist5k": 8, "fashion-mnist": 3}


@dataclass(frozen=True)
class DemoConfig(ConfigBase):
    """Settings of the demo workflow.

    Attributes:
        dataset: ``digits`` (embedded), ``mnist5k`` or ``fashion-mnist``.
        sparsity: global fraction of conv/linear weights to prune, in [0, 1).
        epochs: baseline epochs (None: a per-dataset default).
        finetune_epochs: fine-tuning epochs (None: half the baseline epochs, at least 2).
        lr: baseline learning rate; fine-tuning uses ``lr * finetune_lr_scale``.
        finetune_lr_scale: learning-rate factor for fine-tuning.
        model: ``convnet`` or ``lenet300100``.
        seed: seed of initialisation and data order.
        latency_runs: timed forward passes per latency figure.
        threads: torch threads for the whole run (restored afterwards). The demo's models
            are tiny: one thread is as fast as two on a quiet machine and avoids the 10-20x
            slow-down of oversubscribed threads on a busy one.

    Example:
        >>> DemoConfig(sparsity=0.9).resolved_epochs()
        12
    """

    dataset: str = "digits"
    sparsity: float = 0.5
    epochs: int | None = None
    finetune_epochs: int | None = None
    lr: float = 2e-3
    finetune_lr_scale: float = 0.25
    model: str = "convnet"
    seed: int = 0
    latency_runs: int = 50
    threads: int = 1

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, tuple(DATASETS))
        object.__setattr__(self, "sparsity", check_fraction("sparsity", self.sparsity))
        if self.epochs is not None:
            check_positive_int("epochs", self.epochs)
        if self.finetune_epochs is not None:
            check_positive_int("finetune_epochs", self.finetune_epochs, allow_zero=True)
        check_choice("model", self.model, MODELS)
        check_positive_int("seed", self.seed, allow_zero=True)
        check_positive_int("latency_runs", self.latency_runs)
        check_positive_int("threads", self.threads)

    def resolved_epochs(self) -> int:
        return self.epochs if self.epochs is not None else DEFAULT_EPOCHS[self.dataset]

    def resolved_finetune_epochs(self) -> int:
        if self.finetune_epochs is not None:
            return self.finetune_epochs
        return max(2, self.resolved_epochs() // 2)


def _stage(model: torch.nn.Module, test_data, example: torch.Tensor, runs: int) -> dict[str, Any]:
    return {**evaluate(model, test_data), **model_metrics(model, example, latency_runs=runs)}


def run_demo(config: DemoConfig, out_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run train -> prune -> fine-tune -> make permanent, measuring every stage.

    Args:
        config: a ``DemoConfig``.
        out_dir: where to save ``baseline.safetensors`` and ``model.safetensors``
            (the final, permanent model); None saves nothing.
        progress: show progress bars.

    Returns:
        A dict with ``dataset``, ``model``, ``seed``, ``sparsity_requested``,
        ``sparsity_measured`` (over the pruned layers), ``seconds``, ``stages`` (``baseline``,
        ``pruned``, ``finetuned``, each with accuracy, loss, params, nonzero, size_bytes,
        size_compressed_bytes, macs, macs_sparse, latency_ms), ``layers`` (per-layer
        sparsity of the final model) and ``config``.

    Example:
        >>> m = run_demo(DemoConfig(epochs=1, finetune_epochs=1, latency_runs=2), progress=False)
        >>> sorted(m["stages"])
        ['baseline', 'finetuned', 'pruned']
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _run(config, out_dir, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _run(config: DemoConfig, out_dir: str | Path | None, progress: bool) -> dict[str, Any]:
    start = time.perf_counter()
    data = load_dataset(config.dataset)
    seed_everything(config.seed)
    model = build_model(config.model, data.input_shape, data.num_classes)
    example = data.test.tensors[0][:1].clone()
    stages: dict[str, dict[str, Any]] = {}

    base_cfg = TrainConfig(epochs=config.resolved_epochs(), lr=config.lr, seed=config.seed)
    fit(model, data.train, base_cfg, progress=progress, description="train baseline")
    stages["baseline"] = _stage(model, data.test, example, config.latency_runs)
    if out_dir is not None:
        save_tensors(effective_state_dict(model), Path(out_dir) / "baseline.safetensors")

    sparsify_(model, SparsifyConfig(amount=config.sparsity, scope="global"))
    stages["pruned"] = _stage(model, data.test, example, config.latency_runs)

    ft_cfg = TrainConfig(
        epochs=config.resolved_finetune_epochs(), lr=config.lr * config.finetune_lr_scale, seed=config.seed + 1
    )
    if ft_cfg.epochs:
        fit(model, data.train, ft_cfg, progress=progress, description="fine-tune")
    make_permanent(model)
    stages["finetuned"] = _stage(model, data.test, example, config.latency_runs)
    layers = sparsity_report(model)
    if out_dir is not None:
        save_tensors(model.state_dict(), Path(out_dir) / "model.safetensors")

    return {
        "prunekit_version": __version__,
        "dataset": config.dataset,
        "model": config.model,
        "seed": config.seed,
        "sparsity_requested": config.sparsity,
        "sparsity_measured": overall_sparsity(layers),
        "seconds": time.perf_counter() - start,
        "stages": stages,
        "layers": [r.to_dict() for r in layers],
        "config": config.to_dict(),
        "torch_threads": config.threads,
    }
