"""Model sources of ``benchmarks/zoo.py``: which models, how to build them, what input.

* ``torchvision``: every classification model (``torchvision.models.list_models``).
* ``timm``: one model per family, a family being a timm module (``timm.list_modules()``);
  its representative is the variant with the fewest parameters. Parameters are counted
  on models built with ``pretrained=False`` on the ``meta`` device: that runs each
  constructor (so the count is exact, not guessed from a name like ``_tiny``) but
  allocates and initialises nothing, ~0.1 s a model, ~3 minutes for all ~1400 (too slow
  to build them for real on a shared CPU). The counts are cached in
  ``benchmarks/results/zoo/timm_params.json`` per timm version. timm's ``test_*`` models
  (tiny configurations for timm's own CI, not variants anyone uses) are left out. A model
  whose constructor fails on ``meta`` is skipped; a family none of whose models builds
  there is listed with the error (and fails in the benchmark).
* ``ultralytics``: every detection / segmentation / pose / OBB yaml shipped for YOLO v3u,
  v5u, v8, v9, v10, 11, 12 and 26 (``cfg/models/<version>/``; the v3 / v5 yamls are the
  anchor-free "u" models), built from the yaml (no weights) at its smallest scale
  (``yolov8.yaml`` -> ``yolov8n.yaml``; v3, v9 and v10 ship one yaml per size: all of
  them). Classification, depth, semantic-segmentation, YOLOE, YOLO-World and RT-DETR
  yamls are left out. Needs the optional ``ultralytics`` package (AGPL; never a
  prunekit dependency); without it the source reports itself unavailable.

Every source gives ``names()``, ``build(name) -> nn.Module`` (eval, random weights) and
``example(model, name) -> Tensor``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results" / "zoo"
YOLO_VERSIONS = ("v3", "v5", "v8", "v9", "v10", "11", "12", "26")
#: yaml name parts of other tasks / model families (YOLOE, YOLO-World, RT-DETR) skipped
NOT_YOLO_TASKS = {"cls", "depth", "sem", "world", "worldv2", "rtdetr"}


class SourceUnavailable(RuntimeError):
    """The source's package is not installed (the benchmark reports it, not a crash)."""


# -- shared -----------------------------------------------------------------------------
def smallest_input(model: nn.Module, sizes: tuple[int, ...], fallback: int) -> int:
    """Smallest square input side of ``sizes`` the model runs on (shape-only forward)."""
    from prunekit.graph.shapes import ShapeOnly

    for size in sizes:
        try:
            with torch.no_grad(), ShapeOnly():
                model(torch.zeros(1, 3, size, size))
            return size
        except Exception:
            continue
    return fallback


