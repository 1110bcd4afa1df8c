import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.patterns.nm import NM, nm_keep_mask


def test_row_1_to_8_at_2_4_keeps_the_two_largest_of_each_group():
    row = torch.arange(1.0, 9.0).unsqueeze(0)
    assert (row * nm_keep_mask(row, 2, 4)).tolist() == [[0, 0, 3, 4, 0, 0, 7, 8]]


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_every_group_keeps_exactly_n(n, m):
    torch.manual_seed(0)
    scores = torch.randn(16, 64)
    mask = nm_keep_mask(scores, n, m)
    per_group = mask.reshape(16, -1, m).sum(-1)
    assert torch.all(per_group == n)
    # the kept ones are the largest of their group
    g = scores.reshape(16, -1, m)
    kept_min = torch.where(mask.reshape(16, -1, m), g, torch.inf).amin(-1)
    dropped_max = torch.where(~mask.reshape(16, -1, m), g, -torch.inf).amax(-1)
    assert torch.all(kept_min >= dropped_max)


def test_ties_keep_exactly_n():
    mask = nm_keep_mask(torch.ones(3, 8), 2, 4)
    assert mask.reshape(3, 2, 4).sum(-1).eq(2).all()


def test_bad_patterns_give_config_errors():
    with pytest.raises(ConfigError, match="5:4"):
        NM(5, 4)
    with pytest.raises(ConfigError):
        NM(0, 4)
    with pytest.raises(ConfigError, match="2:4"):
        NM.parse("two-four")
    with pytest.raises(ConfigError, match="multiple of m=4"):
        nm_keep_mask(torch.randn(2, 6), 2, 4)


def test_parse_and_dict_round_trip():
    p = NM.parse("4:8")
    assert p == NM(4, 8) and p.sparsity == 0.5 and str(p) == "4:8"
    assert NM.from_dict(p.to_dict()) == p
