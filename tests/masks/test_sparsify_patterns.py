import pytest
import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.masks import SparsifyConfig, get_mask, sparsify_
from prunekit.patterns import NM, Block, block_scores, expand_block_mask


def test_nm_through_sparsify_keeps_exactly_n_per_group():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    sparsify_(net, SparsifyConfig(pattern=NM(2, 4)))
    for layer in (net[0], net[2]):
        groups = layer.weight.detach().reshape(layer.weight.shape[0], -1).reshape(-1, 4)
        assert ((groups != 0).sum(dim=1) == 2).all()


def test_nm_row_from_the_design_notes():
    lin = nn.Linear(8, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.arange(1.0, 9.0).unsqueeze(0))
    sparsify_(lin, SparsifyConfig(pattern=NM(2, 4)))
    assert lin.weight.tolist() == [[0.0, 0.0, 3.0, 4.0, 0.0, 0.0, 7.0, 8.0]]


def test_nm_rejects_amount_and_non_dividing_layers_without_changing_model():
    with pytest.raises(ConfigError, match="amount must be None with pattern NM"):
        SparsifyConfig(amount=0.5, pattern=NM(2, 4))
    net = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 4))
    with pytest.raises(ConfigError, match=r"input widths divisible by 4; these layers are not: 0 \(6\)"):
        sparsify_(net, SparsifyConfig(pattern=NM(2, 4)))
    assert get_mask(net[0]) is None and get_mask(net[1]) is None
    sparsify_(net, SparsifyConfig(pattern=NM(2, 4)), filter_fn=lambda name, m: name != "0")
    assert get_mask(net[1]) is not None


def test_block_scores_and_expand_hand_computed():
    s = torch.tensor([[1.0, 1.0, 9.0, 9.0], [1.0, 1.0, 9.0, 9.0]])
    assert block_scores(s, 2, 2).tolist() == [[1.0, 9.0]]
    assert expand_block_mask(torch.tensor([[False, True]]), 2, 2, s.shape).tolist() == [
        [False, False, True, True],
        [False, False, True, True],
    ]


def test_block_pattern_removes_whole_tiles():
    torch.manual_seed(0)
    lin = nn.Linear(8, 8, bias=False)
    sparsify_(lin, SparsifyConfig(amount=0.5, pattern=Block(2, 4)))
    tiles = (lin.weight.detach() != 0).reshape(4, 2, 2, 4)
    per_tile = tiles.sum(dim=(1, 3))
    assert set(per_tile.flatten().tolist()) <= {0, 8}
    assert int((per_tile == 0).sum()) == 4  # half of the 8 tiles


def test_block_that_does_not_tile_is_rejected():
    with pytest.raises(ConfigError, match="block 3x4 does not tile 0 viewed as 8x8"):
        sparsify_(nn.Sequential(nn.Linear(8, 8)), SparsifyConfig(amount=0.5, pattern=Block(3, 4)))


def test_pattern_from_dict():
    cfg = SparsifyConfig.from_dict({"pattern": {"type": "NM", "n": 4, "m": 8}})
    assert cfg.pattern == NM(4, 8)
    assert SparsifyConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="pattern type must be one of"):
        SparsifyConfig.from_dict({"amount": 0.5, "pattern": {"type": "Diagonal"}})
