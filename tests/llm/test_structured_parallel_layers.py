"""Heads and MLP neurons of layers spread over parallel lists (XLM), removed and reloaded."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from prunekit.llm.structured import StructuredConfig, block_layouts, save_pretrained_model, structured_prune
from tests.llm.conftest import main_output

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from llm_families_zoo import build, example_ids  # noqa: E402

IDS = {"input_ids": example_ids(length=12)}
CALIB = [{"input_ids": example_ids(seed=2, batch=4, length=16)}]


def _reload_logits(folder: Path) -> torch.Tensor:
    torch.save(IDS["input_ids"], folder / "ids.pt")
    code = textwrap.dedent(f"""
        import torch, transformers
        from prunekit.llm import load_pruned
        m = load_pruned({str(folder)!r}, transformers.AutoModelForCausalLM).eval()
        with torch.no_grad():
            out = m(input_ids=torch.load({str(folder / 'ids.pt')!r})).logits
        torch.save(out, {str(folder / 'out.pt')!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return torch.load(folder / "out.pt")


def test_the_layer_view_holds_the_attention_and_the_ffn():
    layouts = block_layouts(build("xlm"))
    for i, lay in layouts.items():
        assert lay.attention.module == f"attentions.{i}" and lay.attention.o == f"attentions.{i}.out_lin"
        assert lay.attention.n_units == 8 and lay.attention.head_dim == 8
        assert lay.mlp.inp == f"ffns.{i}.lin2" and lay.mlp.size == 256


@pytest.mark.parametrize("kind, removed", [("heads", 2 * (3 * (16 * 64 + 16) + 16 * 64)),
                                           ("mlp", 2 * 64 * (64 + 1 + 64))])
def test_quarter_removed_and_reloaded_in_a_fresh_process(tmp_path, kind, removed):
    model = build("xlm").eval()
    before = sum(p.numel() for p in model.parameters())
    plan = structured_prune(model, CALIB, StructuredConfig(**{kind: 0.25}))
    assert not plan.get("not_applicable")
    assert before - sum(p.numel() for p in model.parameters()) == removed
    att = model.transformer.attentions[1]
    assert (att.n_heads, att.q_lin.out_features) == ((6, 48) if kind == "heads" else (8, 64))
    assert model.transformer.ffns[0].lin1.out_features == (192 if kind == "mlp" else 256)
    expected = main_output(model, IDS)
    save_pretrained_model(model, tmp_path)
    assert (_reload_logits(tmp_path) - expected).abs().max().item() <= 1e-4
