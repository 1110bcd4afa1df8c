"""Output equivalence on real torchvision architectures.

For each model: choose units in every exact group, make them provably dead (zero all
their parameter slices), prune them physically, and check the outputs match to 1e-5.
"""

import pytest
import torch

torchvision = pytest.importorskip("torchvision")
from structured_helpers import check_equivalence  # noqa: E402

tvm = torchvision.models


def _small_vit():
    return tvm.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                 hidden_dim=32, mlp_dim=64, num_classes=10)


def _small_swin(v2=False):
    from torchvision.models.swin_transformer import (
        PatchMergingV2,
        SwinTransformer,
        SwinTransformerBlockV2,
    )
    extra = dict(block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2) if v2 else {}
    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                           window_size=[4, 4], num_classes=10, **extra)


def _small_maxvit():
    from torchvision.models.maxvit import MaxVit
    return MaxVit(input_size=(32, 32), stem_channels=16, partition_size=2,
                  block_channels=[16, 32], block_layers=[1, 1], head_dim=8,
                  stochastic_depth_prob=0.0, num_classes=10)


CASES = {
    "resnet18": (lambda: tvm.resnet18(num_classes=10), 32),
    "densenet121": (lambda: tvm.densenet121(num_classes=10), 32),
    "mobilenet_v2": (lambda: tvm.mobilenet_v2(num_classes=10), 32),
    "mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(num_classes=10), 32),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(num_classes=10), 32),
    "shufflenet_v2_x0_5": (lambda: tvm.shufflenet_v2_x0_5(num_classes=10), 32),
    "convnext_tiny": (lambda: tvm.convnext_tiny(num_classes=10), 32),
    "regnet_x_400mf": (lambda: tvm.regnet_x_400mf(num_classes=10), 32),
    "regnet_y_400mf": (lambda: tvm.regnet_y_400mf(num_classes=10), 32),
    "squeezenet1_1": (lambda: tvm.squeezenet1_1(num_classes=10), 64),
    "mnasnet0_5": (lambda: tvm.mnasnet0_5(num_classes=10), 32),
    "googlenet": (lambda: tvm.googlenet(num_classes=10, init_weights=False), 32),
    "inception_v3": (lambda: tvm.inception_v3(num_classes=10, init_weights=False), 80),
    "vit": (_small_vit, 32),
    "swin": (_small_swin, 32),
    "swin_v2": (lambda: _small_swin(v2=True), 32),
    "maxvit": (_small_maxvit, 32),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_dead_units_prune_to_identical_outputs(name):
    build, size = CASES[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(1, 3, size, size)
    stats = check_equivalence(model, x)
    assert stats["groups"] >= 1
    assert stats["params_after"] < stats["params_before"]


