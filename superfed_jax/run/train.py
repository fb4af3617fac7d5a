"""The training driver: `train_and_evaluate(config, workdir)`, one linear pass over a SuperFed run.

Load data -> partition over clients -> put it on device -> build the compiled round and evaluation ->
run rounds, evaluating the tracked subnets every `eval.every_rounds` rounds -> write metrics and a summary.
All logic lives in the library modules; this file only wires them together.
"""
import dataclasses
import io
import json
import os
import sys
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from superfed_jax import config as config_lib
from superfed_jax import data as data_lib
from superfed_jax import validation
from superfed_jax.data import augment
from superfed_jax.data import partition as partition_lib
from superfed_jax.federated import assignment as dry_run_lib
from superfed_jax.federated import client as client_lib
from superfed_jax.federated import evaluation
from superfed_jax.federated import round as federated_round
from superfed_jax.federated import sharding
from superfed_jax.reports import run_cost
from superfed_jax.reports import run_report as report_lib
from superfed_jax.run import checkpoint
from superfed_jax.run import distributed
from superfed_jax.run import memory
from superfed_jax.run import preemption
from superfed_jax.run import progress
from superfed_jax.run import resume
from superfed_jax.run import tb_writer
from superfed_jax.supernet import cost
from superfed_jax.supernet import model as model_lib
from superfed_jax.supernet import space as space_lib


def arch_from_spec(space: space_lib.SearchSpace, spec) -> space_lib.Arch:
    """An arch from its JSON form, or from a default tracked name ('smallest', 'small', ...).

    Names are resolved against the final space, so `fedavg=largest` follows space overrides.
    """
    if isinstance(spec, str):
        named = space_lib.default_tracked(space)
        if spec not in named:
            raise ValueError(f"unknown arch name {spec!r}; allowed names {list(named)} or an arch object")
        return named[spec]
    return space_lib.arch_from_dict(space, spec)


def parse_archs(space: space_lib.SearchSpace, text: str, field: str) -> list[space_lib.Arch]:
    """Parses a JSON list of archs (or names) from config field `field`; ValueError names the field."""
    try:
        specs = json.loads(text)
        if not isinstance(specs, list) or not specs:
            raise ValueError("need a non-empty JSON list of archs")
        return [arch_from_spec(space, spec) for spec in specs]
    except (ValueError, TypeError) as error:
        raise ValueError(f"{field}={text!r}: {error}") from None


def tracked_archs(space: space_lib.SearchSpace, text: str) -> dict[str, space_lib.Arch]:
    """Named archs to evaluate: config `eval.tracked` (JSON object name -> arch) or the defaults."""
    if not text:
        return space_lib.default_tracked(space)
    try:
        specs = json.loads(text)
        if not isinstance(specs, dict) or not specs:
            raise ValueError("need a non-empty JSON object name -> arch")
        return {name: arch_from_spec(space, spec) for name, spec in specs.items()}
    except (ValueError, TypeError) as error:
        raise ValueError(f"eval.tracked={text!r}: {error}") from None


def round_settings(config, space) -> federated_round.RoundSettings:
    """Static round settings from the config, with derived defaults resolved."""
    fl = config.fl
    pool = space_lib.stack(parse_archs(space, fl.pool, "fl.pool")) if fl.pool else None
    return federated_round.RoundSettings(
        num_clients=fl.num_clients, clients_per_round=fl.clients_per_round,
        chunk_size=fl.chunk_size or fl.clients_per_round, heuristic=fl.heuristic, pool=pool,
        count_random_extremes=fl.count_random_extremes, beta_schedule=fl.beta_schedule,
        beta0=fl.beta0,
        # -1 means "end as plain averaging" (algorithm.md 4.1: betaT = 1/P).
        beta_final=1.0 / fl.clients_per_round if fl.beta_final < 0 else fl.beta_final,
        decay_rounds=max(1, int(fl.decay_fraction * fl.rounds)))


def make_logits_fn(model: model_lib.Supernet, mean, std):
    """`logits_fn(params, raw_images, arch)`: normalization then the masked supernet."""
    def logits_fn(params, images, arch):
        return model.apply({"params": params}, augment.normalize(images, mean, std), arch)
    return logits_fn


