"""The training driver: `train_and_evaluate(config, workdir)`, one linear pass over a SuperFed run.

Build (data on the devices, compiled round and evaluation) -> start fresh or resume the newest intact
checkpoint -> run rounds, evaluating the tracked subnets every `eval.every_rounds` rounds and
checkpointing every `checkpoint.every_rounds` -> summary, cost report and run report.
This file only tells that story; every step lives in the layer it belongs to.
"""
import dataclasses
import io
import json
import os
import sys
from typing import NamedTuple

import ml_collections

from superfed_jax.federated import assignment
from superfed_jax.federated import evaluation
from superfed_jax.federated import round as federated_round
from superfed_jax.federated import sharding
from superfed_jax.reports import run_cost
from superfed_jax.reports import run_record
from superfed_jax.reports import run_report
from superfed_jax.run import build
from superfed_jax.run import checkpoint
from superfed_jax.run import distributed
from superfed_jax.run import dry_run
from superfed_jax.run import metrics
from superfed_jax.run import preemption
from superfed_jax.run import progress
from superfed_jax.run import resume
from superfed_jax.run import tb_writer


def _write_json(path: str, value) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=2)


class Start(NamedTuple):
    """Where the round loop begins: a fresh state at round 0, or the newest intact checkpoint."""

    state: federated_round.ServerState
    round: int  # rounds already completed
    pending: list  # per-round host metrics of completed rounds not yet in metrics.jsonl
    records: list  # the evaluation records already in metrics.jsonl


def start_or_resume(config, workdir: str, run: build.RunSetup, manager) -> Start:
    """Restores the newest intact checkpoint of `workdir` (checking the config may resume it) or starts.

    metrics.jsonl is rewound to the checkpoint, so no round is written twice or lost. A damaged newest
    checkpoint is skipped with a warning; if checkpoints exist but none is intact, this raises.
    """
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    restored = checkpoint.restore_newest_intact(manager, run.state)
    writer = distributed.is_writer()
    if restored is None:
        return Start(run.state, 0, [], resume.rewind_metrics(metrics_path, 0, write=writer))
    for skipped in restored.skipped:
        print(f"warning: skipped damaged checkpoint {skipped}", file=sys.stderr, flush=True)
    resume.check_resumable(restored.host["config"], config.to_dict(), workdir)
    done = restored.host["round"]
    if done > config.fl.rounds:
        raise ValueError(f"fl.rounds={config.fl.rounds}: {workdir} already holds a checkpoint after round "
                         f"{done}; set fl.rounds >= {done} or use another --workdir")
    print(f"resuming {workdir} after round {done}", file=sys.stderr, flush=True)
    return Start(restored.state, done, restored.host["pending"],
                 resume.rewind_metrics(metrics_path, done, write=writer))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs (or resumes) a whole SuperFed training run in `workdir`; returns the best evaluation record.

    Checkpoints every `checkpoint.every_rounds` rounds and at the end; on SIGTERM/SIGINT it finishes the
    round, checkpoints and raises `preemption.Interrupted`. Rerunning with the same workdir resumes.
    """
    if config.dry_run:
        return dry_run.run_dry(config, workdir)
    run = build.build(config)  # fails on bad config or data before anything is written
    writer = distributed.is_writer()  # process 0 writes the workdir's files; all write checkpoints
    os.makedirs(workdir, exist_ok=True)
    manager = checkpoint.make_manager(workdir, config.checkpoint.keep)
    start = start_or_resume(config, workdir, run, manager)
    if writer:
        _write_json(os.path.join(workdir, "config.json"), config.to_dict())
        _write_json(os.path.join(workdir, "space.json"), dataclasses.asdict(run.space))  # the data's shapes
    state, pending, records = start.state, list(start.pending), list(start.records)
    rounds, in_flight = config.fl.rounds, []  # in_flight: device metrics not yet read by the host

    bar = progress.Progress(rounds, start=start.round, stream=sys.stderr if writer else io.StringIO())
    metrics_path = os.path.join(workdir, "metrics.jsonl") if writer else os.devnull
    # purge_step: TensorBoard drops events a killed run wrote after the checkpoint being resumed.
    scalars = tb_writer.open_writer(workdir, purge_step=start.round + 1) if writer else None
    with preemption.catch_termination() as signal_flag, open(metrics_path, "a") as metrics_file:
        for t in range(start.round, rounds):
            state, round_metrics = run.round_fn(state, run.data)
            in_flight.append(round_metrics)
            done, last = t + 1, t + 1 == rounds
            if done % config.log_every_rounds == 0 or last:
                bar.update(done, float(sharding.to_host(round_metrics["train_loss"])))  # the one scalar read
            if done % config.eval.every_rounds == 0 or last:
                pending, in_flight = pending + metrics.host_round_metrics(in_flight), []
                record = {"round": done, **metrics.round_summary(pending),
                          **evaluation.evaluate_tracked(run.evaluate, state.params, run.tracked,
                                                        run.eval_sets)}
                metrics.append_record(metrics_file, record)
                if scalars:
                    tb_writer.write_record(scalars, record)
                records.append(record)
                pending = []
                bar.note(" ".join(f"{n}={record.get(f'{n}/val_accuracy', float('nan')):.3f}"
                                  for n in run.tracked))
            if done % config.checkpoint.every_rounds == 0 or last or signal_flag.name:
                pending, in_flight = pending + metrics.host_round_metrics(in_flight), []
                checkpoint.save(manager, done, state, {"pending": pending, "config": config.to_dict()})
            if signal_flag.name:
                bar.close()
                raise preemption.Interrupted(signal_flag.name, done, workdir)
    bar.close()
    if scalars:
        tb_writer.close_writer(scalars)
    return finish(config, run, records, workdir)


def finish(config, run: build.RunSetup, records: list[dict], workdir: str) -> dict:
    """The summary table and the cost report of a completed run; returns the best evaluation record."""
    best = run_record.select_best(records, run.tracked)
    if not distributed.is_writer():
        return best
    print(run_report.summary_table(run.space, run.tracked, best), flush=True)
    # Assignment depends only on (seed, round, tracking), so the dry-run replay is the run's own sequence
    # (tests/test_run_cost.py checks this), also across resumes.
    sequence = assignment.assignment_sequence(run.space, run.settings, config.seed, config.fl.rounds)
    sizes = sharding.to_host(run.data.sizes)
    cost_report = run_cost.write_cost_report(config, run.space, sequence, workdir, sizes)
    print(run_cost.cost_summary(cost_report), flush=True)
    written = run_report.write_run_report(workdir)
    print(f"report: {written['report']}, plot: {written['plot']}", flush=True)
    return best
