"""Benchmark: out-of-core pruning of a 1.5B-parameter Llama (6 GB fp32) within 2 GB.

1. Writes a Llama-architecture model with random weights (hidden 2048, MLP 5632, 26 blocks,
   vocab 49152 with SmolLM2's tokenizer, untied head: 1.54B parameters, 6.15 GB fp32) as
   safetensors shards, block by block from a meta-device skeleton: the whole model is never
   in memory.
2. Prunes it with Wanda and SparseGPT at 50% through ``prunekit llm --max-memory 2GB``
   (8 calibration windows of 512 tokens, ``--eval none``), each in its own process; the
   child's peak RSS comes from ``os.wait4`` (that process alone), seconds are wall time.
3. Reloads each output with ``from_pretrained(..., low_cpu_mem_usage=True)`` in a fresh
   process (parameter count, sparsity of the block linears), then deletes it.
4. SmolLM2-135M: in-memory vs out-of-core Wanda 50% through the same command: every
   weight compared with ``torch.equal`` and the two perplexities.

Raw per-run metrics go to ``benchmarks/results/llm_scale/``. The last line printed is JSON.

Run:  OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/llm_scale.py            (~1 h on one core)
      PYTHONPATH=. python benchmarks/llm_scale.py --size tiny --no-save        (a smoke run, ~5 min)
      --methods wanda --skip-smollm2 --merge redoes one run and keeps the others in the results file
      add --jobs 3 to run Wanda, SparseGPT and the SmolLM2 pair at once (less wall time on a busy machine)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "llm_scale"
SIZES = {
    # hidden, intermediate, blocks, heads
    "1.5b": (2048, 5632, 26, 16),
    "tiny": (256, 704, 4, 4),
}
CLI = "import sys; from prunekit.cli.main import main; raise SystemExit(main(sys.argv[1:]))"

RELOAD = """
import json, sys, torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], low_cpu_mem_usage=True)
lin = [mod.weight for n, mod in m.named_modules() if ".layers." in n and isinstance(mod, torch.nn.Linear)]
zeros = sum(int((w == 0).sum()) for w in lin); total = sum(w.numel() for w in lin)
print(json.dumps({"class": type(m).__name__, "params": sum(p.numel() for p in m.parameters()),
                  "block_sparsity": zeros / total}))
