"""A run with every federated-optimisation option at once, through the real entry point: a server optimiser
(FedAdam), client momentum, weight decay and FedProx, and user-level differential privacy (clipping and
noise). One uninterrupted run is the reference for both tests: the privacy spent it reports (metrics.jsonl,
console, report.md), and a run SIGKILLed after a checkpoint and resumed, which must end bit for bit equal
(the server optimiser's moments, the noise drawn from the seed and the privacy records all resume).

One pair of runs covers what three separate resume tests would (each option's own test module checks it
against NumPy); the options are independent pieces of the round's state and program.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

from test_launch import ROOT, SMOKE
from test_resume import outputs

pytest.importorskip("dp_accounting")

from superfed_jax.federated import privacy  # noqa: E402

ROUNDS = 4
FLAGS = [SMOKE, f"--config.fl.rounds={ROUNDS}", "--config.checkpoint.every_rounds=2",
         "--config.server.optimizer=adam", "--config.server.learning_rate=0.01",
         "--config.client.momentum=0.9", "--config.client.weight_decay=0.01", "--config.client.prox_mu=0.1",
         "--config.dp.clip_norm=1.0", "--config.dp.noise_multiplier=1.0"]


def _environment():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return env


def _command(workdir):
    return [sys.executable, "launch.py", *FLAGS, f"--workdir={workdir}"]


def _digest(workdir):
    with open(os.path.join(workdir, "checkpoints", str(ROUNDS), "host", "metadata")) as f:
        return json.load(f)["digest"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("every_option"))
    result = subprocess.run(_command(workdir), cwd=ROOT, env=_environment(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stderr


def test_the_privacy_spent_is_in_every_record_on_the_console_and_in_the_report(reference):
    workdir, stderr = reference
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    fl, delta = config["fl"], config["dp"]["delta"]
    records, _ = outputs(workdir)
    assert [r["round"] for r in records] == list(range(1, ROUNDS + 1))  # :smoke evaluates every round
    for record in records:  # a pure function of the config and the round
        assert record["dp_epsilon"] == privacy.epsilon(1.0, fl["num_clients"], fl["clients_per_round"],
                                                       record["round"], delta)
        assert record["dp_delta"] == delta
        assert 0 <= record["dp_clipped"] <= fl["clients_per_round"]
    assert [r["dp_epsilon"] for r in records] == sorted(r["dp_epsilon"] for r in records)
    assert f"dp eps={records[-1]['dp_epsilon']:.2f} delta={delta:g}" in stderr
    with open(os.path.join(workdir, "report.md")) as f:
        report = f.read()
    assert "## Differential privacy" in report and f"epsilon = {records[-1]['dp_epsilon']:.4g}" in report


def test_killed_after_a_checkpoint_and_resumed_is_bit_identical(reference, tmp_path):
    workdir = str(tmp_path / "killed")
    process = subprocess.Popen(_command(workdir), cwd=ROOT, env=_environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if line.startswith("round 3/"):  # after round 2's checkpoint: Adam's moments are in it
            process.send_signal(signal.SIGKILL)
            break
    process.communicate(timeout=600)
    assert process.returncode == -signal.SIGKILL
    resumed = subprocess.run(_command(workdir), cwd=ROOT, env=_environment(), capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr
    assert _digest(workdir) == _digest(reference[0])
    assert outputs(workdir) == outputs(reference[0])  # metrics.jsonl (the privacy fields too), cost.json
