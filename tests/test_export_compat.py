"""An export written before supernet families existed (model.json without "family") still loads and
evaluates, and today's export of the same subnet describes it the same way plus the family's name.

`tests/fixtures/export_before_families` is the export of the arch `{"d": [1, 0], "e": [0.5, 0.25, 1.0,
0.25]}` of the tiny trained digits run (trained_run.py), written by the code of commit b37cb64 (the
family interface added, posttrain not yet moved onto it). Its evaluation on the run's digits splits was
recorded then: 24 of 144 validation and 72 of 360 test images right, mean cross-entropy below.
"""
import json
import os
import shutil

import jax
import numpy as np
import pytest

from superfed_jax.posttrain import evaluate_export as evaluate_lib
from superfed_jax.posttrain import export
from superfed_jax.supernet import family as family_lib
from superfed_jax.supernet.ofa_resnet import model as model_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "export_before_families")
# split -> (examples, correct, mean loss) as the code of b37cb64 evaluated the fixture.
RECORDED = {"val": (144, 24, 2.3025693893432617), "test": (360, 72, 2.3026463985443115)}


@pytest.fixture()
def old_export(tmp_path) -> str:
    copy = str(tmp_path / "old_export")
    shutil.copytree(FIXTURE, copy)
    return copy


def _model_json(model_dir: str) -> dict:
    with open(os.path.join(model_dir, export.MODEL_JSON)) as f:
        return json.load(f)


def test_an_export_without_a_family_loads_as_an_ofa_resnet(old_export):
    description = _model_json(old_export)
    assert "family" not in description
    model = export.load_exported(old_export)
    assert model.family.name == export.OLD_EXPORT_FAMILY == "ofa_resnet"
    assert model.family.data_shape == family_lib.DataShape((8, 8, 1), 10)
    assert model.family.arch_to_json(model.arch) == description["arch"]
    assert sum(int(np.size(leaf)) for leaf in jax.tree.leaves(model.params)) == description["params"]


@pytest.mark.parametrize("split", ["val", "test"])
def test_an_export_without_a_family_evaluates_as_it_did(old_export, split, monkeypatch):
    def unavailable(*args, **kwargs):
        raise AssertionError("the supernet was used")

    monkeypatch.setattr(model_lib, "Supernet", unavailable)
    report = evaluate_lib.evaluate_export(old_export, split=split)
    examples, correct, loss = RECORDED[split]
    assert (report["data"], report["examples"]) == ("digits", examples)
    assert round(report["accuracy"] * examples) == correct
    assert report["accuracy"] == pytest.approx(correct / examples, abs=1e-6)
    assert report["loss"] == pytest.approx(loss, abs=2e-6)


def test_todays_description_of_the_same_subnet_only_adds_the_family(old_export):
    old = _model_json(old_export)
    model = export.load_exported(old_export)
    new = export.describe(model.family, model.arch, model.mean, model.std, old["conv_impl"], old["dtype"],
                          old["source"])
    assert new == {**{k: v for k, v in old.items() if k != export.DIGEST_KEY}, "family": "ofa_resnet"}
    assert list(new) == ["format", "family"] + [k for k in old if k not in ("format", export.DIGEST_KEY)]


def test_a_model_json_naming_an_unknown_family_is_refused(old_export):
    path = os.path.join(old_export, export.MODEL_JSON)
    description = _model_json(old_export)
    for family, message in [("resnet", "family='resnet' cannot be loaded: .*not a registered family"),
                            (3, "family=3 is not a str")]:
        with open(path, "w") as f:
            json.dump({**description, "family": family}, f)
        with pytest.raises(ValueError, match=message) as info:
            export.read_description(old_export)
        assert str(info.value).startswith(f"{path}: ")
