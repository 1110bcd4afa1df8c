"""A pruned model reloads with load_pruned in a *new* Python process (nothing imported or
pruned there before) and gives the same outputs - the way a user deploys it."""

import subprocess
import sys

import pytest
import torch

from prunekit.structured import StructuredConfig, load_pruned, prune_channels_, save_pruned

torchvision = pytest.importorskip("torchvision")

RELOAD = r"""
import sys, torch, torchvision
import prunekit
name, folder, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = torchvision.models.get_model(name, weights=None, image_size=size) if name.startswith("vit") else \
    torchvision.models.get_model(name, weights=None)
prunekit.load_pruned(model.eval(), folder)
x = torch.load(folder + "/x.pt")
with torch.no_grad():
    torch.save(model(x), folder + "/y.pt")
"""


# ViT keeps hidden_dim and MaxViT its head_dim in Python attributes that only their
# surgery rules update: the replay in a fresh process must find those rules too. MNASNet's
# BatchNorm loading reads the per-module version metadata a safetensors file does not keep.
@pytest.mark.parametrize("name,size", [("vit_b_16", 64), ("maxvit_t", 224), ("swin_t", 64), ("mnasnet0_5", 64)])
def test_reload_in_a_fresh_process_gives_the_same_outputs(tmp_path, name, size):
    kwargs = {"image_size": size} if name.startswith("vit") else {}
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    x = torch.randn(1, 3, size, size)
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    with torch.no_grad():
        expected = model(x)
    save_pruned(model, tmp_path)
    torch.save(x, tmp_path / "x.pt")
    out = subprocess.run([sys.executable, "-c", RELOAD, name, str(tmp_path), str(size)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert torch.allclose(torch.load(tmp_path / "y.pt"), expected, atol=1e-4)


def test_reload_in_this_process_still_works(tmp_path):
    model = torchvision.models.get_model("vit_b_16", weights=None, image_size=32).eval()
    x = torch.randn(1, 3, 32, 32)
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    save_pruned(model, tmp_path)
    fresh = load_pruned(torchvision.models.get_model("vit_b_16", weights=None, image_size=32).eval(), tmp_path)
    with torch.no_grad():
        assert torch.allclose(fresh(x), model(x), atol=1e-4)
