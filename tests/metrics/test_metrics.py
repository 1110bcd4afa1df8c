import torch
from torch import nn

from prunekit.masks import SparsifyConfig, sparsify_
from prunekit.metrics import (
    count_macs,
    count_nonzero,
    count_params,
    count_sparse_macs,
    measure_latency,
    model_metrics,
    size_on_disk,
)


def test_params_and_nonzero_follow_masks():
    net = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2))
    assert count_params(net) == 110 + 22
    sparsify_(net, SparsifyConfig(amount=60))
    assert count_params(net) == 132  # masks do not add parameters
    assert count_nonzero(net) == 132 - 60


def test_tied_parameters_counted_once():
    a = nn.Linear(4, 4, bias=False)
    net = nn.Sequential(a, a)
    assert count_params(net) == 16


def test_macs_hand_computed_conv_and_linear():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    # 8 output channels x 5x5 positions x (3*3*3) weights
    assert count_macs(conv, torch.zeros(1, 3, 5, 5)) == 8 * 25 * 27
    lin = nn.Linear(7, 5, bias=False)
    assert count_macs(lin, torch.zeros(2, 7)) == 2 * 35
    grouped = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
    assert count_macs(grouped, torch.zeros(1, 4, 6, 6)) == 4 * 36 * 9


def test_sparse_macs_count_nonzero_weights_only():
    conv = nn.Conv2d(2, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight[:2].zero_()
    assert count_sparse_macs(conv, torch.zeros(1, 2, 4, 4)) == 16 * 2 * 18


def test_size_on_disk_compressed_smaller_when_sparse():
    net = nn.Linear(256, 256)
    dense = size_on_disk(net)
    assert dense.dense_bytes >= 4 * (256 * 256 + 256)
    sparsify_(net, SparsifyConfig(amount=0.9))
    sparse = size_on_disk(net)
    assert sparse.dense_bytes == dense.dense_bytes
    assert sparse.compressed_bytes < 0.5 * dense.compressed_bytes


def test_latency_records_conditions_and_restores_mode():
    net = nn.Linear(8, 8).train()
    threads = torch.get_num_threads()
    r = measure_latency(net, torch.zeros(4, 8), warmup=1, runs=5, threads=1)
    assert r.batch_size == 4 and r.threads == 1 and r.runs == 5
    assert 0 < r.p10_ms <= r.median_ms <= r.p90_ms
    assert net.training and torch.get_num_threads() == threads


def test_model_metrics_keys():
    m = model_metrics(nn.Linear(4, 2), torch.zeros(1, 4), latency_runs=3)
    for key in ("params", "nonzero", "size_bytes", "size_compressed_bytes", "macs", "macs_sparse", "latency_ms"):
        assert key in m
    assert m["params"] == 10 and m["macs"] == 8
