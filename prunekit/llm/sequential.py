"""Sequential (layer-by-layer) calibration through a model's transformer blocks.

The calibration batches run through the embeddings once, are caught at the input of
block 0 (a pre-hook that stops the forward), and then walk the blocks one at a time:
block ``i`` sees the outputs of the *already pruned* block ``i-1``. Only the hidden
states of the calibration set and one block's working set are alive at once.

Example:
    >>> # for index, block, run in sequential_blocks(model, batches):
    >>> #     with collect_input_stats(find_linears(block), gram=False) as stats:
    >>> #         run()                      # dense block, inputs from pruned blocks < i
    >>> #     ...prune block using stats...  # the generator then feeds its outputs onward
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, MutableSequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunekit.llm.precision import calibration_autocast


class _StopForward(Exception):
    """Raised by the capture hook once block 0's inputs are recorded."""


@dataclass
class BlockInputs:
    """Per calibration batch: the hidden states entering a block and the rest of its call.

    ``calls``: for a block whose call differs from block 0's (a model with per-layer-type
    rotary tables or masks, e.g. Gemma's sliding and global layers), its own ``(args,
    kwargs)`` per batch; :meth:`for_block` gives a block its view (the same hidden states)."""

    hidden: MutableSequence[torch.Tensor] = field(default_factory=list)
    args: list[tuple[Any, ...]] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[int, tuple[list[tuple[Any, ...]], list[dict[str, Any]]]] = field(default_factory=dict)

    def for_block(self, index: int) -> BlockInputs:
        """The inputs of block ``index``: these hidden states with that block's own call."""
        if index not in self.calls:
            return self
        args, kwargs = self.calls[index]
        return BlockInputs(self.hidden, args, kwargs)


def _clean_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """(hidden states, other positional args, keyword args without caches) of one block call."""
    kwargs = dict(kwargs)
    if args:
        hidden, rest = args[0], tuple(args[1:])
    else:
        hidden, rest = kwargs.pop("hidden_states"), ()
    for name in ("past_key_values", "past_key_value", "cache"):  # (transformers >= 5.2x: ``cache``)
        kwargs.pop(name, None)
    if "use_cache" in kwargs:
        kwargs["use_cache"] = False
    return hidden, rest, kwargs


def _identity_output(out: Any, hidden: torch.Tensor) -> Any:
    """A block's return value ``out`` with its hidden states replaced by ``hidden``."""
    if isinstance(out, tuple):
        return (hidden, *out[1:])
    if isinstance(out, list):
        return [hidden, *out[1:]]
    return hidden


class _StandIn(nn.Module):
    """Takes a block's place in its list while calls are recorded: ``forward`` is ``fn``, every
    other attribute the block's (a model's loop may read ``layer.attention_type``); the block's
    own hooks do not run."""

    def __init__(self, block: nn.Module, fn: Any) -> None:
        super().__init__()
        self.__dict__["_block"] = block
        self.__dict__["_fn"] = fn

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.__dict__["_fn"](*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_block"], name)


def _capture_block_calls(model: nn.Module, blocks: nn.ModuleList, batches: list[dict[str, Any]],
                         captured: BlockInputs) -> None:
    """Record every block's own call (:attr:`BlockInputs.calls`) in one cheap forward per batch:
    each block is stood in for by one that records its call and passes the hidden states
    through (in the form of block 0's real output on the first batch); the last one stops the
    forward. Blocks whose call matches block 0's are not recorded."""
    if len(blocks) < 2 or not captured.hidden:
        return
    with torch.no_grad():  # (``forward``, not the module call: the block's hooks see no extra run)
        sample = blocks[0].forward(captured.hidden[0], *captured.args[0], **captured.kwargs[0])
    calls: dict[int, tuple[list, list]] = {i: ([], []) for i in range(len(blocks))}

    def recorder(index: int) -> Any:
        def forward(*args: Any, **kwargs: Any) -> Any:
            hidden, rest, kw = _clean_call(args, kwargs)
            calls[index][0].append(rest)
            calls[index][1].append(kw)
            if index == len(blocks) - 1:
                raise _StopForward
            return _identity_output(sample, hidden)
        return forward

    real = list(blocks)
    for i, block in enumerate(real):
        blocks[i] = _StandIn(block, recorder(i))
    try:
        with torch.no_grad():
            for batch in batches:
                try:
                    model(**batch)
                except _StopForward:
                    pass
    finally:
        for i, block in enumerate(real):
            blocks[i] = block
    first_args, first_kwargs = calls.pop(0)
    for i, (args, kwargs) in calls.items():
        if len(args) != len(captured.args) or len(first_args) != len(captured.args):
            raise RuntimeError(f"block {i} was called {len(args)} times for {len(captured.args)} batches")
        if not all(_equal(a, a0) and _equal(k, k0) for a, k, a0, k0 in
                   zip(args, kwargs, first_args, first_kwargs)):
            captured.calls[i] = (args, kwargs)


def capture_block_inputs(
    model: nn.Module, blocks: nn.ModuleList, batches: Iterable[dict[str, Any]], per_block: bool = False
) -> BlockInputs:
    """Run each batch through the model up to block 0 and record that block's inputs.

    Args:
        model: the full model. blocks: its block list (:func:`~prunekit.llm.blocks.find_blocks`).
        batches: keyword dicts for ``model(**batch)``, e.g. ``{"input_ids": ids}``.
        per_block: also record the call of every block that differs from block 0's
            (:attr:`BlockInputs.calls`; one more forward per batch with the blocks passed
            through, so the whole model must be where it runs).
    """
    captured = BlockInputs()

    def pre_hook(_module, args, kwargs):
        hidden, rest, kwargs = _clean_call(args, kwargs)
        captured.hidden.append(hidden.detach())
        captured.args.append(rest)
        captured.kwargs.append(kwargs)
        raise _StopForward

    handle = blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True)
    device = next(model.parameters()).device
    moved = []
    try:
        with torch.no_grad():
            for batch in batches:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                moved.append(batch)
                try:
                    model(**batch)
                except _StopForward:
                    pass
    finally:
        handle.remove()
    if per_block:
        try:
            _capture_block_calls(model, blocks, moved, captured)
        except Exception:  # a model whose loop needs real block outputs: every block gets block 0's call
            captured.calls.clear()
    return captured


