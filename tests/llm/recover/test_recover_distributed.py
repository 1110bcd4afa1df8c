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


def _run(out: Path, processes: int, strategy: str) -> dict:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                if processes > 1 else [sys.executable])
    cmd = [*launcher, str(WORKER), str(out), str(out / "ckpt"), "distill", "both", strategy]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_fsdp2_distillation_on_two_processes_matches_one_process_and_holds_masks(tmp_path):
    two = _run(tmp_path / "two", 2, "fsdp")
    one = _run(tmp_path / "one", 1, "fsdp")  # one process: no sharding, same global batch
    assert two["processes"] == 2 and two["strategy"] == "fsdp" and one["processes"] == 1
    # the same loss as one process with the same global batch, step by step
    assert len(two["losses"]) == len(one["losses"]) == 8
    for a, b in zip(two["losses"], one["losses"], strict=True):
        assert a == pytest.approx(b, rel=1e-4)
    assert two["losses"][-1] < two["losses"][0]
    # after every step, both ranks see exactly the mask the run started with
    rank0, rank1 = two["mask_sums"]
    assert rank0 == rank1 == [two["initial_mask"]] * 8
    assert two["zeros_after"] == two["zeros_before"] > 0
    # the gathered weights agree with the one-process run's
    a, b = (load_tensors(tmp_path / name / "model.safetensors") for name in ("two", "one"))
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-5), key
        assert torch.equal(a[key] == 0, b[key] == 0) if "proj" in key else True
    assert json.loads((tmp_path / "two" / "ckpt" / "recover_state.json").read_text())["processes"] == 2
