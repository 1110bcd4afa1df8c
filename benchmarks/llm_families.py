"""Every causal-LM family in transformers, built tiny: unstructured and structured pruning round trips.

The list is ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` (see ``llm_families_zoo.py`` for the one
set of tiny overrides). Each family runs in its own forked process with a time and
memory limit; in it, from the same seeded random weights each time:

* unstructured: Wanda 50% and SparseGPT 2:4 (``prune_llm``);
* structured (``structured_prune``): heads 0.25, MLP 0.25, one layer, and experts 0.25
  where the model has routed experts. A variant counts only if it removed parameters.
  A variant the model has nothing of (heads in a pure Mamba / RWKV model, MLP neurons in
  a model without MLPs, a layer fewer where the model's class builds no model that shallow)
  is reported as ``"n/a: <reason>"`` (``structured_prune``'s
  ``plan["not_applicable"]``): it is not a failure, but a family is structured-ok only
  if every applicable structured variant round-trips and at least one applies.

Every variant is saved (``save_pretrained_model``) with its logits on fixed tokens. Then
one fresh Python process (``--reload``), which never held a pruned model, loads each
folder (``load_pruned``: plain ``from_pretrained`` when the config has no
``prunekit_layer_shapes``) and compares logits (max |diff| <= 1e-4). A family's
unstructured result is ok if both unstructured variants round-trip; structured if all
its applicable structured variants do (and one applies). The last line printed is JSON
``{"total", "unstructured_ok", "structured_ok", "failed": {family: reason}, ...}``.

Run:  PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/llm_families.py [--families mixtral,phi] [--jobs 2]
      [--work DIR (resumable)] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_families_zoo import build, example_ids, families  # noqa: E402

UNSTRUCTURED = {"wanda50": {"method": "wanda", "sparsity": 0.5},
                "sparsegpt24": {"method": "sparsegpt", "pattern": "2:4"}}
STRUCTURED = {"heads": {"heads": 0.25}, "mlp": {"mlp": 0.25}, "layer": {"layers": 1}, "experts": {"experts": 0.25}}
ATOL = 1e-4


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]


def _save(model, folder: Path, ids: torch.Tensor) -> None:
    from prunekit.io import save_tensors
    from prunekit.llm import save_pretrained_model

    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits
    save_pretrained_model(model, folder)
    save_tensors({"logits": logits.contiguous(), "input_ids": ids}, folder / "expected.safetensors")


def run_family(family: str, out: Path) -> dict:
    """Prune and save every variant of one family (runs in the forked child)."""
    from prunekit.llm import LLMPruneConfig, StructuredConfig, prune_llm, structured_prune
    from prunekit.llm.structured import block_layouts

    torch.set_num_threads(1)
    ids, calib = example_ids(), example_ids(seed=2, batch=4, length=32)
    result: dict = {"variants": {}}
    model = build(family)
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    params = sum(p.numel() for p in model.parameters())
    result["params"] = params
    for name, kw in UNSTRUCTURED.items():
        try:
            m = build(family)
            prune_llm(m, calib, LLMPruneConfig(**kw, batch_size=4), progress=False)
            _save(m, out / name, ids)
            result["variants"][name] = "saved"
        except Exception as e:  # the family fails this variant; the run goes on
            result["variants"][name] = _short(e)
    try:
        has_experts = any(lay.experts is not None for lay in block_layouts(build(family)).values())
    except Exception as e:
        has_experts = False
        result["layout_error"] = _short(e)
    result["experts"] = has_experts
    for name, kw in STRUCTURED.items():
        if name == "experts" and not has_experts:
            continue
        try:
            m = build(family)
            plan = structured_prune(m, [{"input_ids": calib}], StructuredConfig(**kw))
            kind = next(iter(kw))  # not_applicable is keyed by the StructuredConfig field ("layers")
            if plan.get("not_applicable", {}).get(kind):
                result["variants"][name] = "n/a: " + plan["not_applicable"][kind]
                continue
            after = sum(p.numel() for p in m.parameters())
            if after >= params:
                raise RuntimeError(f"nothing removed ({params} parameters before and after)")
            _save(m, out / name, ids)
            shapes = getattr(m.config, "prunekit_layer_shapes", None)
            result["variants"][name] = "saved"
            result.setdefault("removed", {})[name] = {
                "params": params - after, "reload": "load_pruned" if shapes else "from_pretrained",
                **({"experts": [plan["experts_before"], plan["experts_after"]]} if name == "experts" else {})}
        except Exception as e:
            result["variants"][name] = _short(e)
            result.setdefault("trace", {})[name] = traceback.format_exc(limit=-4)[-1500:]
    return result


def _child(family: str, out: str, queue) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
    try:
        queue.put(run_family(family, Path(out)))
    except BaseException as e:
        queue.put({"error": _short(e)})


def prune_all(names: list[str], root: Path, timeout: float, jobs: int = 1, log: Path | None = None) -> dict[str, dict]:
    """Each family in its own forked process (``jobs`` at a time), killed after ``timeout`` s."""
    ctx = mp.get_context("fork")
    results: dict[str, dict] = {}
    pending = list(names)
    running: dict[str, tuple] = {}
    while pending or running:
        while pending and len(running) < jobs:
            family = pending.pop(0)
            queue = ctx.Queue()
            proc = ctx.Process(target=_child, args=(family, str(root / family), queue))
            proc.start()
            running[family] = (proc, queue, time.perf_counter())
        for family, (proc, queue, start) in list(running.items()):
            elapsed = time.perf_counter() - start
            try:
                results[family] = queue.get(timeout=0.2)
            except Exception:
                if elapsed < timeout and (proc.is_alive() or not queue.empty()):
                    continue
                results[family] = {"error": f"timeout after {timeout:.0f}s" if elapsed >= timeout
                                   else f"process died (exit code {proc.exitcode})"}
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
            del running[family]
            results[family]["seconds"] = round(elapsed, 1)
            print(family, json.dumps({k: v for k, v in results[family].items() if k != "trace"}), flush=True)
            if log is not None:
                with open(log, "a") as f:
                    f.write(json.dumps({"family": family, "result": results[family]}) + "\n")
    return {n: results[n] for n in names}


def reload_all(root: Path, timeout: int) -> dict[str, dict[str, str]]:
    """In this (fresh) process: reload every saved variant and compare logits."""
    import signal

    from transformers import AutoModelForCausalLM

    from prunekit.io import load_tensors
    from prunekit.llm import load_pruned

    torch.set_num_threads(1)

    def alarm(*_):
        raise TimeoutError(f"reload took over {timeout}s")

    signal.signal(signal.SIGALRM, alarm)
    out: dict[str, dict[str, str]] = {}
    for folder in sorted(p for p in root.glob("*/*") if (p / "expected.safetensors").is_file()):
        signal.alarm(timeout)
        try:
            expected = load_tensors(folder / "expected.safetensors")
            model = load_pruned(folder, AutoModelForCausalLM)
            with torch.no_grad():
                logits = model(input_ids=expected["input_ids"], use_cache=False).logits
            diff = (logits - expected["logits"]).abs().max().item()
            verdict = "ok" if diff <= ATOL else f"logits differ by {diff:.2e}"
            out.setdefault(folder.parent.name, {})[folder.name] = verdict
        except Exception as e:
            out.setdefault(folder.parent.name, {})[folder.name] = "reload: " + _short(e)
        finally:
            signal.alarm(0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=None, help="comma-separated subset (default: all)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per family")
    ap.add_argument("--jobs", type=int, default=1, help="families pruned at once (one process each)")
    ap.add_argument("--out", default=None, help="write results.json here")
    ap.add_argument("--work", default=None, help="keep the pruned folders and a families.jsonl log here; "
                    "a rerun with the same folder skips the families already in the log")
    ap.add_argument("--max-families", type=int, default=None, help="prune at most N not-yet-run families")
    ap.add_argument("--reload", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.reload:
        print(json.dumps(reload_all(Path(a.reload), int(a.timeout))))
        return
    import importlib

    for module in ("transformers", "prunekit.llm", "prunekit.llm.prune", "prunekit.llm.structured.discover",
                   "prunekit.llm.methods", "prunekit.surgery.apply", "prunekit.io"):
        importlib.import_module(module)  # once here, before forking, not in every child

    names = a.families.split(",") if a.families else families()
    start = time.perf_counter()
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="llm_families_"))
    work.mkdir(parents=True, exist_ok=True)
    done = _read_jsonl(work / "families.jsonl")
    todo = [n for n in names if n not in done]
    if a.max_families is not None:
        todo = todo[: a.max_families]
    results = prune_all(todo, work / "models", a.timeout, a.jobs, log=work / "families.jsonl")
    results = {n: {**done, **results}[n] for n in names if n in done or n in results}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, __file__, "--reload", str(work / "models"), "--timeout",
                           str(int(a.timeout))], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"reload process failed:\n{proc.stderr[-3000:]}")
    reloaded = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = summarize([n for n in names if n in results], results, reloaded)
    summary["not_run"] = [n for n in names if n not in results]
    summary["seconds"] = round(time.perf_counter() - start, 1)
    if a.out:
        from prunekit.io import atomic_write_json

        atomic_write_json(Path(a.out) / "results.json", {"summary": summary, "families": results,
                                                          "reloaded": reloaded})
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary))


def _read_jsonl(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["family"]: r["result"] for r in rows}


def summarize(names: list[str], results: dict, reloaded: dict) -> dict:
    """Per family: which variants round-tripped; the counts and failure reasons."""
    built, u_ok, s_ok, failed, table = 0, 0, 0, {}, {}
    for family in names:
        r = results[family]
        if r.get("error", "").startswith("timeout"):
            built += 1  # it may build: counted, and failed
            failed[family] = r["error"]
            continue
        if "error" in r or "params" not in r:
            failed[family] = "build: " + r.get("error", "did not build")
            continue
        built += 1
        status = {}
        for name, state in r["variants"].items():
            status[name] = reloaded.get(family, {}).get(name, "not reloaded") if state == "saved" else state
        table[family] = status
        u = all(status.get(n) == "ok" for n in UNSTRUCTURED)
        applied = [v for n, v in status.items() if n in STRUCTURED and not v.startswith("n/a")]
        s = bool(applied) and all(v == "ok" for v in applied)
        u_ok += u
        s_ok += s
        if not (u and s):
            failed[family] = ({n: v for n, v in status.items() if v != "ok" and not v.startswith("n/a")}
                              or {"structured": "no structured variant applies"})
    return {"total": built, "unstructured_ok": u_ok, "structured_ok": s_ok, "failed": failed,
            "listed": len(names), "variants": table}


if __name__ == "__main__":
    main()
