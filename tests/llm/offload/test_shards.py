"""The shard writer streams each shard to disk (save_file) with the very bytes as before."""

import json
import os

import pytest
import torch

from prunekit.io import atomic_write_with, state_dict_bytes
from prunekit.llm.offload import ShardReader
from prunekit.llm.offload.shards import INDEX_NAME, ShardWriter


def _tensors():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 4, generator=g)
    return [
        {"model.embed_tokens.weight": torch.randn(10, 4, generator=g), "lm_head.weight": w, "tied": w},
        {"layers.0.weight": torch.randn(4, 6, generator=g).T,  # not contiguous
         "layers.0.bias": torch.zeros(6, dtype=torch.bfloat16), "empty": torch.empty(0, 3)},
    ]


def test_shards_are_the_bytes_of_the_in_memory_serialisation(tmp_path):
    groups = _tensors()
    writer = ShardWriter(tmp_path, shards=len(groups))
    paths = [writer.write(group) for group in groups]
    writer.finish()
    for path, group in zip(paths, groups):
        # what ShardWriter wrote before (save_tensors = atomic_write_bytes(state_dict_bytes(...)))
        assert path.read_bytes() == state_dict_bytes(group, metadata={"format": "pt"})
    assert sorted(os.listdir(tmp_path)) == sorted([p.name for p in paths] + [INDEX_NAME])  # no temp files
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    assert index["weight_map"]["layers.0.bias"] == paths[1].name
    got = ShardReader(tmp_path).read(["tied", "layers.0.weight"])
    assert torch.equal(got["tied"], groups[0]["tied"])
    assert torch.equal(got["layers.0.weight"], groups[1]["layers.0.weight"])


def test_shard_files_honour_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        path = ShardWriter(tmp_path, shards=1).write(_tensors()[0])
    finally:
        os.umask(previous)
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def fail(tmp):
        tmp.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_with(target, fail)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.bin"]


def test_reader_returns_owned_tensors_without_a_second_copy(tmp_path):
    writer = ShardWriter(tmp_path, shards=1)
    writer.write(_tensors()[1])
    writer.finish()
    reader = ShardReader(tmp_path)
    same = reader.read(["layers.0.bias"])["layers.0.bias"]
    assert same.dtype == torch.bfloat16
    assert same.untyped_storage().nbytes() == same.numel() * 2  # its own storage, not a file map
    cast = reader.read(["layers.0.bias"], dtype=torch.float32)["layers.0.bias"]
    assert cast.dtype == torch.float32 and torch.equal(cast, same.float())
    same.add_(1)  # writable, and the next read is unaffected
    assert torch.equal(reader.read(["layers.0.bias"])["layers.0.bias"], torch.zeros(6, dtype=torch.bfloat16))
