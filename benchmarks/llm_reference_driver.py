"""Child process of ``benchmarks/llm_prune_speed.py``: time a *reference* implementation.

Runs the authors' own pruning function on SmolLM2-135M with prunekit's calibration
windows (same text, seed, count and length), from source extracted into a folder:

* Wanda: ``lib/prune.py::prune_wanda`` of github.com/locuslab/wanda;
* SparseGPT: ``llama.py::llama_sequential`` of github.com/IST-DASLab/sparsegpt.

Nothing of theirs is copied into prunekit; this file only adapts the calling
conventions of 2023 to the installed transformers:

* their calibration loaders download C4; a stand-in ``get_loaders`` hands them our
  windows in their ``[(input_ids, target)]`` format (the download module is not imported);
* their SparseGPT calls ``torch.cuda.synchronize()`` after each layer (to time it on a
  GPU); on a machine without CUDA that call raises, so it is a no-op there (nothing runs
  asynchronously on the CPU);
* transformers 5 decoder layers need the rotary ``position_embeddings`` from the model
  and return a tensor; a thin wrapper computes them from ``position_ids`` (as the model
  itself does) and returns a 1-tuple, which is what their ``layer(...)[0]`` expects.

The wrapper is removed after pruning. The last printed line is JSON:
``{"method": ..., "seconds": ..., "sparsity": ...}``.

Run:  PYTHONPATH=. python benchmarks/llm_reference_driver.py --method wanda --src /tmp/wanda
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import torch
from torch import nn


class RotaryLayer(nn.Module):
    """A decoder layer called the 2023 way: ``layer(x, attention_mask=, position_ids=)[0]``."""

    def __init__(self, layer: nn.Module, rotary: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self._rotary = (rotary,)  # a tuple, so it is not a submodule their find_layers walks

    def forward(self, hidden, attention_mask=None, position_ids=None, **kwargs):
        if position_ids is None:
            position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        kwargs.pop("position_embeddings", None)
        pe = self._rotary[0](hidden, position_ids=position_ids)
        out = self.layer(hidden, attention_mask=attention_mask, position_ids=position_ids,
                         position_embeddings=pe, **kwargs)
        return (out,)


def _windows(args: argparse.Namespace) -> torch.Tensor:
    from prunekit.data.text import read_text
    from prunekit.llm.calibration import calibration_windows, tokenize_text
    from prunekit.llm.loading import load_tokenizer

    tok = load_tokenizer(args.model)
    return calibration_windows(tokenize_text(tok, read_text(args.calib)), args.nsamples, args.seqlen, args.seed)


def _sparsity(model: nn.Module) -> float:
    from prunekit.llm.prune import block_sparsity

    return block_sparsity(model)


def run_wanda(src: Path, model: nn.Module, windows: torch.Tensor, args: argparse.Namespace) -> float:
    loader = [(w.unsqueeze(0), None) for w in windows]
    data = types.ModuleType("lib.data")
    data.get_loaders = lambda *a, **k: (loader, None)
    sys.modules["lib.data"] = data
    sys.path.insert(0, str(src))
    from lib.prune import prune_wanda  # noqa: E402  (their code)

    ns = argparse.Namespace(nsamples=args.nsamples, seed=args.seed, sparsity_ratio=args.sparsity,
                            use_variant=False)
    n, m = _nm(args.pattern)
    start = time.perf_counter()
    prune_wanda(ns, model, None, torch.device("cpu"), prune_n=n, prune_m=m)
    return time.perf_counter() - start


def run_sparsegpt(src: Path, model: nn.Module, windows: torch.Tensor, args: argparse.Namespace) -> float:
    sys.path.insert(0, str(src))
    import llama  # noqa: E402  (their code: llama.py of IST-DASLab/sparsegpt)

    if not torch.cuda.is_available():
        torch.cuda.synchronize = lambda *a, **k: None  # this child process only; see the module doc
    n, m = _nm(args.pattern)
    llama.args = argparse.Namespace(  # their module reads its CLI arguments from a global
        nsamples=args.nsamples, true_sequential=False, minlayer=-1, maxlayer=1000, prune_only="",
        invert=False, wbits=16, sparsity=args.sparsity, prunen=n, prunem=m, percdamp=0.01, blocksize=128)
    loader = [(w.unsqueeze(0), None) for w in windows]
    start = time.perf_counter()
    llama.llama_sequential(model, loader, torch.device("cpu"))
    return time.perf_counter() - start


def _nm(pattern: str | None) -> tuple[int, int]:
    if not pattern:
        return 0, 0
    n, m = (int(v) for v in pattern.split(":"))
    return n, m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=("wanda", "sparsegpt"), required=True)
    ap.add_argument("--src", required=True, help="folder with the reference repository's files")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--calib", default="austen:emma")
    ap.add_argument("--nsamples", type=int, default=64)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--pattern", default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from prunekit.llm.loading import load_model

    windows = _windows(args)
    model = load_model(args.model, device="cpu").eval()
    model.seqlen = args.seqlen
    model.hf_device_map = {}
    layers = model.model.layers
    for i in range(len(layers)):
        layers[i] = RotaryLayer(layers[i], model.model.rotary_emb)
    run = run_wanda if args.method == "wanda" else run_sparsegpt
    seconds = run(Path(args.src), model, windows, args)
    for i in range(len(layers)):
        layers[i] = layers[i].layer
    print(json.dumps({"method": args.method, "implementation": "reference", "seconds": seconds,
                      "sparsity": _sparsity(model), "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
