"""A smoke run with user-level differential privacy through the real entry point: the privacy spent in
metrics.jsonl, on the console and in report.md, and the same values after a resume."""
import json
import os

import pytest

from superfed_jax.federated import privacy
from test_launch import SMOKE, launch, read_metrics

pytest.importorskip("dp_accounting")

# decay_fraction=1: the beta decay lasts a round even in the 1-round first part of the resumed run.
DP_ARGS = (SMOKE, "--config.dp.clip_norm=1", "--config.dp.noise_multiplier=1",
           "--config.fl.decay_fraction=1.0")


def test_smoke_run_reports_epsilon_and_a_resumed_run_writes_the_same(tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    result = launch(*DP_ARGS, f"--workdir={whole}")
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.load(open(whole / "config.json"))
    fl, delta = config["fl"], config["dp"]["delta"]
    records = read_metrics(whole)
    assert [r["round"] for r in records] == list(range(1, fl["rounds"] + 1))
    for record in records:  # a pure function of the config and the round
        assert record["dp_epsilon"] == privacy.epsilon(1.0, fl["num_clients"], fl["clients_per_round"],
                                                       record["round"], delta)
        assert record["dp_delta"] == delta
    assert [r["dp_epsilon"] for r in records] == sorted(r["dp_epsilon"] for r in records)
    assert f"dp eps={records[-1]['dp_epsilon']:.2f} delta={delta:g}" in result.stderr
    report = open(whole / "report.md").read()
    assert "## Differential privacy" in report and f"epsilon = {records[-1]['dp_epsilon']:.4g}" in report

    # Stopped after round 1, then resumed to the end: the same privacy fields in every record.
    first = launch(*DP_ARGS, f"--workdir={parts}", "--config.fl.rounds=1")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = launch(*DP_ARGS, f"--workdir={parts}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    fields = lambda rs: [(r["round"], r["dp_epsilon"], r["dp_delta"]) for r in rs]  # noqa: E731
    assert fields(read_metrics(parts)) == fields(records)
    assert os.path.exists(parts / "report.md")