def hidden_layout(inputs: BlockInputs) -> tuple[list[tuple[int, ...]], int]:
    """The shape of every batch's hidden states and their element size, without reading them
    (an out-of-core store, :class:`prunekit.llm.offload.activations.ActivationStore`, knows both)."""
    hidden: Any = inputs.hidden
    if hasattr(hidden, "layout"):
        return hidden.layout()
    return [tuple(h.shape) for h in hidden], (hidden[0].element_size() if len(hidden) else 4)


def replace_hidden(hidden: MutableSequence[torch.Tensor], values: Iterable[torch.Tensor]) -> None:
    """Overwrite the entries of ``hidden`` in order with ``values`` (as many)."""
    for j, value in enumerate(values):
        hidden[j] = value


def block_output(out: Any) -> torch.Tensor:
    """The hidden states from a block's return value (a tensor or a tuple starting with it)."""
    return out[0] if isinstance(out, (tuple, list)) else out


class BlockRun:
    """``run()`` of :func:`sequential_blocks`: forwards every calibration batch through a block.

    ``run(keep_outputs=True)`` also returns the block's outputs, one tensor per batch (e.g.
    the dense block's outputs, the targets of block reconstruction); ``inputs`` holds the
    block's calibration inputs. With ``autocast`` (a dtype, e.g. from
    :func:`prunekit.llm.precision.resolve_calib_dtype`) every forward here runs under
    autocast to it.
    """

    def __init__(self, block: nn.Module, inputs: BlockInputs, autocast: torch.dtype | None = None) -> None:
        self.block = block
        self.inputs = inputs
        self.autocast = autocast
        #: set by :meth:`single_pass`: the block's outputs are already the next inputs
        self.outputs_ready = False

    def single_pass(self, hooks: dict[nn.Module, Any]) -> None:
        """One forward of all batches at once with forward pre-hooks on ``hooks``' modules.

        The hooks see every calibration token of a linear's input in one call, so they
        can prune the linear before it is applied: layers later in the block then see
        the pruned layers' outputs, and the block's output is the pruned block's output
        (kept as the next block's input: no second pass). Needs :func:`mergeable` inputs.
        """
        merged = torch.cat(list(self.inputs.hidden), 0)
        sizes = [h[0] for h in hidden_layout(self.inputs)[0]]
        handles = [m.register_forward_pre_hook(fn) for m, fn in hooks.items()]
        try:
            with torch.no_grad(), self._precision():
                out = block_output(self.block(merged, *self.inputs.args[0], **self.inputs.kwargs[0]))
        finally:
            for handle in handles:
                handle.remove()
        dtype = merged.dtype
        del merged
        out = out.to(dtype)  # (a block's output under autocast keeps its input's dtype)
        replace_hidden(self.inputs.hidden, (t.detach() for t in torch.split(out, sizes, 0)))
        self.outputs_ready = True

    def advance(self) -> None:
        """Make the block's outputs (from its current, pruned weights) the next block's inputs;
        nothing to do after :meth:`single_pass`."""
        if self.outputs_ready:
            return
        inputs = self.inputs
        with torch.no_grad(), self._precision():
            for j, (h, a, kw) in enumerate(zip(inputs.hidden, inputs.args, inputs.kwargs)):
                inputs.hidden[j] = block_output(self.block(h, *a, **kw)).detach().to(h.dtype)
        self.outputs_ready = True

    def __call__(self, keep_outputs: bool = False) -> list[torch.Tensor] | None:
        outputs: list[torch.Tensor] = []
        with torch.no_grad(), self._precision():
            for h, a, kw in zip(self.inputs.hidden, self.inputs.args, self.inputs.kwargs):
                out = self.block(h, *a, **kw)
                if keep_outputs:
                    outputs.append(block_output(out).detach())
        return outputs if keep_outputs else None

    def _precision(self) -> Any:
        """The autocast context of this run's forwards (a no-op without ``autocast``)."""
        if self.autocast is None:
            return calibration_autocast(None, "cpu")
        device = next(self.block.parameters()).device
        return calibration_autocast(self.autocast, device)


