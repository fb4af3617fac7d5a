"""Smoke tests of the real entry point, `python launch.py`, on shrunken configs (one subprocess each)."""
import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The `:smoke` variant (superfed_jax/config.py): 2 rounds of 2 out of 4 clients on a tiny space.
SMOKE = "--config=configs/digits.py:smoke"


def launch(*args, timeout=300, env_changes=None, cold=False):
    """Runs launch.py on one CPU device; `cold`: with no compilation cache at all, neither the session's
    (conftest.py) nor the default one under the user's home (superfed_jax/_compilation_cache.py)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.update(env_changes or {})
    env.pop("XLA_FLAGS", None)  # one CPU device, as a user's plain run
    if cold:
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        env["JAX_ENABLE_COMPILATION_CACHE"] = "false"  # JAX's own switch, which every command obeys
    return subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_digits_default_writes_config_metrics_and_summary(tmp_path):
    # JAX_PLATFORMS='' lets JAX probe every backend, as on a user's machine (console checks below);
    # JAX_LOG_COMPILES=1 logs every compilation, so the test can count them; cold: compiled here, as a
    # user's first run, not loaded from the test session's cache.
    result = launch(SMOKE, f"--workdir={tmp_path}",
                    env_changes={"JAX_PLATFORMS": "", "JAX_LOG_COMPILES": "1"}, cold=True)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.load(open(tmp_path / "config.json"))
    assert config["data"]["name"] == "digits" and config["fl"]["rounds"] == 2
    records = read_metrics(tmp_path)
    assert [r["round"] for r in records] == [1, 2]
    for record in records:
        for key in ("beta", "train_loss", "clients_nonfinite"):
            assert key in record
        for name in ("smallest", "small", "medium", "largest"):
            for field in ("val_accuracy", "test_accuracy", "test_loss", "val_loss"):
                value = record[f"{name}/{field}"]
                assert np.isfinite(value)
            assert 0.0 <= record[f"{name}/test_accuracy"] <= 1.0
    with open(tmp_path / "rounds.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [r["round"] for r in rows] == [1, 2]
    for row, record in zip(rows, records):
        assert set(row) == {"round", "beta", "train_loss", "clients_nonfinite", "seconds", "wall_time"}
        # The smoke run evaluates every round, so each record summarises exactly that round.
        assert {k: record[k] for k in ("beta", "train_loss", "clients_nonfinite")} == {
            k: row[k] for k in ("beta", "train_loss", "clients_nonfinite")}
        assert row["seconds"] > 0
    assert rows[0]["wall_time"] < rows[1]["wall_time"]
    assert rows[1]["wall_time"] - rows[0]["wall_time"] == pytest.approx(rows[1]["seconds"], abs=0.05)
    [session] = json.load(open(tmp_path / "provenance.json"))["sessions"]
    assert session["from_round"] == 0 and session["packages"]["jax"] and session["jax"]["device_count"] == 1
    assert "## Provenance" in (tmp_path / "report.md").read_text()
    for name in ("smallest", "largest"):  # the summary table on stdout
        assert any(line.startswith(name) for line in result.stdout.splitlines())
    assert "round 2/2" in result.stderr  # progress with ETA
    cost = json.load(open(tmp_path / "cost.json"))
    assert cost["rounds"] == 2 and cost["clients_per_round"] == 2
    assert "independent FedAvg of 4 archs costs" in result.stdout
    check_console(result, records[-1])


def check_console(result, last_record):
    """What the smoke run's terminal says (superfed_jax/run/progress.py, superfed_jax/_console.py)."""
    # The config's start-up note (configs/digits.py), once.
    assert result.stdout.count("note: ") == 1 and "near chance" in result.stdout
    assert "compiling the round and the evaluation (first time only) ..." in result.stderr
    # Compiled ahead, and the rounds and evaluations then reuse those programs: one round, one
    # evaluation per split (val, test).
    compiled = [line.split("Finished XLA compilation of ", 1)[1].split(" in ")[0]
                for line in result.stderr.splitlines() if "Finished XLA compilation of " in line]
    assert compiled.count("jit(round_fn)") == 1 and compiled.count("jit(evaluate)") == 2, compiled
    assert "Unable to initialize backend" not in result.stderr
    assert "0.00 rounds/s" not in result.stderr and "eta ?" not in result.stderr
    progress_lines = [line[line.index("round "):] for line in result.stderr.splitlines()
                      if "round 2/2 |" in line]
    shown = " ".join(f"{name}={last_record[f'{name}/val_accuracy']:.3f}"
                     for name in ("smallest", "small", "medium", "largest"))
    assert "| done | val@1 " in progress_lines[-2], progress_lines  # round 2's line, before its evaluation
    assert progress_lines[-1] == f"round 2/2 | val {shown}", progress_lines  # the final evaluation


