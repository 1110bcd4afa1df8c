"""``prunekit prune``: structured pruning of a torchvision model from the command line.

    prunekit prune --model torchvision:resnet50 --ratio 0.5 --round-to 8 --out runs/r50
    prunekit prune --model torchvision:resnet50 --target-latency 0.5 --batch 8 --out runs/r50
    prunekit prune --model ultralytics:yolo11n.yaml --input-size 640 --out runs/yolo11n
    prunekit prune --model ultralytics:runs/detect/train/weights/best.pt --input-size 640 --out runs/p

Writes ``DIR/plan.json`` + ``DIR/model.safetensors`` (reload with ``load_pruned``) and
``DIR/metrics.json`` with ``before`` / ``after`` params, MACs and latency at batch 1 and
8 (dense and pruned timed alternately), plus ``prune_seconds``; prints a table.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from prunekit.cli.args import fraction, positive_int
from prunekit.config.device import resolve_device, to_device
from prunekit.errors import ConfigError, require
from prunekit.io import atomic_write_json
from prunekit.structured.config import ALLOCATIONS, IMPORTANCES, StructuredConfig


def _target(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="structured pruning: physically remove channels/neurons/head dims",
        description="Prune a model structurally (ratio or MACs/params/latency target) and "
        "write plan.json, model.safetensors and metrics.json.",
    )
    p.add_argument("--model", required=True,
                   help="torchvision:NAME, any classification, segmentation, detection or video "
                   "model (e.g. torchvision:resnet50, torchvision:fasterrcnn_mobilenet_v3_large_fpn), "
                   "hf:FOLDER, a Hugging Face model folder (BERT-like, ViT, GPT-2 ...), or "
                   "ultralytics:YAML|PT, a YOLO built from its yaml (e.g. ultralytics:yolo11n.yaml) or "
                   "loaded from your .pt (pip install prunekit[yolo])")
    p.add_argument("--ratio", type=fraction, default=0.5, help="fraction removed per group")
    p.add_argument("--importance", default="l2", choices=IMPORTANCES, help="unit importance")
    p.add_argument("--allocation", default="uniform", choices=ALLOCATIONS,
                   help="uniform | global | latency (by measured ms per MAC at --batch)")
    p.add_argument("--round-to", type=positive_int, default=None, help="kept units multiple")
    p.add_argument("--target-macs", type=_target, default=None, help="keep this MACs fraction")
    p.add_argument("--target-params", type=_target, default=None, help="keep this params fraction")
    p.add_argument("--target-latency", type=_target, default=None,
                   help="keep this fraction of the measured dense latency (at --batch)")
    p.add_argument("--batch", type=positive_int, default=1, help="batch of the latency target")
    p.add_argument("--input-size", type=positive_int, default=224, help="image side (default 224)")
    p.add_argument("--frames", type=positive_int, default=16, help="clip length of video models")
    p.add_argument("--seq-len", type=positive_int, default=128,
                   help="tokens per example for hf: text models (default 128)")
    p.add_argument("--ignore", action="append", default=[], help="module name to leave alone")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads")
    p.add_argument("--device", default="auto",
                   help="cpu, cuda or auto (cuda when present): where the model is traced, pruned and timed")
    p.add_argument("--latency-runs", type=positive_int, default=10,
                   help="timed runs per latency measurement (median)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def load_model(spec: str) -> tuple[torch.nn.Module, str]:
    """Build ``torchvision:NAME`` with random weights (no download), or load ``hf:FOLDER``
    (a Hugging Face model saved with ``save_pretrained``); return it and its task:
    classification, segmentation, detection, video, or hf-text / hf-vision."""
    source, _, name = spec.partition(":")
    if source == "hf" and name:
        return _load_hf(name)
    if source == "ultralytics" and name:
        return _load_ultralytics(name)
    if source != "torchvision" or not name:
        raise ConfigError("--model must look like torchvision:NAME, hf:FOLDER or "
                          f"ultralytics:YAML, got {spec!r}")
    tv = require("torchvision", extra="vision")
    modules = {"classification": tv.models, "segmentation": tv.models.segmentation,
               "detection": tv.models.detection, "video": tv.models.video}
    for task, module in modules.items():
        if name in tv.models.list_models(module=module):
            extra = {"weights_backbone": None} if task in ("segmentation", "detection") else {}
            return tv.models.get_model(name, weights=None, **extra).eval(), task
    names = [n for m in modules.values() for n in tv.models.list_models(module=m)]
    close = [n for n in names if name.split("_")[0] in n][:6]
    raise ConfigError(f"unknown torchvision model {name!r} (classification, segmentation, "
                      "detection and video models are supported)" +
                      (f"; did you mean one of {close}?" if close else ""))


def _load_hf(folder: str) -> tuple[torch.nn.Module, str]:
    transformers = require("transformers", extra="hf")
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise ConfigError(f"--model hf:{folder}: {path} is not a folder with config.json "
                          "(save the model with save_pretrained first)")
    model = transformers.AutoModel.from_pretrained(str(path)).eval()
    vision = hasattr(model.config, "image_size") and hasattr(model.config, "num_channels")
    return model, "hf-vision" if vision else "hf-text"


def _load_ultralytics(spec: str) -> tuple[torch.nn.Module, str]:
    """A YOLO detection / segmentation / pose / OBB model from its yaml (random weights)
    or a local Ultralytics ``.pt`` (``prunekit.yolo.load_yolo``; nothing downloaded)."""
    from prunekit.yolo import load_yolo

    return load_yolo(spec), "yolo"


def example_input(task: str, size: int, frames: int, model: torch.nn.Module | None = None,
                  seq_len: int = 128) -> Any:
    """A batch-1 random input: images (1, 3, S, S); clips (1, 3, frames, S, S); for a
    Hugging Face model ``{"pixel_values"}`` at its configured image size, or
    ``{"input_ids", "attention_mask"}`` of ``seq_len`` random tokens. Detectors take the
    4-D batch as their list of images; YOLO models a side rounded up to their stride."""
    gen = torch.Generator().manual_seed(0)
    if task == "hf-vision":
        c = model.config
        return {"pixel_values": torch.rand(1, c.num_channels, c.image_size, c.image_size,
                                           generator=gen)}
    if task == "hf-text":
        ids = torch.randint(0, model.config.vocab_size, (1, seq_len), generator=gen)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if task == "video":
        return torch.rand(1, 3, frames, size, size, generator=gen)
    if task == "yolo":
        stride = int(max(getattr(model, "stride", torch.tensor([32.0])).max().item(), 1))
        size = -(-size // stride) * stride
    return torch.rand(1, 3, size, size, generator=gen)


def _taylor_data(model: torch.nn.Module, x: torch.Tensor, batches: int = 4):
    """Proxy calibration without a dataset: random images labelled by the model itself."""
    gen = torch.Generator().manual_seed(0)
    data = []
    for _ in range(batches):
        xb = torch.randn((8,) + tuple(x.shape[1:]), generator=gen).to(x.device)
        with torch.no_grad():
            yb = model.eval()(xb).argmax(-1)
        data.append((xb, yb))
    return data


def _metrics(dense, pruned, x1, runs) -> tuple[dict[str, Any], dict[str, Any]]:
    from prunekit.metrics import count_macs, count_params
    from prunekit.structured.targets import batch_of, interleaved_latency

    out = []
    lat = {}
    for b in (1, 8):
        lat[b] = interleaved_latency([dense, pruned], batch_of(x1, b), runs=runs)
    for i, m in enumerate((dense, pruned)):
        out.append({
            "params": count_params(m),
            "macs": count_macs(m, x1),
            "latency_ms_b1": round(lat[1][i], 3),
            "latency_ms_b8": round(lat[8][i], 3),
        })
    return out[0], out[1]


def run(args: argparse.Namespace) -> int:
    from prunekit.structured import prune_channels_, save_pruned
    from prunekit.structured.targets import batch_of, interleaved_times, median_ratio

    if args.threads:
        torch.set_num_threads(args.threads)
    config = StructuredConfig(
        ratio=args.ratio, importance=args.importance, allocation=args.allocation,
        round_to=args.round_to, ignored_layers=tuple(args.ignore),
        target_macs=args.target_macs, target_params=args.target_params,
        target_latency=args.target_latency, latency_batch=args.batch,
        latency_runs=args.latency_runs,
    )
    device = resolve_device(args.device)
    model, task = load_model(args.model)
    x = example_input(task, args.input_size, args.frames, model, args.seq_len)
    model, x = model.to(device), to_device(x, device)
    dense = copy.deepcopy(model)
    kwargs = {}
    if args.importance in ("taylor", "hessian"):
        if task != "classification":
            raise ConfigError(f"--importance {args.importance} needs a classifier (its proxy "
                              f"labels are the model's own predictions); {args.model} is a "
                              f"{task} model: use l1, l2, fpgm, bn_scale or random")
        kwargs = {"data": _taylor_data(model, x), "loss_fn": torch.nn.functional.cross_entropy}
    elif args.importance == "activation":  # calibration statistics of the example input itself
        kwargs = {"data": [x]}
    start = time.perf_counter()
    result = prune_channels_(model, x, config, **kwargs)
    seconds = time.perf_counter() - start
    out = Path(args.out)
    save_pruned(model, out)
    before, after = _metrics(dense, model, x, args.latency_runs)
    metrics: dict[str, Any] = {
        "model": args.model,
        "task": task,
        "input": ({k: list(v.shape) for k, v in x.items()} if isinstance(x, dict)
                  else list(x.shape)),
        "config": config.to_dict(),
        "ratio_used": round(result.ratio, 4),
        "threads": torch.get_num_threads(),
        "device": device,
        "before": before,
        "after": after,
        "prune_seconds": round(seconds, 3),
        "search": result.search,
    }
    if args.target_latency is not None:
        xb = batch_of(x, args.batch)
        d_t, p_t = interleaved_times([dense, model], xb, runs=max(args.latency_runs, 20))
        d_ms, p_ms = statistics.median(d_t), statistics.median(p_t)
        metrics["latency_target"] = {
            "batch": args.batch,
            "target_fraction": args.target_latency,
            "dense_ms": round(d_ms, 3),
            "pruned_ms": round(p_ms, 3),
            # median of per-round ratios: load drift between rounds cancels
            "achieved_fraction": round(median_ratio(p_t, d_t), 4),
        }
    atomic_write_json(out / "metrics.json", metrics)
    _print_table(args.model, before, after, seconds, metrics.get("latency_target"))
    print(f"wrote {out / 'plan.json'}, {out / 'model.safetensors'}, {out / 'metrics.json'}")
    return 0


def _print_table(name, before, after, seconds, target) -> None:
    rows = [("params", "params"), ("MACs", "macs"), ("latency b1 (ms)", "latency_ms_b1"),
            ("latency b8 (ms)", "latency_ms_b8")]
    print(f"{name}: pruned in {seconds:.2f}s")
    print(f"{'metric':<18}{'before':>16}{'after':>16}{'after/before':>14}")
    for label, key in rows:
        b, a = before[key], after[key]
        fmt = (lambda v: f"{v:,.0f}") if isinstance(b, int) else (lambda v: f"{v:,.2f}")
        print(f"{label:<18}{fmt(b):>16}{fmt(a):>16}{a / b:>14.3f}")
    if target:
        print(f"latency target b{target['batch']}: {target['target_fraction']:.2f} of dense, "
              f"achieved {target['achieved_fraction']:.3f}")
