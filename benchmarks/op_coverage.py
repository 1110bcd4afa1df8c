"""Record the aten ops that small torchvision and timm models run (as the tracer runs
them) and check each against prunekit's label rules.

Writes the sorted op list to ``tests/graph/fixtures/vision_ops.txt`` (``--write``), which
``tests/graph/test_op_coverage.py`` checks on every run: on a new torch release, rerun
this script to see which ops are new and have no rule. The last line is JSON:
``{"torch": version, "models": N, "ops": N, "missing": [...]}``.

    PYTHONPATH=. python benchmarks/op_coverage.py [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "graph" / "fixtures" / "vision_ops.txt"

TORCHVISION = {"resnet18": 64, "mobilenet_v3_small": 64, "efficientnet_b0": 64,
               "convnext_tiny": 64, "vit_b_16": 224, "swin_t": 64, "maxvit_t": 224,
               "regnet_x_400mf": 64, "shufflenet_v2_x0_5": 64, "squeezenet1_0": 64,
               "densenet121": 64, "inception_v3": 96, "googlenet": 64, "mnasnet0_5": 64}
TIMM = {"vit_tiny_patch16_224": 224, "convnext_atto": 64, "efficientnet_b0": 64,
        "regnetx_002": 64, "mobilevit_xxs": 256, "resnetv2_50x1_bit": 64, "nf_regnet_b0": 64,
        "tnt_s_legacy_patch16_224": 224, "volo_d1_224": 224, "sequencer2d_s": 224,
        "halonet_h1": 256, "tiny_vit_5m_224": 224, "levit_128s": 224, "coatnet_nano_rw_224": 224,
        "poolformer_s12": 64, "beit_base_patch16_224": 224, "swinv2_cr_tiny_ns_224": 224,
        "edgenext_xx_small": 256, "efficientformer_l1": 224, "crossvit_tiny_240": 240}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the test fixture")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from prunekit.graph.coverage import ops_in_forward, rule_for_op
    from prunekit.io import atomic_write_text

    seen: dict[str, set[str]] = {}
    built = 0
    for source, table in (("torchvision", TORCHVISION), ("timm", TIMM)):
        try:
            lib = __import__(source)
        except ImportError:
            continue
        for name, size in table.items():
            try:
                if source == "torchvision":
                    model = lib.models.get_model(name, weights=None)
                else:
                    model = lib.create_model(name, pretrained=False)
                ops = ops_in_forward(model, torch.randn(1, 3, size, size))
            except Exception as exc:  # a model that does not build here: say so, go on
                print(json.dumps({"model": f"{source}:{name}", "error": str(exc)[:200]}))
                continue
            built += 1
            for op in ops:
                seen.setdefault(op, set()).add(f"{source}:{name}")
            print(json.dumps({"model": f"{source}:{name}", "ops": len(ops)}), flush=True)
    missing = sorted(op for op in seen if rule_for_op(op) is None)
    for op in missing:
        print(json.dumps({"missing": op, "in": sorted(seen[op])[:3]}))
    if args.write:
        header = (f"# aten ops run on float/bool tensors by {built} torchvision + timm models "
                  f"(torch {torch.__version__}); regenerate: python benchmarks/op_coverage.py "
                  f"--write\n")
        atomic_write_text(FIXTURE, header + "".join(f"{op}\n" for op in sorted(seen)))
    print(json.dumps({"torch": torch.__version__, "models": built, "ops": len(seen),
                      "missing": missing}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
