"""Tests for superfed_jax.run.checkpoint, superfed_jax.run.resume and superfed_jax.run.preemption (in-process parts).

The end-to-end behaviour (kill and resume, SIGTERM) is in test_resume.py; here: a checkpoint restores
exactly, only the newest k are kept, damaged checkpoints are detected and skipped, a half-written save is
never taken for a checkpoint, the resume config check, metrics rewinding, and the signal flag.
"""
import json
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import pytest

import tiny_setup as T
from superfed_jax import config as config_lib
from superfed_jax.federated import round as fr
from superfed_jax.run import checkpoint
from superfed_jax.run import preemption
from superfed_jax.run import resume


def make_state(round_num=0, seed=0):
    state = fr.init_state(T.as_jnp(T.init_params(seed)), seed, T.NUM_CLIENTS)
    tracking = state.tracking.replace(n_max=jnp.arange(T.NUM_CLIENTS, dtype=jnp.int32))
    return state.replace(round=jnp.int32(round_num), tracking=tracking)


def save_steps(workdir, steps, keep=5):
    manager = checkpoint.make_manager(str(workdir), keep)
    for step in steps:
        checkpoint.save(manager, step, make_state(step, seed=step), {"pending": [step * 0.5]})
    return manager


def data_files(workdir, step):
    """The array data files of checkpoint `step`, largest first."""
    root = os.path.join(checkpoint.checkpoint_dir(str(workdir)), str(step), "state")
    files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f"{os.sep}d" in d]
    return sorted(files, key=os.path.getsize, reverse=True)


def test_save_restore_roundtrip_is_exact(tmp_path):
    manager = save_steps(tmp_path, [3])
    restored = checkpoint.restore_newest_intact(manager, make_state())
    assert restored.skipped == [] and restored.host["round"] == 3 and restored.host["pending"] == [1.5]
    assert T.trees_equal(restored.state, make_state(3, seed=3))
    assert isinstance(restored.state, fr.ServerState)


def test_keeps_only_the_newest_k(tmp_path):
    manager = save_steps(tmp_path, [1, 2, 3, 4], keep=2)
    assert sorted(manager.all_steps()) == [3, 4]
    assert sorted(os.listdir(checkpoint.checkpoint_dir(str(tmp_path)))) == ["3", "4"]


def test_no_checkpoint_gives_none(tmp_path):
    assert checkpoint.restore_newest_intact(checkpoint.make_manager(str(tmp_path), 2), make_state()) is None


def test_digest_changes_with_any_value():
    state = make_state()
    changed = state.replace(params=jax.tree.map(lambda x: x.at[(0,) * x.ndim].add(1e-7), state.params))
    assert checkpoint.state_digest(state) == checkpoint.state_digest(make_state())
    assert checkpoint.state_digest(changed) != checkpoint.state_digest(state)


