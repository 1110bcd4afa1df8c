"""``DynamicSparsity``: train a sparse model from scratch, pruning and regrowing as it goes.

Wiring around the pure functions in ``update.py``: random initial masks spread over
layers (ERK or uniform), then every ``update_every`` steps each layer drops its
smallest active weights and regrows as many connections — by dense-gradient magnitude
(RigL) or at random (SET) — with a cosine-decaying update fraction. Sparsity is
constant after every update.

RigL needs the gradient of the loss with respect to the *dense* weight, including
pruned entries. ``DynamicSparsity`` records it during your normal backward pass with a
hook on each mask's output (no extra forward/backward); call ``remove()`` (or use the
object as a context manager) to detach the hooks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from prunekit.config.base import ConfigBase, check_choice, check_fraction, check_positive_int
from prunekit.dynamic.distribution import layer_densities
from prunekit.dynamic.update import cosine_update_fraction, drop_and_grow, random_masks
from prunekit.errors import ConfigError, ModelError
from prunekit.masks import apply_mask, get_mask
from prunekit.masks.parametrize import MaskParametrization
from prunekit.masks.sparsify import FilterFn, prunable_layers


@dataclass(frozen=True)
class DynamicConfig(ConfigBase):
    """Dynamic sparse training settings.

    Attributes:
        sparsity: constant fraction of weights pruned.
        method: ``"rigl"`` (grow by gradient magnitude) or ``"set"`` (grow at random).
        update_every: steps between prune-and-regrow updates (RigL's delta T).
        alpha: initial fraction of active weights replaced per update (cosine-decayed).
        end_step: no updates from this step on (RigL uses ~75% of training).
        distribution: ``"erk"`` or ``"uniform"`` layer sparsities.
        seed: seed of the initial masks and of SET's regrowth.

    Example:
        >>> DynamicConfig(sparsity=0.9, method="set").method
        'set'
    """

    sparsity: float = 0.9
    method: str = "rigl"
    update_every: int = 100
    alpha: float = 0.3
    end_step: int = 1000
    distribution: str = "erk"
    seed: int = 0

    def __post_init__(self) -> None:
        check_fraction("sparsity", self.sparsity)
        check_choice("method", self.method, ("rigl", "set"))
        check_positive_int("update_every", self.update_every)
        check_fraction("alpha", self.alpha, allow_one=True)
        check_positive_int("end_step", self.end_step)
        check_choice("distribution", self.distribution, ("erk", "uniform"))
        check_positive_int("seed", self.seed, allow_zero=True)


class DynamicSparsity:
    """Sparse-from-scratch training with prune-and-regrow; call ``step()`` after each
    optimizer step (or pass the object as ``fit(..., on_step=...)``).

    Args:
        model: a freshly initialised model; its prunable layers get random masks.
        config: a ``DynamicConfig``.
        filter_fn: optional ``(name, module) -> bool`` choosing the layers.
        optimizer: optional; if given, its per-weight state (Adam moments, momentum) is
            zeroed for regrown connections.

    Example:
        >>> import torch.nn.functional as F
        >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> dyn = DynamicSparsity(net, DynamicConfig(sparsity=0.5, update_every=1, end_step=10))
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> for _ in range(3):
        ...     opt.zero_grad(); F.cross_entropy(net(torch.randn(4, 8)), torch.zeros(4, dtype=torch.long)).backward()
        ...     opt.step(); _ = dyn.step()
        >>> round(dyn.sparsity, 3), dyn.updates
        (0.5, 3)
        >>> dyn.remove()
    """

    def __init__(
        self,
        model: nn.Module,
        config: DynamicConfig,
        filter_fn: FilterFn | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        if not isinstance(config, DynamicConfig):
            raise ConfigError(f"config must be a DynamicConfig, got {type(config).__name__}")
        self.model, self.config, self.filter_fn, self.optimizer = model, config, filter_fn, optimizer
        self.layers = prunable_layers(model, filter_fn)
        if not self.layers:
            raise ModelError(f"nothing to train sparsely in {type(model).__name__}: no Linear/Conv layer")
        self.current_step = 0
        self.updates = 0
        self._generator = torch.Generator().manual_seed(config.seed)
        self._grads: dict[int, torch.Tensor] = {}
        self._handles: list[RemovableHandle] = []
        shapes = [m.weight.shape for _, m in self.layers]
        densities = layer_densities([tuple(s) for s in shapes], config.sparsity, config.distribution)
        for (_, module), mask in zip(self.layers, random_masks(shapes, densities, self._generator)):
            apply_mask(module, "weight", mask)
        if config.method == "rigl":
            self._install_hooks()

    # -- gradient capture (RigL) -------------------------------------------------
    def _install_hooks(self) -> None:
        for index, (_, module) in enumerate(self.layers):
            param = next(p for p in module.parametrizations["weight"] if isinstance(p, MaskParametrization))

            def forward_hook(_mod: nn.Module, _inp: tuple, out: torch.Tensor, index: int = index) -> None:
                if out.requires_grad:
                    out.register_hook(lambda g, index=index: self._grads.__setitem__(index, g.detach()))

            self._handles.append(param.register_forward_hook(forward_hook))

    def remove(self) -> None:
        """Detach the gradient hooks (masks stay)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._grads.clear()

    def __enter__(self) -> DynamicSparsity:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- updates -----------------------------------------------------------------
    @property
    def sparsity(self) -> float:
        """Overall fraction of masked (inactive) weights in the managed layers.

        Regrown connections start at zero but are active, so this counts the masks,
        not the zeros."""
        masks = [get_mask(m) for _, m in self.layers]
        total = sum(m.numel() for m in masks)
        return 1.0 - sum(int(m.sum()) for m in masks) / total

    def step(self, step: int | None = None) -> bool:
        """Advance one step (or to ``step``); run a prune-and-regrow update when due.

        Returns True when an update ran.
        """
        self.current_step = self.current_step + 1 if step is None else int(step)
        t, cfg = self.current_step, self.config
        if t % cfg.update_every != 0 or t >= cfg.end_step:
            return False
        fraction = cosine_update_fraction(t, cfg.alpha, cfg.end_step)
        self.update(fraction)
        return True

    __call__ = step

    @torch.no_grad()
    def update(self, fraction: float) -> None:
        """Replace ``fraction`` of each layer's active weights now."""
        for index, (name, module) in enumerate(self.layers):
            mask = get_mask(module)
            original = module.parametrizations["weight"].original
            if self.config.method == "rigl":
                if index not in self._grads:
                    raise ModelError(
                        f"RigL has no gradient for layer '{name}': call step() after a backward pass"
                    )
                grow_scores = self._grads[index].abs()
            else:
                grow_scores = torch.rand(mask.shape, generator=self._generator)
            new_mask, grown = drop_and_grow(original * mask, mask, grow_scores.to(mask.device), fraction)
            apply_mask(module, "weight", new_mask)
            original[grown] = 0.0
            self._reset_optimizer_state(original, grown)
        self._grads.clear()
        self.updates += 1

    def _reset_optimizer_state(self, param: torch.Tensor, grown: torch.Tensor) -> None:
        if self.optimizer is None:
            return
        state = self.optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
            buf = state.get(key)
            if isinstance(buf, torch.Tensor) and buf.shape == grown.shape:
                buf[grown] = 0.0
