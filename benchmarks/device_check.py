"""Device check: in-memory vs out-of-core Wanda 50% on SmolLM2-135M, on the GPU when there is one.

One prepared script for a GPU machine: it loads SmolLM2, saves it as a Hugging Face
folder, prunes it (a) whole on the device with ``prune_llm`` and (b) out of core with one
block on the device at a time, and reports seconds, peak GPU memory
(``torch.cuda.max_memory_allocated``, reset before each stage), peak RSS, whether the two
pruned models are identical (``torch.equal`` on every tensor) and both perplexities.
On a machine without CUDA run it with ``--device cpu``: it says ``"cuda": false``.

Run:  PYTHONPATH=. python benchmarks/device_check.py --device cuda      (GPU machine, ~2 min)
      OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/device_check.py --device cpu --nsamples 4
The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--eval-tokens", type=int, default=8192)
    args = parser.parse_args()

    import torch

    from prunekit.data.text import read_text
    from prunekit.llm import LLMPruneConfig, prune_llm
    from prunekit.llm.calibration import calibration_windows, tokenize_text
    from prunekit.llm.evaluate import perplexity
    from prunekit.llm.loading import load_model, load_tokenizer
    from prunekit.llm.memory import StagePeaks
    from prunekit.llm.offload import OutOfCoreConfig, ShardReader, empty_model, prune_llm_out_of_core, streamed
    from prunekit.llm.offload.config import resolve_device
    from prunekit.llm.structured import save_pretrained_model

    device = resolve_device(args.device)
    cuda = device == "cuda"
    work = Path(tempfile.mkdtemp(prefix="prunekit-device-check-"))
    tokenizer = load_tokenizer("smollm2-135m")
    folder = save_pretrained_model(load_model("smollm2-135m"), work / "dense", tokenizer)
    windows = calibration_windows(tokenize_text(tokenizer, read_text("austen:emma")), args.nsamples, args.seqlen, 0)
    eval_ids = tokenize_text(tokenizer, read_text("austen:persuasion"))[: args.eval_tokens]
    config = LLMPruneConfig("wanda", 0.5)
    peaks = StagePeaks()
    result: dict = {"cuda": cuda, "device": device,
                    "gpu": torch.cuda.get_device_name() if cuda else None,
                    "nsamples": args.nsamples, "seqlen": args.seqlen, "eval_tokens": int(eval_ids.numel())}

    with peaks.stage("in_memory"):
        start = time.perf_counter()
        model = load_model(folder, device=device)
        prune_llm(model, windows, config, progress=False)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    ppl_memory = perplexity(model, eval_ids)
    expected = {k: v.cpu() for k, v in model.state_dict().items()}
    del model
    if cuda:
        torch.cuda.empty_cache()
    result["in_memory"] = {"seconds": round(seconds, 2), **peaks.by_stage["in_memory"], "ppl": ppl_memory}

    with peaks.stage("out_of_core"):
        start = time.perf_counter()
        r = prune_llm_out_of_core(folder, work / "pruned", windows, config,
                                  OutOfCoreConfig(max_memory="2GB", device=device), progress=False)
        seconds = time.perf_counter() - start
    skeleton = empty_model(work / "pruned")
    with streamed(skeleton, ShardReader(work / "pruned"), device):
        ppl_offload = perplexity(skeleton, eval_ids)
    result["out_of_core"] = {"seconds": round(seconds, 2), **peaks.by_stage["out_of_core"], "ppl": ppl_offload,
                             "activations_on_disk": r.spilled}
    got = ShardReader(work / "pruned")
    tensors = got.read([k for k in expected if k in got.files])
    result["identical"] = set(tensors) == set(expected) and all(torch.equal(tensors[k], expected[k]) for k in tensors)
    result["max_abs_diff"] = max(float((tensors[k] - expected[k]).abs().max()) for k in tensors)
    result["ppl_equal"] = ppl_memory == ppl_offload
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
