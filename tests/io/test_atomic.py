import json

import pytest
import torch

from prunekit.io import atomic_write_json, load_tensors, save_tensors


def test_atomic_json_and_no_temp_left(tmp_path):
    p = atomic_write_json(tmp_path / "a" / "m.json", {"x": 1})
    assert json.loads(p.read_text()) == {"x": 1}
    assert [f.name for f in p.parent.iterdir()] == ["m.json"]


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    p = atomic_write_json(tmp_path / "m.json", {"v": 1})
    import prunekit.io.atomic as atomic

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_json(p, {"v": 2})
    assert json.loads(p.read_text()) == {"v": 1}
    assert len(list(tmp_path.iterdir())) == 1


def test_safetensors_round_trip_with_tied_tensors(tmp_path):
    w = torch.randn(3, 3)
    path = save_tensors({"a": w, "b": w, "c": torch.arange(4)}, tmp_path / "t.safetensors")
    out = load_tensors(path)
    assert torch.equal(out["a"], w) and torch.equal(out["b"], w) and out["c"].tolist() == [0, 1, 2, 3]


def test_written_files_honour_the_umask(tmp_path):
    import os

    previous = os.umask(0o027)
    try:
        p = atomic_write_json(tmp_path / "m.json", {"x": 1})
        q = save_tensors({"w": torch.zeros(2)}, tmp_path / "w.safetensors")
    finally:
        os.umask(previous)
    assert oct(p.stat().st_mode & 0o777) == oct(0o640)
    assert oct(q.stat().st_mode & 0o777) == oct(0o640)