def make_loss_fn(model: model_lib.Supernet, mean, std, data_config):
    """`loss_fn(params, arch, raw_images, labels, weights, key)`: augmentation, forward, summed CE."""
    def loss_fn(params, arch, images, labels, weights, key):
        inputs = augment.augment_batch(key, images, mean, std, crop_padding=data_config.crop_padding,
                                       flip=data_config.flip, cutout_size=data_config.cutout_size)
        logits = model.apply({"params": params}, inputs, arch)
        return client_lib.cross_entropy(logits, labels, weights)
    return loss_fn


def build_client_data(dataset, config, mesh) -> federated_round.ClientData:
    """Partitions the training set over clients and places it on the devices.

    The image and label rows are split over the devices (padded to a multiple of their number; padding
    rows are never indexed), so each device and process holds only its share; the small per-client
    index table is replicated.
    """
    parts = partition_lib.make_partition(
        dataset.y_train, config.fl.num_clients, config.data.partition, config.seed,
        alpha=config.data.alpha, shards_per_client=config.data.shards_per_client,
        min_size=config.data.min_client_size)
    table, sizes = partition_lib.client_index_table(parts)
    pad = -len(dataset.y_train) % mesh.devices.size
    images = np.concatenate([dataset.x_train, np.zeros((pad,) + dataset.x_train.shape[1:],
                                                       dataset.x_train.dtype)])
    labels = np.concatenate([dataset.y_train, np.zeros(pad, dataset.y_train.dtype)]).astype(np.int32)
    rows, small = sharding.data_sharded(mesh), sharding.replicated(mesh)
    return federated_round.ClientData(
        images=sharding.put_global(images, rows), labels=sharding.put_global(labels, rows),
        index_table=sharding.put_global(table, small), sizes=sharding.put_global(sizes, small))


def write_json(path: str, value: Any) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=2)


def write_cost_report(config, space, sequence: dict, workdir: str, examples_per_client=None) -> dict:
    """Writes `cost.json` (the run's compute and communication vs independent FedAvg) and returns it."""
    baseline = parse_archs(space, config.cost.baseline, "cost.baseline") if config.cost.baseline else None
    report = run_cost.cost_report(space, sequence, baseline, examples_per_client=examples_per_client,
                                  epochs=config.client.epochs if examples_per_client is not None else None,
                                  bytes_per_param=config.cost.bytes_per_param)
    write_json(os.path.join(workdir, "cost.json"), report)
    return report


def cost_summary(report: dict) -> str:
    """Two lines for stdout: the run's cost and its ratios against independent FedAvg."""
    superfed, ratios = report["superfed"], report["ratios"]
    return (f"cost: {superfed['total_macs']:.4g} forward MACs per image summed over the run's clients "
            f"(mean client {superfed['mean_client_gmacs']:.4f} GMACs), "
            f"{superfed['total_bytes_per_direction']:.4g} bytes communicated per direction\n"
            f"independent FedAvg of {len(report['baseline']['archs'])} archs costs "
            f"{ratios['compute_ratio']:.2f}x the compute and {ratios['comm_ratio']:.2f}x the communication")


