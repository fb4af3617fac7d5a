"""The training driver: `train_and_evaluate(config, workdir)`, one linear pass over a SuperFed run.

Build (data on the devices, compiled round and evaluation) -> start fresh or resume the newest intact
checkpoint -> run rounds, evaluating the tracked subnets every `eval.every_rounds` rounds and
checkpointing every `checkpoint.every_rounds` -> summary, cost report and run report. Every start or
resume adds its session to provenance.json; every round's row and every evaluation record go to the
session's metric writers (`run/writers.py`: rounds.jsonl and metrics.jsonl, TensorBoard, optionally
Weights & Biases; docs/run_outputs.md). This file only tells that story; every step lives in the layer it belongs to.
"""
import contextlib
import dataclasses
import io
import json
import os
import sys
from typing import Any, NamedTuple

import ml_collections

from superfed_jax import _compilation_cache
from superfed_jax import _json_file
from superfed_jax import _readable
from superfed_jax.federated import assignment
from superfed_jax.federated import evaluation
from superfed_jax.federated import metric as metric_lib
from superfed_jax.federated import privacy
from superfed_jax.federated import round as federated_round
from superfed_jax.federated import sharding
from superfed_jax.reports import run_cost
from superfed_jax.reports import run_record
from superfed_jax.reports import run_report
from superfed_jax.run import build
from superfed_jax.run import checkpoint
from superfed_jax.run import distributed
from superfed_jax.run import dry_run
from superfed_jax.run import kill_points
from superfed_jax.run import metrics
from superfed_jax.run import preemption
from superfed_jax.run import progress
from superfed_jax.run import provenance
from superfed_jax.run import resume
from superfed_jax.run import round_clock
from superfed_jax.run import workdir as workdir_lib
from superfed_jax.run import writers as writers_lib


def _write_json(path: str, value) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=2)


class Start(NamedTuple):
    """Where the round loop begins: a fresh state at round 0, or the newest intact checkpoint."""

    state: federated_round.ServerState
    round: int  # rounds already completed
    pending: list  # per-round host metrics of completed rounds not yet in metrics.jsonl
    records: list  # the evaluation records already in metrics.jsonl


def check_resume_allowed(config, workdir: str, writer: bool) -> None:
    """Before the run is built: may `config` continue the run in `workdir`? Reads files only, no orbax.

    Compares the config in the newest checkpoint's host JSON (and WORKDIR/config.json) with `config`:
    a changed dataset, client count or space would otherwise fail deep inside orbax on mismatched shapes,
    or look like a damaged checkpoint. Also reads metrics.jsonl (a damaged line stops the run before
    anything changes) and refuses checkpoints whose metrics.jsonl is gone.

    Raises:
      ValueError: the fields that may not change on resume, a bad metrics line, a missing metrics file.
    """
    saved = checkpoint.saved_configs(workdir)
    if saved:
        current = config.to_dict()
        resume.check_resumable(saved[0][1], current, workdir)
        saved_json = resume.read_saved_config(workdir)
        if saved_json is not None:
            resume.check_resumable(saved_json, current, workdir)
    if not writer:
        return
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    resume.read_metrics(metrics_path)
    resume.read_metrics(os.path.join(workdir, "rounds.jsonl"))  # same rules: a damaged line stops here
    step = workdir_lib.newest_checkpoint(workdir)
    if step is not None and not os.path.exists(metrics_path):
        raise workdir_lib.WorkdirError(
            f"{metrics_path} is missing, but {workdir} holds checkpoints (the newest after round {step}): "
            "the evaluation records of the rounds before it are gone, and the report is made from them. "
            "Nothing was changed. Put metrics.jsonl back, or start over with --config.overwrite=True "
            "(deletes the checkpoints too), or use another --workdir")


def check_same_data_shapes(workdir: str, family) -> None:
    """The data's shapes saved in WORKDIR/space.json (when resuming) must be those of `family`'s space."""
    space_path = os.path.join(workdir, "space.json")
    if not checkpoint.saved_configs(workdir) or not os.path.exists(space_path):
        return
    before = _json_file.read_object(
        space_path, "it records the data's shapes when the run started; restore it from a copy, or delete "
        "it and rerun the same command (the resumed run writes it again, but cannot then check beforehand "
        "that the data's shapes are unchanged)")
    now = json.loads(json.dumps(family.space_dict()))  # tuples as lists, as saved
    changed = [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
               if before.get(k) != now.get(k)]
    if changed:
        raise ValueError(
            f"{workdir} holds a run on data of other shapes ({space_path}); these may not change on "
            "resume:\n  " + "\n  ".join(changed)
            + "\nthe data files changed since the run started; restore them, or use another --workdir "
            "for a run on the new data")


