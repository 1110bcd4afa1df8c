"""SIGKILL a `prunekit run` after a stage checkpoint appears, run it again on the same
folder, and check it resumes and ends with the metrics of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from prunekit.recipes import recipe_from_dict, run_recipe

ROOT = Path(__file__).resolve().parents[2]

RECIPE = {
    "name": "resume-test",
    "seed": 5,
    "data": {"dataset": "digits", "train_subset": 300, "test_subset": 150},
    "model": {"name": "lenet300100"},
    "stages": [
        {"train": {"epochs": 4, "lr": 0.003}},
        {"prune": {"amount": 0.7}},
        # long enough that the kill lands while it runs
        {"finetune": {"epochs": 20, "lr": 0.001}},
        {"quantize": {"scheme": "int8"}},
        {"evaluate": {"latency_runs": 2}},
    ],
}


def _cli(recipe: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "prunekit", "run", str(recipe), "--out", str(out), "--threads", "1", "--no-progress"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _deterministic(summary: dict) -> dict:
    return {sid: state["metrics"] for sid, state in summary["stages"].items()}


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(RECIPE))
    out = tmp_path / "killed"

    proc = _cli(recipe_file, out)
    first_checkpoint = out / "stages" / "00-train" / "state.json"
    deadline = time.monotonic() + 240
    while not first_checkpoint.exists():
        if proc.poll() is not None:
            pytest.fail(f"run ended before its first checkpoint: {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint within 240 s")
        time.sleep(0.02)
    # let the next stage start working, then kill without any chance to clean up
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    finished = sorted(p.name for p in (out / "stages").iterdir() if not p.name.startswith("."))
    assert "00-train" in finished and "04-evaluate" not in finished, finished
    assert not (out / "metrics.json").exists()

    resumed = _cli(recipe_file, out)
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-2000:]
    assert f"resuming after stage {finished[-1]}" in stdout
    assert not list((out / "stages").glob(".tmp-*"))
    resumed_summary = json.loads((out / "metrics.json").read_text())

    # the uninterrupted reference run, in this process, on one thread like the CLI runs
    reference = run_recipe(recipe_from_dict(RECIPE), tmp_path / "uninterrupted", progress=False)
    assert _deterministic(resumed_summary) == _deterministic(reference)
    assert resumed_summary["stages"]["04-evaluate"]["metrics"]["accuracy"] > 0.5
