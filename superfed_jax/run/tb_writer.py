"""TensorBoard scalars and config of a run, written with tensorboardX (no TensorFlow needed).

Under ``WORKDIR/tb/``; view with ``tensorboard --logdir WORKDIR/tb``. `write_record` writes every numeric
field of a record as one scalar at step ``record["round"]``; `write_rounds` writes the rows of
``rounds.jsonl`` as ``rounds/<field>`` scalars (a point per round, at the time the round finished);
`write_config` writes the config as text (``config``) and as hparams (flat ``section.field`` values). A resumed run opens its writer with
``purge_step`` = the first round it will write again, so TensorBoard hides the events the interrupted run
wrote at or after that round instead of drawing two overlapping curves.

    with open_writer(workdir) as writer:
        for record in records:
            write_record(writer, record)

Events are written synchronously through tensorboardX's event-file writer and its protobufs. Its
`SummaryWriter` hands events to a background thread whose `flush()` does not wait for the queue, so a
record could still be missing from disk after a flush (or lost if the process is killed); here a record is
on disk when `write_record` returns.
"""
import json
import numbers
import os
import time
from typing import Optional

from superfed_jax import _extras

__all__ = ["ScalarWriter", "open_writer", "write_record", "write_rounds", "write_config", "close_writer",
           "scalars_of", "flat_hparams", "ROUNDS_PREFIX"]

ROUNDS_PREFIX = "rounds/"  # tags of the per-round scalars: rounds/train_loss, rounds/seconds, ...


def _tensorboardx():
    """tensorboardX's summary, event-file writer and event protobuf modules.

    Imported when a writer is opened, not when the driver imports this module: tensorboardX is the
    optional 'tensorboard' extra, and importing the package must not need it.
    """
    return (_extras.require("tensorboardX.summary", "tensorboard"),
            _extras.require("tensorboardX.event_file_writer", "tensorboard"),
            _extras.require("tensorboardX.proto.event_pb2", "tensorboard"))


class ScalarWriter:
    """One TensorBoard event file, written synchronously; a context manager that closes it."""

    def __init__(self, logdir: str, purge_step: Optional[int] = None):
        self._summary_lib, writer_lib, self._event_pb2 = _tensorboardx()
        event_pb2 = self._event_pb2
        os.makedirs(logdir, exist_ok=True)
        # Event files are named by the second they were opened and opened with 'wb', so a second writer
        # within the same second (a quick resume) would overwrite the first. A nanosecond suffix keeps
        # the names distinct and in the chronological order TensorBoard reads them in.
        self._events = writer_lib.EventsWriter(os.path.join(logdir, "events"), f".{time.time_ns()}")
        if purge_step is not None:
            # What TensorBoard reads as a restart: earlier events at steps >= purge_step are discarded.
            self._write(event_pb2.Event(step=purge_step, file_version="brain.Event:2"))
            self._write(event_pb2.Event(step=purge_step, session_log=event_pb2.SessionLog(
                status=event_pb2.SessionLog.START)))
        self._closed = False

    def _write(self, event, wall_time: Optional[float] = None) -> None:
        event.wall_time = time.time() if wall_time is None else wall_time
        self._events.write_event(event)

    def add_scalar(self, tag: str, value: float, step: int, wall_time: Optional[float] = None) -> None:
        """Appends one scalar event (not yet flushed), stamped `wall_time` (default: now)."""
        summary = self._summary_lib.scalar(tag, float(value))
        self._write(self._event_pb2.Event(step=int(step), summary=summary), wall_time)

    def add_text(self, tag: str, text: str, step: int) -> None:
        """Appends one text event (Markdown, shown by TensorBoard's text plugin; not yet flushed)."""
        self._write(self._event_pb2.Event(step=int(step), summary=self._summary_lib.text(tag, text)))

    def add_hparams(self, hparams: dict, metric_tags: list[str]) -> None:
        """Appends the hparams plugin's experiment and session for this event file's run.

        The metrics shown beside the hparams are the scalars `metric_tags` of the same directory (their
        last values); tensorboardX's own `add_hparams` would instead open a second run directory.
        """
        for summary in self._summary_lib.hparams(hparams, dict.fromkeys(metric_tags, 0.0)):
            self._write(self._event_pb2.Event(summary=summary))

    def flush(self) -> None:
        """Writes everything appended so far to disk."""
        self._events.flush()

    def close(self) -> None:
        """Flushes and closes the event file; later calls do nothing."""
        if not self._closed:
            self._events.close()
            self._closed = True

    def __enter__(self) -> "ScalarWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_writer(workdir: str, purge_step: Optional[int] = None) -> ScalarWriter:
    """A scalar writer for a new event file in ``WORKDIR/tb/`` (created if missing).

    Args:
      workdir: the run's work directory.
      purge_step: for a resumed run, the first round it writes again: TensorBoard then discards events
        of earlier writers in this directory at steps >= purge_step. None for a fresh run.
    """
    return ScalarWriter(os.path.join(workdir, "tb"), purge_step)


