"""int8 per-channel symmetric quantization: golden values, zeros kept, inference modules."""

import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError, ModelError
from prunekit.masks import SparsifyConfig, get_mask, is_masked, sparsify_
from prunekit.quant import (
    Int8Conv2d,
    Int8Linear,
    QuantizeConfig,
    dequantize_symmetric,
    quantize_,
    quantize_symmetric,
    to_int8_inference,
)


def test_golden_per_channel_codes():
    w = torch.tensor([[1.27, 0.0, -0.635], [0.0, 0.0, 0.0], [-2.54, 1.0, 0.0]])
    q, scale = quantize_symmetric(w)
    assert q.dtype == torch.int8
    assert q.tolist() == [[127, 0, -64], [0, 0, 0], [-127, 50, 0]]
    assert torch.allclose(scale, torch.tensor([0.01, 1.0, 0.02]))
    assert torch.equal(dequantize_symmetric(q, scale)[1], torch.zeros(3))


def _pruned_mlp(amount=0.8):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
    sparsify_(net, SparsifyConfig(amount=amount))
    return net


def test_quantize_keeps_pruned_weights_zero_and_masks():
    net = _pruned_mlp()
    masks = [get_mask(net[i]).clone() for i in (0, 2)]
    before = [net[i].weight.detach().clone() for i in (0, 2)]
    record = quantize_(net, QuantizeConfig(scheme="int8"))
    for i, mask, w0 in zip((0, 2), masks, before, strict=True):
        w = net[i].weight
        assert is_masked(net[i]) and torch.equal(get_mask(net[i]), mask)
        assert torch.all(w[~mask] == 0)
        scale = record[str(i)].params
        # every weight is exactly code * scale of its row, within half a step of the original
        q = torch.round(w / scale[:, None])
        assert torch.equal(q * scale[:, None], w)
        assert q.abs().max() <= 127
        assert torch.all((w - w0).abs() <= scale[:, None] / 2 + 1e-7)


def test_int8_linear_matches_fake_quantized_model_exactly():
    net = _pruned_mlp()
    record = quantize_(net, QuantizeConfig())
    x = torch.randn(8, 32)
    int8 = to_int8_inference(net, record)
    assert isinstance(int8[0], Int8Linear) and int8[0].weight_int8.dtype == torch.int8
    assert torch.equal(int8(x), net(x))
    assert torch.equal(int8[0].weight_int8 == 0, ~get_mask(net[0]) | (net[0].weight == 0))
    # the original model (masked) still works after the copy was converted
    assert is_masked(net[0]) and net(x).shape == (8, 4)


def test_int8_conv_matches_fake_quantized_conv():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2))
    sparsify_(net, SparsifyConfig(amount=0.5))
    record = quantize_(net, QuantizeConfig())
    x = torch.randn(2, 3, 9, 9)
    int8 = to_int8_inference(net, record)
    assert isinstance(int8[0], Int8Conv2d)
    assert torch.allclose(int8(x), net(x), atol=1e-6)


def test_dynamic_int8_kernel_close_and_sparse():
    net = _pruned_mlp()
    record = quantize_(net, QuantizeConfig())
    x = torch.randn(8, 32)
    dyn = to_int8_inference(net, record, kernel="dynamic")
    codes = dyn[0].weight().int_repr()
    assert torch.equal(codes == 0, net[0].weight == 0)
    assert (dyn(x) - net(x)).abs().max() < 0.05


def test_config_validation_and_no_layers():
    with pytest.raises(ConfigError, match="bits must be 8"):
        QuantizeConfig(scheme="int8", bits=4)
    with pytest.raises(ConfigError, match="scheme must be one of"):
        QuantizeConfig(scheme="fp4")
    with pytest.raises(ConfigError, match="valid keys"):
        QuantizeConfig.from_dict({"scheme": "int8", "bitz": 8})
    with pytest.raises(ModelError, match="nothing to quantize"):
        quantize_(nn.Sequential(nn.ReLU()), QuantizeConfig())
