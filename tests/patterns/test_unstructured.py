import pytest
import torch

from prunekit.patterns.unstructured import global_keep_masks, keep_mask, layer_keep_masks


def test_keep_mask_prunes_exactly_the_lowest():
    scores = torch.tensor([[0.5, 0.1, 0.9], [0.3, 0.7, 0.2]])
    mask = keep_mask(scores, 3)
    assert mask.tolist() == [[True, False, True], [False, True, False]]


def test_keep_mask_ties_broken_by_position_and_count_exact():
    mask = keep_mask(torch.ones(10), 4)
    assert int((~mask).sum()) == 4
    assert mask.tolist() == [False] * 4 + [True] * 6


def test_global_vs_layer_selection_on_hand_computed_tensors():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    b = torch.tensor([10.0, 20.0, 30.0, 40.0])
    # global 50%: the four smallest overall are all of a
    g = global_keep_masks([a, b], 0.5)
    assert g[0].tolist() == [False, False, False, False]
    assert g[1].tolist() == [True, True, True, True]
    # per layer 50%: half of each
    per = layer_keep_masks([a, b], 0.5)
    assert per[0].tolist() == [False, False, True, True]
    assert per[1].tolist() == [False, False, True, True]


def test_counts_instead_of_fractions():
    a, b = torch.tensor([5.0, 1.0, 3.0]), torch.tensor([2.0, 4.0])
    g = global_keep_masks([a, b], 2)
    assert g[0].tolist() == [True, False, True] and g[1].tolist() == [False, True]
    per = layer_keep_masks([a, b], 1)
    assert per[0].tolist() == [True, False, True] and per[1].tolist() == [False, True]


@pytest.mark.parametrize("amount", [0.0, 0.25, 0.5, 0.9])
def test_fraction_rounding(amount):
    s = torch.rand(7, 9)
    assert int((~keep_mask(s, round(amount * 63))).sum()) == round(amount * 63)
    assert int((~global_keep_masks([s], amount)[0]).sum()) == round(amount * 63)
