import copy

import pytest
import torch

from prunekit.llm.recover import RecoverConfig, attach_lora, block_weights, block_zeros, keep_masks, merge_lora, recover
from prunekit.llm.recover.lora import lora_targets
from tests.llm.recover.helpers import pruned_pair, text_ids

peft = pytest.importorskip("peft")


def _randomise_adapters(peft_model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_merge_reapplies_the_mask_exactly():
    _, student = pruned_pair("wanda")
    zeros = block_zeros(student)
    keep = keep_masks(student)
    plain_ref = copy.deepcopy(student)
    peft_model = attach_lora(copy.deepcopy(student), RecoverConfig(method="lora", lora_rank=4))
    _randomise_adapters(peft_model)
    # what a plain merge would do: the low-rank update fills the zeros (the bug users hit)
    unmasked = copy.deepcopy(peft_model).merge_and_unload()
    assert block_zeros(unmasked) < 0.01 * zeros
    # the adapter model's effective weights, masked: W + delta at kept positions, 0 elsewhere
    expected = {}
    layers = dict(peft_model.base_model.model.named_modules())
    for module_name in lora_targets(student):
        layer = layers[module_name]
        w = layer.base_layer.weight.detach() + layer.get_delta_weight("default")
        expected[module_name + ".weight"] = w * keep[module_name + ".weight"]
    merged = merge_lora(peft_model, keep)
    assert type(merged) is type(student) and not hasattr(merged, "peft_config")
    assert block_zeros(merged) == zeros  # sparsity after merge == before, exactly
    params = dict(merged.named_parameters())
    for name, mask in keep.items():
        assert torch.equal(params[name] != 0, mask), name  # the same positions, not just the count
        assert torch.equal(params[name], expected[name]), name  # kept positions = adapter's weights
    # the merged model computes exactly what the masked adapter weights compute
    ref_params = dict(plain_ref.named_parameters())
    with torch.no_grad():
        for name, w in expected.items():
            ref_params[name].copy_(w)
    x = text_ids(64).reshape(2, 32)
    with torch.no_grad():
        assert torch.equal(merged(input_ids=x).logits, plain_ref(input_ids=x).logits)
    assert sorted(merged.state_dict()) == sorted(student.state_dict())


def test_lora_recovery_trains_adapters_and_keeps_the_sparsity():
    dense, student = pruned_pair("wanda")
    keep = keep_masks(student)
    frozen = {n: p.detach().clone() for n, p in student.named_parameters() if n not in keep}
    blocks_before = {n: w.detach().clone() for n, w in block_weights(student).items()}
    ids = text_ids()
    r = recover(student, ids, RecoverConfig(method="lora", tokens=10 * 4 * 32, seqlen=32, lr=1e-2,
                                            kd_weight=0.5, bf16="off", lora_rank=4),
                teacher=dense, progress=False)
    assert r.losses[-1] < r.losses[0]
    assert r.zeros_after == r.zeros_before > 0
    assert not hasattr(student, "peft_config") and "lora" not in str(list(student.state_dict()))
    for name, w in block_weights(student).items():
        assert torch.equal(w != 0, keep[name]), name
    # only block linears changed (the adapters live there); embeddings and norms untouched
    for name, p in student.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name
    changed = [n for n, w in block_weights(student).items() if not torch.equal(w, blocks_before[n])]
    assert len(changed) == len(blocks_before)  # the merged adapters moved every block linear
