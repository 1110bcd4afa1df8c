"""Size-taking calls: parsing, recording during the trace, expected values after a cut."""

import numpy as np
import torch
from torch import nn

from prunekit.graph import build_dependency_graph
from prunekit.graph.sizes import DimSource, SizeRecord, Slot, expected_sizes, parse_call


def test_parse_reshape_keeps_minus_one_and_rebuilds_the_same_form():
    x = torch.zeros(2, 12)
    call = parse_call("reshape", (x, (2, 3, -1)), {})
    assert call.values == [2, 3, -1] and [s.where for s in call.slots] == [0, 1]
    args, _ = call.rebuild([2, 6, -1])
    assert args[1] == (2, 6, -1) and x.reshape(*args[1:]).shape == (2, 6, 2)


def test_parse_split_sections_give_ranges():
    call = parse_call("split", (torch.zeros(1, 10), [4, 6]), {"dim": 1})
    assert [(s.lo, s.hi, s.dim) for s in call.slots] == [(0, 4, 1), (4, 10, 1)]
    args, kwargs = call.rebuild([2, 3])
    assert args[1] == [2, 3] and kwargs == {"dim": 1}


def test_parse_getitem_slices_with_stored_bounds():
    x = torch.zeros(2, 10, 4)
    call = parse_call("__getitem__", (x, (slice(None), slice(3, None))), {})
    assert [(s.where, s.old, s.dim, s.lo, s.hi) for s in call.slots] == [(2, 3, 1, 0, 3)]
    args, _ = call.rebuild([None, None, 1, None])
    assert x[args[1]].shape == (2, 9, 4)
    ellipsis = parse_call("__getitem__", (x, (Ellipsis, slice(0, 2))), {})
    assert [(s.dim, s.hi) for s in ellipsis.slots] == [(2, 2)]
    assert parse_call("__getitem__", (x, torch.tensor([0, 1])), {}) is None


def test_parse_narrow_start_and_length():
    call = parse_call("narrow", (torch.zeros(8), 0, 2, 5), {})
    assert [(s.lo, s.hi) for s in call.slots] == [(0, 2), (2, 7)]


def test_expected_counts_only_indices_whose_labels_are_all_removed():
    # index 0 carries atoms 5 and 7 (one removed), index 1 only 6 (removed)
    src = DimSource(3, index=np.array([0, 0, 1, 2]), atoms=np.array([5, 7, 6, -1]))
    rec = SizeRecord("view", ("",), [3], [Slot(0, 3, "out", 0, 0, 3)], {("out", 0): src})
    removed = np.zeros(8, dtype=bool)
    removed[[6, 7]] = True
    assert expected_sizes({("<model>", 0): rec}, removed) == {("<model>", 0): [2]}


class _Stored(nn.Module):
    def __init__(self):
        super().__init__()
        self.width = 4
        self.conv = nn.Conv2d(3, 8, 1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        a, b = torch.split(self.conv(x), self.width, dim=1)
        return self.head(torch.cat([b, a], 1))


def test_the_trace_records_a_stored_split_size_and_what_it_counts():
    graph = build_dependency_graph(_Stored(), torch.zeros(1, 3, 4, 4))
    (key, rec), = graph.sizes.items()
    assert key == ("<model>", 0) and rec.name == "split" and rec.values == [4]
    assert [(s.old, s.lo, s.hi) for s in rec.slots] == [(4, 0, 4)]
    group = graph.groups[0]
    assert group.size == 4 and group.comps.shape == (4,)
    removed = np.zeros(graph.n_components, dtype=bool)
    removed[group.comps[:1].numpy()] = True  # one unit: one channel in each half
    assert expected_sizes(graph.sizes, removed)[key] == [3]


class _Mixer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        b, n, c = x.shape  # the output is sized like the input (timm BEiT / PVT attention)
        return self.fc(x).reshape(b, n, c)


class _InputWidth(nn.Module):
    def __init__(self):
        super().__init__()
        self.dim = 8
        self.embed = nn.Linear(4, 8)
        self.mixer = _Mixer()
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.mixer(self.embed(x)))


def test_an_output_sized_by_the_input_width_ties_their_groups():
    graph = build_dependency_graph(_InputWidth(), torch.zeros(1, 5, 4))
    group = {t: g.id for g in graph.groups for t, d in g.index if d == 0}
    assert graph.ties == [(group["embed.weight"], group["mixer.fc.weight"], 1)]
