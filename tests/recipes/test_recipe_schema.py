"""Recipe validation: every mistake is a ConfigError that lists what is valid."""

from pathlib import Path

import pytest

from prunekit.errors import ConfigError
from prunekit.masks import SparsifyConfig
from prunekit.quant import QuantizeConfig
from prunekit.recipes import STAGE_TYPES, load_recipe, recipe_from_dict

ROOT = Path(__file__).resolve().parents[2]


def _recipe(*stages, **top):
    return {"data": {"dataset": "digits"}, "stages": list(stages), **top}


def test_valid_recipe_is_typed():
    r = recipe_from_dict(
        _recipe(
            {"train": {"epochs": 2, "lr": 0.01}},
            {"prune": {"amount": 0.5, "scope": "layer", "importance": {"type": "Magnitude", "p": 2}}},
            {"finetune": None},
            {"distill": {"temperature": 2.0, "epochs": 1}},
            {"quantize": {"scheme": "codebook", "bits": 4}},
            {"export": {"format": "compact", "codec": "none"}},
            {"export": {"format": "onnx", "opset": 17}},
            {"evaluate": {}},
            seed=3,
        )
    )
    assert [s.id for s in r.stages][:3] == ["00-train", "01-prune", "02-finetune"]
    assert r.stages[0].options.train.epochs == 2 and r.stages[0].options.train.seed == 3000
    assert r.stages[1].options.config == SparsifyConfig.from_dict(
        {"amount": 0.5, "scope": "layer", "importance": {"type": "Magnitude", "p": 2}}
    )
    assert r.stages[3].options.distill.temperature == 2.0
    assert r.teacher_stage(r.stages[3]).id == "00-train"
    assert r.stages[4].options == QuantizeConfig(scheme="codebook", bits=4)
    assert r.stages[5].options.compact.codec == "none" and r.stages[6].options.opset == 17


@pytest.mark.parametrize(
    "data,message",
    [
        (
            _recipe({"train": {}}, stagez=[]),
            "unknown key(s) ['stagez']; valid keys are ['data', 'model', 'name', 'seed', 'stages']",
        ),
        (_recipe({"trian": {}}), f"unknown stage type 'trian'; valid stage types are {list(STAGE_TYPES)}"),
        (_recipe({"train": {"epoch": 3}}), "unknown option(s) ['epoch']; valid options are"),
        (_recipe({"prune": {"method": "magic"}}), "method must be one of ["),
        (_recipe({"prune": {"amount": 1.5}}), "amount"),
        (_recipe({"prune": {"amonut": 0.5}}), "valid keys are"),
        (_recipe({"train": {}, "prune": {}}), "mapping with one key"),
        (_recipe({"train": {}}, {"distill": {"teacher": "finetune"}}), "teacher 'finetune' is not an earlier stage"),
        (_recipe({"distill": {}}), "no default teacher"),
        (_recipe({"train": {}}, {"quantize": {}}, {"finetune": {}}), "would undo the quantization"),
        (_recipe({"export": {"format": "tflite"}}), "format must be one of ['compact', 'onnx']"),
        (_recipe({"export": {"format": "onnx", "codec": "zstd"}}), "apply to format 'compact' only"),
        (_recipe({"quantize": {"scheme": "int8", "bits": 4}}), "bits must be 8"),
        (
            {"data": {"dataset": "cifar"}, "stages": [{"train": {}}]},
            "must be one of ['digits', 'fashion-mnist', 'mnist5k']",
        ),
        ({"model": {"name": "vgg"}, "stages": [{"train": {}}]}, "model.name' must be one of"),
        ({"stages": []}, "non-empty list"),
    ],
)
def test_invalid_recipes_list_valid_choices(data, message):
    with pytest.raises(ConfigError) as err:
        recipe_from_dict(data)
    assert message in str(err.value)


def test_prune_stage_takes_any_sparsify_pattern():
    from prunekit.patterns import NM, Block

    r = recipe_from_dict(
        _recipe(
            {"train": {}},
            {"prune": {"pattern": {"type": "NM", "n": 2, "m": 4}}},
            {"prune": {"amount": 0.5, "pattern": {"type": "Block", "rows": 4, "cols": 4}}},
        )
    )
    assert r.stages[1].options.config.pattern == NM(2, 4)
    assert r.stages[2].options.config.pattern == Block(4, 4)


def test_unknown_prune_method_lists_the_registered_ones():
    with pytest.raises(ConfigError) as err:
        recipe_from_dict(_recipe({"prune": {"method": "magic"}}))
    assert "'unstructured'" in str(err.value) and "got 'magic'" in str(err.value)


def test_load_recipe_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [train: {epochs: 1}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)


@pytest.mark.parametrize("name", ["seed-workflow.yaml", "deep-compression.yaml"])
def test_shipped_recipes_load(name):
    recipe = load_recipe(ROOT / "recipes" / name)
    kinds = {s.kind for s in recipe.stages}
    assert {"train", "prune", "finetune", "quantize", "export", "evaluate"} <= kinds
