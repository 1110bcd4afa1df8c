"""L0 hard-concrete gates on structured units (neurons, channels), steered to a target.

``L0Gates(model, L0Config(target_sparsity=0.5))`` puts one hard-concrete gate on each
output unit of the chosen modules (Linear rows, Conv output channels, BatchNorm
channels): the module's output is multiplied by the gate along dim 1. Add
``gates.penalty()`` to the loss and call ``gates.step()`` after each optimizer step. The
penalty is the Lagrangian of the constraint "expected density = target density"
(Wang et al. 2020): ``lam * (d - t) + quadratic * (d - t) ** 2`` with ``d`` the expected
fraction of open gates and ``t = 1 - target_sparsity``; the regularisation weight ``lam``
rises by dual ascent, ``lam <- lam + lambda_lr * (d - t)``, while the density is above
target (and falls, possibly below zero, when it undershoots), steering ``d`` to ``t``. ``finalize()`` folds the
test-time gates into the weights, masks closed units, and removes the hooks.

Wiring: each gated module gets a submodule ``l0_gate`` (so the optimizer sees its
``log_alpha``) and a forward hook; both are removed by ``finalize()`` or ``remove()``.
By default the gated modules are every Linear/Conv except the last one (the classifier
output); a Linear/Conv directly followed by a BatchNorm in the same ``nn.Sequential``
is gated after that BatchNorm, because batch normalisation would undo a gate before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from prunekit.config.base import ConfigBase, check_fraction, check_positive_int
from prunekit.errors import ConfigError, ModelError
from prunekit.learned.hard_concrete import deterministic_gates, log_alpha_for, prob_nonzero, sample_gates
from prunekit.masks import apply_mask
from prunekit.masks.sparsify import prunable_layers

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class HardConcreteGate(nn.Module):
    """One gate per unit; ``forward()`` samples in training mode, is deterministic in eval."""

    def __init__(self, units: int, init_keep: float, seed: int) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full((units,), log_alpha_for(init_keep)))
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self) -> torch.Tensor:
        if self.training:
            return sample_gates(self.log_alpha, self.generator)
        return deterministic_gates(self.log_alpha)


@dataclass(frozen=True)
class L0Config(ConfigBase):
    """L0 gate settings.

    Attributes:
        target_sparsity: fraction of gated units to close.
        lambda_init: starting regularisation weight.
        lambda_lr: dual-ascent step per optimizer step (how fast the weight reacts).
        quadratic: weight of the quadratic term (damps oscillation around the target).
        init_keep: initial probability that a gate is open.
        seed: seed of the gate noise.

    Example:
        >>> L0Config(target_sparsity=0.5).lambda_lr
        0.01
    """

    target_sparsity: float = 0.5
    lambda_init: float = 0.0
    lambda_lr: float = 0.01
    quadratic: float = 5.0
    init_keep: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        check_fraction("target_sparsity", self.target_sparsity)
        check_fraction("init_keep", self.init_keep, allow_one=True)
        check_positive_int("seed", self.seed, allow_zero=True)
        for name in ("lambda_init", "lambda_lr", "quadratic"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}")


def default_gate_targets(model: nn.Module) -> list[str]:
    """Names of the modules gated by default (see the module docstring).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
        >>> default_gate_targets(net)
        ['1']
    """
    layers = prunable_layers(model)[:-1]
    modules = dict(model.named_modules())
    out = []
    for name, _ in layers:
        parent, _, leaf = name.rpartition(".")
        container = modules.get(parent)
        target = name
        if isinstance(container, nn.Sequential) and leaf.isdigit():
            nxt = int(leaf) + 1
            if nxt < len(container) and isinstance(container[nxt], _NORMS):
                target = f"{parent}.{nxt}" if parent else str(nxt)
        out.append(target)
    return out


def _units(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return module.out_channels
    if isinstance(module, _NORMS):
        return module.num_features
    raise ModelError(f"L0 gates support Linear, Conv and BatchNorm modules, not {type(module).__name__}")


class L0Gates:
    """Hard-concrete gates on output units, with a target-seeking regularisation weight.

    Example:
        >>> import torch.nn.functional as F
        >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> gates = L0Gates(net, L0Config(target_sparsity=0.5))
        >>> loss = F.cross_entropy(net(torch.randn(8, 4)), torch.zeros(8, dtype=torch.long)) + gates.penalty()
        >>> round(gates.expected_density(), 2)
        0.95
        >>> gates.finalize()["0"]["units"]
        16
    """

    def __init__(self, model: nn.Module, config: L0Config | None = None, modules: list[str] | None = None) -> None:
        self.model, self.config = model, config or L0Config()
        names = modules if modules is not None else default_gate_targets(model)
        table = dict(model.named_modules())
        unknown = [n for n in names if n not in table]
        if unknown:
            raise ModelError(f"L0 gates: no module named {unknown} in {type(model).__name__}")
        if not names:
            raise ModelError(f"L0 gates: nothing to gate in {type(model).__name__}")
        self.targets: dict[str, nn.Module] = {n: table[n] for n in names}
        self.gates: dict[str, HardConcreteGate] = {}
        self._handles: list[RemovableHandle] = []
        for i, (name, module) in enumerate(self.targets.items()):
            if hasattr(module, "l0_gate"):
                raise ModelError(f"module '{name}' already carries an L0 gate")
            units = _units(module)
            gate = HardConcreteGate(units, self.config.init_keep, self.config.seed + i)
            module.add_module("l0_gate", gate)
            self.gates[name] = gate
            self._handles.append(module.register_forward_hook(_gate_output))
        self.lam = float(self.config.lambda_init)
        self.current_step = 0

    def parameters(self) -> list[nn.Parameter]:
        """The gates' ``log_alpha`` tensors (give them a larger learning rate than the weights)."""
        return [g.log_alpha for g in self.gates.values()]

    def expected_density(self) -> float:
        """Expected fraction of open gates over all gated units (no gradient)."""
        with torch.no_grad():
            return float(self._density())

    def _density(self) -> torch.Tensor:
        probs = torch.cat([prob_nonzero(g.log_alpha) for g in self.gates.values()])
        return probs.mean()

    def penalty(self) -> torch.Tensor:
        """``lam * (d - t) + quadratic * (d - t) ** 2``: add it to the task loss."""
        gap = self._density() - (1.0 - self.config.target_sparsity)
        return self.lam * gap + self.config.quadratic * gap * gap

    def step(self, step: int | None = None) -> float:
        """Dual ascent on the regularisation weight; returns the new weight."""
        self.current_step = self.current_step + 1 if step is None else int(step)
        gap = self.expected_density() - (1.0 - self.config.target_sparsity)
        self.lam = self.lam + self.config.lambda_lr * gap
        return self.lam

    __call__ = step

    def remove(self) -> None:
        """Remove the gates and hooks without changing any weight."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for module in self.targets.values():
            if hasattr(module, "l0_gate"):
                del module.l0_gate

    @torch.no_grad()
    def finalize(self) -> dict[str, dict[str, int]]:
        """Fold the test-time gates into the weights, mask closed units, remove the gates.

        Returns ``{module_name: {"units": n, "closed": k}}``. The model's outputs in eval
        mode are unchanged by this call.
        """
        report = {}
        for name, module in self.targets.items():
            z = deterministic_gates(self.gates[name].log_alpha.detach())
            shape = (-1,) + (1,) * (module.weight.dim() - 1)
            module.weight.mul_(z.view(shape).to(module.weight.dtype))
            if getattr(module, "bias", None) is not None:
                module.bias.mul_(z.to(module.bias.dtype))
            closed = z == 0
            if not isinstance(module, _NORMS) and bool(closed.any()):
                apply_mask(module, "weight", (~closed).view(shape).expand_as(module.weight).clone())
            report[name] = {"units": int(z.numel()), "closed": int(closed.sum())}
        self.remove()
        return report


def _gate_output(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    z = module.l0_gate()
    shape = (1, -1) + (1,) * (output.dim() - 2)
    return output * z.view(shape).to(output.dtype)
