"""The structured pruner: trace, score, allocate, (optionally) let the user choose, cut.

``StructuredPruner`` does everything up to the cut without touching the model, so you
can look at every group with its scores and change what will be removed; ``apply()``
then performs the surgery atomically (any failure restores the model exactly).
``prune_channels_`` is the one-call form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from prunekit.errors import ConfigError, ModelError, PrunekitError
from prunekit.graph import DependencyGraph, Group, build_dependency_graph
from prunekit.graph.dependency import _drop, binding_ties
from prunekit.structured.allocate import (
    apply_ties,
    choose_removed,
    global_keep,
    keep_at_ratios,
    round_keep,
    uniform_keep,
)
from prunekit.structured.config import StructuredConfig
from prunekit.structured.keep import keep_request
from prunekit.structured.latency_model import (
    LATENCY_MAX_TILT,
    CostModel,
    latency_aware_ratios,
)
from prunekit.structured.plan import PLAN_ATTR, make_step, plan_format
from prunekit.structured.profile import build_cost_models
from prunekit.structured.scoring import group_scores
from prunekit.surgery import Snapshot, apply_keep
from prunekit.surgery.stale_sizes import AttrUpdate, update_stale_sizes


@dataclass
class GroupChoice:
    """One group as shown to the user before removal; edit ``remove`` to change it."""

    group: Group
    scores: torch.Tensor
    remove: torch.Tensor

    @property
    def id(self) -> int:
        return self.group.id

    @property
    def size(self) -> int:
        return self.group.size

    def __repr__(self) -> str:
        return (f"GroupChoice({self.group.describe()}, remove {len(self.remove)}/{self.size}, "
                f"exact={self.group.exact})")


@dataclass
class PruneResult:
    """What ``prune_channels_`` did."""

    plan: dict[str, Any]
    ratio: float
    groups_pruned: int
    units_removed: int
    units_total: int
    search: list[dict[str, float]] = field(default_factory=list)


def _call(model: nn.Module, example_input: Any):
    if isinstance(example_input, dict):
        return model(**example_input)
    if isinstance(example_input, (tuple, list)):
        return model(*example_input)
    return model(example_input)


def _replay(model: nn.Module, example_input: Any) -> tuple[list[tuple[int, ...]], dict, dict]:
    """Eval forward with the heavy ops shape-only: (output shapes, reshape shapes per
    module path and order, reshape counts per module path) - see ``prunekit.graph.guard``."""
    from prunekit.graph.guard import record_view_shapes

    was = model.training
    model.eval()
    try:
        views, counts, out = record_view_shapes(model, lambda: _call(model, example_input))
    finally:
        model.train(was)
    return [tuple(t.shape) for t in tree_leaves(out) if isinstance(t, torch.Tensor)], views, counts


class StructuredPruner:
    """Trace and score a model for structured pruning; nothing is removed until ``apply``.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(),
        ...                   nn.Conv2d(16, 4, 3))
        >>> p = StructuredPruner(m, torch.zeros(1, 3, 8, 8), StructuredConfig(ratio=0.5))
        >>> [(c.size, len(c.remove)) for c in p.choices]
        [(16, 8)]
        >>> p.choices[0].remove = torch.tensor([0, 1, 2])   # choose yourself
        >>> _ = p.apply(); m[0].out_channels
        13
    """

    def __init__(
        self,
        model: nn.Module,
        example_input: Any,
        config: StructuredConfig | None = None,
        *,
        data: Iterable[Any] | None = None,
        loss_fn: Callable[..., torch.Tensor] | None = None,
        scores: dict[int, torch.Tensor] | Callable[[Group], torch.Tensor] | None = None,
        graph: DependencyGraph | None = None,
    ) -> None:
        self.model = model
        self.example_input = example_input
        self.config = config or StructuredConfig()
        self.graph = graph or build_dependency_graph(model, example_input)
        self._drop_ignored()
        self.scores = self._scores(data, loss_fn, scores)
        self._cost_models: tuple[CostModel, CostModel] | None = None
        self.ratio = self.config.ratio
        self.choices = self.propose(self.ratio)

    # -- setup ------------------------------------------------------------------------
    def _drop_ignored(self) -> None:
        ignored = self.config.ignored_layers
        if not ignored:
            return
        modules = dict(self.model.named_modules())
        names: set[str] = set()
        for item in ignored:
            if isinstance(item, str):
                if item not in modules:
                    close = [n for n in modules if item.split(".")[-1] in n][:5]
                    raise ConfigError(
                        f"ignored_layers: no module named '{item}'"
                        + (f"; did you mean one of {close}?" if close else "")
                    )
                names.add(item)
            elif isinstance(item, type):
                names.update(n for n, m in modules.items() if isinstance(m, item))
            elif callable(item):
                names.update(n for n, m in modules.items() if item(n, m))
            elif isinstance(item, nn.Module):
                names.update(n for n, m in modules.items() if m is item)
            else:
                raise ConfigError(f"ignored_layers entries must be names, types, modules or "
                                  f"predicates, got {item!r}")
        tensors = set()
        for n in names:
            prefix = f"{n}." if n else ""
            tensors.update(prefix + t for t, _ in modules[n].named_parameters())
            tensors.update(prefix + t for t, _ in modules[n].named_buffers())
        frozen = {g.id for g in self.graph.groups if any(t in tensors for t, _ in g.members)}
        if frozen:
            _drop(self.graph, frozen)

    def _scores(self, data, loss_fn, user) -> list[torch.Tensor]:
        groups = self.graph.groups
        if user is not None:
            out = []
            for g in groups:
                s = user(g) if callable(user) else user.get(g.id)
                if s is None:
                    raise ConfigError(f"user scores missing for group {g.id}")
                s = torch.as_tensor(s, dtype=torch.float64).reshape(-1)
                if len(s) != g.size:
                    raise ConfigError(f"user scores for group {g.id}: expected {g.size} "
                                      f"values, got {len(s)}")
                out.append(s)
            return out
        c = self.config
        return group_scores(self.model, groups, c.importance, c.aggregation, c.seed, data,
                            loss_fn)

    # -- planning ---------------------------------------------------------------------
    def max_search_ratio(self) -> float:
        """Largest ``ratio`` worth trying: ``max_ratio``, or for latency-aware allocation
        the ratio at which even the least-tilted group reaches ``max_ratio``."""
        c = self.config
        return c.max_ratio * (LATENCY_MAX_TILT if c.allocation == "latency" else 1.0)

    def cost_models(self) -> tuple[CostModel, CostModel]:
        """Measured latency and MACs models of the groups (built once, then cached),
        fitted through the dense model and the model with half of every group cut."""
        if self._cost_models is None:
            sizes = [g.size for g in self.graph.groups]
            probe_keep = apply_ties(uniform_keep(sizes, 0.5, 0.5), sizes, binding_ties(self.graph))

            self._cost_models = build_cost_models(
                self.model, self.example_input, self.graph, batch=self.config.latency_batch,
                probe=(lambda keep: self.trial(self.choices_for(keep)), probe_keep))
        return self._cost_models

    def keep_counts(self, ratio: float) -> list[int]:
        c = self.config
        sizes = [g.size for g in self.graph.groups]
        if c.allocation == "global":
            keep = global_keep(self.scores, ratio, c.max_ratio)
        elif c.allocation == "latency":
            ratios = latency_aware_ratios(*self.cost_models(), ratio, c.max_ratio,
                                          power=c.latency_power)
            keep = keep_at_ratios(sizes, ratios)
        else:
            keep = uniform_keep(sizes, ratio, c.max_ratio)
        keep = [round_keep(k, n, c.round_to) for k, n in zip(keep, sizes)]
        return apply_ties(keep, sizes, binding_ties(self.graph), c.round_to)

    def propose(self, ratio: float) -> list[GroupChoice]:
        """The removal the config would make at ``ratio`` (the model is not touched)."""
        return self.choices_for(self.keep_counts(ratio))

    def choices_for(self, keep: list[int]) -> list[GroupChoice]:
        """Remove the lowest-scored units so that group ``g`` keeps ``keep[g]``."""
        return [
            GroupChoice(g, s, choose_removed(s, k))
            for g, s, k in zip(self.graph.groups, self.scores, keep)
        ]

    def keep_indices(self, choices: list[GroupChoice]) -> dict[str, dict[int, torch.Tensor]]:
        """The ``apply_keep`` request of ``choices`` (validated; :func:`keep_request`)."""
        removals = []
        for c in choices:
            r = torch.as_tensor(c.remove, dtype=torch.long).reshape(-1)
            if len(r) == 0:
                continue
            if int(r.min()) < 0 or int(r.max()) >= c.size:
                raise ConfigError(f"group {c.id}: unit index out of range 0..{c.size - 1}")
            if len(torch.unique(r)) >= c.size:
                raise ConfigError(f"group {c.id}: cannot remove all {c.size} units")
            removals.append((c.group, r))
        return keep_request(removals, self.graph.tensor_shapes)

    def removed_components(self, choices: list[GroupChoice]) -> np.ndarray:
        """Flags (by atom component, see ``prunekit.graph.sizes``) of the units removed."""
        mask = np.zeros(max(self.graph.n_components, 1), dtype=bool)
        for c in choices:
            r = torch.as_tensor(c.remove, dtype=torch.long).reshape(-1)
            if c.group.comps is not None and len(r):
                mask[c.group.comps[r].numpy()] = True
        return mask

    def _cut(self, choices: list[GroupChoice]) -> tuple[dict, Snapshot, list[AttrUpdate]]:
        """Slice the tensors, run the surgery rules, then update the Python size
        attributes the forward would read stale (undone with the snapshot)."""
        keep = self.keep_indices(choices)
        snap = apply_keep(self.model, keep)
        try:
            updates = update_stale_sizes(self.model, self.example_input, self.graph.sizes,
                                         self.removed_components(choices))
        except BaseException:
            snap.restore()
            raise
        return keep, snap, updates

    def trial(self, choices: list[GroupChoice]) -> Snapshot:
        """Cut as proposed and return the snapshot (call ``restore()`` to undo)."""
        return self._cut(choices)[1]

    def _check_splits(self, views: dict, counts: dict) -> None:
        """Raise if a reshape now groups pruned channels into a different number of
        heads / groups (a forward reading a size no surgery rule updated)."""
        from prunekit.graph.guard import stale_splits

        problems = stale_splits(self.graph.splits, views, self.graph.view_counts, counts)
        if problems:
            path = problems[0].split("'")[1]
            kind = type(self.model.get_submodule(path)).__name__ if path != "<model>" else "model"
            raise ModelError(
                f"{problems[0]}: its forward reshapes with a size stored before pruning, so "
                f"the pruned model would run but compute something else; the model was "
                f"restored. Register a SurgeryRule with a sync for {kind} that updates that "
                f"size (prunekit.surgery.register_surgery_rule), or list '{path}' in ignored_layers")

    # -- the cut ----------------------------------------------------------------------
    def apply(self, choices: list[GroupChoice] | None = None) -> PruneResult:
        """Remove the chosen units; on any failure the model is left exactly as it was.

        Groups kept prunable on a guess (``DependencyGraph.optional_freeze``) are frozen
        and the cut is retried once if the pruned forward fails."""
        choices = self.choices if choices is None else choices
        try:
            return self._apply(choices)
        except ModelError:
            kept = self._freeze_optional()
            if kept is None:
                raise
        return self._apply([c for c in choices if id(c.group) in kept])

    def _freeze_optional(self) -> set[int] | None:
        """Freeze the optional groups; the ids of the groups left (None: nothing to do)."""
        found = [self.graph.group_of(*key) for key in self.graph.optional_freeze]
        self.graph.optional_freeze = []
        frozen = {g.id for g in found if g is not None}
        if not frozen:
            return None
        groups = list(self.graph.groups)
        _drop(self.graph, frozen)
        left = {id(g) for g in self.graph.groups}
        self.scores = [s for g, s in zip(groups, self.scores) if id(g) in left]
        self.choices = [c for c in self.choices if id(c.group) in left]
        return left

    def _apply(self, choices: list[GroupChoice]) -> PruneResult:
        expected = self.graph.output_shapes or _replay(self.model, self.example_input)[0]
        keep, snap, updates = self._cut(choices)
        shapes_before = {t: list(self.graph.tensor_shapes[t]) for t in keep}
        try:
            got, views, counts = _replay(self.model, self.example_input)
            if got != expected:
                raise ModelError(f"output shape changed from {expected} to {got}")
            self._check_splits(views, counts)
        except PrunekitError:
            snap.restore()
            raise
        except Exception as exc:
            snap.restore()
            raise ModelError(
                f"the pruned model's forward failed ({type(exc).__name__}: {exc}); the model "
                f"was restored. A layer type may need a surgery rule (register_surgery_rule)"
            ) from exc
        step = make_step(keep, shapes_before, choices, self.config, updates, self.example_input)
        steps = list(getattr(self.model, PLAN_ATTR, {}).get("steps", []))
        plan = {"format": plan_format(steps + [step]), "steps": steps + [step]}
        self.model.__dict__[PLAN_ATTR] = plan
        removed = sum(len(c.remove) for c in choices)
        return PruneResult(
            plan=plan,
            ratio=self.ratio,
            groups_pruned=sum(1 for c in choices if len(c.remove)),
            units_removed=removed,
            units_total=sum(c.size for c in choices),
        )
