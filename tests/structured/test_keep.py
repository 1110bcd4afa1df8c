"""The shared keep builder (prunekit.structured.keep)."""

import torch

from prunekit.graph.groups import Group
from prunekit.structured.keep import keep_request


def _group(members, index):
    return Group(0, members, {m: torch.tensor(i) for m, i in zip(members, index)})


def test_two_groups_on_one_tensor_and_uncovered_indices_kept():
    heads = _group([("q.weight", 0), ("o.weight", 1)],
                   [[[0, 1], [2, 3], [4, 5]], [[0, 1], [2, 3], [4, 5]]])
    rows = _group([("o.weight", 0)], [[[0], [1], [2], [3]]])
    # q has 7 rows: row 6 belongs to no unit (read by every unit) and stays
    keep = keep_request([(heads, [0, 2]), (rows, torch.tensor([3])), (heads, [])],
                        {"q.weight": (7, 4), "o.weight": (4, 6)})
    assert keep["q.weight"][0].tolist() == [2, 3, 6]
    assert keep["o.weight"][1].tolist() == [2, 3]
    assert keep["o.weight"][0].tolist() == [0, 1, 2]
    assert set(keep) == {"q.weight", "o.weight"}


def test_nothing_removed_is_an_empty_request():
    g = _group([("a", 0)], [[[0], [1]]])
    assert keep_request([(g, [])], {"a": (2,)}) == {}