def run_dry(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """`dry_run=True`: the assignment sequence of every round and its cost report; no data, no training."""
    validation.check_config(config)
    space = config_lib.search_space(config)
    sequence = dry_run_lib.assignment_sequence(space, round_settings(config, space), config.seed,
                                               config.fl.rounds)
    os.makedirs(workdir, exist_ok=True)
    report = write_cost_report(config, space, sequence, workdir)
    print(cost_summary(report), flush=True)
    return report


def summary_table(space, tracked, best) -> str:
    """Per tracked arch: MACs, params and validation/test accuracy at the best validation round."""
    lines = [f"{'arch':<12}{'MMACs':>10}{'params':>12}{'best round':>12}{'val acc':>9}{'test acc':>9}"]
    for name, arch in tracked.items():
        lines.append(f"{name:<12}{cost.macs(space, arch) / 1e6:>10.2f}{cost.params(space, arch):>12,}"
                     f"{best['round']:>12}{best.get(f'{name}/val_accuracy', float('nan')):>9.4f}"
                     f"{best.get(f'{name}/test_accuracy', float('nan')):>9.4f}")
    return "\n".join(lines)


def client_layout(config, mesh) -> str:
    """`fl.client_layout`, with 'auto' resolved: side by side on one CPU device, vmap otherwise.

    Side by side keeps a chunk's clients on one device, so a multi-device mesh always uses vmap.
    """
    layout = config.fl.client_layout
    if layout == "auto":
        single_cpu = mesh.devices.size == 1 and jax.default_backend() == "cpu"
        layout = "side_by_side" if single_cpu else "vmap"
    if layout == "side_by_side" and mesh.devices.size > 1:
        raise ValueError(f"fl.client_layout='side_by_side' needs one device, the mesh has "
                         f"{mesh.devices.size}; use 'vmap' or 'auto'")
    return layout


def check_memory(config, space, settings, mesh, data) -> None:
    """Stops before compiling, suggesting a chunk size, when a round would not fit a device (memory.py)."""
    if not config.memory.check:
        return
    available = (config.memory.available_gib * 2 ** 30 if config.memory.available_gib
                 else memory.device_memory_bytes())
    memory.check_round_memory(
        space, available, batch_size=config.client.batch_size, chunk_size=settings.chunk_size,
        clients_per_round=settings.clients_per_round, num_devices=mesh.devices.size,
        dtype=config.model.dtype, conv_impl=config.model.conv_impl, data_bytes=memory.data_bytes(data))


class Run(NamedTuple):
    """Everything built from a config before the first round."""

    space: space_lib.SearchSpace
    dataset: data_lib.Dataset
    settings: federated_round.RoundSettings
    tracked: dict
    mesh: Any
    data: federated_round.ClientData
    model: model_lib.Supernet
    state: federated_round.ServerState
    round_fn: Callable  # jitted, donates the state
    evaluate: Callable  # jitted
    eval_sets: dict


def build(config: ml_collections.ConfigDict) -> Run:
    """Loads data, partitions it, places it on the devices and builds the compiled functions."""
    validation.check_config(config)  # every field, before any data is read or anything compiles
    dataset = data_lib.load_dataset(config.data, config.seed)
    validation.check_against_data(config, len(dataset.y_train))
    _, height, _, channels = dataset.x_train.shape
    space = config_lib.search_space(config, input_size=height, input_channels=channels,
                                    num_classes=dataset.num_classes)
    settings = round_settings(config, space)
    mesh = sharding.make_mesh()
    data = build_client_data(dataset, config, mesh)
    check_memory(config, space, settings, mesh, data)
    model = model_lib.Supernet(space, config.model.conv_impl, jnp.dtype(config.model.dtype))
    params = model_lib.init_params(space, jax.random.key(config.seed), config.model.conv_impl,
                                   out_sharding=sharding.replicated(mesh))
    state = jax.device_put(federated_round.init_state(params, config.seed, config.fl.num_clients),
                           sharding.replicated(mesh))
    loss_fn = make_loss_fn(model, dataset.mean, dataset.std, config.data)
    optimizer = client_lib.make_optimizer(config.client.learning_rate, config.client.clip_norm)
    schedule = dict(epochs=config.client.epochs, batch_size=config.client.batch_size,
                    max_size=int(data.index_table.shape[1]), unroll=config.client.scan_unroll)
    if client_layout(config, mesh) == "side_by_side":
        train_clients = client_lib.make_side_by_side_update(loss_fn, optimizer, **schedule)
    else:
        single = client_lib.make_client_update(loss_fn, optimizer, **schedule)
        train_clients = client_lib.vmap_clients(single)
    round_fn = jax.jit(federated_round.make_round_fn(space, settings, train_clients, mesh),
                       donate_argnums=0)
    evaluate = jax.jit(evaluation.make_evaluate_fn(make_logits_fn(model, dataset.mean, dataset.std)))
    eval_sets = {split: jax.tree.map(lambda x: sharding.put_global(x, sharding.replicated(mesh)),
                                     evaluation.make_eval_set(x, y, config.eval.batch_size))
                 for split, x, y in (("val", dataset.x_val, dataset.y_val),
                                     ("test", dataset.x_test, dataset.y_test)) if len(y)}
    return Run(space, dataset, settings, tracked_archs(space, config.eval.tracked), mesh, data, model,
               state, round_fn, evaluate, eval_sets)


class Start(NamedTuple):
    """Where the round loop begins: a fresh state at round 0, or the newest intact checkpoint."""

    state: federated_round.ServerState
    round: int  # rounds already completed
    pending: list  # per-round host metrics of completed rounds not yet in metrics.jsonl
    records: list  # the evaluation records already in metrics.jsonl


def start_or_resume(config, workdir: str, run: Run, manager) -> Start:
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
        return run_dry(config, workdir)
    run = build(config)  # fails on bad config or data before anything is written
    writer = distributed.is_writer()  # process 0 writes the workdir's files; all write checkpoints
    os.makedirs(workdir, exist_ok=True)
    manager = checkpoint.make_manager(workdir, config.checkpoint.keep)
    start = start_or_resume(config, workdir, run, manager)
    if writer:
        write_json(os.path.join(workdir, "config.json"), config.to_dict())
        write_json(os.path.join(workdir, "space.json"), dataclasses.asdict(run.space))  # the data's shapes
    state, pending, records = start.state, list(start.pending), list(start.records)
    rounds, in_flight = config.fl.rounds, []  # in_flight: device metrics not yet read by the host

    bar = progress.Progress(rounds, start=start.round, stream=sys.stderr if writer else io.StringIO())
    metrics_path = os.path.join(workdir, "metrics.jsonl") if writer else os.devnull
    # purge_step: TensorBoard drops events a killed run wrote after the checkpoint being resumed.
    scalars = tb_writer.open_writer(workdir, purge_step=start.round + 1) if writer else None
    with preemption.catch_termination() as signal_flag, open(metrics_path, "a") as metrics_file:
        for t in range(start.round, rounds):
            state, metrics = run.round_fn(state, run.data)
            in_flight.append(metrics)
            done, last = t + 1, t + 1 == rounds
            if done % config.log_every_rounds == 0 or last:
                bar.update(done, float(sharding.to_host(metrics["train_loss"])))  # the one scalar read
            if done % config.eval.every_rounds == 0 or last:
                pending, in_flight = pending + host_round_metrics(in_flight), []
                record = {"round": done, **round_summary(pending),
                          **evaluate_tracked(run.evaluate, state.params, run.tracked, run.eval_sets)}
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                if scalars:
                    tb_writer.write_record(scalars, record)
                records.append(record)
                pending = []
                bar.note(" ".join(f"{n}={record.get(f'{n}/val_accuracy', float('nan')):.3f}"
                                  for n in run.tracked))
            if done % config.checkpoint.every_rounds == 0 or last or signal_flag.name:
                pending, in_flight = pending + host_round_metrics(in_flight), []
                checkpoint.save(manager, done, state, {"pending": pending, "config": config.to_dict()})
            if signal_flag.name:
                bar.close()
                raise preemption.Interrupted(signal_flag.name, done, workdir)
    bar.close()
    if scalars:
        tb_writer.close_writer(scalars)
    return finish(config, run, records, workdir)


def finish(config, run: Run, records: list[dict], workdir: str) -> dict:
    """The summary table and the cost report of a completed run; returns the best evaluation record."""
    best = report_lib.select_best(records, run.tracked)
    if not distributed.is_writer():
        return best
    print(summary_table(run.space, run.tracked, best), flush=True)
    # Assignment depends only on (seed, round, tracking), so the dry-run replay is the run's own sequence
    # (tests/test_run_cost.py checks this), also across resumes.
    sequence = dry_run_lib.assignment_sequence(run.space, run.settings, config.seed, config.fl.rounds)
    sizes = sharding.to_host(run.data.sizes)
    cost_report = write_cost_report(config, run.space, sequence, workdir, sizes)
    print(cost_summary(cost_report), flush=True)
    written = report_lib.write_run_report(workdir)
    print(f"report: {written['report']}, plot: {written['plot']}", flush=True)
    return best


def evaluate_tracked(evaluate, params, tracked: dict, eval_sets: dict) -> dict:
    """`<arch>/<split>_accuracy` and `<arch>/<split>_loss` of every tracked arch on every split."""
    archs = space_lib.stack(list(tracked.values()))
    record = {}
    for split, eval_set in eval_sets.items():
        accuracy, loss = sharding.to_host(evaluate(params, archs, eval_set))
        for i, name in enumerate(tracked):
            record[f"{name}/{split}_accuracy"] = float(accuracy[i])
            record[f"{name}/{split}_loss"] = float(loss[i])
    return record


def host_round_metrics(in_flight: list[dict]) -> list[dict]:
    """Reads per-round device metrics to the host (at a logging or checkpoint boundary only)."""
    values = sharding.to_host(in_flight)
    return [{"beta": float(v["beta"]), "train_loss": float(v["train_loss"]),
             "clients_nonfinite": int(v["clients_nonfinite"])} for v in values]


def round_summary(pending: list[dict]) -> dict:
    """The rounds since the last evaluation: last beta, mean train loss, total non-finite clients."""
    return {"beta": pending[-1]["beta"],
            "train_loss": float(np.mean([p["train_loss"] for p in pending])),
            "clients_nonfinite": sum(p["clients_nonfinite"] for p in pending)}
