"""``prunekit prune --model ultralytics:YAML``: a YOLO built from its yaml prunes, its
heads keep their prediction channels, and it reloads with the same outputs. Skipped
without the optional (AGPL) ``ultralytics`` package."""

import json
import os

import pytest
import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
try:  # imported without its global print settings, which would change other tests' output
    from prunekit.surgery.ultralytics_rules import import_ultralytics

    import_ultralytics()
except ImportError:
    pytest.skip("ultralytics (optional, AGPL) is not installed", allow_module_level=True)

from prunekit.cli.main import main  # noqa: E402
from prunekit.surgery.ultralytics_rules import protect_head  # noqa: E402


def _build(name):
    from ultralytics import YOLO

    return YOLO(name).model.eval()


def _prediction_channels(model):
    """Output channels of the head's prediction layers (their inputs may shrink)."""
    params = dict(model.named_parameters())
    prefix = f"model.{len(model.model) - 1}."
    found = [params[t].shape[d] for t, d in protect_head(model.model[-1], prefix) if t in params]
    assert found
    return found


@pytest.mark.parametrize("name", ["yolo11n.yaml", "yolov8n-seg.yaml"])
def test_cli_prunes_a_yolo_and_it_reloads(tmp_path, name):
    from prunekit.structured import load_pruned

    code = main(["prune", "--model", f"ultralytics:{name}", "--ratio", "0.5", "--input-size", "100",
                 "--threads", "1", "--latency-runs", "1", "--out", str(tmp_path)])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["task"] == "yolo" and metrics["input"] == [1, 3, 128, 128]  # stride 32
    assert metrics["after"]["macs"] < metrics["before"]["macs"] / 1.5
    dense = _build(name)
    model = load_pruned(_build(name), tmp_path)
    assert _prediction_channels(model) == _prediction_channels(dense)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        out, ref = model(x), dense(x)
    assert _shapes(out) == _shapes(ref)


def _shapes(out):
    if isinstance(out, torch.Tensor):
        return [tuple(out.shape)]
    if isinstance(out, dict):
        return [s for k in sorted(out) for s in _shapes(out[k])]
    return [s for o in out for s in _shapes(o)] if isinstance(out, (tuple, list)) else []


def test_cli_names_a_missing_weights_file(tmp_path, capsys):
    missing = tmp_path / "yolo11n.pt"  # a .pt the user does not have: nothing is downloaded
    assert main(["prune", "--model", f"ultralytics:{missing}", "--out", str(tmp_path)]) == 2
    assert "prunekit downloads no weights" in capsys.readouterr().err