@pytest.mark.parametrize("damage", ["truncate", "overwrite", "delete_state", "bad_host_json"])
def test_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path, damage):
    manager = save_steps(tmp_path, [1, 2])
    newest = os.path.join(checkpoint.checkpoint_dir(str(tmp_path)), "2")
    if damage == "truncate":
        path = data_files(tmp_path, 2)[0]
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    elif damage == "overwrite":  # same length, different bytes: only the checksum can tell
        for path in data_files(tmp_path, 2):
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                f.seek(size // 2)
                f.write(bytes(255 - b for b in open(path, "rb").read()[size // 2:size // 2 + 64]))
    elif damage == "delete_state":
        shutil.rmtree(os.path.join(newest, "state"))
    else:
        with open(os.path.join(newest, "host", "metadata"), "w") as f:
            f.write("{not json")
    restored = checkpoint.restore_newest_intact(manager, make_state())
    assert restored.host["round"] == 1
    assert T.trees_equal(restored.state, make_state(1, seed=1))
    assert len(restored.skipped) == 1 and restored.skipped[0].startswith("step 2:")
    assert "checkpoints_damaged" in restored.skipped[0] and manager.all_steps() == [1]
    assert os.path.isdir(tmp_path / "checkpoints_damaged" / "2")
    checkpoint.save(manager, 2, make_state(2), {"pending": []})  # the step can be written again
    assert checkpoint.restore_newest_intact(manager, make_state()).host["round"] == 2


def test_no_intact_checkpoint_refuses_to_start_over(tmp_path):
    manager = save_steps(tmp_path, [1, 2])
    for step in (1, 2):
        shutil.rmtree(os.path.join(checkpoint.checkpoint_dir(str(tmp_path)), str(step), "state"))
    with pytest.raises(checkpoint.NoIntactCheckpoint, match="could be restored") as info:
        checkpoint.restore_newest_intact(manager, make_state())
    assert "step 2:" in str(info.value) and "step 1:" in str(info.value)
    assert "nothing was moved or deleted" in str(info.value) and "use another --workdir" in str(info.value)
    assert "delete that directory" not in str(info.value)  # never advise deleting a run (issue 14.2)
    assert sorted(os.listdir(checkpoint.checkpoint_dir(str(tmp_path)))) == ["1", "2"]


def test_half_written_save_is_not_a_checkpoint(tmp_path):
    """A save killed midway leaves orbax's temporary directory, which is ignored (and cleaned up)."""
    save_steps(tmp_path, [1])
    root = checkpoint.checkpoint_dir(str(tmp_path))
    shutil.copytree(os.path.join(root, "1"), os.path.join(root, "2.orbax-checkpoint-tmp-1700000000"))
    manager = checkpoint.make_manager(str(tmp_path), 3)
    assert manager.all_steps() == [1]
    assert checkpoint.restore_newest_intact(manager, make_state()).host["round"] == 1


# ----------------------------------------------------------------------------------------- resume


def test_config_differences_name_fields_that_may_not_change():
    saved = {"seed": 0, "space": {"stage_widths": [8, 16]}, "fl": {"rounds": 10, "num_clients": 4},
             "eval": {"every_rounds": 5}, "checkpoint": {"keep": 3}}
    current = {"seed": 1, "space": {"stage_widths": (8, 32)}, "fl": {"rounds": 20, "num_clients": 4},
               "eval": {"every_rounds": 1}, "checkpoint": {"keep": 1}}
    assert resume.config_differences(saved, current) == [
        "seed: 0 -> 1", "space.stage_widths: [8, 16] -> [8, 32]"]
    assert resume.config_differences(saved, json.loads(json.dumps(saved))) == []
    with pytest.raises(ValueError, match="may not change on resume") as info:
        resume.check_resumable(saved, current, "/some/run")
    assert "seed: 0 -> 1" in str(info.value) and "fl.rounds" in str(info.value)  # allowed list


def test_config_differences_report_added_and_removed_fields():
    assert resume.config_differences({"a": 1}, {"b": 2}) == ["a: 1 -> '<absent>'", "b: '<absent>' -> 2"]


def test_a_field_a_saved_config_lacks_reads_as_its_absent_value():
    """An optional field compares as its schema `absent` value when a config lacks it."""
    current = config_lib.base_config().to_dict()
    saved = json.loads(json.dumps(current))
    del saved["data"]["tfds_data_dir"]  # absent: ''
    assert resume.config_differences(saved, current) == []
    current["data"]["tfds_data_dir"] = "/elsewhere"
    assert resume.config_differences(saved, current) == ["data.tfds_data_dir: '' -> '/elsewhere'"]


def test_a_run_from_before_weight_by_size_resumes_without_it():
    """A run saved before fl.weight_by_size existed aggregated without it: it resumes with the field off
    (given or not) and is refused with it on."""
    current = config_lib.base_config().to_dict()
    saved = json.loads(json.dumps(current))
    del saved["fl"]["weight_by_size"]
    assert resume.config_differences(saved, current) == []
    assert resume.config_differences(current, saved) == []
    current["fl"]["weight_by_size"] = True
    assert resume.config_differences(saved, current) == ["fl.weight_by_size: False -> True"]


def test_rewind_metrics_drops_later_rounds_and_a_torn_line(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    with open(path, "w") as f:
        for r in (5, 10, 15):
            f.write(json.dumps({"round": r, "x": r / 3}) + "\n")
        f.write('{"round": 20, "x"')  # killed mid-write
    assert [r["round"] for r in resume.rewind_metrics(path, 12)] == [5, 10]
    assert [json.loads(line)["round"] for line in open(path)] == [5, 10]
    assert resume.rewind_metrics(path, 100)[1]["x"] == 10 / 3
    assert resume.rewind_metrics(str(tmp_path / "absent.jsonl"), 3) == []


# ------------------------------------------------------------------------------------- preemption


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_sets_the_flag_and_handlers_are_restored(signum):
    before = signal.getsignal(signum)
    with preemption.catch_termination() as flag:
        assert flag.name is None
        os.kill(os.getpid(), signum)
        assert flag.name == signal.Signals(signum).name
        with pytest.raises(KeyboardInterrupt, match="second"):
            os.kill(os.getpid(), signum)
    assert signal.getsignal(signum) is before


def test_interrupted_message_says_resumable():
    message = str(preemption.Interrupted("SIGTERM", 7, "/w"))
    assert message.startswith("interrupted, resumable") and "round 7" in message
    assert preemption.EXIT_INTERRUPTED not in (0, 1, 2)
