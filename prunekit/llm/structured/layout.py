"""Where one transformer block's attention units and MLP neurons live, as row / column indices.

A :class:`Layout` says, for one block, which output rows of each query/key/value
projection (separate or fused) and which input columns of the output projection belong
to each attention *unit* (a key/value group together with its query heads; a head
without grouped-query attention), and which output rows of each MLP input projection
(``up`` / ``gate`` / fused ``gate_up``) belong to each intermediate neuron. Every
remover works from these indices, whatever the family: the layouts come either from
the name table (:mod:`.families`, a fast path) or from probing the block
(:mod:`.discover`).

Example:
    >>> lay = AttentionLayout("attn", "attn.o", {"attn.qkv": ((0, 1, 4, 5, 8, 9), (2, 3, 6, 7, 10, 11))},
    ...                       ((0, 1), (2, 3)), heads_per_unit=1, head_dim=2)
    >>> lay.n_units, lay.n_heads
    (2, 2)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class AttentionLayout:
    """Attention units of one block.

    Attributes:
        module: path (inside the block) of the attention module whose head counts change.
        o: path of the output projection (input columns grouped by head); ``""`` when the
            heads are read by routed experts instead (a mixture of attention heads,
            :mod:`~prunekit.llm.structured.heads_routed`), whose 3-D weight ``reader`` names.
        rows: per query/key/value projection path, the output rows of each unit.
        cols: the output projection's input columns of each unit.
        heads_per_unit: query heads in one unit. head_dim: channels per head.
        alibi: the block adds per-head ALiBi slopes (Bloom); pruned heads lose their slope.
        shared: rows every unit reads (multi-query attention's one key/value head, whose
            query heads are then the units); they are always kept.
        params: other tensors indexed by unit (per-head norms, sinks, grouped convs):
            path -> ``(dim, indices of each unit along dim)``
            (:mod:`~prunekit.llm.structured.heads_followers`).
        through: projections between the heads and ``o`` that keep the units apart (a
            grouped low-rank output, DeepSeek-V4's ``o_a_proj``); follower probes let
            gradients pass through them.
        reader: with ``o == ""``, the parameter (a key of ``params``) whose sliced dim reads
            the heads (the routed output experts' weight); it scores the units.
        partitions: units split between parallel projections (ZAYA's current / delayed
            value halves): projection path -> the units owning its rows; every removal takes
            as many units from each (:mod:`~prunekit.llm.structured.heads_partition`).
            Empty when every unit owns rows of every projection.
    """

    module: str
    o: str
    rows: dict[str, tuple[tuple[int, ...], ...]]
    cols: tuple[tuple[int, ...], ...]
    heads_per_unit: int
    head_dim: int
    alibi: bool = False
    shared: dict[str, tuple[int, ...]] = field(default_factory=dict)
    params: dict[str, tuple[int, tuple[tuple[int, ...], ...]]] = field(default_factory=dict)
    through: tuple[str, ...] = ()
    reader: str = ""
    partitions: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def n_units(self) -> int:
        return len(self.cols)

    @property
    def n_heads(self) -> int:
        return self.n_units * self.heads_per_unit

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads: one per unit, or the single shared one (multi-query)."""
        return 1 if self.shared else self.n_units


@dataclass(frozen=True)
class MLPLayout:
    """Intermediate neurons of one dense MLP: ``outs[path][j]`` are the rows of neuron ``j``.

    ``params`` are other tensors indexed by neuron (per-neuron scales, sub-norms), as in
    :class:`AttentionLayout`.
    """

    inp: str                                    # projection reading the neurons (down / fc2)
    outs: dict[str, tuple[tuple[int, ...], ...]]
    params: dict[str, tuple[int, tuple[tuple[int, ...], ...]]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(next(iter(self.outs.values())))


@dataclass(frozen=True)
class ExpertsLayout:
    """Routed experts of one mixture-of-experts layer stored as 3-D tensors.

    Attributes:
        module: path of the experts module (``num_experts`` attribute, 3-D parameters).
        router: path of the module whose ``weight`` rows are the router's logits (``[experts,
            hidden]``, or a routing chain's final linear ``[experts + extra, in]``).
        params: per 3-D parameter name of ``module``, ``(expert_dim, neuron_dim, copies)``:
            the dim indexed by expert, the dim indexed by intermediate neuron, and how many
            rows each neuron owns on that dim (2 for a fused ``gate_up_proj``).
        n_experts: experts in the layer. size: intermediate neurons per expert.
    """

    module: str
    router: str
    params: dict[str, tuple[int, int, int]]
    n_experts: int
    size: int


@dataclass(frozen=True)
class Layout:
    """Everything structured pruning needs to know about one block.

    ``attention`` is None for a block whose token mixer has no attention heads (a Mamba /
    SSM, recurrent or RWKV mixer): it is left as it is, and ``mlp`` / ``experts`` /
    whole-block removal still apply. ``attention_error`` says why a block that *has* an
    attention module got ``attention=None`` (its heads could not be matched): asking to
    remove its heads is then an error with that reason, not "not applicable". ``mlp`` is
    None where the block has no dense MLP. A block with several attentions (entries of one
    module list) has the first in ``attention`` and the others in ``more_attention``.
    """

    family: str
    attention: AttentionLayout | None
    mlp: MLPLayout | None
    experts: ExpertsLayout | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    attention_error: str | None = None
    more_attention: tuple[AttentionLayout, ...] = ()

    @property
    def attentions(self) -> tuple[AttentionLayout, ...]:
        """Every attention of the block with its own heads: ``attention`` first, then
        ``more_attention`` (the other entries of a module list holding attentions, as
        LongCat-Flash's ``self_attn.0`` / ``self_attn.1``); empty when ``attention`` is None."""
        return () if self.attention is None else (self.attention, *self.more_attention)


def contiguous_units(n_units: int, width: int, offset: int = 0) -> tuple[tuple[int, ...], ...]:
    """``n_units`` consecutive blocks of ``width`` indices starting at ``offset``.

    Example:
        >>> contiguous_units(2, 3, offset=1)
        ((1, 2, 3), (4, 5, 6))
    """
    return tuple(tuple(range(offset + u * width, offset + (u + 1) * width)) for u in range(n_units))


def keep_indices(units: tuple[tuple[int, ...], ...], drop: list[int]) -> torch.Tensor:
    """The indices of every unit not in ``drop``, in order, as a long tensor.

    Example:
        >>> keep_indices(((0, 1), (2, 3), (4, 5)), [1]).tolist()
        [0, 1, 4, 5]
    """
    dropped = set(drop)
    kept = sorted(i for u, idx in enumerate(units) if u not in dropped for i in idx)
    return torch.tensor(kept, dtype=torch.long)