def start_or_resume(config, workdir: str, run: build.RunSetup, manager) -> Start:
    """Restores the newest intact checkpoint of `workdir` (checking the config may resume it) or starts.

    metrics.jsonl and rounds.jsonl are rewound to the checkpoint, so no round is written twice or lost.
    A damaged newest checkpoint is skipped with a warning; if checkpoints exist but none is intact, this
    raises.
    """
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    writer = distributed.is_writer()
    check_same_data_shapes(workdir, run.family)
    restored = checkpoint.restore_newest_intact(manager, run.state)
    if restored is None:
        rewind_rounds(workdir, 0, writer)
        return Start(run.state, 0, [], resume.rewind_metrics(metrics_path, 0, write=writer))
    for skipped in restored.skipped:
        print(f"warning: skipped damaged checkpoint {skipped}", file=sys.stderr, flush=True)
    resume.check_resumable(restored.host["config"], config.to_dict(), workdir)
    done = restored.host["round"]
    if done > config.fl.rounds:
        raise ValueError(f"fl.rounds={config.fl.rounds}: {workdir} already holds a checkpoint after round "
                         f"{done}; set fl.rounds >= {done} or use another --workdir")
    print(f"resuming {workdir} after round {done}", file=sys.stderr, flush=True)
    rewind_rounds(workdir, done, writer)
    return Start(restored.state, done, restored.host["pending"],
                 resume.rewind_metrics(metrics_path, done, write=writer))