def flat_outputs(out: object) -> list[torch.Tensor]:
    """Every tensor of a (nested) model output, in a fixed order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out, key=str) for t in flat_outputs(out[k])]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in flat_outputs(o)]
    return []


# -- torchvision ------------------------------------------------------------------------
class TorchvisionSource:
    name = "torchvision"

    def names(self) -> list[str]:
        import torchvision

        return torchvision.models.list_models(module=torchvision.models)

    def build(self, name: str) -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None).eval()

    def example(self, model: nn.Module, name: str) -> torch.Tensor:
        size = 224 if name.startswith(("vit_", "maxvit")) else smallest_input(
            model, (32, 64, 96, 160, 224), 224)
        return torch.randn(1, 3, size, size)

    def classifier(self, model: nn.Module) -> list[nn.Module]:
        last = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        return last[-1:]


# -- timm -------------------------------------------------------------------------------
def _timm_counts() -> dict:
    """{family: [[name, params], ...] or {"error": text}}, cached per timm version."""
    import timm

    cache = RESULTS / "timm_params.json"
    if cache.exists():
        data = json.loads(cache.read_text())
        if data.get("timm") == timm.__version__:
            return data["families"]
    families: dict = {}
    for module in timm.list_modules():
        counts, error = [], None
        for name in timm.list_models(module=module):
            try:
                with torch.device("meta"):
                    m = timm.create_model(name, pretrained=False)
                counts.append([name, sum(p.numel() for p in m.parameters())])
            except Exception as exc:  # this variant does not build on meta: skip it
                error = f"{name}: {type(exc).__name__}: {exc}".splitlines()[0][:300]
        families[module] = sorted(counts, key=lambda c: c[1]) if counts else {"error": error}
    RESULTS.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"timm": timm.__version__, "families": families}) + "\n")
    return families


def _timm_families() -> dict:
    """{family: {"model": name, "params": n} or {"error": text}}: the smallest variant,
    timm's ``test_*`` models (tiny configurations for timm's own CI) left out."""
    out: dict = {}
    for family, counts in _timm_counts().items():
        real = [c for c in counts if not c[0].startswith("test_")] if isinstance(counts, list) else []
        if real:
            out[family] = {"model": real[0][0], "params": real[0][1]}
        else:
            out[family] = counts if isinstance(counts, dict) else {"error": "only test_ models"}
    return out


class TimmSource:
    name = "timm"

    def names(self) -> list[str]:
        fams = _timm_families()
        return [f["model"] if "model" in f else f"family:{k}" for k, f in fams.items()]

    def build(self, name: str) -> nn.Module:
        import timm

        if name.startswith("family:"):
            raise RuntimeError(f"no model of timm family {name[7:]} builds: "
                               f"{_timm_families()[name[7:]]['error']}")
        return timm.create_model(name, pretrained=False).eval()

    def example(self, model: nn.Module, name: str) -> torch.Tensor:
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        native = int((cfg.get("input_size") or (3, 224, 224))[-1])
        sizes = tuple(s for s in (64, 96, 128, 160) if s < native) + (native,)
        return torch.randn(1, 3, *([smallest_input(model, sizes, native)] * 2))

    def classifier(self, model: nn.Module) -> list[nn.Module]:
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        if isinstance(head, nn.Module) and not isinstance(head, nn.Identity):
            return [head]
        return TorchvisionSource().classifier(model)


# -- ultralytics ------------------------------------------------------------------------
def _ultralytics_cfg() -> Path:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        import ultralytics
    except ImportError as exc:
        raise SourceUnavailable("ultralytics is not installed (pip install ultralytics; "
                                "AGPL, an optional extra: prunekit[yolo])") from exc
    return Path(ultralytics.__file__).parent / "cfg" / "models"


def _smallest_scale(path: Path) -> str:
    """The yaml name at its first (smallest) scale, e.g. yolo11.yaml -> yolo11n.yaml."""
    import yaml

    scales = list((yaml.safe_load(path.read_text()) or {}).get("scales") or {})
    stem, _, task = path.stem.partition("-")
    if not scales or (len(scales) == 1 and stem.endswith(scales[0])):
        return path.name  # one size per yaml (v3, v9, v10)
    first = scales[0]
    return f"{stem}{first}{'-' + task if task else ''}.yaml"


class UltralyticsSource:
    name = "ultralytics"

    def names(self) -> list[str]:
        root = _ultralytics_cfg()
        out = []
        for version in YOLO_VERSIONS:
            for path in sorted((root / version).glob("*.yaml")):
                parts = set(path.stem.split("-"))
                if parts & NOT_YOLO_TASKS or path.stem.startswith("yoloe"):
                    continue
                out.append(_smallest_scale(path))
        return out

    def build(self, name: str) -> nn.Module:
        _ultralytics_cfg()
        from prunekit.yolo import load_yolo  # registers the YOLO surgery rules too

        return load_yolo(name)

    def example(self, model: nn.Module, name: str) -> torch.Tensor:
        return torch.rand(1, 3, 256, 256)

    def classifier(self, model: nn.Module) -> list[nn.Module]:
        return [model.model[-1]]  # the Detect / Segment / Pose / OBB head


SOURCES = {"torchvision": TorchvisionSource, "timm": TimmSource, "ultralytics": UltralyticsSource}
