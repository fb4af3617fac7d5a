"""Damaged JSON files of a run (config.json, space.json, cost.json, model.json): one message naming the
file, what is wrong and what to do, never a bare JSON, Unicode or attribute error. Issue 14 item 4 and
issue 15 item 9. The files are written by hand here: no run is trained."""
import json
import os
import subprocess
import sys

import pytest

from superfed_jax import _json_file
from superfed_jax.configs import digits
from superfed_jax.posttrain import run_dir
from superfed_jax.reports import run_record
from superfed_jax.run import resume
from superfed_jax.run import train
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet.family import OFAResNet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = digits.get_config("smoke")

# (what is written into the file, a fragment of the message). A directory stands for an unreadable file:
# the tests run as root, for whom permissions do not stop a read.
DAMAGE = [
    (b'{"seed": ', "not valid JSON (Expecting value: line 1 column 10"),
    (b"", "empty (0 bytes of JSON)"),
    (b"  \n", "empty (0 bytes of JSON)"),
    (b'{"a": 1}\xff\xfe', "not text (byte 8 is b'\\xff', not UTF-8)"),
    (b"[1, 2]", "holds a list, not a JSON object"),
    (b'"config"', "holds a string, not a JSON object"),
    (b"null", "holds null, not a JSON object"),
    (None, "cannot be read (Is a directory)"),
]


def damage(path, content):
    """Replaces the file at `path` by `content` (bytes), or by a directory when `content` is None."""
    if os.path.isfile(path):
        os.remove(path)
    if content is None:
        os.makedirs(path)
    else:
        with open(path, "wb") as f:
            f.write(content)


@pytest.mark.parametrize("content, problem", DAMAGE)
def test_read_object_names_the_file_the_problem_and_the_advice(tmp_path, content, problem):
    path = str(tmp_path / "x.json")
    damage(path, content)
    with pytest.raises(_json_file.JsonFileError) as info:
        _json_file.read_object(path, "do this")
    assert str(info.value).startswith(f"{path}: ") and problem in str(info.value)
    assert str(info.value).endswith("; do this")
    assert isinstance(info.value, ValueError)  # every command line reports a ValueError as `error:`


def test_read_object_reads_an_object_and_leaves_a_missing_file_to_the_caller(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"a": [1, 2.5], "b": null}')
    assert _json_file.read_object(str(path), "") == {"a": [1, 2.5], "b": None}
    with pytest.raises(FileNotFoundError):
        _json_file.read_object(str(tmp_path / "missing.json"), "")


# ------------------------------------------------------------------------------- resuming a run


def fake_checkpointed_run(workdir, config=SMOKE):
    """A workdir as a run leaves it after its checkpoint of round 1, as far as the resume checks read it:
    the checkpoint's host JSON (with the run's config), config.json and metrics.jsonl."""
    host = os.path.join(workdir, "checkpoints", "1", "host")
    os.makedirs(host)
    with open(os.path.join(host, "metadata"), "w") as f:
        json.dump({"round": 1, "config": config.to_dict(), "pending": []}, f)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.write('{"round": 1}\n')
    return host


@pytest.mark.parametrize("content, problem", DAMAGE[::2])
def test_a_damaged_config_json_stops_a_resume_naming_the_file_and_the_copy(tmp_path, content, problem):
    workdir = str(tmp_path)
    host = fake_checkpointed_run(workdir)
    path = os.path.join(workdir, "config.json")
    damage(path, content)
    with pytest.raises(ValueError) as info:
        train.check_resume_allowed(SMOKE, workdir, writer=True)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and problem in message
    assert f"the 'config' entry of {os.path.join(host, 'metadata')}" in message
    assert "delete config.json and rerun the training command to resume" in message


def test_deleting_the_damaged_config_json_as_advised_lets_the_resume_checks_pass(tmp_path):
    fake_checkpointed_run(str(tmp_path))
    os.remove(tmp_path / "config.json")
    train.check_resume_allowed(SMOKE, str(tmp_path), writer=True)  # the checkpoint's config is compared


