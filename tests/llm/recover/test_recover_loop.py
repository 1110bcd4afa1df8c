import copy
import math

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.llm.recover import RecoverConfig, ZeroHolder, block_weights, block_zeros, recover
from prunekit.llm.recover.data import WindowStream
from prunekit.llm.recover.objective import lr_at, recovery_loss
from tests.llm.recover.helpers import pruned_pair, text_ids


def _loss_on(model, ids):
    with torch.no_grad():
        x = ids[: 8 * 32].reshape(8, 32)
        return float(model(input_ids=x, labels=x).loss)


def test_config_validates_and_counts_steps():
    assert RecoverConfig(tokens=1000, seqlen=100, batch_size=4).steps == 3
    with pytest.raises(ConfigError, match="method"):
        RecoverConfig(method="adapters")
    with pytest.raises(ConfigError, match="kd_weight"):
        RecoverConfig(kd_weight=1.5)
    with pytest.raises(ConfigError, match="unknown key"):
        RecoverConfig.from_dict({"tokenz": 5})
    assert RecoverConfig(method="distill").resolved_strategy == "fsdp"
    assert RecoverConfig(method="lora").resolved_strategy == "ddp"


def test_window_stream_is_deterministic_and_split_over_ranks():
    ids = torch.arange(1000)
    a, b = WindowStream(ids, 10, seed=3), WindowStream(ids, 10, seed=3)
    assert torch.equal(a.batch(7, 4), b.batch(7, 4))
    full = a.batch(120, 4)  # past the first pass of 100 windows: a new permutation
    assert torch.equal(torch.cat([a.batch(120, 4, r, 2) for r in (0, 1)]), full)
    first_pass = torch.stack([a.window(i) for i in range(100)])
    assert sorted(first_pass[:, 0].tolist()) == list(range(0, 1000, 10))  # every window once
    with pytest.raises(ConfigError, match="multiple"):
        a.batch(0, 3, 0, 2)


def test_recovery_loss_mixes_kl_and_cross_entropy():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g)
    ids = torch.randint(0, 7, (2, 5), generator=g)
    kl = recovery_loss(s, t, ids, RecoverConfig(kd_weight=1.0, temperature=2.0))
    ref = torch.nn.functional.kl_div(torch.log_softmax(s / 2, -1).reshape(-1, 7),
                                     torch.log_softmax(t / 2, -1).reshape(-1, 7),
                                     reduction="batchmean", log_target=True) * 4
    assert float(kl) == pytest.approx(float(ref), rel=1e-6)
    ce = torch.nn.functional.cross_entropy(s[:, :-1].reshape(-1, 7), ids[:, 1:].reshape(-1))
    mixed = recovery_loss(s, t, ids, RecoverConfig(kd_weight=0.25, temperature=2.0))
    assert float(mixed) == pytest.approx(0.25 * float(ref) + 0.75 * float(ce), rel=1e-6)
    assert float(recovery_loss(s, None, ids, RecoverConfig())) == pytest.approx(float(ce), rel=1e-6)
    assert lr_at(0, 10, 1.0, 0.2) == 0.5 and lr_at(1, 10, 1.0, 0.2) == 1.0
    assert lr_at(5, 10, 1.0, 0.2) == pytest.approx(0.1 + 0.45 * (1 + math.cos(0.5 * math.pi)), rel=1e-9)
    assert lr_at(9, 10, 1.0, 0.2) == pytest.approx(0.1, rel=1e-9)
    assert lr_at(1, 100, 1.0, 0.2, time_fraction=0.6) == pytest.approx(0.55, rel=1e-9)  # time is ahead


def test_zero_holder_keeps_zeros_through_adamw_with_weight_decay():
    lin = torch.nn.Linear(6, 4)
    with torch.no_grad():
        lin.weight[:, :3] = 0
    holder = ZeroHolder({"weight": lin.weight})
    opt = torch.optim.AdamW(lin.parameters(), lr=0.1, weight_decay=0.1)
    for _ in range(5):
        lin(torch.randn(3, 6)).pow(2).sum().backward()
        holder.before_step()
        opt.step()
        holder.after_step()
        opt.zero_grad()
        assert int((lin.weight[:, :3] != 0).sum()) == 0
    assert holder.zeros == 12 and bool((lin.weight[:, 3:] != 0).all())


@pytest.mark.parametrize("kind", ["wanda", "structured", "both"])
def test_distillation_holds_zeros_after_every_step_and_lowers_the_loss(kind):
    dense, student = pruned_pair(kind)
    keep = {n: p.detach() != 0 for n, p in block_weights(student).items()}
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    ids = text_ids()
    loss_before = _loss_on(student, ids)

    def check(step, trained):
        for name, p in block_weights(trained).items():
            assert int((p.detach()[~keep[name]] != 0).sum()) == 0, (step, name)

    r = recover(student, ids, RecoverConfig(tokens=12 * 4 * 32, seqlen=32, lr=3e-3, bf16="off",
                                            hidden_weight=0.5, weight_decay=0.01, kd_weight=0.5),
                teacher=dense, progress=False, on_step=check)
    assert r.steps == 12 and len(r.losses) == 12 and r.tokens == 12 * 128
    assert r.zeros_after == r.zeros_before == block_zeros(student)
    if kind != "structured":
        assert r.zeros_before > 0.45 * sum(k.numel() for k in keep.values())
    assert r.losses[-1] < r.losses[0]
    assert _loss_on(student, ids) < loss_before
    changed = [n for n, p in student.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)  # every weight trained, embeddings included


def test_bf16_autocast_runs_and_reports():
    dense, student = pruned_pair("wanda")
    r = recover(copy.deepcopy(student), text_ids(), RecoverConfig(tokens=256, seqlen=32, bf16="on"),
                teacher=dense, progress=False)
    assert r.bf16 and r.zeros_after == r.zeros_before and all(loss > 0 for loss in r.losses)
