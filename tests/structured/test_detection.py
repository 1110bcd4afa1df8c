"""Structured pruning of torchvision detectors: backbone, FPN and heads shrink, the
prediction layers keep their outputs, and dead units prune to identical detections."""

import pytest
import torch

torchvision = pytest.importorskip("torchvision")
from structured_helpers import exact_choices, kill_units  # noqa: E402

from prunekit.errors import UnsupportedOpError  # noqa: E402
from prunekit.structured import StructuredConfig, StructuredPruner, prune_channels_  # noqa: E402

det = torchvision.models.detection

CASES = {
    # score thresholds at 0 so that random weights still produce detections to compare
    "fasterrcnn_mobilenet_v3_large_320_fpn": lambda: det.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.0,
        min_size=128, max_size=128, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20),
    "ssdlite320_mobilenet_v3_large": lambda: det.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=5, score_thresh=0.0),
    "retinanet_resnet50_fpn": lambda: _spread_logits(det.retinanet_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=5, score_thresh=0.0,
        min_size=96, max_size=96)),
}


def _spread_logits(model):
    """RetinaNet starts every score at the 0.01 prior (+-3e-7), so its ranking would be
    float noise; spread the logits so that the detections compared are well separated."""
    for conv in model.head.classification_head.modules():
        if isinstance(conv, torch.nn.Conv2d):
            torch.nn.init.normal_(conv.weight, std=0.1)
            torch.nn.init.zeros_(conv.bias)
    return model


def _images(size=128):
    torch.manual_seed(1)
    return [torch.rand(3, size, size)]


def _detections(model, images):
    with torch.no_grad():
        return model.eval()(images)[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_dead_units_prune_to_identical_detections(name):
    torch.manual_seed(0)
    model = CASES[name]().eval()
    images = _images()
    pruner = StructuredPruner(model, (images,), StructuredConfig(ratio=0.5))
    assert exact_choices(pruner) >= 5
    kill_units(model, pruner)
    before = _detections(model, images)
    params = sum(p.numel() for p in model.parameters())
    pruner.apply()
    after = _detections(model, images)
    assert sum(p.numel() for p in model.parameters()) < 0.9 * params
    assert len(before["boxes"]) >= 5 and len(after["boxes"]) == len(before["boxes"])
    assert torch.equal(after["labels"], before["labels"])
    assert torch.allclose(after["boxes"], before["boxes"], atol=1e-3)
    assert torch.allclose(after["scores"], before["scores"], atol=1e-5)


def test_prediction_layers_keep_their_outputs_at_ratio_half():
    torch.manual_seed(0)
    model = CASES["ssdlite320_mobilenet_v3_large"]().eval()
    heads = model.head
    outs = [m[-1].out_channels for m in heads.classification_head.module_list]
    regs = [m[-1].out_channels for m in heads.regression_head.module_list]
    prune_channels_(model, (_images(),), StructuredConfig(ratio=0.5))
    assert [m[-1].out_channels for m in heads.classification_head.module_list] == outs
    assert [m[-1].out_channels for m in heads.regression_head.module_list] == regs
    out = _detections(model, _images())
    assert set(out) == {"boxes", "scores", "labels"} and out["boxes"].shape[1] == 4


def test_a_module_that_only_sees_empty_tensors_is_named():
    torch.manual_seed(0)
    model = det.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3,
                                      min_size=64, max_size=64, box_score_thresh=1.1).eval()
    with pytest.raises(UnsupportedOpError, match=r"roi_heads\.mask_head.*empty tensor"):
        prune_channels_(model, ([torch.rand(3, 64, 64)],), StructuredConfig(ratio=0.5))