def test_without_a_checkpoint_the_advice_does_not_promise_a_copy(tmp_path):
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ValueError, match="nothing else in this workdir holds the run's config"):
        resume.read_saved_config(str(tmp_path))


def test_the_training_command_exits_2_with_one_message_on_a_damaged_config_json(tmp_path):
    workdir = tmp_path / "run"
    os.makedirs(workdir)
    fake_checkpointed_run(str(workdir))
    damage(str(workdir / "config.json"), b"\x00\x00\x00")  # e.g. zeros left by a crash of the filesystem
    before = {name: (workdir / name).read_bytes() for name in ("config.json", "metrics.jsonl")}
    result = subprocess.run(
        [sys.executable, "launch.py", "--config=configs/digits.py:smoke", f"--workdir={workdir}"], cwd=ROOT,
        capture_output=True, text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {workdir / 'config.json'}: "), result.stderr
    assert "Traceback (most recent call last)" not in result.stderr and "not valid JSON" in result.stderr
    assert before == {name: (workdir / name).read_bytes() for name in before}  # nothing rewritten


@pytest.mark.parametrize("content, problem", DAMAGE[1::2])
def test_a_damaged_space_json_stops_a_resume_naming_the_file(tmp_path, content, problem):
    fake_checkpointed_run(str(tmp_path))
    path = str(tmp_path / "space.json")
    damage(path, content)
    with pytest.raises(ValueError) as info:
        train.check_same_data_shapes(str(tmp_path), OFAResNet(space_lib.SearchSpace()))
    assert str(info.value).startswith(f"{path}: ") and problem in str(info.value)
    assert "delete it and rerun the same command" in str(info.value)


# ------------------------------------------------------------------------ reading a finished run


@pytest.mark.parametrize("name", ["config.json", "space.json", "cost.json"])
def test_the_report_names_a_damaged_run_file(tmp_path, name):
    fake_checkpointed_run(str(tmp_path))
    (tmp_path / "space.json").write_text(json.dumps(SMOKE.space.to_dict()))
    (tmp_path / "cost.json").write_text("{}")
    path = str(tmp_path / name)
    damage(path, b"[]")
    with pytest.raises(ValueError) as info:
        run_record.read_run(str(tmp_path))
    assert str(info.value).startswith(f"{path}: holds a list, not a JSON object; ")
    assert ("rerun the training command" in str(info.value))


def test_a_metrics_file_that_is_not_text_is_named(tmp_path):
    fake_checkpointed_run(str(tmp_path))
    damage(str(tmp_path / "metrics.jsonl"), b'{"round": 1}\n\xff\n')
    with pytest.raises(ValueError, match="metrics.jsonl: not text"):
        run_record.read_run(str(tmp_path))


@pytest.mark.parametrize("edit, problem", [
    ({"no_such_section": 1}, "no_such_section"),
    ({"fl": {"rounds": 0}}, "fl.rounds=0"),
    ({"space": [1, 2]}, "space: [1, 2] is not a section"),
])
def test_posttrain_names_a_config_json_it_cannot_use(tmp_path, edit, problem):
    saved = SMOKE.to_dict()
    for key, value in edit.items():
        saved[key] = {**saved[key], **value} if isinstance(value, dict) else value
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError) as info:
        run_dir.saved_config(str(tmp_path))
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'config.json'}: not a usable run config: ") and problem in message
    assert run_dir.saved_config.__doc__  # documented


def test_posttrain_reads_an_intact_config_json_as_the_run_had_it(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(SMOKE.to_dict()))
    assert run_dir.saved_config(str(tmp_path)).to_dict() == SMOKE.to_dict()


def test_a_damaged_latency_cache_is_named_with_what_to_do(tmp_path):
    from superfed_jax.posttrain import latency
    path = tmp_path / "latency_cache.json"
    path.write_text('{"machine": {"arch": 1.5')
    with pytest.raises(ValueError) as info:
        latency.load_cache(str(path))
    assert str(info.value).startswith(f"{path}: not valid JSON")
    assert str(info.value).endswith("delete it to measure them again")
    path.write_text('{"machine": {"arch": 1.5}}')
    assert latency.load_cache(str(path)) == {"machine": {"arch": 1.5}}
