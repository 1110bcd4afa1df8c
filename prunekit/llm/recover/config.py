"""``RecoverConfig``: how a pruned LLM is fine-tuned back with its sparsity held."""

from __future__ import annotations

from dataclasses import dataclass

from prunekit.config.base import ConfigBase, check_choice, check_fraction, check_positive_int
from prunekit.errors import ConfigError

RECOVER_METHODS: tuple[str, ...] = ("distill", "lora")
BF16_CHOICES: tuple[str, ...] = ("auto", "on", "off")
STRATEGIES: tuple[str, ...] = ("auto", "fsdp", "ddp")


def _positive_number(name: str, value: object, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or value < 0 or (value == 0 and not allow_zero):  # type: ignore[operator]
        kind = "a number >= 0" if allow_zero else "a positive number"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")


@dataclass(frozen=True)
class RecoverConfig(ConfigBase):
    """Recovery fine-tuning of a pruned causal LM.

    Attributes:
        method: ``"distill"`` trains every weight of the pruned model (zeros held exactly);
            ``"lora"`` trains low-rank adapters (peft) and merges them with the mask re-applied.
        tokens: training tokens in all (global over processes); the run takes
            ``ceil(tokens / (batch_size * seqlen))`` optimiser steps.
        seqlen: tokens per training window. batch_size: windows per step (global; divided
            among ``torchrun`` processes, so it must be a multiple of their number).
        lr: peak learning rate (linear warm-up over ``warmup`` of the steps, then cosine to 10%).
        weight_decay: AdamW weight decay (zeros stay zero: their gradients are masked).
        temperature: softmax temperature of the logit KL to the dense teacher.
        kd_weight: weight of the logit KL; ``1 - kd_weight`` weighs next-token cross-entropy.
            Without a teacher the loss is cross-entropy alone.
        hidden_weight: weight of the MSE between the student's and the teacher's final hidden
            states (0 = off; needs the same hidden size, which head/MLP pruning keeps).
        lora_rank, lora_alpha, lora_dropout: the adapters of ``method="lora"``.
        bf16: ``"auto"`` (bf16 autocast where the CPU/GPU has native bf16), ``"on"`` or ``"off"``.
        checkpoint_minutes: a resumable checkpoint is written this often (and at the end).
        max_minutes: a time budget (0 = none): the run stops when it is spent, and the
            learning-rate schedule follows whichever of steps or time is further along. A
            timed run is not bit-reproducible (where it stops depends on the machine).
        strategy: under ``torchrun``: ``"fsdp"`` shards the model (FSDP2 ``fully_shard``),
            ``"ddp"`` replicates it; ``"auto"`` is FSDP for distillation, DDP for LoRA.
        seed: order of the training windows.

    Example:
        >>> RecoverConfig(method="lora", tokens=4096).steps
        4
    """

    method: str = "distill"
    tokens: int = 1_000_000
    seqlen: int = 256
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup: float = 0.05
    temperature: float = 1.0
    kd_weight: float = 1.0
    hidden_weight: float = 0.0
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    bf16: str = "auto"
    checkpoint_minutes: float = 5.0
    max_minutes: float = 0.0
    strategy: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("method", self.method, RECOVER_METHODS)
        check_choice("bf16", self.bf16, BF16_CHOICES)
        check_choice("strategy", self.strategy, STRATEGIES)
        check_positive_int("tokens", self.tokens)
        check_positive_int("seqlen", self.seqlen)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("lora_rank", self.lora_rank)
        check_positive_int("seed", self.seed, allow_zero=True)
        _positive_number("lr", self.lr)
        _positive_number("temperature", self.temperature)
        _positive_number("lora_alpha", self.lora_alpha)
        _positive_number("weight_decay", self.weight_decay, allow_zero=True)
        _positive_number("hidden_weight", self.hidden_weight, allow_zero=True)
        _positive_number("checkpoint_minutes", self.checkpoint_minutes)
        _positive_number("max_minutes", self.max_minutes, allow_zero=True)
        check_fraction("kd_weight", self.kd_weight, allow_one=True)
        check_fraction("warmup", self.warmup)
        check_fraction("lora_dropout", self.lora_dropout)

    @property
    def steps(self) -> int:
        """Optimiser steps the run takes."""
        per_step = self.batch_size * self.seqlen
        return -(-self.tokens // per_step)

    @property
    def resolved_strategy(self) -> str:
        """``fsdp`` or ``ddp``: the wrapper used under ``torchrun``."""
        if self.strategy != "auto":
            return self.strategy
        return "fsdp" if self.method == "distill" else "ddp"
