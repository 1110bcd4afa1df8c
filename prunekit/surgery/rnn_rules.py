"""Surgery for ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``: sizes and the flat weight list.

The tracer follows a recurrent layer through its decomposed gates (see
``prunekit.graph.unfold_rules``), so hidden units are removed from every gate's rows of
``weight_ih`` / ``weight_hh`` / biases and from ``weight_hh``'s columns at once. The module
keeps one ``hidden_size`` for all layers and both directions (``ties``) and a list of
references to its weights (``_flat_weights``) that slicing leaves stale (``sync``).
"""

from __future__ import annotations

from torch import nn


def sync_rnn(m: nn.RNNBase) -> None:
    """Read ``input_size`` / ``hidden_size`` / ``proj_size`` back from the sliced weights
    and refresh the flat weight list the forward uses."""
    m.input_size = m.weight_ih_l0.shape[1]
    if getattr(m, "proj_size", 0):
        m.proj_size = m.weight_hr_l0.shape[0]
        m.hidden_size = m.weight_hr_l0.shape[1]
    else:
        m.hidden_size = m.weight_hh_l0.shape[1]
    m._init_flat_weights()


def rnn_hidden_ties(m: nn.RNNBase, prefix: str) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """(primary, dependent) hidden dims that must keep equal counts: every layer and
    direction shares ``hidden_size`` (and ``proj_size``)."""
    dirs = ("", "_reverse") if m.bidirectional else ("",)
    name = "weight_hr_l{}{}" if getattr(m, "proj_size", 0) else "weight_hh_l{}{}"
    dim = 0 if getattr(m, "proj_size", 0) else 1
    first = (f"{prefix}{name.format(0, '')}", dim)
    return [(first, (f"{prefix}{name.format(k, d)}", dim))
            for k in range(m.num_layers) for d in dirs if (k, d) != (0, "")]
