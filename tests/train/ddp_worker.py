"""Run under torchrun by test_distributed.py: mask, fine-tune (DDP or FSDP2), save this rank's weights."""

import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import TensorDataset

from prunekit.io import save_tensors
from prunekit.masks import SparsifyConfig, effective_state_dict, sparsify_
from prunekit.train import TrainConfig, fit


def main(out_dir: str, strategy: str = "ddp") -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)  # same initial model on every rank
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    sparsify_(model, SparsifyConfig(amount=0.7))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 8, generator=g)
    data = TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())
    initial = {f"initial.{k}": v.clone() for k, v in effective_state_dict(model).items()}
    fit(model, data, TrainConfig(epochs=3, batch_size=16, lr=1e-2, strategy=strategy), progress=False)
    masks = {f"mask.{i}": model[i].parametrizations.weight[0].mask for i in (0, 2)}
    for i in (0, 2):  # checked on every rank, and again across ranks by the test
        assert torch.count_nonzero(model[i].weight[~masks[f"mask.{i}"]]) == 0
    save_tensors({**effective_state_dict(model), **masks, **initial}, f"{out_dir}/rank{rank}.safetensors")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
