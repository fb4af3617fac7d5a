"""A run directory written by superfed_jax 0.1.0 (before the package was regrouped into layers) resumes.

`tests/fixtures/run_v0_1_0` is the work directory of a 4-round digits run trained by the 0.1.0 code
(commit 1e5fb96) with the :smoke settings, cut back to its round-2 checkpoint: `metrics.jsonl` still
holds the round-4 record, which a resume must rewind. The current code must accept the saved config,
verify and restore the checkpoint, keep the round-2 record exactly and train on to round 4. (Float
results of the later rounds depend on the machine, so they are checked for presence and finiteness,
not against the old run.)
"""
import json
import math
import os
import shutil

from test_launch import ROOT, SMOKE, launch, read_metrics

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "run_v0_1_0")
# The settings the fixture was trained with beyond :smoke (none of them may change on resume).
FLAGS = [SMOKE, "--config.fl.rounds=4", "--config.eval.every_rounds=2", "--config.checkpoint.every_rounds=2"]


def test_a_checkpoint_of_version_0_1_0_resumes(tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(FIXTURE, workdir)
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