"""

COMPARE = """
import json, math, sys, torch
from transformers import AutoModelForCausalLM
a = AutoModelForCausalLM.from_pretrained(sys.argv[1], low_cpu_mem_usage=True).state_dict()
b = AutoModelForCausalLM.from_pretrained(sys.argv[2], low_cpu_mem_usage=True).state_dict()
diff = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
print(json.dumps({"tensors": len(a), "identical": not diff and set(a) == set(b), "different": diff[:5]}))
"""


def code_version() -> str:
    """The commit the runs used, ``+dirty`` when prunekit/ or benchmarks/ had uncommitted changes."""
    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "prunekit", "benchmarks/llm_scale.py") else "")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def run_child(argv: list[str], log: Path | None = None) -> tuple[int, float, float, str]:
    """Run ``python argv`` alone; return (exit code, seconds, its own peak RSS in MB, output tail)."""
    start = time.perf_counter()
    with open(log or os.devnull, "w") as fh:
        proc = subprocess.Popen([sys.executable, *argv], stdout=fh, stderr=subprocess.STDOUT, env=env())
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    tail = log.read_text()[-3000:] if log else ""
    return proc.returncode, seconds, usage.ru_maxrss / 1024.0, tail


def write_random_llama(folder: Path, size: str, seed: int = 0) -> dict:
    """Write a random-weight Llama as one shard per block (+1), never holding the whole model."""
    import torch
    from transformers import LlamaConfig

    from prunekit.llm.loading import load_tokenizer
    from prunekit.llm.offload import ShardWriter, empty_model
    from prunekit.llm.offload.streaming import outside_blocks

    hidden, inter, blocks, heads = SIZES[size]
    folder.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=blocks,
                         num_attention_heads=heads, num_key_value_heads=heads, vocab_size=49152,
                         max_position_embeddings=2048, tie_word_embeddings=False, dtype="float32",
                         bos_token_id=1, eos_token_id=2)
    config.save_pretrained(str(folder))
    load_tokenizer("smollm2-135m").save_pretrained(str(folder))
    skeleton = empty_model(folder)
    gen = torch.Generator().manual_seed(seed)

    def random_like(name: str, p: torch.Tensor) -> torch.Tensor:
        if "norm" in name:  # RMSNorm scales start at one
            return torch.ones(p.shape)
        return torch.randn(p.shape, generator=gen) * 0.02

    writer = ShardWriter(folder, shards=blocks + 1)
    params = dict(skeleton.named_parameters())
    for i in range(blocks):
        prefix = f"model.layers.{i}."
        writer.write({n: random_like(n, p) for n, p in params.items() if n.startswith(prefix)})
    rest = outside_blocks(skeleton, head=True)
    writer.write({n: random_like(n, params[n]) for n in rest})
    writer.finish()
    return {"params": sum(p.numel() for p in params.values()), "bytes": writer.total_size,
            "hidden": hidden, "intermediate": inter, "blocks": blocks, "heads": heads}


def prune_args(model: Path, out: Path, method: str, *extra: str) -> list[str]:
    return ["-c", CLI, "llm", "--model", str(model), "--method", method, "--sparsity", "0.5",
            "--nsamples", "8", "--seqlen", "512", "--threads", "1", "--device", "cpu", "--no-progress",
            "--out", str(out), *extra]


def scale_run(model: Path, work: Path, size: str, method: str, log_dir: Path, save: bool,
              reload_lock: threading.Lock) -> dict:
    """One method at 50% under --max-memory 2GB in its own process, then the reload check."""
    run_dir = work / f"out-{method}"
    code, seconds, rss, tail = run_child(prune_args(model, run_dir, method, "--max-memory", "2GB", "--eval", "none"),
                                         log_dir / f"{size}-{method}.log")
    if code != 0:
        raise SystemExit(f"{method} failed ({code}):\n{tail}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if save:
        (RESULTS / f"{size}-{method}-metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    with reload_lock:  # one 6 GB reload at a time
        code, reload_s, reload_rss, tail = run_child(["-c", RELOAD, str(run_dir / "model")],
                                                      log_dir / f"{size}-{method}-reload.log")
    if code != 0:
        raise SystemExit(f"reload of {method} failed ({code}):\n{tail}")
    reload = json.loads(tail.strip().splitlines()[-1])
    shutil.rmtree(run_dir)
    out = {"seconds": round(seconds, 1), "prune_seconds": round(metrics["prune_seconds"], 1),
           # the CLI resets the kernel's peak mark per stage (clear_refs), which also lowers what
           # wait4 reports; the larger of the two is the process's peak
           "peak_rss_mb": round(max(rss, metrics["peak_rss_mb"]), 1),
           "within_2_5_gb": max(rss, metrics["peak_rss_mb"]) <= 2500, "wait4_maxrss_mb": round(rss, 1),
           "metrics_peak_rss_mb": round(metrics["peak_rss_mb"], 1),
           "activations_on_disk": metrics["out_of_core"]["spilled"], "sparsity": metrics["sparsity_measured"],
           "seconds_per_block": round(metrics["prune_seconds"] / len(metrics["layer_sparsity"]), 1),
           "memory_by_stage": metrics["memory_by_stage"],
           "rss_mb_after_block": metrics["out_of_core"].get("rss_mb_after_block"),
           "peak_rss_mb_after_block": metrics["out_of_core"].get("peak_rss_mb_after_block"),
           "load_average": [round(x, 1) for x in os.getloadavg()], "code": code_version(),
           "reload": {**reload, "seconds": round(reload_s, 1), "peak_rss_mb": round(reload_rss, 1)}}
    print(json.dumps({method: out}), flush=True)
    return out


def write_smollm2(folder: Path) -> None:
    """SmolLM2-135M (GGUF, dequantized to fp32) as a Hugging Face folder."""
    from prunekit.llm.loading import load_model, load_tokenizer
    from prunekit.llm.structured import save_pretrained_model

    save_pretrained_model(load_model("smollm2-135m"), folder, load_tokenizer("smollm2-135m"))
    print(json.dumps({"folder": str(folder)}))


def step(argv: list[str], log: Path) -> dict | None:
    """Run one step of this script in a child (this process stays small: a child's peak RSS
    from wait4 starts from its parent's size at fork)."""
    code, seconds, rss, tail = run_child([__file__, "--step", *argv], log)
    if code != 0:
        raise SystemExit(f"step {argv} failed ({code}):\n{tail}")
    return json.loads(tail.strip().splitlines()[-1])


def smollm2_equality(work: Path, log_dir: Path, eval_tokens: int) -> dict:
    """In-memory vs out-of-core Wanda 50% on SmolLM2: identical weights and perplexity."""
    folder = work / "smollm2"
    step(["smollm2", str(folder)], log_dir / "smollm2-write.log")
    common = ("--eval-max-tokens", str(eval_tokens))
    result = {}
    for name, extra in (("in_memory", ()), ("out_of_core", ("--max-memory", "2GB"))):
        code, seconds, rss, tail = run_child(prune_args(folder, work / name, "wanda", *common, *extra),
                                             log_dir / f"smollm2-{name}.log")
        if code != 0:
            raise SystemExit(f"SmolLM2 {name} failed ({code}):\n{tail}")
        metrics = json.loads((work / name / "metrics.json").read_text())
        result[name] = {"seconds": round(seconds, 1), "peak_rss_mb": round(rss, 1),
                        "ppl_before": metrics["ppl_before"], "ppl_after": metrics["ppl_after"]}
    pair = [str(work / name / "model") for name in ("in_memory", "out_of_core")]
    code, _, _, tail = run_child(["-c", COMPARE, *pair], log_dir / "smollm2-compare.log")
    if code != 0:
        raise SystemExit(f"SmolLM2 comparison failed ({code}):\n{tail}")
    result["weights"] = json.loads(tail.strip().splitlines()[-1])
    result["ppl_equal"] = result["in_memory"]["ppl_after"] == result["out_of_core"]["ppl_after"]
    result["eval_tokens"] = eval_tokens
    shutil.rmtree(folder)
    for name in ("in_memory", "out_of_core"):
        shutil.rmtree(work / name)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="1.5b")
    parser.add_argument("--work", default="/tmp/prunekit-llm-scale", help="scratch folder (needs ~13 GB)")
    parser.add_argument("--eval-tokens", type=int, default=16384, help="SmolLM2 perplexity tokens")
    parser.add_argument("--methods", default="wanda,sparsegpt", help="comma-separated methods of the large run")
    parser.add_argument("--skip-smollm2", action="store_true", help="no SmolLM2 in-memory vs out-of-core pair")
    parser.add_argument("--only-smollm2", action="store_true", help="only the SmolLM2 pair (results smollm2.json)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/llm_scale")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at once (Wanda, SparseGPT, SmolLM2 pair); >1 on a busy machine saves wall "
                        "time, each run's seconds then include the contention")
    parser.add_argument("--reuse-model", action="store_true", help="keep a model written by an earlier run")
    parser.add_argument("--merge", action="store_true",
                        help="keep the runs (and SmolLM2 pair) of the saved results that this invocation does not redo")
    parser.add_argument("--step", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        if args.step[0] == "write":
            print(json.dumps(write_random_llama(Path(args.step[1]), args.step[2])))
        else:
            write_smollm2(Path(args.step[1]))
        return
    save = not args.no_save
    work = Path(args.work)
    if not args.reuse_model:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    log_dir = work / "logs"
    log_dir.mkdir(exist_ok=True)
    if save:
        RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"disk free in {work}: {shutil.disk_usage(work).free / 1e9:.1f} GB", flush=True)
    start = time.perf_counter()
    if args.only_smollm2:
        result = smollm2_equality(work, log_dir, args.eval_tokens)
        result["seconds"] = round(time.perf_counter() - start, 1)
        if save:
            (RESULTS / "smollm2.json").write_text(json.dumps(result, indent=1) + "\n")
        shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(result))
        return
    model = work / "model"
    if args.reuse_model and (model / "written.json").is_file():
        written = json.loads((model / "written.json").read_text())
    else:
        written = step(["write", str(model), args.size], log_dir / "write.log")
        written["write_seconds"] = round(time.perf_counter() - start, 1)
        (model / "written.json").write_text(json.dumps(written))
    print(json.dumps({"written": written}), flush=True)
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = {m: pool.submit(scale_run, model, work, args.size, m, log_dir, save, lock)
                for m in args.methods.split(",")}
        smol = None if args.skip_smollm2 else pool.submit(smollm2_equality, work, log_dir, args.eval_tokens)
        result = {"size": args.size, "model": written, "max_memory": "2GB", "nsamples": 8, "seqlen": 512,
                  "threads": 1, "jobs": args.jobs, "runs": {m: f.result() for m, f in runs.items()}}
        if smol is not None:
            result["smollm2"] = smol.result()
    shutil.rmtree(model)
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    saved = RESULTS / f"{args.size}.json"
    if args.merge and saved.is_file():
        previous = json.loads(saved.read_text())
        result["runs"] = {**previous.get("runs", {}), **result["runs"]}
        if "smollm2" not in result and "smollm2" in previous:
            result["smollm2"] = previous["smollm2"]
    if save:
        saved.write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
