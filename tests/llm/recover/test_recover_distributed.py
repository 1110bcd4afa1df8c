import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunekit.io import load_tensors

WORKER = Path(__file__).with_name("recover_worker.py")
ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _run(out: Path, processes: int, strategy: str, stop_after: int = 0) -> dict | None:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                if processes > 1 else [sys.executable])
    cmd = [*launcher, str(WORKER), str(out), str(out / "ckpt"), "distill", "both", strategy]
    env = {**ENV, "STOP_AFTER": str(stop_after)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    if stop_after:
        assert done.returncode != 0 and not (out / "result.json").exists()
        return None
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_fsdp2_distillation_on_two_processes_matches_one_process_holds_masks_and_resumes(tmp_path):
    _run(tmp_path / "two", 2, "fsdp", stop_after=4)  # both processes stop after step 4
    state = json.loads((tmp_path / "two" / "ckpt" / "recover_state.json").read_text())
    assert state["step"] == 3 and state["processes"] == 2  # the checkpoint of step 3 was written by rank 0
    two = _run(tmp_path / "two", 2, "fsdp")  # rerun with the same arguments: continues
    one = _run(tmp_path / "one", 1, "fsdp")  # one process: no sharding, same global batch
    assert two["processes"] == 2 and two["strategy"] == "fsdp" and one["processes"] == 1
    assert two["resumed_from_step"] == 3 and one["resumed_from_step"] == 0
    # the same loss as one process with the same global batch, step by step
    assert len(two["losses"]) == len(one["losses"]) == 8
    for a, b in zip(two["losses"], one["losses"], strict=True):
        assert a == pytest.approx(b, rel=1e-4)
    assert two["losses"][-1] < two["losses"][0]
    # after every step, both ranks see exactly the mask the run started with
    rank0, rank1 = two["mask_sums"]
    assert rank0 == rank1 == [two["initial_mask"]] * 5  # steps 4..8 after resuming
    assert one["mask_sums"] == [[one["initial_mask"]] * 8] and one["initial_mask"] == two["initial_mask"]
    assert two["zeros_after"] == two["zeros_before"] > 0
    # the gathered weights agree with the one-process run's
    a, b = (load_tensors(tmp_path / name / "model.safetensors") for name in ("two", "one"))
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-5), key
        assert torch.equal(a[key] == 0, b[key] == 0) if "proj" in key else True
    assert json.loads((tmp_path / "two" / "ckpt" / "recover_state.json").read_text())["processes"] == 2
