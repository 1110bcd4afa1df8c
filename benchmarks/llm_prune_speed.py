"""Benchmark: pruning time of prunekit against the reference implementations, side by side.

SmolLM2-135M, the same calibration windows (Austen's Emma, ``--nsamples`` x ``--seqlen``,
seed 0) for everyone:

* reference Wanda: ``prune_wanda`` of github.com/locuslab/wanda;
* reference SparseGPT: ``llama_sequential`` of github.com/IST-DASLab/sparsegpt;
* prunekit: ``prunekit llm --method wanda|sparsegpt`` with the CLI defaults (``--eval none``,
  so only loading and pruning run), its own ``prune_seconds``.

The reference code is read from the repositories' git snapshots (``--wanda-git``,
``--sparsegpt-git``: a git directory, e.g. what ``git clone --bare`` or a mirror gives, or
a plain folder), extracted into a temp folder and run by ``benchmarks/llm_reference_driver.py``
in a subprocess; nothing of it is copied into prunekit. Every run is its own process, and
the implementations alternate (reference, prunekit, reference, ...) so that a busy machine
penalises both alike. Done when prunekit's Wanda takes <= 0.5x the reference time and its
SparseGPT <= 1.0x (medians over ``--repeats``).

Run:  PYTHONPATH=. python benchmarks/llm_prune_speed.py          (about 15-30 min on 2 busy cores)
The last line printed is JSON; ``--out`` also gets it as ``result.json`` and every run's
output as ``runs.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MIRRORS = Path("/work/.mirror")
TARGETS = {"wanda": 0.5, "sparsegpt": 1.0}


def extract(source: str, into: Path) -> Path:
    """A folder with the repository's files: ``source`` itself, or its HEAD extracted from git."""
    src = Path(source)
    if (src / "HEAD").is_file() or (src / ".git").exists():
        into.mkdir(parents=True, exist_ok=True)
        git_dir = src / ".git" if (src / ".git").exists() else src
        archive = subprocess.run(["git", "--git-dir", str(git_dir), "archive", "HEAD"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
        return into
    if src.is_dir():
        return src
    raise SystemExit(f"reference source {source!r} is neither a git directory nor a folder; fetch "
                     "github:locuslab/wanda and github:IST-DASLab/sparsegpt and pass their paths")


def _child(argv: list[str], log: Any) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    log.write(proc.stdout[-4000:])
    log.flush()
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(argv)}):\n{proc.stdout[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["process_seconds"] = time.perf_counter() - start
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wanda-git", default=str(MIRRORS / "locuslab+wanda" / "repo"))
    ap.add_argument("--sparsegpt-git", default=str(MIRRORS / "IST-DASLab+sparsegpt" / "repo"))
    ap.add_argument("--methods", default="wanda,sparsegpt")
    ap.add_argument("--nsamples", type=int, default=64, help="prunekit llm's default")
    ap.add_argument("--seqlen", type=int, default=512, help="prunekit llm's default")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for every run (default: torch's own choice, as the CLI)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "llm_prune_speed"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="prunekit-ref-"))
    sources = {"wanda": extract(args.wanda_git, tmp / "wanda"),
               "sparsegpt": extract(args.sparsegpt_git, tmp / "sparsegpt")}
    threads = ["--threads", str(args.threads)] if args.threads else []
    rows: list[dict[str, Any]] = []
    with open(out / "runs.log", "w") as log:
        for method in args.methods.split(","):
            for rep in range(args.repeats):
                ref = _child([str(ROOT / "benchmarks" / "llm_reference_driver.py"), "--method", method,
                              "--src", str(sources[method]), "--nsamples", str(args.nsamples),
                              "--seqlen", str(args.seqlen), *threads], log)
                pk = _child(["-m", "prunekit.cli.main", "llm", "--model", "smollm2-135m", "--method", method,
                             "--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen), "--eval", "none",
                             "--no-progress", *threads], log)
                for impl, row in (("reference", ref), ("prunekit", pk)):
                    seconds = row["seconds"] if impl == "reference" else row["prune_seconds"]
                    sparsity = row["sparsity"] if impl == "reference" else row["sparsity_measured"]
                    entry = {"method": method, "implementation": impl, "repeat": rep, "seconds": seconds,
                             "sparsity": sparsity, "process_seconds": row["process_seconds"]}
                    rows.append(entry)
                    print(json.dumps(entry), flush=True)
    with open(out / "runs.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    summary: dict[str, Any] = {"nsamples": args.nsamples, "seqlen": args.seqlen, "threads": args.threads,
                               "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()[0]}
    for method in args.methods.split(","):
        def median(impl: str, _m: str = method) -> float:
            return statistics.median(r["seconds"] for r in rows if r["method"] == _m and r["implementation"] == impl)

        ref, pk = median("reference"), median("prunekit")
        summary[method] = {"reference_seconds": round(ref, 2), "prunekit_seconds": round(pk, 2),
                           "ratio": round(pk / ref, 3), "target": TARGETS[method], "met": pk / ref <= TARGETS[method]}
    (out / "result.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
