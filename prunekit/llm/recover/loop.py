"""``recover``: fine-tune a pruned causal LM back towards its dense teacher, zeros held.

Example:
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
    ...                   num_attention_heads=2, num_key_value_heads=1, vocab_size=50)
    >>> _ = torch.manual_seed(0); teacher = LlamaForCausalLM(cfg); student = LlamaForCausalLM(cfg)
    >>> with torch.no_grad(): student.model.layers[0].mlp.up_proj.weight[:, ::2] = 0
    >>> r = recover(student, torch.randint(0, 50, (2000,)), RecoverConfig(tokens=512, seqlen=32,
    ...             bf16="off", lr=1e-3), teacher=teacher, progress=False)
    >>> r.steps, r.zeros_after == r.zeros_before, r.losses[-1] < r.losses[0]
    (4, True, True)
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.llm.blocks import find_blocks
from prunekit.llm.recover.checkpoint import read_checkpoint, write_checkpoint
from prunekit.llm.recover.config import RecoverConfig
from prunekit.llm.recover.data import WindowStream
from prunekit.llm.recover.lora import attach_lora, keep_masks, merge_lora
from prunekit.llm.recover.masks import ZeroHolder, block_weights
from prunekit.llm.recover.objective import lr_at, recovery_loss, use_bf16
from prunekit.llm.recover.progress import RecoverProgress
from prunekit.llm.recover.state import gather_state, restore_state, trainable_names
from prunekit.train.distributed import (
    any_process,
    copy_back,
    is_main_process,
    mean_over_processes,
    rank_and_world,
    sharded_copy,
    wrap_ddp,
)


@dataclass
class RecoverResult:
    """What a recovery run did (``seconds`` and ``tokens`` count resumed runs too)."""

    method: str
    steps: int
    tokens: int
    seconds: float
    planned_steps: int = 0
    stopped_by_time: bool = False
    losses: list[float] = field(default_factory=list)
    resumed_from_step: int = 0
    zeros_before: int = 0
    zeros_after: int = 0
    bf16: bool = False
    strategy: str | None = None
    processes: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def block_zeros(model: nn.Module) -> int:
    """Exact zeros in the block linear weights."""
    return sum(int((p.detach() == 0).sum()) for p in block_weights(model).values())


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "checkpoint_minutes"}


def _resume(folder: Path | None, trained: nn.Module, optimizer: torch.optim.Optimizer,
            config: RecoverConfig) -> dict[str, Any] | None:
    loaded = read_checkpoint(folder) if folder is not None else None
    if loaded is None:
        return None
    weights, tensors, state = loaded
    differs = sorted(k for k, v in _comparable(config.to_dict()).items() if state["config"].get(k) != v)
    names = trainable_names(trained)
    if differs or sorted(weights) != sorted(names):
        what = f"settings {differs}" if differs else "trainable parameters"
        raise ConfigError(f"the recovery checkpoint in {folder} belongs to a different run ({what} differ); "
                          "rerun with the same arguments, or delete the folder to start over")
    restore_state(trained, optimizer, weights, tensors, state["param_groups"])
    return state


def _blocks(model: nn.Module) -> nn.ModuleList:
    return find_blocks(model)[1]


def _teacher_net(teacher: nn.Module | None, sharded: bool) -> nn.Module | None:
    if teacher is None:
        return None
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    if sharded:
        teacher = sharded_copy(teacher, _blocks)
    return teacher


def recover(
    model: nn.Module,
    token_ids: torch.Tensor,
    config: RecoverConfig,
    *,
    teacher: nn.Module | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> RecoverResult:
    """Fine-tune the pruned ``model`` in place on ``token_ids``; every exact zero of its block
    linears stays zero (distillation: gradients and weights masked each step; LoRA: merged
    with the mask re-applied).

    Args:
        model: the pruned causal LM (structured, unstructured or both).
        token_ids: 1-D token ids of the training text.
        config: a :class:`RecoverConfig`.
        teacher: the dense model (logit KL, optional hidden-state MSE); None: cross-entropy.
        checkpoint_dir: where the resumable checkpoint goes; a rerun with the same arguments
            continues from it. None: no checkpoints.
        progress: print tokens/s and ETA (rank 0).
        on_step: called as ``on_step(step, trained_module)`` after every optimiser step.

    Under ``torchrun`` the global batch is split over the processes; ``config.strategy``
    chooses FSDP2 sharding or DDP. Only rank 0 writes. Returns a :class:`RecoverResult`.
    """
    rank, world = rank_and_world()
    device = next(model.parameters()).device
    stream = WindowStream(token_ids, config.seqlen, config.seed)
    zeros_before = block_zeros(model)
    was_training = model.training
    keep = keep_masks(model) if config.method == "lora" else None
    net = attach_lora(model, config) if config.method == "lora" else model
    if config.method == "distill":
        for p in net.parameters():
            p.requires_grad_(True)
    strategy = config.resolved_strategy if world > 1 else None
    trained = sharded_copy(net, _blocks) if strategy == "fsdp" else net
    holder = ZeroHolder(block_weights(trained)) if config.method == "distill" else None
    optimizer = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    state = _resume(folder, trained, optimizer, config)
    start = int(state["step"]) if state else 0
    prior_seconds = float(state["seconds"]) if state else 0.0
    losses: list[float] = list(state["losses"]) if state else []
    runner = wrap_ddp(trained) if strategy == "ddp" else trained
    teacher_net = _teacher_net(teacher, strategy == "fsdp")
    bf16 = use_bf16(config.bf16, device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    hidden = config.hidden_weight > 0 and teacher_net is not None
    per_step = config.batch_size * config.seqlen
    bar = RecoverProgress(f"recover {config.method}", config.steps, per_step, start,
                          enabled=progress and rank == 0,
                          budget_left_s=config.max_minutes * 60 - prior_seconds if config.max_minutes else 0.0)
    trained.train()
    t0 = last_save = time.perf_counter()
    budget = config.max_minutes * 60.0
    done, stopped = start, False
    for step in range(start, config.steps):
        spent = (prior_seconds + time.perf_counter() - t0) / budget if budget else 0.0
        if budget and any_process(spent >= 1.0):
            stopped = True
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config.steps, config.lr, config.warmup, spent)
        x = stream.batch(step, config.batch_size, rank, world).to(device)
        with autocast():
            out = runner(input_ids=x, use_cache=False, output_hidden_states=hidden)
            t_out = None
            if teacher_net is not None:
                with torch.no_grad():
                    t_out = teacher_net(input_ids=x, use_cache=False, output_hidden_states=hidden)
            loss = recovery_loss(out.logits, None if t_out is None else t_out.logits, x, config,
                                 out.hidden_states[-1] if hidden else None,
                                 t_out.hidden_states[-1] if hidden else None)
        loss.backward()
        if holder is not None:
            holder.before_step()
        optimizer.step()
        if holder is not None:
            holder.after_step()
        optimizer.zero_grad(set_to_none=True)
        if on_step is not None:
            on_step(step, trained)
        del out, t_out
        losses.append(mean_over_processes(float(loss.detach())))
        bar.update(step, losses[-1])
        done = step + 1
        out_of_time = budget > 0 and prior_seconds + time.perf_counter() - t0 >= budget
        due = (time.perf_counter() - last_save >= config.checkpoint_minutes * 60 or done == config.steps
               or out_of_time)
        if folder is not None and any_process(due):
            weights, tensors, groups = gather_state(trained, optimizer)
            if is_main_process():
                write_checkpoint(folder, weights, tensors, {
                    "step": step + 1, "tokens": (step + 1) * per_step, "processes": world,
                    "seconds": prior_seconds + time.perf_counter() - t0, "losses": losses,
                    "config": config.to_dict(), "param_groups": groups,
                })
            last_save = time.perf_counter()
    seconds = prior_seconds + time.perf_counter() - t0
    if strategy == "fsdp":
        copy_back(trained, net)
    if keep is not None:
        net = merge_lora(net, keep)
    model.train(was_training)
    return RecoverResult(
        method=config.method, steps=done, tokens=done * per_step, seconds=seconds,
        planned_steps=config.steps, stopped_by_time=stopped,
        losses=losses, resumed_from_step=start, zeros_before=zeros_before, zeros_after=block_zeros(model),
        bf16=bf16, strategy=strategy, processes=world,
    )
