"""Multi-host: two processes on 127.0.0.1 (gloo collectives, 4 CPU devices each) against one process with
8 devices, the same config. Same rounds, same metrics and the same final supernet (up to the summation
order of cross-process reductions), with files written once, by process 0.
"""
import json
import os
import socket
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from superfed_jax.federated import placement
from superfed_jax.federated import sharding
from test_launch import ROOT, SMOKE

# Two rounds: the second starts from the first's cross-process aggregate, which is what can differ.
# Evaluated every round (the metrics compared), checkpointed once, at the end (the params compared; every
# process writes its part of that save).
ROUNDS = 2
FLAGS = [SMOKE, f"--config.fl.rounds={ROUNDS}", "--config.fl.num_clients=8", "--config.fl.clients_per_round=8",
         f"--config.checkpoint.every_rounds={ROUNDS}"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(workdir, devices, *extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    # No compilation cache (conftest.py): no config here is compiled by another test, and the three
    # processes compile at the same time. Switched off, not just dropped: the run's default would be a
    # directory under the user's home (superfed_jax/_compilation_cache.py).
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    return subprocess.Popen([sys.executable, "launch.py", *FLAGS, *extra, f"--workdir={workdir}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def final_params(workdir):
    """The params of the last checkpoint, restored onto this process's first device."""
    path = os.path.join(workdir, "checkpoints", str(ROUNDS), "state")
    checkpointer = ocp.StandardCheckpointer()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          checkpointer.metadata(path).item_metadata)
    return checkpointer.restore(path, target)["params"]


def read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    single, multi = (str(tmp_path_factory.mktemp(name)) for name in ("one_process", "two_processes"))
    address = f"127.0.0.1:{free_port()}"
    processes = [start(single, 8)] + [
        start(multi, 4, "--config.distributed.initialize=True",
              f"--config.distributed.coordinator_address={address}",
              "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}")
        for i in range(2)]
    outputs = [finish(p) for p in processes]
    return single, multi, outputs


def test_two_processes_match_one_process(runs):
    single, multi, _ = runs
    one, two = read_metrics(single), read_metrics(multi)
    assert [r["round"] for r in two] == [r["round"] for r in one] == list(range(1, ROUNDS + 1))
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), key
    p1, p2 = final_params(single), final_params(multi)
    assert jax.tree.structure(p1) == jax.tree.structure(p2)
    for x, y in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-4, atol=1e-6)
    moved = max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree.leaves(p1))
    assert moved > 0


def test_only_process_zero_writes_and_prints(runs):
    _, multi, outputs = runs
    assert sorted(os.listdir(multi)) == [".lock", "checkpoints", "config.json", "cost.json", "curves.png",
                                         "curves.svg", "metrics.jsonl", "pareto.png", "pareto.svg",
                                         "provenance.json", "report.md", "report_accuracy.csv",
                                         "report_cost.csv", "report_curves.csv", "report_train_loss.csv",
                                         "rounds.jsonl", "space.json", "tb", "train_loss.png", "train_loss.svg"]  # .lock: process 0's
    summary_lines = [[l for l in out.splitlines() if l.startswith(("largest", "cost:"))] for out in outputs]
    assert len(summary_lines[1]) == 2 and summary_lines[2] == []  # the summary from process 0 only
    assert json.load(open(os.path.join(multi, "config.json")))["distributed"]["process_id"] == 0
    [session] = json.load(open(os.path.join(multi, "provenance.json")))["sessions"]
    assert session["jax"]["process_count"] == 2


def test_training_rows_are_split_over_devices():
    """Each device holds 1/8 of the rows (padded), the index table is replicated (8 fake devices)."""
    config = ml_collections.ConfigDict(dict(
        seed=0, fl=dict(num_clients=4), data=dict(partition="iid", alpha=1.0, shards_per_client=2,
                                                  min_client_size=1)))
    x = np.arange(21 * 2 * 2 * 1, dtype=np.uint8).reshape(21, 2, 2, 1)
    y = np.arange(21) % 3
    dataset = type("D", (), dict(x_train=x, y_train=y, client_train=None))()
    mesh = sharding.make_mesh()
    data = placement.place_federated_data(dataset, config, mesh)
    assert data.images.shape == (24, 2, 2, 1)  # padded to a multiple of 8 devices
    assert {s.data.shape for s in data.images.addressable_shards} == {(3, 2, 2, 1)}
    assert all(s.data.shape == data.index_table.shape for s in data.index_table.addressable_shards)
    np.testing.assert_array_equal(np.asarray(data.images)[:21], x)
    table, sizes = np.asarray(data.index_table), np.asarray(data.sizes)
    rows = np.concatenate([table[k, :sizes[k]] for k in range(4)])
    np.testing.assert_array_equal(np.sort(rows), np.arange(21))  # padding rows are never indexed


def test_distributed_settings_come_from_the_config_then_the_environment(monkeypatch):
    from superfed_jax.run import distributed
    fields = ml_collections.ConfigDict(dict(initialize=True, coordinator_address="", num_processes=0,
                                            process_id=-1))
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.settings_from(fields) == {}  # left to JAX's cluster auto-detection
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "0")
    assert distributed.settings_from(fields) == dict(coordinator_address="10.0.0.1:1234", num_processes=4,
                                                     process_id=0)
    fields.update(coordinator_address="h:1", num_processes=2, process_id=1)
    assert distributed.settings_from(fields) == dict(coordinator_address="h:1", num_processes=2,
                                                     process_id=1)


@pytest.mark.parametrize("name", ["JAX_NUM_PROCESSES", "JAX_PROCESS_ID"])
def test_a_non_integer_environment_variable_is_named_in_the_message(monkeypatch, name):
    # Before: "invalid literal for int() with base 10: 'abc'", naming neither the variable nor its use.
    from superfed_jax.run import distributed
    fields = ml_collections.ConfigDict(dict(initialize=True, coordinator_address="", num_processes=0,
                                            process_id=-1))
    monkeypatch.setenv(name, "abc")
    with pytest.raises(ValueError, match=f"environment variable {name}='abc': must be an integer"):
        distributed.settings_from(fields)
