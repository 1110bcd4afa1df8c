"""Run by the recovery subprocess tests, alone or under torchrun.

usage: recover_worker.py OUT_DIR CHECKPOINT_DIR METHOD KIND STRATEGY [SLOW]

With the environment variable STOP_AFTER=k every process exits (code 3) after step k's
optimiser step, before its checkpoint: a crash after the checkpoint of step k - 1.

Builds the same tiny pruned Llama in every process, runs ``recover`` and writes, from rank 0,
``result.json`` (losses, steps, resume point, per-step mask checksums seen by each rank)
and ``model.safetensors`` (the final weights). With SLOW, each step prints ``step N`` and
sleeps, so a test can SIGKILL the run mid-way.
"""

import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from prunekit.io import save_tensors
from prunekit.llm.recover import RecoverConfig, block_weights, recover
from tests.llm.recover.helpers import pruned_pair, text_ids


def _mask_checksum(trained) -> int:
    total = 0
    for i, (_, p) in enumerate(sorted(block_weights(trained).items())):
        full = p.full_tensor() if hasattr(p, "full_tensor") else p
        nz = (full.detach() != 0).flatten().nonzero().flatten()
        total += (i + 1) * int((nz * 7 + 3).sum()) + int(nz.numel())
    return total


def main(out: str, ckpt: str, method: str, kind: str, strategy: str, slow: bool = False) -> None:
    torchrun = "LOCAL_RANK" in os.environ
    if torchrun:
        dist.init_process_group("gloo")
    torch.set_num_threads(1)
    dense, student = pruned_pair(kind)
    initial = _mask_checksum(student)
    sums: list[int] = []

    stop_after = int(os.environ.get("STOP_AFTER", "0"))

    def on_step(step, trained):
        sums.append(_mask_checksum(trained))
        if stop_after and step + 1 == stop_after:
            sys.exit(3)
        if slow:
            print(f"step {step}", flush=True)
            time.sleep(0.3)

    config = RecoverConfig(method=method, tokens=8 * 4 * 32, seqlen=32, batch_size=4, lr=3e-3, bf16="off",
                           kd_weight=0.5, lora_rank=4, checkpoint_minutes=1e-9, strategy=strategy)
    r = recover(student, text_ids(), config, teacher=dense, checkpoint_dir=ckpt or None,
                progress=False, on_step=on_step)
    rank = dist.get_rank() if torchrun else 0
    all_sums = [None] * dist.get_world_size() if torchrun else [sums]
    if torchrun:
        dist.all_gather_object(all_sums, sums)
    if rank == 0:
        Path(out).mkdir(parents=True, exist_ok=True)
        save_tensors({k: v.detach() for k, v in student.state_dict().items()}, Path(out) / "model.safetensors")
        (Path(out) / "result.json").write_text(json.dumps({**r.to_dict(), "initial_mask": initial,
                                                           "mask_sums": all_sums}))
    if torchrun:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:6], slow=len(sys.argv) > 6)
