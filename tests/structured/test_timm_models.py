"""timm families whose modules keep sizes as Python attributes prune at ratio 0.5 with
the defaults and reload from the plan on a fresh instance (prunekit issue 12)."""

import pytest
import torch

timm = pytest.importorskip("timm")

from prunekit.structured import (  # noqa: E402
    StructuredConfig,
    get_plan,
    load_pruned,
    prune_channels_,
    save_pruned,
)
from prunekit.structured.targets import shape_only_macs  # noqa: E402

# name -> (most MACs kept at ratio 0.5, an attribute the cut must have updated)
MODELS = {
    "poolformer_s12": (0.30, "stages.0.blocks.0.layer_scale1.shape"),  # Scale: view(self.shape)
    "cs3darknet_s": (0.30, "stages.0.expand_chs"),  # x.split(self.expand_chs // 2)
    "res2net50_14w_8s": (0.30, "layer1.0.width"),  # torch.split(x, self.width)
    "dpn48b": (0.30, "features.conv2_1.num_1x1_c"),  # x[:, :self.num_1x1_c]
    "inception_next_atto": (0.30, "stages.0.blocks.0.token_mixer.split_indexes"),  # unequal split
    "rexnet_100": (0.32, "features.2.in_channels"),  # x[:, 0:self.in_channels] + shortcut
    "tiny_vit_5m_224": (0.32, "stages.1.blocks.0.attn.out_dim"),  # reshape(B, N, self.out_dim)
    "tresnet_m": (0.30, "body.layer2.0.conv1.aa.channels"),  # F.conv2d(groups=self.channels)
    "coatnet_pico_rw_224": (0.32, None),  # relative position bias kept whole, no stale size
    "resnest14d": (0.30, None),  # split attention sums its radix slices
    "pvt_v2_b0": (0.70, None),  # reshape(B, N, C) with the input's C: widths tied
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_timm_model_prunes_and_reloads(name, tmp_path):
    torch.manual_seed(0)
    most_kept, attr = MODELS[name]
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, *model.pretrained_cfg["input_size"])
    dense = shape_only_macs(model, x)
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    assert shape_only_macs(model, x) / dense <= most_kept
    updated = {f"{a['module']}.{a['name']}" for s in get_plan(model)["steps"] for a in s.get("attrs", [])}
    assert attr is None or attr in updated
    save_pruned(model, tmp_path)
    fresh = load_pruned(timm.create_model(name, pretrained=False).eval(), tmp_path)
    with torch.no_grad():
        assert torch.allclose(fresh(x), model(x), atol=1e-5)
