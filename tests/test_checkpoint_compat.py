"""Run directories written by earlier versions resume.

Each fixture is the work directory of a 4-round digits run with the :smoke settings, cut back to its
round-2 checkpoint: `metrics.jsonl` still holds the round-4 record, which a resume must rewind.

* `tests/fixtures/run_v0_1_0`: trained by the 0.1.0 code (commit 1e5fb96), before the package was
  regrouped into layers.
* `tests/fixtures/run_v0_2_pre_family`: trained by commit 09af4be, the last before supernet families
  (its config.json has no `model.family`, its space is the OFA-ResNet's).
 The current code must accept the saved config,
verify and restore the checkpoint, keep the round-2 record exactly and train on to round 4. (Float
results of the later rounds depend on the machine, so they are checked for presence and finiteness,
not against the old run.)
"""
import json
import math
import os
import shutil

import pytest

from test_launch import ROOT, SMOKE, launch, read_metrics

FIXTURES = [os.path.join(ROOT, "tests", "fixtures", name) for name in ("run_v0_1_0", "run_v0_2_pre_family")]
# The settings the fixture was trained with beyond :smoke (none of them may change on resume).
FLAGS = [SMOKE, "--config.fl.rounds=4", "--config.eval.every_rounds=2", "--config.checkpoint.every_rounds=2"]


@pytest.mark.parametrize("fixture", FIXTURES, ids=os.path.basename)
def test_a_checkpoint_of_an_earlier_version_resumes(tmp_path, fixture):
    workdir = str(tmp_path / "run")
    shutil.copytree(fixture, workdir)
    saved = read_metrics(workdir)
    assert [r["round"] for r in saved] == [2, 4]  # the record after the checkpoint, to be rewound

    result = launch(*FLAGS, f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr
    assert f"resuming {workdir} after round 2" in result.stderr
    records = read_metrics(workdir)
    assert [r["round"] for r in records] == [2, 4]
    assert records[0] == saved[0]  # restored, not retrained
    assert all(math.isfinite(v) for v in records[1].values() if isinstance(v, float))
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
    with open(os.path.join(workdir, "cost.json")) as f:
        assert json.load(f)["rounds"] == 4
