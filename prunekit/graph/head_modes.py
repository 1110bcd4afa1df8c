"""Head dims or whole heads: the two ways a channel dim split into heads can shrink.

A reshape ``(B, N, C) -> (B, N, 3, H, D)`` (attention heads, channel-shuffle groups)
keeps working after a cut in two ways:

* ``DIMS`` - the same positions go in every slice of the leading dims: ``H`` heads
  of a smaller head size (the tracer's default);
* ``HEADS`` - whole slices of the head dim (``H``, the one before the innermost) go,
  every position of them and of the other leading dims (q, k and v of the head)
  together: fewer heads of the same size.

Some couplings hold in one way only. The default attention scale ``1/sqrt(D)``,
rotary tables shared by the heads and per-head tables are the cases: a tensor broadcast
over the heads (``cos`` / ``sin`` of a rotary embedding, a ``q_norm`` weight) shrinks with
the head dims in ``DIMS`` and stays whole in ``HEADS``; a per-head table (relative
position bias, Swin-v2's logit scale) stays whole in ``DIMS`` and loses the removed
heads' rows in ``HEADS``. Label rules record such couplings per split with
:meth:`SplitModes.couple`; after the trace :meth:`SplitModes.resolve` keeps ``DIMS``
wherever its units stay removable and switches a split whose head dims all collapse
into one unit (or are fixed) to ``HEADS`` when that gives one unit per head.

Example:
    >>> from prunekit.graph.atoms import AtomTable
    >>> t = AtomTable()
    >>> w = t.dim_atoms("qkv.weight", 0, 8, producer=True)
    >>> modes = SplitModes(t)
    >>> i = modes.add(("attn", 0), w.view(1, 2, 4), [1, 2])  # 2 heads of 4 dims
    >>> modes.couple(i, DIMS, w, torch.zeros_like(w))  # head dims cannot shrink ...
    >>> comp, chosen = modes.resolve()
    >>> chosen, len({int(comp[a]) for a in w})  # ... so whole heads: 2 units
    ({('attn', 0): 1}, 2)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from prunekit.graph.atoms import FIXED, NONE, AtomTable, compress_slices, coupling_pairs

DIMS, HEADS = 0, 1


@dataclass
class SplitChoice:
    """One split reshape: its labels (compressed), the head dim, the leading counts the
    guard must see kept in each mode, and the couplings of each mode."""

    key: tuple[str, int] | None
    labels: torch.Tensor
    head_dim: int
    counts: tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]
    pairs: tuple[list[torch.Tensor], list[torch.Tensor]] = field(default_factory=lambda: ([], []))


def _narrowed(labels: torch.Tensor, dims: list[int]) -> torch.Tensor:
    ref = labels
    for d in dims:
        ref = ref.narrow(d, 0, 1)
    return ref.expand_as(labels)


class SplitModes:
    """The split reshapes of one trace and the couplings that depend on their mode."""

    def __init__(self, table: AtomTable) -> None:
        self.table = table
        self.choices: list[SplitChoice] = []
        self._owner = torch.full((0,), -1, dtype=torch.int64)  # atom id -> split index
        # couplings that hold when two splits both take a mode: (i, j, mode, pairs)
        self.joint: list[tuple[int, int, int, torch.Tensor]] = []
        self._links: list[tuple[int, int]] = []  # splits that must take the same mode

    # -- during the trace -----------------------------------------------------------
    def owner(self, labels: torch.Tensor | None) -> int | None:
        """The split the labelled atoms of ``labels`` come from (the most frequent one)."""
        if labels is None or self._owner.numel() == 0:
            return None
        small = compress_slices(labels)[0] if labels.numel() > 4096 else labels
        atoms = small.reshape(-1)
        atoms = atoms[(atoms > 0) & (atoms < self._owner.numel())]
        if atoms.numel() == 0:
            return None
        own = self._owner[atoms]
        own = own[own >= 0]
        if own.numel() == 0:
            return None
        return int(torch.mode(own).values)

    def claim(self, atoms: torch.Tensor, index: int) -> None:
        """Mark ``atoms`` (not yet owned) as belonging to split ``index``."""
        atoms = atoms.reshape(-1)
        atoms = atoms[atoms > 0]
        if atoms.numel() == 0:
            return
        top = int(atoms.max()) + 1
        if self._owner.numel() < top:
            grown = torch.full((max(top, 2 * self._owner.numel()),), -1, dtype=torch.int64)
            grown[: self._owner.numel()] = self._owner
            self._owner = grown
        free = self._owner[atoms] < 0
        self._owner[atoms[free]] = index

    def add(self, key: tuple[str, int] | None, labels: torch.Tensor,
            big: list[int]) -> int:
        """Record a split of ``labels``' channel dim into ``big`` (dims of size > 1, the
        innermost last); returns its index. Its two couplings are recorded per mode."""
        head = big[-2]
        small = compress_slices(labels, keep_dim=head)[0] if labels.numel() > 4096 else labels
        shape = tuple(labels.shape)
        counts = (tuple((d, shape[d]) for d in big[:-1]),
                  tuple((d, shape[d]) for d in big if d != head))
        choice = SplitChoice(key, small, head, counts)
        self.choices.append(choice)
        index = len(self.choices) - 1
        for mode, dims in ((DIMS, big[:-1]), (HEADS, [d for d in big if d != head])):
            self.couple(index, mode, small, _narrowed(small, dims))
        self.claim(torch.unique(small), index)
        return index

    def couple(self, index: int, mode: int, a: torch.Tensor, b: torch.Tensor) -> None:
        """Couple ``a`` with ``b`` (broadcast) only if split ``index`` takes ``mode``."""
        pairs = coupling_pairs(a, b)
        if pairs is not None:
            self.choices[index].pairs[mode].append(pairs)

    def couple_both(self, i: int, j: int, mode: int, a: torch.Tensor, b: torch.Tensor) -> None:
        """Couple ``a`` with ``b`` only if splits ``i`` and ``j`` both take ``mode`` (the
        values of a head go with its query and key when separate splits lose whole heads)."""
        pairs = coupling_pairs(a, b)
        if pairs is not None:
            self.joint.append((i, j, mode, pairs))

    def _pairs_of(self, modes: list[int]) -> list[torch.Tensor]:
        own = [p for c, m in zip(self.choices, modes) for p in c.pairs[m]]
        return own + [p for i, j, m, p in self.joint if modes[i] == m and modes[j] == m]

    def fix(self, index: int, mode: int, labels: torch.Tensor) -> None:
        """Keep the atoms of ``labels`` whole if split ``index`` takes ``mode``."""
        atoms = torch.unique(labels)
        atoms = atoms[atoms > 0]
        self.couple(index, mode, atoms, torch.full_like(atoms, FIXED))

    def link(self, a: int, b: int, heads_a: torch.Tensor, heads_b: torch.Tensor) -> None:
        """Splits ``a`` and ``b`` meet head by head (the query and value projections of
        one attention, each reshaped into heads on its own): they take the same mode,
        and in ``HEADS`` mode head ``h`` of one goes with head ``h`` of the other
        (``heads_a`` / ``heads_b``: labels of one element of every head, broadcast)."""
        if a == b:
            return
        self._links.append((a, b))
        self.couple(a, HEADS, heads_a, heads_b)

    def _linked(self) -> list[int]:
        """A representative split per split: the smallest index of its linked set."""
        root = list(range(len(self.choices)))

        def find(i: int) -> int:
            while root[i] != i:
                root[i] = root[root[i]]
                i = root[i]
            return i

        for a, b in self._links:
            ra, rb = find(a), find(b)
            root[max(ra, rb)] = min(ra, rb)
        return [find(i) for i in range(len(self.choices))]

    def head_of(self, index: int, labels: torch.Tensor) -> torch.Tensor:
        """The head (index along split ``index``'s head dim) of every element of
        ``labels``; -1 where an element is not one of that split's channels."""
        from prunekit.graph.labels import per_index_pairs

        choice = self.choices[index]
        idx, atoms = per_index_pairs(choice.labels, choice.head_dim)
        table = torch.full((int(atoms.max()) + 1 if atoms.numel() else 1,), -1, dtype=torch.int64)
        table[atoms] = idx
        ok = (labels > 0) & (labels < table.numel())
        return torch.where(ok, table[labels.clamp(0, table.numel() - 1)], torch.full_like(labels, -1))

    # -- after the trace ------------------------------------------------------------
    def _components(self, modes: list[int]) -> np.ndarray:
        return self.table.components(self._pairs_of(modes))

    def _units(self, choice: SplitChoice, comp: np.ndarray) -> torch.Tensor:
        """Component of each labelled element of the split (NONE where fixed / unlabelled)."""
        lab = choice.labels
        ok = lab > 0
        c = torch.from_numpy(comp)[lab.clamp(0, len(comp) - 1)]
        return torch.where(ok & (c != int(comp[FIXED])), c, torch.full_like(c, NONE))

    def _collapsed(self, choice: SplitChoice, comp: np.ndarray) -> bool:
        u = self._units(choice, comp)
        return torch.unique(u[u >= 0]).numel() <= 1

    def _one_per_head(self, choice: SplitChoice, comp: np.ndarray) -> bool:
        """Every unit lies within one index of the head dim, and there are at least 2."""
        from prunekit.graph.labels import per_index_pairs

        u = self._units(choice, comp)
        idx, units = per_index_pairs(u, choice.head_dim)
        return units.numel() >= 2 and torch.unique(units).numel() == units.numel()

    def resolve(self) -> tuple[np.ndarray, dict[tuple[str, int], int]]:
        """Choose every split's mode and record its couplings in the table; return the
        components under that choice and ``{split key: HEADS}`` for the splits that take
        whole heads."""
        modes = [DIMS] * len(self.choices)
        comp = self._components(modes)
        root = self._linked()
        # linked splits (query / key / value heads) change mode together
        sets = {root[i] for i, c in enumerate(self.choices) if self._collapsed(c, comp)}
        collapsed = [i for i in range(len(self.choices)) if root[i] in sets]
        if collapsed:
            trial = list(modes)
            for i in collapsed:
                trial[i] = HEADS
            comp_heads = self._components(trial)
            bad = {root[i] for i in collapsed
                   if not self._one_per_head(self.choices[i], comp_heads)
                   and not self._collapsed(self.choices[i], comp_heads)}
            good = [i for i in collapsed if root[i] not in bad]
            # a module with a split that cannot lose whole heads (grouped-query attention's
            # queries) keeps its other splits' modes
            stuck = {self.choices[i].key[0] for i in collapsed
                     if i not in good and self.choices[i].key is not None}
            siblings = self._siblings([i for i in good if self.choices[i].key is not None
                                       and self.choices[i].key[0] not in stuck], list(trial))
            for i in good + siblings:
                modes[i] = HEADS
            if good:
                same = len(good) == len(collapsed) and not siblings
                comp = comp_heads if same else self._components(modes)
        for c, m in zip(self.choices, modes):
            self.table.where = f"{'whole heads' if m == HEADS else 'head dims'} of split {c.key}"
            for p in c.pairs[m]:
                self.table._pairs.append(p)
                self.table.log_fixed(p)
        self.table._pairs.extend(p for i, j, m, p in self.joint if modes[i] == m and modes[j] == m)
        return comp, {c.key: HEADS for c, m in zip(self.choices, modes)
                      if m == HEADS and c.key is not None}

    def _siblings(self, chosen: list[int], trial: list[int]) -> list[int]:
        """Splits of the same module into as many heads as a split that loses whole
        heads (ClassAttn's separate q / k / v): they read the same ``num_heads``, which
        becomes the number of heads kept, so they lose whole heads too where that gives
        one unit per head."""
        heads = {(self.choices[i].key[0], self._heads(self.choices[i]))
                 for i in chosen if self.choices[i].key is not None}
        extra = [j for j, c in enumerate(self.choices) if trial[j] != HEADS and c.key is not None
                 and (c.key[0], self._heads(c)) in heads]
        if not extra:
            return []
        for j in extra:
            trial[j] = HEADS
        comp = self._components(trial)
        return [j for j in extra if self._one_per_head(self.choices[j], comp)]

    @staticmethod
    def _heads(choice: SplitChoice) -> int:
        return int(choice.labels.shape[choice.head_dim])

    def guard_counts(self, key: tuple[str, int]) -> tuple[tuple[int, int], ...] | None:
        """The leading counts split ``key`` must keep in ``HEADS`` mode."""
        for c in self.choices:
            if c.key == key:
                return c.counts[HEADS]
        return None
