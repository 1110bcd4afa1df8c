"""The pruning plan (JSON) and pickle-free save/reload of pruned models.

``save_pruned(model, dir)`` writes ``plan.json`` (which indices of which tensors were
kept, step by step, and which Python size attributes changed) and ``model.safetensors``.
``load_pruned(fresh_model, dir)`` replays the plan on a fresh instance of the same
architecture - slicing the same tensors, running the same surgery rules and setting the
recorded attributes - then loads the weights. No code is pickled.

Format ``prunekit.structured.plan/1``: ``steps[i]`` has ``config``, ``tensors``
(``shape_before``, ``keep`` per dim) and ``groups``. ``/2`` adds ``attrs`` to a step:
``[{"module", "name", "before", "after"}]``, the size attributes updated after the cut
(``prunekit.surgery.stale_sizes``); a plan is written as ``/2`` only when it has some.
A step also records ``input``, the shapes of the example input it was traced with (a
list for a tensor, a dict / list of them for kwargs / several inputs), so the model can
be trained, exported and timed at the size it was pruned for (:func:`recorded_input`;
``prunekit.yolo.as_yolo`` makes it the default ``imgsz``). Replay does not need it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.errors import ModelError
from prunekit.io import atomic_write_json, load_state_into, load_tensors, save_tensors

PLAN_ATTR = "_prunekit_plan"
PLAN_FILE = "plan.json"
PLAN_FORMATS = ("prunekit.structured.plan/1", "prunekit.structured.plan/2")
WEIGHTS_FILE = "model.safetensors"


def plan_format(steps: list[dict[str, Any]]) -> str:
    """``/2`` when some step updates attributes (older readers would skip them), else ``/1``."""
    return PLAN_FORMATS[1] if any(step.get("attrs") for step in steps) else PLAN_FORMATS[0]


def input_shapes(example_input: Any) -> Any:
    """JSON shapes of an example input: ``[1, 3, 64, 64]`` for a tensor, a dict or list
    of those for keyword or positional inputs (None for what is not a tensor).

    Example:
        >>> input_shapes({"x": torch.zeros(1, 3, 8, 8), "n": 2})
        {'x': [1, 3, 8, 8], 'n': None}
    """
    if isinstance(example_input, torch.Tensor):
        return list(example_input.shape)
    if isinstance(example_input, dict):
        return {str(k): input_shapes(v) for k, v in example_input.items()}
    if isinstance(example_input, (tuple, list)):
        return [input_shapes(v) for v in example_input]
    return None


def recorded_input(plan: dict[str, Any] | None) -> Any:
    """The example input shapes the last step of ``plan`` was traced with (None if the
    plan predates this record or has no steps)."""
    steps = (plan or {}).get("steps") or []
    return steps[-1].get("input") if steps else None


def make_step(keep, shapes_before, choices, config, attrs=(), example_input=None) -> dict[str, Any]:
    step = {
        "config": config.to_dict(),
        "tensors": {
            name: {
                "shape_before": shapes_before[name],
                "keep": {str(d): idx.tolist() for d, idx in dims.items()},
            }
            for name, dims in keep.items()
        },
        "groups": [
            {
                "id": c.id,
                "members": [[t, d] for t, d in c.group.members],
                "units": c.size,
                "removed": torch.as_tensor(c.remove).reshape(-1).tolist(),
                "exact": c.group.exact,
            }
            for c in choices
        ],
    }
    if attrs:
        step["attrs"] = [u.to_json() for u in attrs]
    if example_input is not None:
        step["input"] = input_shapes(example_input)
    return step


def get_plan(model: nn.Module) -> dict[str, Any] | None:
    """The plan recorded on a model pruned by prunekit (None if never pruned)."""
    return model.__dict__.get(PLAN_ATTR)


def replay_plan(model: nn.Module, plan: dict[str, Any]) -> list:
    """Apply every step of ``plan`` to a fresh model (checks shapes first); returns the
    snapshots (restore them in reverse order to undo). On failure the model is restored."""
    snaps: list = []
    try:
        _replay(model, plan, snaps)
    except BaseException:
        for snap in reversed(snaps):
            snap.restore()
        raise
    model.__dict__[PLAN_ATTR] = plan
    return snaps


def _replay(model: nn.Module, plan: dict[str, Any], snaps: list) -> None:
    from prunekit.surgery import apply_keep
    from prunekit.surgery.stale_sizes import apply_attr_updates

    if plan.get("format") not in PLAN_FORMATS:
        raise ModelError(f"not a prunekit structured plan (format={plan.get('format')!r})")
    for i, step in enumerate(plan["steps"]):
        named = dict(model.named_parameters(remove_duplicate=False))
        named.update(dict(model.named_buffers(remove_duplicate=False)))
        keep = {}
        for name, spec in step["tensors"].items():
            if name not in named:
                raise ModelError(f"plan step {i}: the model has no tensor '{name}'; is it the "
                                 f"same architecture?")
            if list(named[name].shape) != list(spec["shape_before"]):
                raise ModelError(
                    f"plan step {i}: '{name}' has shape {list(named[name].shape)}, the plan "
                    f"expects {spec['shape_before']}; is it the same architecture?"
                )
            keep[name] = {int(d): torch.tensor(ix, dtype=torch.long)
                          for d, ix in spec["keep"].items()}
        snaps.append(apply_keep(model, keep))
        apply_attr_updates(model, step.get("attrs", []), where=f"plan step {i}")


def save_pruned(model: nn.Module, directory: str | os.PathLike[str]) -> Path:
    """Write ``plan.json`` + ``model.safetensors`` for a model pruned by prunekit.

    Example:
        >>> import tempfile
        >>> from prunekit.structured import StructuredConfig, prune_channels_
        >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> _ = prune_channels_(m, torch.zeros(1, 4), StructuredConfig(ratio=0.5))
        >>> d = save_pruned(m, tempfile.mkdtemp())
        >>> fresh = load_pruned(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), d)
        >>> fresh[0].out_features, bool(torch.equal(fresh[0].weight, m[0].weight))
        (4, True)
    """
    plan = get_plan(model)
    if plan is None:
        plan = {"format": PLAN_FORMATS[0], "steps": []}
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    save_tensors(state, out / WEIGHTS_FILE, metadata={"format": "prunekit.pruned"})
    atomic_write_json(out / PLAN_FILE, plan)
    return out


def load_pruned(model: nn.Module, directory: str | os.PathLike[str]) -> nn.Module:
    """Replay the saved plan on ``model`` (a fresh instance) and load the weights."""
    d = Path(directory)
    if not (d / PLAN_FILE).exists() or not (d / WEIGHTS_FILE).exists():
        raise ModelError(f"{d} does not hold {PLAN_FILE} and {WEIGHTS_FILE}")
    plan = json.loads((d / PLAN_FILE).read_text())
    state = load_tensors(d / WEIGHTS_FILE)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ModelError(f"the saved weights do not fit this model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}); is it the same architecture?")
    snaps = replay_plan(model, plan)
    try:
        load_state_into(model, state, strict=True)
    except BaseException:
        for snap in reversed(snaps):
            snap.restore()
        model.__dict__.pop(PLAN_ATTR, None)
        raise
    return model
