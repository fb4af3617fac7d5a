"""The workdir's guards, in process: the lock, results without a checkpoint, metrics.jsonl lines, I/O
messages, failed rounds. The same cases through the real command are in tests/test_resume.py."""
import errno
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from superfed_jax.run import metrics
from superfed_jax.run import preemption
from superfed_jax.run import resume
from superfed_jax.run import workdir as workdir_lib


def snapshot(directory):
    """path -> bytes of every file under `directory` (to show that nothing changed)."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = f.read()
    return files


# ------------------------------------------------------------------------------------------- the lock


def test_a_second_lock_on_the_workdir_is_refused_naming_the_holder(tmp_path):
    with workdir_lib.hold_lock(str(tmp_path)):
        with pytest.raises(workdir_lib.WorkdirError) as refused:
            with workdir_lib.hold_lock(str(tmp_path)):
                pass
    message = str(refused.value)
    assert f"pid {os.getpid()} on host " in message and "in use by another run" in message
    with workdir_lib.hold_lock(str(tmp_path)):  # released on leaving the block
        pass


def test_the_lock_of_a_killed_process_is_released_by_the_os(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom superfed_jax.run import workdir\n"
         f"with workdir.hold_lock({str(tmp_path)!r}):\n    print('locked', flush=True)\n    time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(workdir_lib.WorkdirError, match=f"pid {holder.pid} "):
            with workdir_lib.hold_lock(str(tmp_path)):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with workdir_lib.hold_lock(str(tmp_path)):  # stale after a crash: nothing to clean by hand
        pass


def test_a_workdir_that_cannot_be_created_is_one_message(tmp_path, monkeypatch):
    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(os, "makedirs", refuse)
    with pytest.raises(workdir_lib.RunIOError) as failed:
        with workdir_lib.hold_lock(str(tmp_path / "run")):
            pass
    message = str(failed.value)
    assert str(tmp_path / "run") in message and "Permission denied" in message
    assert "Nothing was lost" in message and "make the workdir writable" in message
    assert not failed.value.resumable


# --------------------------------------------------------------------- results without a checkpoint


def write_run_files(workdir, checkpoint=True):
    os.makedirs(os.path.join(workdir, "checkpoints", "4" if checkpoint else "tmp"))
    for name, text in (("metrics.jsonl", '{"round": 3}\n'), ("config.json", "{}"), ("cost.json", "{}"),
                       ("report.md", "# run"), ("notes.txt", "the user's own file")):
        with open(os.path.join(workdir, name), "w") as f:
            f.write(text)


def test_results_without_a_checkpoint_are_refused_and_left_alone(tmp_path):
    write_run_files(str(tmp_path), checkpoint=False)
    before = snapshot(tmp_path)
    with pytest.raises(workdir_lib.WorkdirError, match="no checkpoint to resume from") as refused:
        workdir_lib.check_start(str(tmp_path), overwrite=False)
    assert "--config.overwrite=True" in str(refused.value)
    assert snapshot(tmp_path) == before


def test_a_workdir_with_a_checkpoint_or_without_results_is_accepted(tmp_path):
    write_run_files(str(tmp_path / "resumable"), checkpoint=True)
    workdir_lib.check_start(str(tmp_path / "resumable"), overwrite=False)
    os.makedirs(tmp_path / "fresh")
    with open(tmp_path / "fresh" / "cost.json", "w") as f:  # a dry run's output: no results of a run
        f.write("{}")
    workdir_lib.check_start(str(tmp_path / "fresh"), overwrite=False)


STOPPED_CONFIG = {"seed": 0, "fl": {"rounds": 8}, "checkpoint": {"every_rounds": 4}}


def stopped_run(workdir, last_round=3, config=STOPPED_CONFIG, finished=False):
    """A run's files as a run of STOPPED_CONFIG killed after the record of `last_round` leaves them."""
    os.makedirs(os.path.join(workdir, "checkpoints"))
    (workdir / "config.json").write_text(json.dumps(config))
    (workdir / "metrics.jsonl").write_text(json.dumps({"round": last_round}) + "\n")
    (workdir / "rounds.jsonl").write_text("".join(json.dumps({"round": r}) + "\n"
                                                  for r in range(1, last_round + 1)))
    (workdir / "notes.txt").write_text("the user's own file")
    if finished:
        (workdir / "report.md").write_text("# run")


def test_the_same_run_stopped_before_its_first_checkpoint_starts_over_and_says_so(tmp_path, capsys):
    stopped_run(tmp_path)
    workdir_lib.check_start(str(tmp_path), False, STOPPED_CONFIG)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
    assert "starting over: " in capsys.readouterr().err


@pytest.mark.parametrize("case", ["another config", "records past the first checkpoint", "finished",
                                  "no config given"])