def scalars_of(record: dict) -> dict[str, float]:
    """The fields of a metrics record that become scalars: numeric values except ``round`` and booleans."""
    return {key: float(value) for key, value in record.items()
            if key != "round" and isinstance(value, numbers.Real) and not isinstance(value, bool)}


def write_record(writer: ScalarWriter, record: dict) -> None:
    """Writes every numeric field of ``record`` as a scalar at step ``record["round"]``, then flushes.

    Flushing at every record (an evaluation boundary, rare) keeps TensorBoard current during a run and
    loses nothing if the run is killed.
    """
    if "round" not in record:
        raise ValueError(f"metrics record without a 'round' field: {sorted(record)}")
    step = int(record["round"])
    for key, value in scalars_of(record).items():
        writer.add_scalar(key, value, step)
    writer.flush()


def write_rounds(writer: ScalarWriter, rows: list[dict]) -> None:
    """Writes each row of rounds.jsonl as ``rounds/<field>`` scalars at step ``row["round"]``, then flushes.

    Every numeric field but ``round`` and ``wall_time`` is a scalar; ``wall_time`` (when the round
    finished) stamps its events, so TensorBoard's 'relative' and 'wall' axes show the run's real pace.
    """
    for row in rows:
        wall_time = row.get("wall_time")
        for key, value in scalars_of(row).items():
            if key != "wall_time":
                writer.add_scalar(ROUNDS_PREFIX + key, value, int(row["round"]), wall_time)
    writer.flush()


def flat_hparams(config: dict, prefix: str = "") -> dict:
    """A nested config as flat ``section.field`` -> value for TensorBoard's hparams.

    Numbers, booleans and strings stay as they are; None becomes 'None' and any other value (a tuple such
    as a space's widths, a list) its JSON text, since hparams hold scalars only.
    """
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_hparams(value, name + "."))
        elif isinstance(value, (bool, numbers.Real, str)):
            flat[name] = value
        else:
            flat[name] = "None" if value is None else json.dumps(value)
    return flat


def write_config(writer: ScalarWriter, config: dict, metric_tags: list[str], step: int = 0) -> None:
    """Writes the run's config as text (tag ``config``, the JSON of config.json) and as hparams, then flushes.

    Args:
      config: the config as a nested dict (`ConfigDict.to_dict()`).
      metric_tags: scalar tags the hparams view shows beside the config (e.g. the tracked archs'
        validation and test accuracies).
      step: the round the session starts from.
    """
    # Indented by four spaces: Markdown code, so TensorBoard shows the JSON as written.
    text = "\n".join("    " + line for line in json.dumps(config, indent=2, sort_keys=True).splitlines())
    writer.add_text("config", text, step)
    writer.add_hparams(flat_hparams(config), metric_tags)
    writer.flush()


def close_writer(writer: ScalarWriter) -> None:
    """Flushes and closes the writer's event file."""
    writer.close()
