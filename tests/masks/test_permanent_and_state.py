import pytest
import torch
from torch import nn

from prunekit.errors import ModelError
from prunekit.masks import (
    SparsifyConfig,
    effective_state_dict,
    get_mask,
    load_masked,
    make_permanent,
    save_masked,
    sparsify_,
)
from prunekit.models import SmallConvNet


def test_make_permanent_leaves_a_plain_module():
    net = SmallConvNet(1, 10, 8, widths=(4, 8), hidden=16)
    keys = list(net.state_dict())
    sparsify_(net, SparsifyConfig(amount=0.5))
    x = torch.randn(3, 1, 8, 8)
    net.eval()
    expected = net(x)
    zeros_before = sum(int((m.weight == 0).sum()) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    make_permanent(net)
    assert list(net.state_dict()) == keys
    for m in net.modules():
        assert type(m).__module__.startswith("torch.nn") or isinstance(m, SmallConvNet)
        assert not hasattr(m, "parametrizations")
        assert not m._forward_hooks and not m._forward_pre_hooks
    zeros_after = sum(int((m.weight == 0).sum()) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert zeros_after == zeros_before
    assert torch.equal(net(x), expected)
    assert type(net.features[0]) is nn.Conv2d


def test_save_and_reload_masked_state(tmp_path):
    net = SmallConvNet(1, 10, 8, widths=(4, 8), hidden=16)
    sparsify_(net, SparsifyConfig(amount=0.6))
    path = save_masked(net, tmp_path / "masked.safetensors")
    fresh = SmallConvNet(1, 10, 8, widths=(4, 8), hidden=16)
    load_masked(fresh, path)
    x = torch.randn(2, 1, 8, 8)
    net.eval(), fresh.eval()
    assert torch.equal(net(x), fresh(x))
    for a, b in zip(net.modules(), fresh.modules()):
        ma, mb = (get_mask(a), get_mask(b)) if isinstance(a, (nn.Conv2d, nn.Linear)) else (None, None)
        assert (ma is None) == (mb is None)
        if ma is not None:
            assert torch.equal(ma, mb)
    # the file holds plain keys plus masks, no pickle
    raw = path.read_bytes()
    assert b"__mask__.features.0.weight" in raw and not raw.startswith(b"PK")


def test_load_masked_rejects_other_architecture_without_changing_it(tmp_path):
    net = SmallConvNet(1, 10, 8, widths=(4, 8), hidden=16)
    sparsify_(net, SparsifyConfig(amount=0.5))
    path = save_masked(net, tmp_path / "m.safetensors")
    other = SmallConvNet(1, 10, 8, widths=(4, 12), hidden=16)
    before = {k: v.clone() for k, v in effective_state_dict(other).items()}
    with pytest.raises(ModelError, match="shape"):
        load_masked(other, path)
    assert all(torch.equal(before[k], v) for k, v in effective_state_dict(other).items())
    assert get_mask(other.features[0]) is None


def test_make_permanent_on_a_deepcopy_leaves_the_original_masked_and_working():
    import copy

    from prunekit.masks import is_masked, plain_copy

    net = SmallConvNet(1, 10, 8, widths=(4, 8), hidden=16).eval()
    sparsify_(net, SparsifyConfig(amount=0.5))
    x = torch.randn(2, 1, 8, 8)
    expected = net(x)
    twin = make_permanent(copy.deepcopy(net))
    assert torch.equal(twin(x), expected)
    assert is_masked(net.features[0]) and torch.equal(net(x), expected)  # original intact
    plain = plain_copy(net)
    assert not is_masked(plain.features[0]) and is_masked(net.features[0])
    assert torch.equal(plain(x), expected)
