"""Process-group helpers shared by ``fit`` and LLM recovery: who am I, wrap for DDP or FSDP2.

Everything here is a no-op in a single process, so the same training code runs alone or
under ``torchrun --nproc-per-node N`` (gloo on CPU, nccl on GPU).

Example:
    >>> rank_and_world()
    (0, 1)
    >>> mean_over_processes(2.5)
    2.5
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from prunekit.errors import ConfigError

STRATEGIES: tuple[str, ...] = ("ddp", "fsdp")


def is_distributed() -> bool:
    """True inside an initialised process group."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    if not is_distributed():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the one process that writes files."""
    return rank_and_world()[0] == 0


def mean_over_processes(value: float) -> float:
    """The mean of ``value`` over all processes (the value itself in a single process)."""
    if not is_distributed():
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    torch.distributed.all_reduce(t)
    return float(t.item()) / torch.distributed.get_world_size()


def any_process(flag: bool) -> bool:
    """True when ``flag`` is true on any process (all processes get the same answer)."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([1 if flag else 0], device=_collective_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def _collective_device() -> torch.device:
    backend = torch.distributed.get_backend()
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shard_fsdp(model: nn.Module, units: Iterable[nn.Module]) -> nn.Module:
    """Shard ``model`` in place with FSDP2: each module of ``units`` (e.g. decoder blocks) is
    its own all-gather unit, the rest belongs to the root. Returns the model.

    The parameters become DTensors sharded on dim 0 across the process group; module
    names and ``named_parameters()`` keys are unchanged.
    """
    if not is_distributed():
        raise ConfigError("strategy 'fsdp' needs a process group: run under torchrun "
                          "(or use strategy 'ddp' / a single process)")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
    mesh = init_device_mesh(device, (torch.distributed.get_world_size(),))
    for unit in units:
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def sharded_copy(model: nn.Module, units: Callable[[nn.Module], Iterable[nn.Module]] | None = None) -> nn.Module:
    """An FSDP2-sharded deep copy of ``model``; ``units(copy)`` -> its all-gather units
    (default: the root alone). The original keeps plain tensors, for use after training."""
    import copy

    twin = copy.deepcopy(model)
    if is_distributed():  # every process shards rank 0's weights, whatever each computed before
        with torch.no_grad():
            for t in [*twin.parameters(), *twin.buffers()]:
                torch.distributed.broadcast(t.data, src=0)
    return shard_fsdp(twin, units(twin) if callable(units) else ())


@torch.no_grad()
def copy_back(sharded: nn.Module, plain: nn.Module) -> None:
    """Gather the trained shards of :func:`sharded_copy` into the plain original (collective:
    every process calls it and ends with the full weights)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True))
    for name, p in plain.named_parameters():
        if name in full:
            p.copy_(full[name].to(p.device))


def wrap_ddp(model: nn.Module) -> nn.Module:
    """``DistributedDataParallel(model)`` inside a process group, else the model itself."""
    if not is_distributed():
        return model
    return torch.nn.parallel.DistributedDataParallel(model)
