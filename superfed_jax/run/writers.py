"""Where a run's metrics go: a small writer interface and its implementations.

The driver (`superfed_jax.run.train`) hands every output of a session to one `MetricWriter`:

  write_config(config, tags, step)  once, when the session starts (after compiling, before round 1)
  write_rounds(rows)                rows of rounds.jsonl, one per round, in order
  write_record(record)              one evaluation record (a line of metrics.jsonl)
  close()                           once, however the session ends

`open_writers` builds the session's writers from the config: the JSON-lines files (always; they are the
source of truth that resume rewinds and reports read), TensorBoard (always, as before; the 'tensorboard'
extra) and Weights & Biases when `log.wandb_project` is set (the 'wandb' extra), composed by
`MultiWriter` in that order. Only process 0 writes: the other processes get a `MultiWriter` of none.

A writer of one's own implements the four methods; a test or a notebook can pass it to `MultiWriter`.
"""
import abc
import os
from typing import Optional

from superfed_jax import _extras
from superfed_jax.run import metrics
from superfed_jax.run import tb_writer

__all__ = ["MetricWriter", "JsonLinesWriter", "TensorBoardWriter", "WandbWriter", "MultiWriter",
           "open_writers", "check_extras", "wandb_enabled"]


class MetricWriter(abc.ABC):
    """One destination of a run's metrics. Methods are called in the order the module docstring gives."""

    def write_config(self, config: dict, tags: list[str], step: int) -> None:
        """The run's config (a nested dict) at the start of a session; `tags` are the metrics worth
        showing beside it (the tracked archs' validation and test values), `step` the round it starts
        from. Default: nothing (the JSON config is the driver's config.json)."""

    @abc.abstractmethod
    def write_rounds(self, rows: list[dict]) -> None:
        """Rows of rounds.jsonl (`round`, `beta`, `train_loss`, `clients_nonfinite`, `seconds`,
        `wall_time`, ...), consecutive rounds in order."""

    @abc.abstractmethod
    def write_record(self, record: dict) -> None:
        """One evaluation record (a line of metrics.jsonl), with its `round`."""

    def close(self) -> None:
        """Flushes and releases what the writer holds; called once. Default: nothing."""


class JsonLinesWriter(MetricWriter):
    """rounds.jsonl and metrics.jsonl in the work directory, appended to and flushed at every write.

    These files are what a resume rewinds (`run.resume.rewind_metrics`) and what reports and `load_run`
    read, so they are always written and always first.
    """

    def __init__(self, workdir: str):
        # Appended to: on resume the driver has already rewound them to the checkpoint.
        self._metrics = open(os.path.join(workdir, "metrics.jsonl"), "a")
        self._rounds = open(os.path.join(workdir, "rounds.jsonl"), "a")

    def write_rounds(self, rows: list[dict]) -> None:
        """Appends the rows to rounds.jsonl and flushes."""
        metrics.append_rows(self._rounds, rows)

    def write_record(self, record: dict) -> None:
        """Appends the record to metrics.jsonl and flushes (a crash loses no written record)."""
        metrics.append_record(self._metrics, record)

    def close(self) -> None:
        """Closes both files."""
        self._metrics.close()
        self._rounds.close()


class TensorBoardWriter(MetricWriter):
    """TensorBoard scalars under WORKDIR/tb (`tb_writer`): rounds as `rounds/<field>`, records as their
    own fields without the per-round summary ones (TensorBoard has those per round already)."""

    def __init__(self, workdir: str, purge_step: Optional[int] = None):
        # purge_step: TensorBoard drops the events a killed session wrote after the checkpoint resumed.
        self._scalars = tb_writer.open_writer(workdir, purge_step=purge_step)

    def write_config(self, config: dict, tags: list[str], step: int) -> None:
        """The config as text and hparams, with `tags` beside it."""
        tb_writer.write_config(self._scalars, config, tags, step)

    def write_rounds(self, rows: list[dict]) -> None:
        """Each row's numeric fields as `rounds/<field>` at its round, stamped with its wall time."""
        tb_writer.write_rounds(self._scalars, rows)

    def write_record(self, record: dict) -> None:
        """The record's numeric fields but the per-round summary (beta, train_loss, clients_nonfinite)."""
        tb_writer.write_record(self._scalars, {key: value for key, value in record.items()
                                               if key not in metrics.SUMMARY_FIELDS})

    def close(self) -> None:
        """Flushes and closes the event file."""
        tb_writer.close_writer(self._scalars)


