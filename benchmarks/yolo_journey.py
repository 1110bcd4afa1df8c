"""The YOLO journey of ``docs/yolo.md``, measured: prune, fine-tune, export ONNX, latency.

1. ``load_yolo("yolo11n.yaml", nc=1)`` (random weights; a ``.pt`` of yours works alike),
   pruned at ratio 0.5 on a ``--size`` input (params, MACs, prune time);
2. fine-tuned for one epoch with Ultralytics' trainer (``as_yolo(model).train``) on a
   generated YOLO-format box dataset (64 x 64 images): the loss per batch;
3. ``save_pruned`` and ``load_pruned`` on a fresh model: outputs equal;
4. dense and pruned exported with ``prunekit.export.export_onnx`` (Ultralytics' head in
   its export mode: one output tensor), checked in onnxruntime (``verify_onnx``);
5. latency at batch 1, ``--threads`` threads: PyTorch with ``prunekit.metrics.measure_latency``
   and onnxruntime with ``ort_latency_ms`` (dense and pruned interleaved), medians in ms.

Needs the optional ``yolo`` extra and the ``export`` extra. Last line JSON.

    PYTHONPATH=. python benchmarks/yolo_journey.py [--size 320] [--threads 1] [--out F.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _latency(dense, pruned, x, runs: int, threads: int) -> dict:
    from prunekit.metrics import measure_latency

    # alternate the two models, several rounds, so machine load hits both alike
    rounds: dict[str, list[float]] = {"dense": [], "pruned": []}
    for _ in range(3):
        for name, m in (("dense", dense), ("pruned", pruned)):
            rounds[name].append(measure_latency(m, x, warmup=2, runs=runs, threads=threads).median_ms)
    return {k: round(statistics.median(v), 2) for k, v in rounds.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="yolo11n.yaml")
    parser.add_argument("--size", type=int, default=320, help="input side for pruning and latency")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per latency measurement")
    parser.add_argument("--images", type=int, default=160, help="generated training images")
    parser.add_argument("--out", default="", help="also write the JSON here")
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")

    from prunekit.export.onnx import export_onnx, ort_latency_ms, verify_onnx
    from prunekit.metrics import count_macs, count_params
    from prunekit.structured import StructuredConfig, load_pruned, prune_channels_, save_pruned
    from prunekit.yolo import as_yolo, load_yolo, write_box_dataset

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_yolo(args.model, nc=1)
    dense = copy.deepcopy(model)
    x = torch.rand(1, 3, args.size, args.size)
    start = time.perf_counter()
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    prune_s = time.perf_counter() - start
    result: dict = {"model": args.model, "input": list(x.shape), "threads": args.threads,
                    "prune_s": round(prune_s, 2),
                    "params": [count_params(dense), count_params(model)],
                    "macs": [count_macs(dense, x), count_macs(model, x)]}

    with tempfile.TemporaryDirectory(prefix="yolo-journey-") as tmp:
        data = write_box_dataset(Path(tmp) / "boxes", images=args.images, size=64, val_images=4)
        yolo = as_yolo(model)
        losses: list[float] = []
        yolo.add_callback("on_train_batch_end", lambda tr: losses.append(
            round(float(sum(float(v) for v in tr.loss_items.values())), 3)))
        start = time.perf_counter()
        yolo.train(data=str(data), imgsz=64, epochs=1, batch=8, nbs=8, workers=0, device="cpu",
                   val=False, plots=False, mosaic=0, hsv_h=0, hsv_s=0, hsv_v=0, fliplr=0,
                   translate=0, scale=0, warmup_epochs=0, amp=False, optimizer="AdamW", lr0=0.003,
                   seed=0, deterministic=True, verbose=False, project=str(Path(tmp) / "runs"),
                   name="ft", exist_ok=True)
        result["train"] = {"seconds": round(time.perf_counter() - start, 1), "steps": len(losses),
                           "loss_first4": losses[:4], "loss_peak": max(losses),
                           "loss_last4": losses[-4:]}
        tuned = yolo.model.float().eval()

        save_pruned(tuned, Path(tmp) / "pruned")
        fresh = load_pruned(load_yolo(args.model, nc=1), Path(tmp) / "pruned").eval()
        with torch.no_grad():
            result["reload_max_diff"] = float((fresh(x)[0] - tuned(x)[0]).abs().max())

        onnx = {}
        for name, m in (("dense", dense), ("pruned", tuned)):
            m = copy.deepcopy(m).eval()
            m.model[-1].export = True  # Ultralytics' export mode: the head returns one tensor
            path = export_onnx(m, x, Path(tmp) / f"{name}.onnx")
            check = verify_onnx(m, path, x, atol=1e-3)
            onnx[name] = {"path": path, "mb": round(path.stat().st_size / 2**20, 2),
                          "max_abs_diff": check.max_abs_diff, "ok": check.ok, "model": m}
        ort = ort_latency_ms([onnx["dense"]["path"], onnx["pruned"]["path"]], x, warmup=3,
                             runs=args.runs * 3, threads=args.threads)
        result["onnx"] = {k: {"mb": v["mb"], "max_abs_diff": v["max_abs_diff"], "ok": v["ok"]}
                          for k, v in onnx.items()}
        result["latency_ms"] = {
            "torch": _latency(onnx["dense"]["model"], onnx["pruned"]["model"], x, args.runs,
                              args.threads),
            "onnxruntime": {"dense": round(ort[0], 2), "pruned": round(ort[1], 2)},
        }
    line = json.dumps(result)
    if args.out:
        from prunekit.io import atomic_write_text

        atomic_write_text(args.out, line + "\n")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