def test_anything_else_without_a_checkpoint_is_still_refused(tmp_path, case):
    stopped_run(tmp_path, last_round=5 if case.startswith("records") else 3, finished=case == "finished",
                config=dict(STOPPED_CONFIG, seed=1) if case == "another config" else STOPPED_CONFIG)
    before = snapshot(tmp_path)
    with pytest.raises(workdir_lib.WorkdirError, match="no checkpoint to resume from"):
        workdir_lib.check_start(str(tmp_path), False, None if case == "no config given" else STOPPED_CONFIG)
    assert snapshot(tmp_path) == before


def test_overwrite_clears_the_run_files_and_nothing_else(tmp_path):
    write_run_files(str(tmp_path), checkpoint=True)
    workdir_lib.check_start(str(tmp_path), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_overwrite_clears_what_the_search_and_report_derived_from_the_old_supernet(tmp_path):
    write_run_files(str(tmp_path), checkpoint=True)
    derived = ("search.json", "search.png", "search.svg", "report_search.csv", "latency_cache.json",
               "latency_cache.json.tmp")
    for name in derived:
        (tmp_path / name).write_text("{}")
    workdir_lib.check_start(str(tmp_path), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_run_outputs_doc_names_every_file_overwrite_clears():
    """docs/run_outputs.md's file table is the user's list of what --config.overwrite=True deletes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "run_outputs.md")) as f:
        doc = f.read()
    missing = [name for name in workdir_lib.RUN_FILES
               if not name.endswith(".tmp") and f"`{name.rstrip('/')}" not in doc]
    assert not missing, f"docs/run_outputs.md does not name {missing}"


def test_a_dry_run_is_refused_beside_a_trained_run(tmp_path):
    write_run_files(str(tmp_path))
    with pytest.raises(workdir_lib.WorkdirError, match="a dry run would overwrite its cost.json"):
        workdir_lib.check_dry_run_target(str(tmp_path))
    workdir_lib.check_dry_run_target(str(tmp_path / "elsewhere"))  # absent: fine


# -------------------------------------------------------------------------------------- metrics.jsonl


def write_lines(path, text):
    with open(path, "w") as f:
        f.write(text)
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("bad_line, problem", [
    ("", "blank line"), ('{"beta": 0.5}', "no integer 'round'"), ("[1, 2]", "a JSON list"),
    ('{"round": "3"}', "no integer 'round'"), ("not json", "not JSON"),
])
def test_a_bad_line_before_the_last_is_an_error_naming_it(tmp_path, bad_line, problem):
    path = str(tmp_path / "metrics.jsonl")
    before = write_lines(path, '{"round": 1}\n' + bad_line + '\n{"round": 2}\n')
    with pytest.raises(resume.MetricsFileError) as refused:
        resume.rewind_metrics(path, 2)
    assert f"{path}, line 2: {problem}" in str(refused.value)
    with open(path, "rb") as f:
        assert f.read() == before  # no record after the bad line was dropped


def test_a_torn_last_line_is_dropped_and_later_rounds_rewound(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    write_lines(path, '{"round": 1, "a": 1}\n{"round": 2}\n{"round": 3}\n{"round": 4, "a": 0.')
    assert resume.rewind_metrics(path, 2) == [{"round": 1, "a": 1}, {"round": 2}]
    with open(path) as f:
        assert [json.loads(line)["round"] for line in f] == [1, 2]


def test_a_complete_last_line_without_round_is_an_error(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    write_lines(path, '{"round": 1}\n{"loss": 2}\n')
    with pytest.raises(resume.MetricsFileError, match="line 2: no integer 'round'"):
        resume.rewind_metrics(path, 5)


# --------------------------------------------------------------------------------------- I/O messages


def test_a_full_disk_with_a_checkpoint_is_resumable_and_says_from_where(tmp_path):
    os.makedirs(tmp_path / "checkpoints" / "2")
    os.makedirs(tmp_path / "checkpoints" / "4")
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "checkpoints"))
    failure = workdir_lib.io_failure(error, str(tmp_path), "saving the checkpoint after round 6")
    assert failure.resumable
    message = str(failure)
    assert message.startswith(f"saving the checkpoint after round 6 failed: {tmp_path / 'checkpoints'}: "
                              "No space left on device")
    assert "newest checkpoint (after round 4)" in message and "continue from round 4" in message
    assert "free disk space" in message


def test_orbax_s_wrapping_of_a_full_disk_counts_as_one():
    wrapped = ValueError("RESOURCE_EXHAUSTED: Error writing local file \"/x/d/1\": No space left on device")
    assert workdir_lib.is_io_failure(wrapped)
    assert workdir_lib.io_failure(wrapped, "/nonexistent", "saving").resumable
    assert not workdir_lib.is_io_failure(ValueError("shape mismatch"))


# ----------------------------------------------------------------------------------- failed rounds


def test_a_round_where_every_client_failed_has_nan_loss_and_warns():
    rounds = [{"beta": 0.5, "train_loss": 0.0, "clients_nonfinite": 2},
              {"beta": 0.5, "train_loss": 1.5, "clients_nonfinite": 1}]
    for r in rounds:  # what host_round_metrics does after reading the device values
        if r["clients_nonfinite"] >= 2:
            r["train_loss"] = float("nan")
    summary = metrics.round_summary(rounds)
    assert summary["train_loss"] == 1.5 and summary["clients_nonfinite"] == 3
    assert "in 1 of the 2 rounds up to round 7 every client" in metrics.failed_rounds_warning(rounds, 2, 7)
    assert metrics.failed_rounds_warning(rounds[1:], 2, 7) == ""
    records = [{"round": 2, "clients_nonfinite": 4}, {"round": 3, "clients_nonfinite": 2}]
    assert metrics.nothing_trained(records, 2)
    assert not metrics.nothing_trained([{"round": 3, "clients_nonfinite": 5}], 2)


def test_host_round_metrics_reads_nan_when_all_clients_failed():
    device = [{"beta": 0.9, "train_loss": 0.0, "clients_nonfinite": 3},
              {"beta": 0.8, "train_loss": 0.7, "clients_nonfinite": 0}]
    read = metrics.host_round_metrics(device, clients_per_round=3)
    assert read[0]["train_loss"] != read[0]["train_loss"]  # NaN
    assert read[1]["train_loss"] == pytest.approx(0.7)


def test_stopped_message_says_nothing_is_lost():
    fresh = preemption.stopped_message("SIGTERM", None, "/w")
    assert "SIGTERM received" in fresh and "nothing is lost" in fresh and "start the run" in fresh
    resumed = preemption.stopped_message("SIGINT", 6, "/w")
    assert "checkpoint after round 6 in /w is intact" in resumed


# ------------------------------------------------------------------------- the default workdir

ARCH_HASH = workdir_lib.default_workdir('digits:fedavg={"d":[0,1],"e":0.25}')


@pytest.mark.parametrize("config_value, data_name, data_path, expected", [
    ("configs/digits.py", "digits", "", "workdirs/digits"),
    ("/site-packages/superfed_jax/configs/digits.py", None, None, "workdirs/digits"),  # the default
    ("configs/digits.py:smoke", "digits", "", "workdirs/digits_smoke"),
    ("configs/digits.py:fedavg=largest", "digits", "", "workdirs/digits_fedavg_largest"),
    ("digits:smoke,fedavg=largest", "digits", "", "workdirs/digits_smoke_fedavg_largest"),
    ("digits:fedavg=largest,smoke", "digits", "", "workdirs/digits_smoke_fedavg_largest"),  # same run
    ("configs/cifar10.py:fedavg=small", "cifar10", "", "workdirs/cifar10_fedavg_small"),
    ("configs/digits.py", "npz", "my_data.npz", "workdirs/npz_my_data"),  # whatever the config file
    ("configs/custom.py", "npz", "/data/sets/my_data.npz", "workdirs/npz_my_data"),
    ("custom:smoke", "npz", "/data/my_data.npz", "workdirs/npz_my_data_smoke"),
    ("custom", "npz", "", "workdirs/custom"),             # no file yet: check_config will ask for one
    ("my experiment.py", "digits", "", "workdirs/my_experiment"),
    ("digits:smoke", "npz", "runs/a b.npz", "workdirs/npz_a_b_smoke"),
])
def test_default_workdir_names_the_config_its_variant_and_the_npz_file(config_value, data_name,
                                                                         data_path, expected):
    assert workdir_lib.default_workdir(config_value, data_name, data_path) == expected


def test_default_workdir_of_an_arch_json_is_a_short_stable_hash():
    assert re.fullmatch(r"workdirs/digits_fedavg_[0-9a-f]{8}", ARCH_HASH)
    # The same arch, spaced or ordered otherwise: the same workdir (a resume finds it); another: another.
    assert workdir_lib.default_workdir('digits:fedavg={ "e": 0.25, "d": [0, 1] }') == ARCH_HASH
    assert workdir_lib.default_workdir('digits:fedavg={"d":[0,1],"e":0.5}') != ARCH_HASH
    assert workdir_lib.default_workdir('digits:smoke,fedavg={"d":[0,1],"e":0.25}') == (
        ARCH_HASH.replace("digits_", "digits_smoke_"))


def test_an_io_message_keeps_the_os_reason_after_a_long_path():
    """tensorstore puts the reason after the paths; cut at 300 characters it was lost under deep workdirs."""
    deep = "/tmp/" + "d" * 250
    text = (f'OUT_OF_RANGE: Error writing "round/0" in OCDBT database at local file "{deep}/ocdbt/": Failed '
            f'writing: "{deep}/ocdbt/d/7250": Failed to write 14093 bytes to file 20: File too large '
            "[os_error_code='27']")
    message = workdir_lib.io_error_message(RuntimeError(text), "/nonexistent", "saving the checkpoint")
    assert message.startswith("saving the checkpoint failed: /nonexistent: OUT_OF_RANGE: Error writing")
    assert "... File too large. Nothing was lost" in message
