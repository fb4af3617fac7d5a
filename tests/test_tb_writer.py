"""superfed_jax.run.tb_writer: scalars read back from the event files with TensorBoard's own reader."""
import json
import math

import pytest

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

from superfed_jax.run import tb_writer  # noqa: E402


def read_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard shows them (orphaned events purged)."""
    accumulator = event_accumulator.EventAccumulator(str(logdir), purge_orphaned_data=True)
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def test_every_numeric_field_is_a_scalar_at_its_round(tmp_path):
    records = [
        {"round": 25, "beta": 0.5, "train_loss": 1.25, "clients_nonfinite": 0,
         "smallest/val_accuracy": 0.75, "note": "text", "flag": True},
        {"round": 50, "beta": 0.125, "train_loss": 0.5, "clients_nonfinite": 2,
         "smallest/val_accuracy": 0.875, "note": "text", "flag": False},
    ]
    with tb_writer.open_writer(str(tmp_path)) as writer:
        for record in records:
            tb_writer.write_record(writer, record)
    scalars = read_scalars(tmp_path / "tb")
    # Strings and booleans are not scalars; 'round' is the step, not a curve.
    assert set(scalars) == {"beta", "train_loss", "clients_nonfinite", "smallest/val_accuracy"}
    # All values are exact in float32, so they come back exactly.
    assert scalars["beta"] == [(25, 0.5), (50, 0.125)]
    assert scalars["train_loss"] == [(25, 1.25), (50, 0.5)]
    assert scalars["clients_nonfinite"] == [(25, 0.0), (50, 2.0)]
    assert scalars["smallest/val_accuracy"] == [(25, 0.75), (50, 0.875)]


def test_records_are_readable_before_close(tmp_path):
    """write_record flushes: a running job's TensorBoard sees every evaluation so far."""
    writer = tb_writer.open_writer(str(tmp_path))
    tb_writer.write_record(writer, {"round": 3, "train_loss": 2.0})
    assert read_scalars(tmp_path / "tb") == {"train_loss": [(3, 2.0)]}
    tb_writer.close_writer(writer)


def test_nan_is_written(tmp_path):
    with tb_writer.open_writer(str(tmp_path)) as writer:
        tb_writer.write_record(writer, {"round": 1, "train_loss": float("nan")})
    [(step, value)] = read_scalars(tmp_path / "tb")["train_loss"]
    assert step == 1 and math.isnan(value)


def test_resumed_writer_purges_events_after_the_resume_point(tmp_path):
    """A run wrote rounds 1-3, died, and resumes from round 1: its later events are discarded."""
    with tb_writer.open_writer(str(tmp_path)) as writer:
        for step in (1, 2, 3):
            tb_writer.write_record(writer, {"round": step, "train_loss": float(step)})
    with tb_writer.open_writer(str(tmp_path), purge_step=2) as writer:  # same second: distinct files
        tb_writer.write_record(writer, {"round": 2, "train_loss": 20.0})
    assert len(list((tmp_path / "tb").iterdir())) == 2
    assert read_scalars(tmp_path / "tb")["train_loss"] == [(1, 1.0), (2, 20.0)]


def test_record_without_round_is_rejected(tmp_path):
    with tb_writer.open_writer(str(tmp_path)) as writer:
        with pytest.raises(ValueError, match="round"):
            tb_writer.write_record(writer, {"train_loss": 1.0})


def test_scalars_of_keeps_numbers_only():
    record = {"round": 7, "a": 1, "b": 0.5, "c": True, "d": "x", "e": None, "f": [1]}
    assert tb_writer.scalars_of(record) == {"a": 1.0, "b": 0.5}


def test_rounds_are_points_per_round_stamped_when_each_round_finished(tmp_path):
    rows = [{"round": r, "beta": 1.0 / r, "train_loss": 3.0 - r / 4, "clients_nonfinite": r % 2,
             "seconds": 0.25 * r, "wall_time": 1000.0 + r} for r in (1, 2, 3)]
    with tb_writer.open_writer(str(tmp_path)) as writer:
        tb_writer.write_rounds(writer, rows)
    accumulator = event_accumulator.EventAccumulator(str(tmp_path / "tb"))
    accumulator.Reload()
    assert set(accumulator.Tags()["scalars"]) == {"rounds/beta", "rounds/train_loss",
                                                  "rounds/clients_nonfinite", "rounds/seconds"}
    for field in ("beta", "train_loss", "clients_nonfinite", "seconds"):
        events = accumulator.Scalars(f"rounds/{field}")
        assert [e.step for e in events] == [1, 2, 3]
        assert [e.value for e in events] == pytest.approx([row[field] for row in rows], rel=1e-7)
        assert [e.wall_time for e in events] == [1001.0, 1002.0, 1003.0]


def test_config_is_text_and_flat_hparams(tmp_path):
    config = {"seed": 3, "fl": {"rounds": 150, "chunk_size": None},
              "space": {"stage_widths": [32, 64], "name": "digits", "flip": False}}
    assert tb_writer.flat_hparams(config) == {"seed": 3, "fl.rounds": 150, "fl.chunk_size": "None",
                                              "space.stage_widths": "[32, 64]", "space.name": "digits",
                                              "space.flip": False}
    with tb_writer.open_writer(str(tmp_path)) as writer:
        tb_writer.write_config(writer, config, ["smallest/val_accuracy"], step=4)
    accumulator = event_accumulator.EventAccumulator(str(tmp_path / "tb"))
    accumulator.Reload()
    [text] = accumulator.Tensors("config/text_summary")
    assert text.step == 4
    shown = text.tensor_proto.string_val[0].decode()
    assert json.loads("\n".join(line[4:] for line in shown.splitlines())) == config
    from tensorboardX.proto import plugin_hparams_pb2
    content = accumulator.PluginTagToContent("hparams")
    start = plugin_hparams_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    values = start.session_start_info.hparams
    assert values["seed"].number_value == 3 and values["fl.rounds"].number_value == 150
    assert values["space.name"].string_value == "digits" and values["space.flip"].bool_value is False
    assert values["space.stage_widths"].string_value == "[32, 64]"
    experiment = plugin_hparams_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert [m.name.tag for m in experiment.experiment.metric_infos] == ["smallest/val_accuracy"]
