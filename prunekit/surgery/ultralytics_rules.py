"""Surgery rules for Ultralytics YOLO models (the optional ``ultralytics`` package).

* Heads (``Detect`` and its subclasses ``Segment``, ``Pose``, ``OBB``, ``v10Detect`` ...):
  the last conv of every branch (``cv2`` boxes, ``cv3`` classes, ``cv4`` mask
  coefficients / keypoints / angles, the ``one2one_*`` copies of end-to-end heads), the
  mask prototypes' last conv (``proto``) and the ``dfl`` conv keep their output
  channels: post-processing reads them by position.
* ``Attention`` (the PSA blocks of YOLO11 / 26): its forward views ``v`` back to the
  input's ``(B, C, H, W)`` and splits ``qkv`` at fixed ``key_dim`` / ``head_dim`` sizes,
  so ``qkv``, ``proj`` and ``pe`` keep their output channels (the widths around it stay).
* Blocks whose forward splits ``cv1``'s output with ``split((self.c, self.c), 1)``
  (``C2f`` and subclasses such as ``C3k2``, ``C2PSA``, ``PSA``, ``RepNCSPELAN4``, ``ELAN1``):
  ``c`` follows the pruned width (the graph already keeps both halves equal).

``register_ultralytics_rules()`` registers them (a user's own rule for a type is kept);
it does nothing when ultralytics is not installed. ``prunekit prune --model
ultralytics:...`` and ``benchmarks/zoo.py --source ultralytics`` call it; do the same
before ``prune_channels_`` / ``load_pruned`` on a YOLO model in your own code.

Example:
    >>> register_ultralytics_rules() in (True, False)
    True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from prunekit.surgery.registry import SurgeryRule, _last_weighted, _out_dims, _register_builtin

#: ``Detect`` attributes whose ModuleList children each end in a prediction conv
HEAD_BRANCHES = ("cv2", "cv3", "cv4", "cv5", "one2one_cv2", "one2one_cv3", "one2one_cv4")
#: blocks that split ``cv1``'s output into two halves of ``self.c`` channels
SPLIT_BLOCKS = ("C2f", "C2PSA", "PSA", "RepNCSPELAN4", "ELAN1", "C2fPSA", "C2fAttn")


def protect_head(m: nn.Module, prefix: str) -> list[tuple[str, int]]:
    """(tensor, dim) pairs of every prediction layer of a YOLO head."""
    layers: list[tuple[nn.Module, str]] = []
    for attr in HEAD_BRANCHES:
        branches = getattr(m, attr, None)
        if isinstance(branches, nn.ModuleList):
            layers += [(child, f"{prefix}{attr}.{i}.") for i, child in enumerate(branches)]
    for attr in ("proto", "dfl"):
        if isinstance(getattr(m, attr, None), nn.Module):
            layers.append((getattr(m, attr), f"{prefix}{attr}."))
    out: list[tuple[str, int]] = []
    for layer, path in layers:
        found = _last_weighted(layer, path)
        if found is not None:
            out += _out_dims(*found)
    return out


def protect_attention(m: nn.Module, prefix: str) -> list[tuple[str, int]]:
    """Output channels of an ultralytics ``Attention``'s qkv, proj and pe convs."""
    out: list[tuple[str, int]] = []
    for attr in ("qkv", "proj", "pe"):
        found = _last_weighted(getattr(m, attr), f"{prefix}{attr}.") if hasattr(m, attr) else None
        if found is not None:
            out += _out_dims(*found)
    return out


def sync_split_width(m: nn.Module) -> None:
    """``c`` = half of ``cv1``'s output channels (``cv1`` is a Conv wrapping ``conv``)."""
    conv = getattr(getattr(m, "cv1", None), "conv", None)
    if isinstance(conv, nn.Conv2d) and isinstance(getattr(m, "c", None), int):
        m.c = conv.out_channels // 2


@contextlib.contextmanager
def keep_print_options() -> Iterator[None]:
    """Undo the global numpy / torch print settings that importing ultralytics changes.

    Example:
        >>> import numpy as np
        >>> with keep_print_options():
        ...     np.set_printoptions(linewidth=320)
        >>> np.get_printoptions()["linewidth"] != 320
        True
    """
    import numpy as np

    numpy_options = np.get_printoptions()
    t = torch._tensor_str.PRINT_OPTS
    torch_options = {"precision": t.precision, "threshold": t.threshold, "edgeitems": t.edgeitems,
                     "linewidth": t.linewidth, "sci_mode": t.sci_mode}
    try:
        yield
    finally:
        np.set_printoptions(**numpy_options)
        torch.set_printoptions(**torch_options)


def import_ultralytics() -> Any:
    """``import ultralytics`` without its side effects on print settings (``YOLO_OFFLINE=1``)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    with keep_print_options():
        import ultralytics
        from ultralytics.nn.modules import block, head  # noqa: F401 - imported with the guard
    return ultralytics


def register_ultralytics_rules() -> bool:
    """Register the YOLO rules; False (and nothing registered) without ultralytics."""
    try:
        import_ultralytics()
        from ultralytics.nn.modules import block, head
    except ImportError:
        return False
    _register_builtin(head.Detect, SurgeryRule(protect=protect_head))
    if isinstance(getattr(block, "Attention", None), type):
        _register_builtin(block.Attention, SurgeryRule(protect=protect_attention))
    for name in SPLIT_BLOCKS:
        module_type = getattr(block, name, None)
        if isinstance(module_type, type):
            _register_builtin(module_type, SurgeryRule(sync=sync_split_width))
    return True