def wandb_enabled(config) -> bool:
    """Whether `config` asks for a Weights & Biases writer (`log.wandb_project` set; configs saved before
    the `log` section existed have none)."""
    log = config.get("log") if hasattr(config, "get") else None
    return bool(log and log.get("wandb_project", ""))


def check_extras(config) -> None:
    """Raises the one-line ImportError naming the extra when `config` needs a writer whose package is
    missing; called before the run is built, so the run stops at once, not after compiling."""
    if wandb_enabled(config):
        _extras.require("wandb", "wandb")


class WandbWriter(MetricWriter):
    """A Weights & Biases run: rows at step = round under `rounds/<field>`, records at step = round.

    Each session is its own W&B run in a group named after the work directory, starting at the round
    after the checkpoint it resumed: W&B cannot drop steps a killed session logged past that checkpoint,
    so a resumed session never continues the killed one's curve. The JSON-lines files stay the record.
    """

    def __init__(self, workdir: str, project: str, mode: str, start_round: int):
        wandb = _extras.require("wandb", "wandb")
        name = os.path.basename(os.path.abspath(workdir))
        # console='off': W&B would otherwise wrap stdout/stderr to copy the console, under the progress
        # line that rewrites itself; the metrics reach it through log() anyway.
        self._run = wandb.init(project=project, mode=mode, dir=workdir, group=name,
                               name=f"{name}-from-{start_round}", reinit="create_new",
                               settings=wandb.Settings(console="off"))

    def write_config(self, config: dict, tags: list[str], step: int) -> None:
        """The config as the W&B run's config (nested sections as nested dicts)."""
        self._run.config.update(config, allow_val_change=True)

    def write_rounds(self, rows: list[dict]) -> None:
        """Each row's numeric fields but wall_time (W&B stamps its own) at step = the row's round."""
        for row in rows:
            values = {tb_writer.ROUNDS_PREFIX + key: value for key, value in tb_writer.scalars_of(row).items()
                      if key != "wall_time"}
            self._run.log(values, step=int(row["round"]))

    def write_record(self, record: dict) -> None:
        """The record's numeric fields at step = its round (the same step as that round's row)."""
        self._run.log(tb_writer.scalars_of(record), step=int(record["round"]))

    def close(self) -> None:
        """Finishes the W&B run (uploads it, or in offline mode closes its local files)."""
        self._run.finish()


class MultiWriter(MetricWriter):
    """Several writers as one: every call goes to each, in order (the JSON lines first)."""

    def __init__(self, writers: list[MetricWriter]):
        self.writers = list(writers)

    def write_config(self, config: dict, tags: list[str], step: int) -> None:
        """Passes the config to every writer."""
        for writer in self.writers:
            writer.write_config(config, tags, step)

    def write_rounds(self, rows: list[dict]) -> None:
        """Passes the rows to every writer."""
        for writer in self.writers:
            writer.write_rounds(rows)

    def write_record(self, record: dict) -> None:
        """Passes the record to every writer."""
        for writer in self.writers:
            writer.write_record(record)

    def close(self) -> None:
        """Closes every writer, even when one of them fails (the first error is raised after)."""
        errors = []
        for writer in self.writers:
            try:
                writer.close()
            except Exception as error:  # noqa: BLE001 - the others must still close their files
                errors.append(error)
        if errors:
            raise errors[0]


def open_writers(config, workdir: str, start_round: int, writer: bool) -> MultiWriter:
    """The session's writers: JSON lines, TensorBoard and, with `log.wandb_project`, W&B; none at all on
    processes other than 0 (`writer` False). Opened before compiling, so a missing extra stops the run
    at once. `start_round` is the number of rounds already done (the checkpoint resumed, or 0)."""
    if not writer:
        return MultiWriter([])
    opened = [JsonLinesWriter(workdir)]
    try:
        opened.append(TensorBoardWriter(workdir, purge_step=start_round + 1))
        if wandb_enabled(config):
            opened.append(WandbWriter(workdir, config.log.wandb_project, config.log.wandb_mode, start_round))
    except BaseException:
        MultiWriter(opened).close()  # the files already opened are not left open
        raise
    return MultiWriter(opened)