def _equal(a: Any, b: Any) -> bool:
    """Whether two block calls' arguments are equal (tensors by shape and value)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and (a is b or bool(torch.equal(a, b))))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    try:
        return bool(a is b or a == b)
    except Exception:  # an object without a plain equality
        return False


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        batch_free = a.dim() == 0 or a.shape[0] == 1
        return batch_free and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a is b or a == b


def mergeable(inputs: BlockInputs) -> bool:
    """Whether all batches can run as one: same shape but the batch dimension, and the rest
    of the call (masks, positions, rotary tables) identical and batch-free."""
    shapes, _ = hidden_layout(inputs)
    if not shapes:
        return False
    first = shapes[0]
    for shape, a, kw in zip(shapes, inputs.args, inputs.kwargs):
        if shape[1:] != first[1:]:
            return False
        try:
            if not (_same(a, inputs.args[0]) and _same(kw, inputs.kwargs[0])):
                return False
        except (RuntimeError, TypeError, ValueError):
            return False
    return True


def merged_bytes(inputs: BlockInputs, widest: int) -> int:
    """A generous estimate of one block's working memory when all batches run at once.

    ``widest``: the largest linear output width in the block (e.g. the MLP's). A pure
    function of the hidden states' shapes and element size (see :func:`layout_bytes`).
    """
    shapes, itemsize = hidden_layout(inputs)
    return layout_bytes(shapes, itemsize, widest)


def layout_bytes(shapes: list[tuple[int, ...]], itemsize: int, widest: int) -> int:
    """:func:`merged_bytes` from the batches' hidden-state shapes and element size."""
    if not shapes:
        return 0
    tokens = sum(math.prod(shape[:-1]) for shape in shapes)
    return tokens * (8 * shapes[0][-1] + 4 * widest) * itemsize


def sequential_blocks(
    model: nn.Module, batches: Iterable[dict[str, Any]], autocast: torch.dtype | None = None
) -> Iterator[tuple[int, nn.Module, BlockRun]]:
    """Yield ``(index, block, run)`` for every block, in order, with sequential inputs.

    ``run()`` (a :class:`BlockRun`) forwards every calibration batch through the block
    (call it inside :func:`prunekit.llm.hooks.collect_input_stats`). When the loop
    resumes, the generator recomputes the block's outputs *with its current (pruned)
    weights* and makes them the next block's inputs. ``autocast``: the dtype of the
    blocks' forwards under autocast (None: none), see :class:`BlockRun`. Where a layer's
    parts sit in parallel lists (:func:`~prunekit.llm.layers.find_layers`) the blocks are
    layer views and ``run`` a :class:`~prunekit.llm.layer_run.ModelRun` (whole-model forwards).
    """
    from prunekit.llm.layer_run import ModelRun
    from prunekit.llm.layers import find_layers, is_parallel

    _, blocks = find_layers(model)
    if is_parallel(blocks):  # a layer's parts in parallel lists: no block forward to replay
        batches = list(batches)
        for index, block in enumerate(blocks):
            yield index, block, ModelRun(model, blocks, index, batches, autocast)  # type: ignore[misc]
        return
    inputs = capture_block_inputs(model, blocks, batches, per_block=True)

    for index, block in enumerate(blocks):
        run = BlockRun(block, inputs.for_block(index), autocast)
        yield index, block, run
        run.advance()
