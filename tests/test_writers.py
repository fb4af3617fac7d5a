"""The metric-writer seam (superfed_jax/run/writers.py), the W&B writer in W&B's offline mode, the
`log` config fields and `load_run`.

One short digits run is trained in this process (4 rounds, evaluated after rounds 2 and 4) with a fake
writer beside the real ones: it must receive every row of rounds.jsonl and every record of metrics.jsonl,
in order, and the files and TensorBoard must hold exactly what it received.
"""
import glob
import importlib.util
import json
import math
import os
import sys

import pytest

from superfed_jax import config as config_lib
from superfed_jax import validation
from superfed_jax.reports import run_log
from superfed_jax.run import writers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = 4


class FakeWriter(writers.MetricWriter):
    """Remembers every call, in order."""

    def __init__(self):
        self.calls = []

    def write_config(self, config, tags, step):
        self.calls.append(("config", config, tags, step))

    def write_rounds(self, rows):
        self.calls.append(("rounds", [dict(row) for row in rows]))

    def write_record(self, record):
        self.calls.append(("record", dict(record)))

    def close(self):
        self.calls.append(("close",))

    def rows(self):
        return [row for call in self.calls if call[0] == "rounds" for row in call[1]]

    def records(self):
        return [call[1] for call in self.calls if call[0] == "record"]


# --------------------------------------------------------------------------------------- MultiWriter


def test_multi_writer_passes_every_call_to_each_writer_in_order():
    first, second = FakeWriter(), FakeWriter()
    multi = writers.MultiWriter([first, second])
    multi.write_config({"seed": 0}, ["a/val_accuracy"], 0)
    multi.write_rounds([{"round": 1, "train_loss": 1.0}])
    multi.write_record({"round": 1, "a/val_accuracy": 0.5})
    multi.close()
    assert first.calls == second.calls == [
        ("config", {"seed": 0}, ["a/val_accuracy"], 0), ("rounds", [{"round": 1, "train_loss": 1.0}]),
        ("record", {"round": 1, "a/val_accuracy": 0.5}), ("close",)]


def test_multi_writer_closes_every_writer_when_one_fails():
    class Failing(FakeWriter):
        def close(self):
            raise OSError("disk full")

    last = FakeWriter()
    with pytest.raises(OSError, match="disk full"):
        writers.MultiWriter([Failing(), last]).close()
    assert last.calls == [("close",)]


def test_json_lines_writer_appends_what_the_metrics_helpers_write(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"round": 1}\n')  # a resumed run's kept record
    writer = writers.JsonLinesWriter(str(tmp_path))
    rows = [{"round": 2, "train_loss": 0.5, "wall_time": 1.5}, {"round": 3, "train_loss": float("nan")}]
    writer.write_rounds(rows)
    writer.write_record({"round": 3, "a/val_accuracy": 0.25})
    assert (tmp_path / "rounds.jsonl").read_text() == "".join(json.dumps(r) + "\n" for r in rows)  # flushed
    writer.close()
    assert (tmp_path / "metrics.jsonl").read_text() == '{"round": 1}\n{"round": 3, "a/val_accuracy": 0.25}\n'


def test_other_processes_than_0_get_no_writer(tmp_path):
    multi = writers.open_writers(config_lib.base_config(), str(tmp_path), 0, writer=False)
    assert multi.writers == [] and os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------- config fields


def test_log_fields_default_to_off_and_are_resumable():
    from superfed_jax import config_schema
    config = config_lib.base_config()
    assert (config.log.wandb_project, config.log.wandb_mode) == ("", "online")
    assert not writers.wandb_enabled(config)
    assert "log." in config_schema.resumable_prefixes()
    assert config_schema.when_absent()["log.wandb_project"] == ""
    # A config saved before the section existed means no W&B run.
    assert not writers.wandb_enabled(config_lib.base_config().to_dict() | {"log": {}})


@pytest.mark.parametrize("field, value, message", [
    ("wandb_mode", "disabled", "log.wandb_mode='disabled': allowed values are ['online', 'offline']"),
    ("wandb_project", "me/project", "log.wandb_project='me/project': allowed '' or a W&B project name"),
    ("wandb_project", "x" * 129, "at most 128 characters"),
    ("wandb_project", " spaced ", "no surrounding spaces"),
])
def test_log_fields_are_checked(field, value, message):
    config = config_lib.base_config()
    config.log[field] = value
    with pytest.raises(ValueError) as error:
        validation.check_config(config, check_files=False)
    assert message in str(error.value)


