"""ONNX export of pruned models, verified in onnxruntime (outputs to 1e-4), ORT latency."""

import pytest
import torch
from torch import nn

from prunekit.errors import ModelError
from prunekit.masks import SparsifyConfig, is_masked, sparsify_
from prunekit.models import SmallConvNet

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from prunekit.export.onnx import export_onnx, ort_latency_ms, verify_onnx  # noqa: E402


def narrow_resnet_blocks(model: nn.Module, keep_fraction: float) -> nn.Module:
    """Channel-prune every BasicBlock of a torchvision ResNet in place: keep the
    ``keep_fraction`` of conv1's filters with the largest L1 norm, slicing conv1 (out),
    bn1 and conv2 (in). The residual widths are untouched, so the block stays valid."""
    from torchvision.models.resnet import BasicBlock

    for block in model.modules():
        if not isinstance(block, BasicBlock):
            continue
        conv1, bn1, conv2 = block.conv1, block.bn1, block.conv2
        n_keep = max(1, int(round(conv1.out_channels * keep_fraction)))
        keep = conv1.weight.detach().abs().sum(dim=(1, 2, 3)).argsort(descending=True)[:n_keep].sort().values
        new1 = nn.Conv2d(conv1.in_channels, n_keep, 3, conv1.stride, 1, bias=False)
        new1.weight.data = conv1.weight.data[keep].clone()
        newbn = nn.BatchNorm2d(n_keep)
        for name in ("weight", "bias"):
            getattr(newbn, name).data = getattr(bn1, name).data[keep].clone()
        for name in ("running_mean", "running_var"):
            setattr(newbn, name, getattr(bn1, name)[keep].clone())
        new2 = nn.Conv2d(n_keep, conv2.out_channels, 3, 1, 1, bias=False)
        new2.weight.data = conv2.weight.data[:, keep].clone()
        block.conv1, block.bn1, block.conv2 = new1, newbn, new2
    return model


def _randomize_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5


def test_masked_small_convnet_exports_and_matches(tmp_path):
    torch.manual_seed(0)
    model = SmallConvNet(1, 10, 28)
    sparsify_(model, SparsifyConfig(amount=0.8))
    x = torch.randn(4, 1, 28, 28)
    path = export_onnx(model, x, tmp_path / "m.onnx")
    assert is_masked(model.features[0])  # the user's model keeps its masks
    check = verify_onnx(model, path, x)
    assert check.ok and check.max_abs_diff <= 1e-4
    # dynamic batch: another batch size runs too
    assert verify_onnx(model, path, torch.randn(7, 1, 28, 28)).ok
    latencies = ort_latency_ms([path, path], x, warmup=1, runs=3)
    assert len(latencies) == 2 and all(ms > 0 for ms in latencies)


def test_hand_narrowed_resnet18_exports_and_matches(tmp_path):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    dense = tv.models.resnet18(num_classes=10).eval()
    pruned = narrow_resnet_blocks(tv.models.resnet18(num_classes=10), 0.5).eval()
    _randomize_bn(pruned)
    assert pruned.layer1[0].conv1.out_channels == 32 and pruned.layer4[1].conv2.in_channels == 256
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert params(pruned) < 0.6 * params(dense)
    x = torch.randn(2, 3, 32, 32)
    path = export_onnx(pruned, x, tmp_path / "pruned.onnx")
    check = verify_onnx(pruned, path, x)
    assert check.ok, check
    assert path.stat().st_size < 0.6 * params(dense) * 4


def test_torch_pruning_resnet18_exports_and_matches(tmp_path):
    tv = pytest.importorskip("torchvision")
    tp = pytest.importorskip("torch_pruning")
    torch.manual_seed(0)
    model = tv.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    pruner = tp.pruner.MagnitudePruner(
        model, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.5, ignored_layers=[model.fc]
    )
    pruner.step()
    assert model.conv1.out_channels == 32
    _randomize_bn(model)
    path = export_onnx(model, x, tmp_path / "tp.onnx")
    assert verify_onnx(model, path, torch.randn(3, 3, 32, 32)).ok


def test_prunekit_structured_resnet18_exports_and_matches(tmp_path):
    """Channel pruning by prunekit.structured (issue 3); skipped where it is not installed."""
    tv = pytest.importorskip("torchvision")
    structured = pytest.importorskip("prunekit.structured")
    model = tv.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    before = sum(p.numel() for p in model.parameters())
    structured.prune_channels_(model, x, structured.StructuredConfig(ratio=0.5))
    _randomize_bn(model)
    assert model.conv1.out_channels == 32 and sum(p.numel() for p in model.parameters()) < 0.5 * before
    path = export_onnx(model, x, tmp_path / "pk.onnx")
    check = verify_onnx(model, path, x)
    assert check.ok, check


def test_export_error_is_a_prunekit_error(tmp_path):
    class Weird(nn.Module):
        def forward(self, x):
            return torch.linalg.eig(x)[0].real  # complex intermediates: no ONNX symbol

    with pytest.raises(ModelError, match="ONNX export of Weird failed"):
        export_onnx(Weird(), torch.randn(1, 3, 3), tmp_path / "w.onnx")
    assert not (tmp_path / "w.onnx").exists()
