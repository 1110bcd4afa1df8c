"""Profile: where out-of-core pruning of one 1.5B-sized Llama block spends time and memory.

Writes (or reuses) a Llama with the widths of ``llm_scale.py``'s 1.5B model (hidden 2048,
MLP 5632, vocab 49152) but only ``--blocks`` decoder blocks, then runs
``prune_llm_out_of_core`` on it once per method, with timers wrapped around the stages of
the shared per-block path (exclusive seconds: a stage's time excludes the stages it calls):

- ``load``: reading a block (or the embeddings) from the safetensors shards;
- ``forward``: the block's calibration forwards (embeddings capture included);
- ``stats``: accumulating the input statistics (squared norms, Gram matrices);
- ``hessian``: SparseGPT's damped inverse-Hessian Cholesky factor;
- ``solve``: choosing the mask and updating the weights (Wanda scores, SparseGPT's OBS loop);
- ``write``: writing the output shards;

and a thread samples ``VmRSS`` every 10 ms to give the peak resident set of each stage.

Run:  OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/llm_block_profile.py --methods wanda,sparsegpt
The last line printed is JSON (per method: seconds per stage and per block, peak RSS per stage).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import llm_scale  # noqa: E402  (the model writer of the scale benchmark)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


class StageClock:
    """Exclusive seconds and sampled peak RSS per named stage (``other`` outside them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        self.stack: list[list[Any]] = []  # [name, start, cpu start, wall and cpu spent in children]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            name = self.stack[-1][0] if self.stack else "other"
            rss = _rss_mb()
            self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), rss)

    @contextmanager
    def running(self):
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.stack.append([name, time.perf_counter(), time.thread_time(), 0.0, 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                stage, start, cpu_start, children, cpu_children = self.stack.pop()
                spent, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
                self.seconds[stage] = self.seconds.get(stage, 0.0) + spent - children
                self.cpu[stage] = self.cpu.get(stage, 0.0) + cpu - cpu_children
                if self.stack:
                    self.stack[-1][3] += spent
                    self.stack[-1][4] += cpu

        return timed


def instrument(clock: StageClock) -> Callable[[], None]:
    """Wrap the stages of the shared path where they are looked up; return the undo."""
    import prunekit.llm.hooks as hooks
    import prunekit.llm.methods.sparsegpt as sgpt
    import prunekit.llm.offload.prune as oprune
    import prunekit.llm.prune as prune
    import prunekit.llm.sequential as seq
    import prunekit.llm.single_pass as sp

    targets = [
        (oprune, "materialize", "load"), (oprune.ShardReader, "read", "load"),
        (oprune.ShardWriter, "write", "write"),
        (seq.BlockRun, "single_pass", "forward"), (seq.BlockRun, "advance", "forward"),
        (seq.BlockRun, "__call__", "forward"), (oprune, "capture_block_inputs", "forward"),
        (hooks.InputStats, "accumulate", "stats"), (sp.InputStats, "accumulate", "stats"),
        (sgpt, "inverse_hessian_cholesky", "hessian"),
        (prune, "prune_linear", "solve"),
    ]
    saved = []
    for owner, attr, stage in targets:
        original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        if (owner, attr) in [(o, a) for o, a, _ in saved]:
            continue
        saved.append((owner, attr, original))
        setattr(owner, attr, clock.wrap(stage, original))

    def undo() -> None:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)

    return undo


def profile(model: Path, method: str, nsamples: int, seqlen: int) -> dict[str, Any]:
    import torch

    from prunekit.data.text import read_text
    from prunekit.llm.calibration import calibration_windows, tokenize_text
    from prunekit.llm.config import LLMPruneConfig
    from prunekit.llm.loading import load_tokenizer
    from prunekit.llm.offload import OutOfCoreConfig, prune_llm_out_of_core

    tokenizer = load_tokenizer(str(model))
    ids = tokenize_text(tokenizer, read_text("austen:emma"))
    windows = calibration_windows(ids, nsamples, seqlen, 0)
    clock = StageClock()
    undo = instrument(clock)
    out = Path(tempfile.mkdtemp(prefix="pk-profile-", dir=model.parent))
    try:
        rss_start = _rss_mb()
        with clock.running():
            start, cpu_start = time.perf_counter(), time.thread_time()
            result = prune_llm_out_of_core(model, out / "model", windows, LLMPruneConfig(method, 0.5),
                                           OutOfCoreConfig(max_memory="2GB"), progress=False)
            total, cpu_total = time.perf_counter() - start, time.thread_time() - cpu_start
    finally:
        undo()
        shutil.rmtree(out, ignore_errors=True)
    blocks = len(result.layer_sparsity)
    clock.seconds["other"] = total - sum(clock.seconds.values())
    clock.cpu["other"] = cpu_total - sum(clock.cpu.values())
    return {"method": method, "blocks": blocks, "seconds": round(total, 2), "cpu_seconds": round(cpu_total, 2),
            "seconds_by_stage": {k: round(v, 2) for k, v in sorted(clock.seconds.items())},
            "cpu_seconds_by_stage": {k: round(v, 2) for k, v in sorted(clock.cpu.items())},
            "rss_mb_before": round(rss_start, 1),
            "peak_rss_mb_by_stage": {k: round(v, 1) for k, v in sorted(clock.peak_mb.items())},
            "threads": torch.get_num_threads(), "spilled": result.spilled,
            "measured_sparsity": result.measured_sparsity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/prunekit-block-profile", help="scratch folder (~1.3 GB per 2 blocks)")
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--methods", default="wanda,sparsegpt")
    parser.add_argument("--nsamples", type=int, default=8)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--reuse-model", action="store_true", help="keep the model of an earlier run")
    parser.add_argument("--save", default=None, help="also write the JSON to this file")
    args = parser.parse_args()
    hidden, inter, _, heads = llm_scale.SIZES["1.5b"]
    llm_scale.SIZES["profile"] = (hidden, inter, args.blocks, heads)
    model = Path(args.work) / f"model-{args.blocks}"
    if not (args.reuse_model and (model / "config.json").is_file()):
        shutil.rmtree(model, ignore_errors=True)
        llm_scale.write_random_llama(model, "profile")
    runs = []
    for method in args.methods.split(","):
        runs.append(profile(model, method, args.nsamples, args.seqlen))
        print(json.dumps(runs[-1]), flush=True)
    result = {"model": {"hidden": hidden, "intermediate": inter, "blocks": args.blocks, "heads": heads},
              "nsamples": args.nsamples, "seqlen": args.seqlen, "runs": runs}
    if args.save:
        Path(args.save).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