def rewind_rounds(workdir: str, done: int, writer: bool) -> None:
    """Keeps the rows of rounds <= `done` in WORKDIR/rounds.jsonl; warns when some of them are missing
    (a run started by a version without the file, or the file was removed): the file stays incomplete."""
    kept = resume.rewind_metrics(os.path.join(workdir, "rounds.jsonl"), done, write=writer)
    if writer and [row["round"] for row in kept] != list(range(1, done + 1)):
        print(f"warning: {os.path.join(workdir, 'rounds.jsonl')} holds {len(kept)} of the {done} rounds "
              "before the checkpoint being resumed (written by an older version, or removed); the rounds "
              "that follow are added to it, the missing ones stay missing", file=sys.stderr, flush=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs (or resumes) a whole SuperFed training run in `workdir`; returns the best evaluation record.

    Holds WORKDIR/.lock for the whole run (a second run on the same workdir is refused at once).
    Checkpoints every `checkpoint.every_rounds` rounds and at the end; on SIGTERM/SIGINT it finishes the
    round, checkpoints and raises `preemption.Interrupted`. Rerunning with the same workdir resumes. A
    filesystem failure raises `workdir.RunIOError`, saying what was kept and how to continue.
    """
    writer = distributed.is_writer()  # process 0 writes the workdir's files; all write checkpoints
    lock = workdir_lib.hold_lock(workdir) if writer else contextlib.nullcontext()
    with lock:
        try:
            if config.dry_run:
                return dry_run.run_dry(config, workdir)
            return _train(config, workdir, writer)
        except workdir_lib.RunIOError:
            raise
        except OSError as error:
            if not workdir_lib.concerns(error, workdir):
                raise  # not the workdir (a data file): the caller reports it as such
            raise workdir_lib.io_failure(error, workdir, "reading or writing the run's files") from error


def _train(config: ml_collections.ConfigDict, workdir: str, writer: bool) -> dict:
    """The run itself, with the workdir locked: checks, build, start or resume, rounds, finish."""
    if writer:
        workdir_lib.check_start(workdir, config.get("overwrite", False), config.to_dict())
    check_resume_allowed(config, workdir, writer)  # before building: a refused run stops at once
    writers_lib.check_extras(config)  # a missing optional writer (wandb) stops it at once too
    run = build.build(config)  # fails on bad config or data before anything of the run is written
    manager = checkpoint.make_manager(workdir, config.checkpoint.keep)
    start = start_or_resume(config, workdir, run, manager)
    if writer:
        _write_json(os.path.join(workdir, "config.json"), config.to_dict())
        _write_json(os.path.join(workdir, "space.json"), run.family.space_dict())  # the data's shapes
        provenance.record_session(workdir, start.round)  # beside config.json: which code on which machine
    state, rounds = start.state, config.fl.rounds
    with preemption.catch_termination() as signal_flag, open_session(config, run, workdir, writer, manager,
                                                                     start) as loop:
        for t in range(start.round, rounds):
            state, round_metrics = run.round_fn(state, run.data)
            done, last = t + 1, t + 1 == rounds
            loop.dispatched(done, round_metrics)
            if done % config.log_every_rounds == 0 or last:
                show_progress(loop, done, round_metrics)
            if done % config.eval.every_rounds == 0 or last:
                evaluate_and_record(loop, state, done)
            if done % config.checkpoint.every_rounds == 0 or last or signal_flag.name:
                save_checkpoint(loop, state, done)
            if signal_flag.name:
                raise preemption.Interrupted(signal_flag.name, done, workdir)
    return finish(config, run, loop.records, workdir)


@dataclasses.dataclass
class RoundLoop:
    """What the rounds of one session read and write besides the server state.

    Per-round metrics stay on the device (`in_flight`) until the host reads them at a progress line, an
    evaluation or a checkpoint, where it waits for the device anyway; then they become `pending` (rounds
    not yet summarised in metrics.jsonl) and rows of rounds.jsonl, so no round costs a device sync of its
    own. Only process 0 (`writer`) writes files and prints; the other processes' `writers` are none.
    """

    config: ml_collections.ConfigDict
    run: build.RunSetup
    workdir: str
    writer: bool
    manager: Any  # the checkpoint manager
    bar: progress.Progress
    writers: writers_lib.MetricWriter  # rounds.jsonl, metrics.jsonl, TensorBoard, ... (none off process 0)
    clock: round_clock.RoundClock
    pending: list  # host metrics of completed rounds not yet summarised in metrics.jsonl
    records: list  # the evaluation records in metrics.jsonl
    next_row: int  # the first round whose row is not yet in rounds.jsonl
    in_flight: list = dataclasses.field(default_factory=list)  # device metrics not yet read by the host

    def dispatched(self, round_: int, round_metrics: dict) -> None:
        """Notes a round just dispatched to the device (its metrics are read later)."""
        self.in_flight.append(round_metrics)
        self.clock.watch(round_, round_metrics)


@contextlib.contextmanager
def open_session(config, run: build.RunSetup, workdir: str, writer: bool, manager, start: Start):
    """The session's outputs (progress line, metric writers, round clock) as a `RoundLoop`; closes them
    however the block ends."""
    bar = progress.Progress(config.fl.rounds, start=start.round,
                            stream=sys.stderr if writer else io.StringIO(), metric=headline(config, run))
    # Opened before compiling: a writer that cannot open (a missing extra) stops the run at once.
    writers = writers_lib.open_writers(config, workdir, start.round, writer)
    clock = round_clock.RoundClock()
    try:
        bar.compile(compile_ahead, run, start.state)  # tens of silent seconds on CPU, announced, timed
        writers.write_config(config.to_dict(), _metric_tags(run.tracked, headline(config, run)), start.round)
        clock.start()  # just before the first round, after compiling it ahead
        yield RoundLoop(config, run, workdir, writer, manager, bar, writers, clock, list(start.pending),
                        list(start.records), start.round + 1)
    finally:
        clock.close()
        bar.close()
        writers.close()


def compile_ahead(run: build.RunSetup, state) -> str:
    """`build.compile_ahead`, returning how many of its programs were loaded from the persistent
    compilation cache rather than compiled ('' for none), for the progress line."""
    with _compilation_cache.counting() as lookups:
        build.compile_ahead(run, state)
    return lookups.note()


def headline(config, run: build.RunSetup) -> metric_lib.Metric:
    """The run's headline metric (`eval.metric`, 'auto' resolved for its family): what selects the best
    evaluation and what the progress line and the summary table show."""
    return metric_lib.config_metric(config, run.family.metrics)


def _metric_tags(tracked: dict, metric: metric_lib.Metric = metric_lib.ACCURACY) -> list[str]:
    """The scalars TensorBoard's hparams view shows beside the config: the tracked archs' accuracies (or
    the run's headline metric)."""
    return [metric.key(name, split) for name in tracked for split in ("val", "test")]


def show_progress(loop: RoundLoop, done: int, round_metrics: dict) -> None:
    """The progress line after round `done` (reading its loss waits for it), then its rows are written."""
    clients = loop.config.fl.clients_per_round
    loop.bar.update(done, float(sharding.to_host(metrics.shown_loss(round_metrics, clients))))
    record_rounds(loop)  # every round up to `done` has finished: reading their metrics costs no wait


def record_rounds(loop: RoundLoop) -> None:
    """Reads the metrics of the rounds in flight to the host, as `pending` and as rows for the writers
    (rounds.jsonl, TensorBoard, ...). Waits for the device when called before those rounds finished."""
    if not loop.in_flight:
        return
    host_rows = metrics.host_round_metrics(loop.in_flight, loop.config.fl.clients_per_round)
    last = loop.next_row + len(host_rows) - 1
    rows = metrics.round_rows(host_rows, loop.next_row, loop.clock.stamps_through(last))
    loop.pending, loop.in_flight, loop.next_row = loop.pending + host_rows, [], last + 1
    loop.writers.write_rounds(rows)


def evaluate_and_record(loop: RoundLoop, state, done: int) -> None:
    """Evaluates the tracked archs after round `done`; appends the record (with the summary of the rounds
    since the previous one, and the privacy spent for a run with differential privacy) to the writers
    (metrics.jsonl, TensorBoard, ...), and shows the validation accuracies."""
    record_rounds(loop)
    clients = loop.config.fl.clients_per_round
    failed = metrics.failed_rounds_warning(loop.pending, clients, done)
    if failed and loop.writer:
        print(("\n" if loop.bar.tty else "") + failed, file=sys.stderr, flush=True)
    run = loop.run
    record = {"round": done, **metrics.round_summary(loop.pending),
              **evaluation.evaluate_tracked(run.evaluate, state.params, run.tracked, run.eval_sets,
                                            run.family.metrics),
              # dp_epsilon and dp_delta with dp.noise_multiplier > 0, else nothing: they depend on the
              # config and the round alone, so a resumed run writes what an uninterrupted one would.
              **privacy.record_fields(loop.config, done)}
    loop.writers.write_record(record)
    kill_points.reached(f"record:{done}")  # tests: the window between a record and its checkpoint
    loop.records.append(record)
    loop.pending = []
    loop.bar.note_record(record, run.tracked)


def save_checkpoint(loop: RoundLoop, state, done: int) -> None:
    """Saves the state after round `done` with the rounds not yet in metrics.jsonl (their rows are
    written first, so rounds.jsonl holds every round a checkpoint holds); a full disk is a RunIOError."""
    record_rounds(loop)
    try:
        checkpoint.save(loop.manager, done, state, {"pending": loop.pending, "config": loop.config.to_dict()})
    except Exception as error:  # orbax wraps a full disk in ValueError('RESOURCE_EXHAUSTED')
        if not workdir_lib.is_io_failure(error):
            raise
        raise workdir_lib.io_failure(error, loop.workdir, f"saving the checkpoint after round {done}",
                                     checkpoint.checkpoint_dir(loop.workdir)) from error


def finish(config, run: build.RunSetup, records: list[dict], workdir: str) -> dict:
    """The summary table and the cost report of a completed run; returns the best evaluation record."""
    if not records:
        raise workdir_lib.WorkdirError(
            f"{os.path.join(workdir, 'metrics.jsonl')} holds no evaluation record although the run has "
            f"finished its {config.fl.rounds} rounds (the file was emptied or replaced), so there is nothing "
            "to report; the checkpoints are unchanged. Put the file back, or start over with "
            "--config.overwrite=True, or use another --workdir")
    metric = headline(config, run)
    best = run_record.select_best(records, run.tracked, metric)
    if not distributed.is_writer():
        return best
    print(run_report.summary_table(run.family, run.tracked, best, metric), flush=True)
    # Assignment depends only on (seed, round, tracking), so the dry-run replay is the run's own sequence
    # (tests/test_run_cost.py checks this), also across resumes.
    sequence = assignment.assignment_sequence(run.family, run.settings, config.seed, config.fl.rounds)
    sizes = sharding.to_host(run.data.sizes)
    cost_report = run_cost.write_cost_report(config, run.family, sequence, workdir, sizes)
    print(run_cost.cost_summary(cost_report, run.family.cost_unit), flush=True)
    # A search.json of an earlier checkpoint is left out with a warning: the run itself has succeeded.
    written = run_report.write_run_report(workdir, skip_stale_search=True)
    print(f"report: {_readable.path(written['report'])}, plot: {_readable.path(written['plot'])}", flush=True)
    if written["stale_search"]:
        print(f"warning: the report leaves out the search front: {written['stale_search']}", flush=True)
    if metrics.nothing_trained(records, config.fl.clients_per_round):
        raise metrics.NothingTrained(
            f"no round of this run trained anything: in every one of its {records[-1]['round']} rounds every "
            "client's update was non-finite (NaN/inf) and was dropped, so the supernet is its "
            f"initialization (train_loss is NaN in {os.path.join(workdir, 'metrics.jsonl')}). Lower "
            "client.learning_rate or client.clip_norm, and start over with --config.overwrite=True or in "
            "another --workdir")
    return best