def test_a_project_without_wandb_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed: import raises ImportError
    config = config_lib.base_config()
    config.log.wandb_project = "superfed"
    expected = (r"wandb is needed for logging to Weights & Biases \(set by log.wandb_project\) "
                r"\(extra 'wandb'\): pip install 'superfed_jax\[wandb\]'")
    with pytest.raises(ImportError, match=expected):
        writers.check_extras(config)
    config.log.wandb_project = ""
    writers.check_extras(config)  # off: wandb is not needed


# ---------------------------------------------------------------------------------- W&B, offline mode

ROWS = [{"round": 1, "beta": 0.5, "train_loss": 2.0, "clients_nonfinite": 0, "seconds": 0.25, "wall_time": 10.0},
        {"round": 2, "beta": 0.25, "train_loss": 1.5, "clients_nonfinite": 1, "seconds": 0.5, "wall_time": 11.0}]
RECORD = {"round": 2, "beta": 0.25, "train_loss": 1.75, "clients_nonfinite": 1, "smallest/val_accuracy": 0.625}


def test_wandb_writer_offline_logs_rounds_and_records_at_their_round(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    for key in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    workdir = tmp_path / "digits_smoke"
    workdir.mkdir()
    logged = []
    real_log = wandb.sdk.wandb_run.Run.log

    def spy(run, data, step=None, **kwargs):  # what reaches W&B, and still logged by W&B itself
        logged.append((step, dict(data)))
        return real_log(run, data, step=step, **kwargs)

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", spy)
    writer = writers.WandbWriter(str(workdir), "superfed-test", "offline", start_round=0)
    writer.write_config({"seed": 3, "fl": {"rounds": 2}}, ["smallest/val_accuracy"], 0)
    writer.write_rounds(ROWS)
    writer.write_record(RECORD)
    assert dict(writer._run.config)["seed"] == 3 and writer._run.group == "digits_smoke"
    assert writer._run.name == "digits_smoke-from-0"
    writer.close()
    assert logged == [
        (1, {"rounds/beta": 0.5, "rounds/train_loss": 2.0, "rounds/clients_nonfinite": 0.0, "rounds/seconds": 0.25}),
        (2, {"rounds/beta": 0.25, "rounds/train_loss": 1.5, "rounds/clients_nonfinite": 1.0, "rounds/seconds": 0.5}),
        (2, {"beta": 0.25, "train_loss": 1.75, "clients_nonfinite": 1.0, "smallest/val_accuracy": 0.625})]
    # The offline run is on disk under WORKDIR/wandb, for `wandb sync`; its history holds the keys.
    [run_file] = glob.glob(str(workdir / "wandb" / "offline-run-*" / "run-*.wandb"))
    data = open(run_file, "rb").read()
    assert b"smallest/val_accuracy" in data and b"rounds/train_loss" in data and b"superfed-test" in data


# --------------------------------------------------------------------------- one short run, in process


def short_run_config():
    """configs/digits.py:smoke shrunk like tests/trained_run.py: 4 rounds, evaluated after 2 and 4."""
    spec = importlib.util.spec_from_file_location("digits_config", os.path.join(ROOT, "configs", "digits.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    config.fl.update(rounds=ROUNDS, num_clients=8, clients_per_round=4)
    config.eval.every_rounds = 2
    config.checkpoint.every_rounds = ROUNDS
    config.space.update(stem_width=8, stage_widths=(16, 32), expand_choices=(0.25, 0.5, 0.75, 1.0))
    config.memory.check = False
    return config


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """(workdir, the fake writer's calls) of one short run trained here with a fake writer added."""
    from superfed_jax.run import train
    workdir = str(tmp_path_factory.mktemp("short_run"))
    fake = FakeWriter()
    real_open = writers.open_writers

    def open_with_fake(*args, **kwargs):
        multi = real_open(*args, **kwargs)
        multi.writers.append(fake)
        return multi

    patch = pytest.MonkeyPatch()
    patch.setattr(writers, "open_writers", open_with_fake)
    try:
        config = short_run_config()
        validation.check_config(config)
        train.train_and_evaluate(config, workdir)
    finally:
        patch.undo()
    return workdir, fake


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def same(a, b):
    """Equal, NaN equal to NaN (a round whose every client failed has a NaN train_loss)."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def test_a_fake_writer_receives_every_row_and_record_in_order(short_run):
    workdir, fake = short_run
    kinds = [call[0] for call in fake.calls]
    assert kinds[0] == "config" and kinds[-1] == "close" and kinds.count("config") == kinds.count("close") == 1
    _, config, tags, step = fake.calls[0]
    assert step == 0
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.loads(json.dumps(config)) == json.load(f)  # tuples are JSON lists there
    assert tags and all(tag.endswith(("/val_accuracy", "/test_accuracy")) for tag in tags)
    assert [row["round"] for row in fake.rows()] == list(range(1, ROUNDS + 1))
    assert [record["round"] for record in fake.records()] == [2, 4]
    # The rows of an evaluated round reach the writers before its record.
    last_row = 0
    for call in fake.calls:
        if call[0] == "rounds":
            last_row = call[1][-1]["round"]
        elif call[0] == "record":
            assert last_row == call[1]["round"]


def test_the_files_hold_exactly_what_the_writers_received(short_run):
    workdir, fake = short_run
    rows = read_lines(os.path.join(workdir, "rounds.jsonl"))
    records = read_lines(os.path.join(workdir, "metrics.jsonl"))
    assert len(rows) == len(fake.rows()) and all(same(a, b) for a, b in zip(rows, fake.rows()))
    assert len(records) == len(fake.records()) and all(same(a, b) for a, b in zip(records, fake.records()))
    # Byte for byte what the driver wrote before the seam: one json.dumps line per row or record.
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        assert f.read() == "".join(json.dumps(r) + "\n" for r in fake.records())


def test_tensorboard_holds_the_rows_and_records(short_run):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    workdir, fake = short_run
    accumulator = event_accumulator.EventAccumulator(os.path.join(workdir, "tb"), purge_orphaned_data=True)
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert [e.step for e in accumulator.Scalars("rounds/train_loss")] == list(range(1, ROUNDS + 1))
    accuracy = next(tag for tag in tags if tag.endswith("/val_accuracy"))
    assert [(e.step, round(e.value, 5)) for e in accumulator.Scalars(accuracy)] == [
        (r["round"], round(r[accuracy], 5)) for r in fake.records()]
    assert "train_loss" not in tags  # the per-round summary fields are under rounds/ only


# ------------------------------------------------------------------------------------------ load_run


def test_load_run_as_lists(short_run):
    workdir, fake = short_run
    run = run_log.load_run(workdir, as_frames=False)
    assert run.workdir == workdir and run.config["fl"]["rounds"] == ROUNDS
    assert all(same(a, b) for a, b in zip(run.rounds, fake.rows())) and len(run.rounds) == ROUNDS
    assert all(same(a, b) for a, b in zip(run.evaluations, fake.records())) and len(run.evaluations) == 2


def test_load_run_as_data_frames(short_run):
    pytest.importorskip("pandas")
    import superfed_jax
    workdir, fake = short_run
    run = superfed_jax.load_run(workdir)
    assert list(run.rounds["round"]) == list(range(1, ROUNDS + 1)) and list(run.evaluations["round"]) == [2, 4]


def test_load_run_is_public_and_lazy():
    import superfed_jax
    assert "load_run" in superfed_jax.__all__ and superfed_jax.load_run is run_log.load_run


def test_load_run_without_pandas_gives_lists(tmp_path, monkeypatch):
    monkeypatch.setattr(run_log.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pandas" else importlib.util.find_spec(name, *a))
    (tmp_path / "config.json").write_text('{"seed": 0}')
    (tmp_path / "metrics.jsonl").write_text('{"round": 2, "a/val_accuracy": 0.5}\n{"round": 4, "a/v')  # torn
    run = run_log.load_run(str(tmp_path))
    assert run.config == {"seed": 0} and run.rounds == []  # no rounds.jsonl: an older run
    assert run.evaluations == [{"round": 2, "a/val_accuracy": 0.5}]


def test_load_run_names_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        run_log.load_run(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        run_log.load_run(str(tmp_path))
    (tmp_path / "config.json").write_text('{"seed": 0}')
    (tmp_path / "rounds.jsonl").write_text('{"round": 1}\nnot json\n{"round": 3}\n')
    with pytest.raises(ValueError, match=r"rounds.jsonl, line 2: not valid JSON"):
        run_log.load_run(str(tmp_path), as_frames=False)
