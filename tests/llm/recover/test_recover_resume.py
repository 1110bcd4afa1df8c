import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from prunekit.io import load_tensors

WORKER = Path(__file__).with_name("recover_worker.py")
ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _run(out, ckpt, *extra):
    cmd = [sys.executable, str(WORKER), str(out), str(ckpt), "distill", "wanda", "auto", *extra]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((Path(out) / "result.json").read_text())


def test_sigkilled_recovery_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_run(tmp_path):
    ckpt = tmp_path / "ckpt"
    cmd = [sys.executable, str(WORKER), str(tmp_path / "killed"), str(ckpt), "distill", "wanda", "auto", "slow"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    for line in proc.stdout:  # kill it in the middle of the run
        if line.strip() == "step 4":
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "result.json").exists()
    state = json.loads((ckpt / "recover_state.json").read_text())
    assert 1 <= state["step"] <= 5 and len(state["losses"]) == state["step"]

    resumed = _run(tmp_path / "resumed", ckpt)  # the same arguments: continues
    fresh = _run(tmp_path / "fresh", "")
    assert resumed["resumed_from_step"] == state["step"] and fresh["resumed_from_step"] == 0
    assert resumed["steps"] == fresh["steps"] == 8
    assert resumed["losses"][: state["step"]] == state["losses"]
    assert resumed["losses"] == fresh["losses"]
    assert resumed["zeros_after"] == resumed["zeros_before"] == fresh["zeros_after"]
    a, b = (load_tensors(tmp_path / name / "model.safetensors") for name in ("resumed", "fresh"))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert json.loads((ckpt / "recover_state.json").read_text())["step"] == 8
