"""``load_yolo`` and ``prunekit prune --model ultralytics:...`` with a yaml or a user's
``.pt`` (written here, offline, by Ultralytics' own ``YOLO.save`` from random weights);
the pruned model records its input size and reloads in a fresh process.

Needs the optional ``yolo`` extra (``ultralytics``, AGPL, not in ``.[all]``): skipped
without it; ``.ci/run`` installs it so CI runs these tests.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils._pytree import tree_leaves

os.environ.setdefault("YOLO_OFFLINE", "1")
from prunekit.yolo import ultralytics_available  # noqa: E402

if not ultralytics_available():
    pytest.skip("needs the optional yolo extra (pip install 'prunekit[yolo]')", allow_module_level=True)

from prunekit.cli.main import main  # noqa: E402
from prunekit.errors import ConfigError  # noqa: E402
from prunekit.io import load_tensors, save_tensors  # noqa: E402
from prunekit.structured import load_pruned  # noqa: E402
from prunekit.yolo import load_yolo, yolo_task  # noqa: E402

RELOAD = r"""
import sys, torch
from torch.utils._pytree import tree_leaves
from prunekit.io import load_tensors, save_tensors
from prunekit.structured import load_pruned
from prunekit.yolo import load_yolo
spec, folder = sys.argv[1], sys.argv[2]
model = load_pruned(load_yolo(spec), folder)
x = load_tensors(folder + "/x.safetensors")["x"]
with torch.no_grad():
    leaves = [t for t in tree_leaves(model(x)) if isinstance(t, torch.Tensor)]
save_tensors({str(i): t.contiguous() for i, t in enumerate(leaves)}, folder + "/y.safetensors")
"""


def _leaves(out):
    return [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]


@pytest.fixture(scope="module")
def user_pt(tmp_path_factory):
    """A .pt as a user has one: Ultralytics' own checkpoint of a (random) YOLOv8n-seg."""
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("user") / "my-yolov8n-seg.pt"
    torch.manual_seed(0)
    YOLO("yolov8n-seg.yaml").save(str(path))
    return path


def test_load_yolo_from_a_yaml_and_from_a_pt(user_pt):
    model = load_yolo("yolo11n.yaml", nc=3)
    assert type(model).__name__ == "DetectionModel" and model.model[-1].nc == 3
    seg = load_yolo(user_pt)
    assert type(seg).__name__ == "SegmentationModel" and yolo_task(seg) == "segment"
    assert not seg.training and all(p.dtype == torch.float32 for p in seg.parameters())


def test_load_yolo_errors_name_the_spec_and_what_works(tmp_path):
    with pytest.raises(ConfigError, match="prunekit downloads no weights"):
        load_yolo(tmp_path / "yolo11n.pt")
    with pytest.raises(ConfigError, match="not a YOLO detection"):
        load_yolo("yolov8n-cls.yaml")
    with pytest.raises(ConfigError, match="only be given with a model yaml"):
        load_yolo(tmp_path / "x.pt", nc=2)
    with pytest.raises(ConfigError, match="neither a model yaml"):
        load_yolo("yolo11n")


def test_cli_prunes_a_users_pt_records_the_input_and_reloads_in_a_fresh_process(tmp_path, user_pt):
    out = tmp_path / "pruned"
    code = main(["prune", "--model", f"ultralytics:{user_pt}", "--ratio", "0.5", "--input-size", "64",
                 "--threads", "1", "--latency-runs", "1", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "yolo" and metrics["input"] == [1, 3, 64, 64]
    assert metrics["after"]["macs"] < metrics["before"]["macs"] / 1.5
    plan = json.loads((out / "plan.json").read_text())
    assert plan["steps"][-1]["input"] == [1, 3, 64, 64]

    x = torch.rand(1, 3, 64, 64)
    model = load_pruned(load_yolo(user_pt), out)
    with torch.no_grad():
        expected = _leaves(model(x))
    save_tensors({"x": x}, out / "x.safetensors")
    run = subprocess.run([sys.executable, "-c", RELOAD, str(user_pt), str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    saved = load_tensors(out / "y.safetensors")
    got = [saved[str(i)] for i in range(len(saved))]
    assert expected[0].shape == (1, 4 + 80 + 32, 84)  # boxes, classes, mask coefficients
    assert [t.shape for t in got] == [t.shape for t in expected]
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(got, expected))
