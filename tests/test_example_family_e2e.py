"""A user's own family through the real commands: `examples/elastic_mlp.py` trained by `launch.py` on the
digits data with every subnet-distribution heuristic, then searched, exported and evaluated.

The family is named on the command line as an import path (`--config.model.family=...`), so this also
tests the switch of the config file's space to that family's fields and `--config.space.X` for them. One
subprocess per command, from the repository root (where `examples` is importable), on one CPU device.
"""
import json
import os

import pytest

from superfed_jax.federated.heuristics import HEURISTICS, POOL_HEURISTICS
from test_launch import launch, read_metrics
from trained_run import run_module

FAMILY = "--config.model.family=examples.elastic_mlp:ElasticMLP"
# A space that is not the family's default, given as overrides of its own fields.
SPACE = ["--config.space.hidden_layers=2", "--config.space.width_choices=(8,16,32)"]
POOL = '--config.fl.pool=["smallest", "largest", {"depth": 2, "width": [8, 32]}]'


@pytest.mark.parametrize("heuristic", HEURISTICS)
def test_the_example_family_trains_through_launch_with_each_heuristic(tmp_path, heuristic):
    extra = [POOL] if heuristic in POOL_HEURISTICS else []
    result = launch("--config=configs/digits.py:smoke", FAMILY, *SPACE, f"--config.fl.heuristic={heuristic}",
                    *extra, f"--workdir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.load(open(tmp_path / "config.json"))
    assert config["model"]["family"] == "examples.elastic_mlp:ElasticMLP"
    assert config["space"] == {"hidden_layers": 2, "width_choices": [8, 16, 32], "input_shape": [8, 8, 1],
                               "num_classes": 10}
    records = read_metrics(tmp_path)
    assert [r["round"] for r in records] == [1, 2]
    for name in ("smallest", "small", "medium", "largest"):
        assert 0.0 <= records[-1][f"{name}/test_accuracy"] <= 1.0
    # The tracked archs are the MLP's, in its own JSON form, with its exact sizes.
    summary = open(tmp_path / "report.md").read()
    assert "largest" in summary
    cost = json.load(open(tmp_path / "cost.json"))
    assert cost["rounds"] == 2


def test_a_space_field_of_another_family_is_one_clean_error(tmp_path):
    result = launch("--config=configs/digits.py:smoke", FAMILY, "--config.space.stage_widths=(8,16)",
                    f"--workdir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.startswith("error: space.stage_widths: unknown field; fields of space: "
                                    "['hidden_layers', 'input_shape', 'num_classes', 'width_choices']")
    assert "Traceback" not in result.stderr


def test_an_unknown_family_is_one_clean_error(tmp_path):
    result = launch("--config=configs/digits.py:smoke", "--config.model.family=no_such_pkg.mod:Fam",
                    f"--workdir={tmp_path}")
    assert result.returncode == 2
    assert "error: model.family='no_such_pkg.mod:Fam': cannot import 'no_such_pkg.mod'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_example_family_is_searched_exported_and_evaluated(tmp_path):
    run = tmp_path / "run"
    result = launch("--config=configs/digits.py:smoke", FAMILY, "--config.fl.rounds=4", f"--workdir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_module("-m", "superfed_jax.posttrain.search", f"--workdir={run}", "--budget", "macs=5000",
                        "--population=8", "--generations=2")
    assert result.returncode == 0, result.stderr[-3000:]
    best = json.load(open(run / "search.json"))["results"][0]["best"]
    assert best["macs"] <= 5000 and set(best["arch"]) == {"depth", "width"}

    out = tmp_path / "subnet"
    result = run_module("-m", "superfed_jax.posttrain.export", f"--workdir={run}", "--arch=search:macs=5000",
                        f"--out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    model = json.load(open(out / "model.json"))
    assert model["family"] == "examples.elastic_mlp:ElasticMLP" and model["arch"] == best["arch"]
    assert (model["macs"], model["params"]) == (best["macs"], best["params"])

    result = run_module("-m", "superfed_jax.posttrain.evaluate_export", f"--model={out}", "--split=test",
                        "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads(result.stdout.strip().splitlines()[-1])
    # The dense export is the searched subnet: the same test accuracy as the search measured in the supernet.
    assert evaluated["accuracy"] == pytest.approx(best["test_accuracy"], abs=1e-6)
    assert os.path.isdir(out / "params")