def test_cifar10_dry_run_reproduces_the_paper_cost_ratio(tmp_path):
    """No data, no training: the assignment sequence of 1500 rounds and its cost (paper: 9.43x, 9.35 expected)."""
    result = launch("--config=configs/cifar10.py", "--config.dry_run=True", f"--workdir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    ratios = json.load(open(tmp_path / "cost.json"))["ratios"]
    assert 9.30 <= ratios["compute_ratio"] <= 9.45
    assert 10.2 <= ratios["comm_ratio"] <= 10.7


def test_misspelt_override_fails(tmp_path):
    result = launch("--config.fl.roundz=3", f"--workdir={tmp_path}", timeout=120)
    assert result.returncode == 2
    assert "roundz" in result.stderr


def error_lines(result) -> list[str]:
    """The `error:` lines of a failed launch; fails the test on a traceback or another exit status."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "FATAL" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


# (command-line arguments, what the one error line must contain). dry_run: a flag that slipped through
# would start a quick cost-only run instead of training.
BAD_FLAGS = {
    "misspelt_field": (["--config.fl.round=10"],
                       ["fl.round: unknown field (did you mean fl.rounds?)"]),
    "misspelt_section": (["--config.trian.epochs=1"], ["trian: unknown field"]),
    "not_an_integer": (["--config.fl.rounds=abc"], ["fl.rounds='abc'", "must be an integer >= 1"]),
    "float_for_integer": (["--config.client.epochs=2.5"], ["client.epochs='2.5'", "integer"]),
    "not_a_boolean": (["--config.data.flip=maybe"], ["data.flip='maybe'", "True or False"]),
    "not_a_number": (["--config.client.learning_rate=fast"], ["client.learning_rate='fast'", "number"]),
    "not_a_tuple_of_integers": (["--config.space.stage_widths=wide"],
                                ["space.stage_widths='wide'", "tuple of integers"]),
    "earlier_repeat_is_dropped": (["--config.fl.rounds=3", "--config.fl.rounds=0"], ["fl.rounds=0:"]),
    "negated_non_boolean": (["--noconfig.fl.rounds"], ["fl.rounds", "True/False"]),
    "missing_value": (["--config.fl.rounds"], ["fl.rounds: no value"]),
    "unknown_flag": (["--workdirr=x"], ["workdirr", "workdir"]),
    "missing_config_file": (["--config=configs/nonexistent.py"], ["configs/nonexistent.py", "does not exist"]),
    "bad_variant": (["--config=configs/digits.py:fedavg"], ["fedavg=ARCH"]),
    "out_of_range": (["--config.fl.rounds=0"], ["fl.rounds=0: must be an integer >= 1"]),
}


@pytest.mark.parametrize("args,expected", list(BAD_FLAGS.values()), ids=list(BAD_FLAGS))
def test_bad_flag_is_one_error_line_and_exit_2(tmp_path, args, expected):
    result = launch(*args, "--config.dry_run=True", f"--workdir={tmp_path}", timeout=120)
    [line] = error_lines(result)
    for text in expected:
        assert text in line or text in result.stderr
    assert not (tmp_path / "cost.json").exists()


def test_every_bad_override_is_listed(tmp_path):
    result = launch("--config.fl.round=10", "--config.client.epochs=x", "--config.dry_run=True",
                    f"--workdir={tmp_path}", timeout=120)
    [line] = error_lines(result)
    assert "fl.round: unknown field" in line and "client.epochs='x'" in result.stderr


def test_console_entry_point_finds_the_packaged_config_from_anywhere(tmp_path):
    """`superfed-train` = launch.console(): run from another folder, no --config: the package's digits."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    code = "from superfed_jax.run import launch; launch.console()"
    result = subprocess.run([sys.executable, "-c", code, "--config.dry_run=True", "--config.fl.rounds", "3",
                             "--noconfig.data.flip", "--config.space.stage_widths=(8,16,32)",
                             "--config.space.stage_widths=(32,64,128)"],  # the last wins, not both
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    cost = json.load(open(tmp_path / "workdirs" / "digits" / "cost.json"))  # named after the config
    assert cost["rounds"] == 3


def test_default_config_is_inside_the_package_and_configs_links_to_it():
    from superfed_jax.run import launch as launch_lib
    package = os.path.join(ROOT, "superfed_jax")
    assert os.path.dirname(os.path.dirname(launch_lib.DEFAULT_CONFIG)) == package
    assert os.path.samefile(os.path.join(ROOT, "configs", "digits.py"), launch_lib.DEFAULT_CONFIG)
    assert os.path.islink(os.path.join(ROOT, "configs"))


@pytest.mark.parametrize("args", [
    [], ["--config.fl.rounds=5", "--config.data.flip=false", "--noconfig.memory.check"],
    ["--config.fl.rounds", "5", "--config.data.flip"], ["--config.space.stage_widths=(8,16)"],
    ["--config=configs/cifar10.py", "--config.fl.heuristic=stattic"],  # a name: check_config judges it
    ["--config.fl.rounds=1", "--", "--config.fl.rounds=2"],  # after '--': not a flag
])
def test_usable_overrides_have_no_problems(args):
    from superfed_jax.run import launch as launch_lib
    assert launch_lib.override_problems(["superfed-train", *args]) == []


def test_cifar10_without_data_stops_at_once_with_instructions(tmp_path):
    result = launch("--config=configs/cifar10.py", f"--workdir={tmp_path}", timeout=120)
    assert result.returncode == 2
    assert "data.archive" in result.stderr and "tfds_data_dir" in result.stderr
    assert not (tmp_path / "metrics.jsonl").exists()


def _cifar_binary_archive(path, records_per_member=12, seed=0):
    """A tiny archive in the real CIFAR-10 binary layout (label byte + 3072 CHW pixel bytes)."""
    rng = np.random.default_rng(seed)
    members = [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)]
    members.append("cifar-10-batches-bin/test_batch.bin")
    with tarfile.open(path, "w:gz") as tar:
        for name in members:
            labels = np.arange(records_per_member, dtype=np.uint8) % 10
            pixels = rng.integers(0, 256, (records_per_member, 3072), dtype=np.uint8)
            payload = np.concatenate([labels[:, None], pixels], axis=1).tobytes()
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


@pytest.mark.parametrize("variant", ["", ",fedavg=largest"])
def test_cifar10_config_trains_from_binary_archive(tmp_path, variant):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    _cifar_binary_archive(archive)
    workdir = tmp_path / "run"
    result = launch(f"--config=configs/cifar10.py:smoke{variant}",
                    f"--config.data.archive={archive}", "--config.data.min_client_size=2",
                    "--config.data.val_fraction=0.2", "--config.client.batch_size=8",
                    f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_metrics(workdir)
    assert len(records) == 2
    names = {"largest"} if variant else {"smallest", "small", "medium", "largest"}
    assert {key.split("/")[0] for key in records[-1] if "/" in key} == names


def test_npz_dataset_infers_shape_and_classes(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=rng.integers(0, 256, (80, 6, 6), dtype=np.uint8),
             y_train=np.arange(80) % 3, x_test=rng.integers(0, 256, (20, 6, 6), dtype=np.uint8),
             y_test=np.arange(20) % 3)
    workdir = tmp_path / "run"
    result = launch(SMOKE, "--config.data.name=npz", f"--config.data.path={path}",
                    "--config.data.min_client_size=2", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    config_space = json.load(open(workdir / "config.json"))["space"]
    assert config_space["input_size"] == 8  # the config file's value; the run used the data's 6x6x1
    assert len(read_metrics(workdir)) == 2


def test_round_that_does_not_fit_stops_before_compiling_with_a_chunk_size(tmp_path):
    """fl.chunk_size=8 (about 70 MiB by the estimate) does not fit in 40 MiB; smaller chunks do."""
    result = launch(SMOKE, "--config.fl.num_clients=20", "--config.fl.clients_per_round=8",
                    "--config.fl.chunk_size=8", "--config.memory.available_gib=0.04", f"--workdir={tmp_path}")
    assert result.returncode == 2
    assert "one round needs an estimated" in result.stderr
    advice = result.stderr.split("use --config.fl.chunk_size=")[1].split()[0]
    assert int(advice) in (1, 2, 4)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_last_override_wins_drops_the_earlier_ones_with_their_values():
    from superfed_jax.run import launch as launch_lib
    argv = ["superfed-train", "--config.space.stage_widths=(8,16)", "--config.fl.rounds", "3",
            "--workdir=w", "--config.space.stage_widths=(4,8)", "--config.fl.rounds=5", "--noconfig.data.flip",
            "--config.data.flip"]
    assert launch_lib.last_override_wins(argv) == [
        "superfed-train", "--workdir=w", "--config.space.stage_widths=(4,8)", "--config.fl.rounds=5",
        "--config.data.flip"]
    assert launch_lib.last_override_wins(argv[:5]) == argv[:5]


def test_a_packaged_config_by_name_with_a_variant_from_outside_the_repository(tmp_path):
    """`--config=digits:smoke` from a folder without configs/: the packaged file, said on stderr."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    env.pop("XLA_FLAGS", None)
    result = subprocess.run([sys.executable, "-m", "superfed_jax.run.launch", "--config=digits:smoke",
                             "--config.dry_run=True"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    packaged = os.path.join(ROOT, "superfed_jax", "configs", "digits.py")
    assert f"config: {packaged}\n" in result.stderr
    cost = json.load(open(tmp_path / "workdirs" / "digits_smoke" / "cost.json"))  # the variant's workdir
    assert cost["rounds"] == 2  # :smoke's
