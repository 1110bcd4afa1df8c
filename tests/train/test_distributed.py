import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunekit.io import load_tensors

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_masked_fine_tuning_under_torchrun_two_processes(tmp_path, strategy):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(WORKER), str(tmp_path), strategy]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    r0, r1 = (load_tensors(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    assert set(r0) == set(r1)
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key  # DDP / FSDP kept the ranks identical
    assert not torch.equal(r0["0.weight"], r0["initial.0.weight"])  # it trained
    for i in (0, 2):
        w, mask = r0[f"{i}.weight"], r0[f"mask.{i}"]
        assert torch.count_nonzero(w[~mask]) == 0  # masks held under DDP / FSDP
        assert torch.count_nonzero(w[mask]) == int(mask.sum())
    total = sum(r0[f"mask.{i}"].numel() for i in (0, 2))
    kept = sum(int(r0[f"mask.{i}"].sum()) for i in (0, 2))
    assert abs(1 - kept / total - 0.7) < 0.01
