"""Runs that survive: kill -9 and resume, SIGTERM, a changed config, a finished run run again.

Each test drives the real entry point (`python launch.py`) in subprocesses on a tiny config and compares
with one uninterrupted run of the same config: the final server state must be bit-identical (the SHA-256
digest of every state array, stored in the final checkpoint) and metrics.jsonl and cost.json equal.
"""
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from test_launch import ROOT, SMOKE

ROUNDS = 8
# Evaluation every 3 and checkpoints every 2 rounds: most kill points fall between the two cadences, so
# resuming must restore per-round metrics not yet written to metrics.jsonl.
FLAGS = [SMOKE, f"--config.fl.rounds={ROUNDS}", "--config.eval.every_rounds=3",
         "--config.checkpoint.every_rounds=2"]


def command(workdir, *extra):
    return [sys.executable, "launch.py", *FLAGS, *extra, f"--workdir={workdir}"]


def environment():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return env


def launch(workdir, *extra):
    return subprocess.run(command(workdir, *extra), cwd=ROOT, env=environment(), capture_output=True,
                          text=True, timeout=600)


def launch_and_signal(workdir, after_round, signum):
    """Starts a run and sends `signum` once its progress line for `after_round` appears."""
    process = subprocess.Popen(command(workdir), cwd=ROOT, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith(f"round {after_round}/"):
            process.send_signal(signum)
            break
    stdout, stderr = process.communicate(timeout=600)
    return process.returncode, stdout, "".join(seen) + stderr


def final_digest(workdir):
    with open(os.path.join(workdir, "checkpoints", str(ROUNDS), "host", "metadata")) as f:
        return json.load(f)["digest"]


def outputs(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        metrics = [json.loads(line) for line in f]
    with open(os.path.join(workdir, "cost.json")) as f:
        return metrics, json.load(f)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("uninterrupted"))
    result = launch(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_reference_run_writes_checkpoints(reference):
    metrics, _ = outputs(reference)
    assert [r["round"] for r in metrics] == [3, 6, 8]
    steps = sorted(int(s) for s in os.listdir(os.path.join(reference, "checkpoints")))
    assert steps == [4, 6, 8]  # every 2 rounds, the newest 3 kept


def test_sigkill_at_a_random_round_then_resume_is_bit_identical(reference, tmp_path):
    kill_after = int(np.random.default_rng().integers(1, ROUNDS))  # random on purpose; printed on failure
    returncode, _, stderr = launch_and_signal(str(tmp_path), kill_after, signal.SIGKILL)
    assert returncode == -signal.SIGKILL, f"kill after round {kill_after}: {stderr[-2000:]}"
    resumed = launch(str(tmp_path))
    assert resumed.returncode == 0, f"kill after round {kill_after}: {resumed.stderr[-3000:]}"
    assert final_digest(str(tmp_path)) == final_digest(reference), f"kill after round {kill_after}"
    assert outputs(str(tmp_path)) == outputs(reference), f"kill after round {kill_after}"


def test_sigterm_checkpoints_exits_resumable_and_resumes_exactly(reference, tmp_path):
    returncode, _, stderr = launch_and_signal(str(tmp_path), 3, signal.SIGTERM)
    assert returncode == 75, stderr[-3000:]
    assert "interrupted, resumable: SIGTERM received" in stderr
    steps = [int(s) for s in os.listdir(os.path.join(tmp_path, "checkpoints"))]
    interrupted_at = max(steps)
    assert 3 <= interrupted_at < ROUNDS  # the round in flight was finished and saved
    assert f"checkpoint saved after round {interrupted_at}" in stderr
    resumed = launch(str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {tmp_path} after round {interrupted_at}" in resumed.stderr
    assert final_digest(str(tmp_path)) == final_digest(reference)
    assert outputs(str(tmp_path)) == outputs(reference)


def test_changed_config_is_refused_naming_the_fields(reference, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference, workdir)
    result = launch(workdir, "--config.seed=1", "--config.client.learning_rate=0.3",
                    "--config.eval.every_rounds=2")  # eval cadence may change; the other two may not
    assert result.returncode == 2
    assert "may not change on resume" in result.stderr
    assert "seed: 0 -> 1" in result.stderr and "client.learning_rate: 0.5 -> 0.3" in result.stderr
    assert "eval.every_rounds" not in result.stderr.split("(allowed")[0]


def test_finished_run_run_again_changes_nothing(reference, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference, workdir)
    result = launch(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert outputs(workdir) == outputs(reference)
    assert final_digest(workdir) == final_digest(reference)


def test_damaged_newest_checkpoint_warns_and_resumes_from_the_previous(reference, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference, workdir)
    shutil.rmtree(os.path.join(workdir, "checkpoints", str(ROUNDS), "state"))
    result = launch(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"warning: skipped damaged checkpoint step {ROUNDS}:" in result.stderr
    assert f"after round {ROUNDS - 2}" in result.stderr
    assert final_digest(workdir) == final_digest(reference)
    assert outputs(workdir) == outputs(reference)
