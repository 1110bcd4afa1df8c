"""The compact sparse file format: encodings, size at 90% sparsity, bit-exact reload."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from prunekit.errors import ModelError
from prunekit.export import (
    CompactConfig,
    compact_bytes,
    decode_compact,
    load_compact_into,
    save_compact,
)
from prunekit.export.encoding import (
    bitmask_decode,
    bitmask_encode,
    bitpack,
    bitunpack,
    delta8_decode,
    delta8_encode,
)
from prunekit.io import load_tensors, save_tensors
from prunekit.masks import SparsifyConfig, effective_state_dict, get_mask, sparsify_
from prunekit.metrics import size_bytes
from prunekit.models import LeNet300100, SmallConvNet
from prunekit.quant import QuantizeConfig, quantize_

pytest.importorskip("zstandard")


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bit pattern, -0.0 canonicalised to +0.0 (the format's one canonicalisation)."""
    t = t + 0.0 if t.is_floating_point() else t
    return t.contiguous().reshape(-1).view(torch.uint8)


def test_golden_encodings():
    assert list(delta8_encode(np.array([0, 3, 300, 301]))) == [0, 2, 255, 41, 0]
    assert delta8_decode(bytes([0, 2, 255, 41, 0])).tolist() == [0, 3, 300, 301]
    gaps = np.array([0, 254, 255 + 254, 255 * 3 + 700])
    idx = np.cumsum(gaps + 1) - 1
    assert delta8_decode(delta8_encode(idx)).tolist() == idx.tolist()
    mask = np.array([1, 0, 0, 0, 0, 0, 0, 1, 1], dtype=bool)
    assert bitmask_encode(mask) == b"\x81\x80"
    assert bitmask_decode(b"\x81\x80", 9).tolist() == mask.tolist()
    assert bitpack(np.array([1, 2, 3]), 2) == bytes([0b01101100])
    codes = np.random.default_rng(0).integers(0, 32, 101)
    assert bitunpack(bitpack(codes, 5), 5, 101).tolist() == codes.tolist()


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_90_percent_sparse_fp32_is_small_and_bit_exact(tmp_path, codec):
    torch.manual_seed(0)
    model = LeNet300100()
    dense = size_bytes(model)
    sparsify_(model, SparsifyConfig(amount=0.9))
    path = save_compact(model, tmp_path / "m.safetensors", config=CompactConfig(codec=codec))
    ratio = path.stat().st_size / dense
    assert ratio <= 0.14, ratio
    fresh = LeNet300100()
    record = load_compact_into(fresh, path)
    assert record == {}
    want, got = effective_state_dict(model), effective_state_dict(fresh)
    assert set(want) == set(got)
    for key in want:
        assert torch.equal(_bits(got[key]), _bits(want[key])), key
    for i in (1, 3, 5):
        assert torch.equal(get_mask(fresh.net[i]), fresh.net[i].weight != 0)
    x = torch.randn(16, 1, 28, 28)
    assert torch.equal(fresh(x), model(x))


def test_every_dtype_and_buffer_round_trips():
    state = {
        "f16": torch.tensor([0.0, 1.5, 0.0, -2.0] * 40, dtype=torch.float16),
        "bf16": torch.randn(50).to(torch.bfloat16),
        "i64": torch.tensor(7),
        "empty": torch.zeros(0),
        "all_zero": torch.zeros(300),
        "nan": torch.tensor([float("nan"), 0.0, float("inf")] * 30),
    }
    for codec in ("none", "zstd"):
        for positions in ("bitmask", "delta8"):
            out, record, _ = decode_compact(encode := compact_bytes_state(state, codec, positions))
            assert record == {} and len(encode) > 0
            for key, value in state.items():
                assert out[key].dtype == value.dtype and out[key].shape == value.shape
                assert torch.equal(_bits(out[key]), _bits(value)), (key, codec, positions)


def compact_bytes_state(state, codec, positions):
    from prunekit.export import encode_compact

    return encode_compact(state, config=CompactConfig(codec=codec, positions=positions))


@pytest.mark.parametrize("scheme,bits", [("int8", 8), ("codebook", 4)])
def test_quantized_values_restored_exactly(tmp_path, scheme, bits):
    torch.manual_seed(0)
    model = SmallConvNet(1, 10, 8, widths=(8, 16), hidden=32)
    sparsify_(model, SparsifyConfig(amount=0.8))
    unquantized = compact_bytes(model, config=CompactConfig())
    record = quantize_(model, QuantizeConfig(scheme=scheme, bits=bits))
    path = save_compact(model, tmp_path / "q.safetensors", record)
    assert path.stat().st_size < len(unquantized)
    fresh = SmallConvNet(1, 10, 8, widths=(8, 16), hidden=32)
    loaded = load_compact_into(fresh, path)
    assert set(loaded) == set(record)
    for name in record:
        assert torch.equal(loaded[name].params, record[name].params)
    want, got = effective_state_dict(model), effective_state_dict(fresh)
    for key in want:
        assert torch.equal(got[key], want[key]), key


def test_plain_tensors_and_metadata_readable_with_safetensors(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    path = save_compact(model, tmp_path / "c.safetensors", config=CompactConfig(codec="none"), metadata={"arch": "mlp"})
    raw = load_tensors(path)
    assert torch.equal(raw["0.weight"], model[0].weight.detach())
    header = json.loads(path.read_bytes()[8 : 8 + int.from_bytes(path.read_bytes()[:8], "little")])
    meta = header["__metadata__"]
    assert meta["format"] == "prunekit.compact" and meta["version"] == "1" and meta["arch"] == "mlp"
    assert [e["name"] for e in json.loads(meta["layout"])] == list(effective_state_dict(model))


def test_errors_leave_model_unchanged(tmp_path):
    path = save_compact(nn.Linear(4, 2), tmp_path / "a.safetensors")
    target = nn.Linear(5, 2)
    before = target.weight.detach().clone()
    with pytest.raises(ModelError, match="shape"):
        load_compact_into(target, path)
    assert torch.equal(target.weight, before) and not hasattr(target, "parametrizations")
    save_tensors({"w": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(ModelError, match="not a prunekit compact file"):
        load_compact_into(target, tmp_path / "plain.safetensors")
