"""TensorBoard scalars of a run's evaluation records, written with tensorboardX (no TensorFlow needed).

Every record of `metrics.jsonl` becomes one scalar per numeric field at step ``record["round"]``, under
``WORKDIR/tb/``; view with ``tensorboard --logdir WORKDIR/tb``. A resumed run opens its writer with
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
import numbers
import os
import time
from typing import Optional

from superfed_jax import _extras

__all__ = ["ScalarWriter", "open_writer", "write_record", "close_writer", "scalars_of"]


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

    def _write(self, event) -> None:
        event.wall_time = time.time()
        self._events.write_event(event)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        """Appends one scalar event (not yet flushed)."""
        summary = self._summary_lib.scalar(tag, float(value))
        self._write(self._event_pb2.Event(step=int(step), summary=summary))

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


def close_writer(writer: ScalarWriter) -> None:
    """Flushes and closes the writer's event file."""
    writer.close()
