"""Heads tied to the hidden size are proven by where the forward reads the width, not by the
first failure of a removal trial (ProphetNet fails in its predict stream before its main
stream's reshape to the input width)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from prunekit.errors import UnsupportedOpError
from prunekit.llm.structured import prune_heads
from prunekit.llm.structured.heads_check import TiedWidthError
from prunekit.llm.structured.width_tie import merged_dims, tied_width
from tests.llm.conftest import main_output

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from llm_families_zoo import build, example_ids  # noqa: E402


def test_merged_dims_finds_the_dims_merged_into_one_target_dim():
    assert merged_dims((2, 5, 4, 16), (2, 5, 64), 2) == (2, 4)
    assert merged_dims((2, 5, 4, 16), (2, 1, 5, 64), 3) == (2, 4)
    assert merged_dims((2, 5, 4, 16), (2, -1, 64), 2) == (2, 4)     # -1 inferred
    assert merged_dims((2, 5, 64), (2, 5, 64), 2) is None            # nothing merged
    assert merged_dims((2, 4, 5, 16), (2, 5, 64), 2) is None         # heads not adjacent to head_dim
    assert merged_dims((2, 5, 4, 16), (2, 5, 4, 16), 3) is None
    assert merged_dims((2, 5, 3, 16), (2, 5, 64), 2) is None         # does not fit


class _Attn(nn.Module):
    def __init__(self, merge) -> None:
        super().__init__()
        self.q, self.o, self.merge, self.width = nn.Linear(16, 16), nn.Linear(16, 16), merge, 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.q(x).view(*x.shape[:-1], 4, 4)
        return self.o(self.merge(self, y, x))


def _trace(merge):
    model = nn.Sequential(_Attn(merge))
    return tied_width(model, ["0"], lambda m: m(torch.zeros(1, 3, 16)))


def test_the_tie_is_the_input_width_read_from_its_shape_only():
    tie = _trace(lambda s, y, x: y.reshape(x.size(0), x.size(1), x.size(-1)))  # TrOCR-like
    assert tie is not None and tie.module == "0 (_Attn)" and tie.target == (1, 3, 16) and tie.position == 2
    assert "merging dims [4, 4] into the width of its input (16)" in tie.reason()
    assert _trace(lambda s, y, x: y.reshape(*x.shape[:-1], -1)) is None          # Llama: follows the heads
    assert _trace(lambda s, y, x: y.reshape(*x.shape[:-1], s.width)) is None     # an attribute, not the input
    assert _trace(lambda s, y, x: y.reshape(*x.shape[:-1], 16)) is None          # a constant
    assert _trace(lambda s, y, x: x.view(*x.shape[:-1], x.shape[-1])) is None   # no dims merged


def test_prophetnet_heads_are_not_applicable_by_the_traced_tie_and_nothing_changes():
    model = build("prophetnet")
    ids = {"input_ids": example_ids()}
    before = main_output(model, ids)
    n = sum(p.numel() for p in model.parameters())
    with pytest.raises(TiedWidthError, match="read from the input's shape") as err:
        prune_heads(model, {0: [1]})
    assert "ProphetNetNgramSelfAttention" in err.value.reason and "merging dims [8, 8]" in err.value.reason
    assert sum(p.numel() for p in model.parameters()) == n
    assert torch.equal(main_output(model, ids), before)   # undone: structured_prune reports it as n/a


def test_controls_trocr_still_not_applicable_llama_still_prunes():
    trocr = build("trocr")
    with pytest.raises(TiedWidthError):
        prune_heads(trocr, {0: [1]})
    llama = build("llama")
    n = sum(p.numel() for p in llama.parameters())
    prune_heads(llama, {0: [1]})
    assert sum(p.numel() for p in llama.parameters()) < n


def test_a_failure_without_a_traced_tie_stays_a_plain_error():
    """A model whose forward hard-codes the head count elsewhere (not the input width) is not n/a."""
    from prunekit.llm.structured.heads_check import checked_apply

    class Fixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q, self.o = nn.Linear(16, 16), nn.Linear(16, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.o(self.q(x).view(*x.shape[:-1], 4, 4).flatten(-2))  # 4 heads, fixed

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config, self.emb, self.attn = None, nn.Embedding(100, 16), Fixed()

        def forward(self, input_ids, use_cache=False):
            return self.attn(self.emb(input_ids))

    model = M()
    keep = {"attn.q.weight": {0: torch.arange(12)}, "attn.q.bias": {0: torch.arange(12)},
            "attn.o.weight": {1: torch.arange(12)}}
    with pytest.raises(UnsupportedOpError) as err:
        checked_apply(model, keep, [], "attn: heads")
    assert not isinstance(err.value, TiedWidthError) and model.attn.q.weight.shape == (16, 16)
