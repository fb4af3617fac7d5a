"""The benchmark suite: speed, efficiency, memory and scaling of the compiled round, in one command.

    python benchmarks/suite.py [--quick] [--out benchmarks/suite_<platform>.json]
        [--conv_impl=auto|xla|im2col] [--dtype=float32|bfloat16] [--only=digits,cifar,tcn]
        [--skip=loop,scaling,padding,steps] [--client_layout=auto|vmap|side_by_side] [--cifar='{"chunk_size": 2}']
        [--tcn='{"num_clients": 16}'] [--rounds=N] [--executions=masked,sliced] [--cifar_alphas=100,0.1]
        [--space=config|smoke] [--matmul_n=N]

On a GPU: `python benchmarks/suite.py --conv_impl=xla --dtype=bfloat16 --out=benchmarks/suite_gpu_bf16.json`.
The text workload alone: `python benchmarks/suite.py --only=tcn --skip=padding,scaling` (2 minutes on the
2-core CPU machine with another job on it, most of it compiling the two rounds and the client steps; it is
in the default set).

Three workloads: `configs/digits.py` as it is; a CIFAR-shaped one: the paper space of
`configs/cifar10.py` (32x32x3 inputs, 10 classes) on synthetic data of those shapes split over clients by
a Dirichlet partition (one workload per `--cifar_alphas` value; 0 is IID), with fewer clients, examples
and local steps on CPU so that it finishes (the exact settings are in the JSON); and a text one, **tcn**:
the elastic TCN of `configs/shakespeare.py:cpu` (channels 128, 8 clients a round side by side, 2 local
epochs, batch 32 windows of 80 tokens, natural clients with a tenth of each held out) on synthetic
Shakespeare-shaped data, so that TFF's archive is not needed: a TFF-layout folder of two h5 files written
with h5py (`write_synthetic_shakespeare`, read by the project's own `data.name='shakespeare'` loader),
random characters, one window per snippet, and windows per client drawn log-normal like the real 715
roles (min 1, median 17, max about 1,000), fewer clients and the tail cut on CPU (`TCN_SETTINGS`: K 64
and at most 128 windows a client; `--quick` K 32, at most 64). Each workload runs once
per `model.execution` of `--executions` (masked, sliced: docs/performance.md 16); the same seed gives
both the same clients, archs and data. Per workload and execution, after compiling and one warm-up round:

* seconds per round (mean, and every round's time: a shared machine is noisy), real client-steps/s,
  real examples/s (images, or token windows) and, for the TCN, tokens/s (every position of the real
  windows) and scored tokens/s (the targets that are not padding);
* useful MACs/s: the forward MACs of the archs actually trained x real examples x 3 (forward + backward;
  an image's MACs, or a window's: the TCN's MACs per token x its T tokens, `units_per_example`),
  and that as a fraction of the machine's peak matmul rate, measured here with a big jitted matmul at the
  start and at the end (the better of the two; MACs/s * 2 / peak FLOP/s);
* compile time (trace + lower + compile of the round);
* peak device memory: the allocator's `peak_bytes_in_use` where the backend reports it (GPU/TPU), else
  XLA's memory analysis of the compiled round (CPU); the process's max RSS too; and the estimate of
  `superfed_jax.run.memory` for comparison;
* padding waste: the fraction of computed client-steps (and batch rows) that were padding, in the timed
  rounds and, without running anything, expected under Dirichlet alpha 100, 1 and 0.1 at the paper's
  K 20 (the digits and the CIFAR-10 training-set sizes);
* masked waste: the supernet MACs computed on real examples minus the useful MACs, as a fraction (the
  masked supernet always computes its full width);
* computed MACs over useful MACs (padding and masked waste together): computed is what the program runs
  on every row of every step, the supernet's MACs for masked, the envelope's for sliced (`round_work`,
  for any family with a host envelope cost in `ENVELOPE_MACS`: the OFA-ResNet's and the TCN's);
* the compiled round against a Python loop of a jitted step on the same clients and archs
  (`benchmarks/round_speed.py`; image workloads only);
* for the TCN, one client step of its smallest and largest arch, masked / sliced / dense
  (`benchmarks/tcn_step.py`'s `step_seconds`, batch 32, executions interleaved; `--skip=steps` drops it);
* scaling of the digits round (vmap layout) over 1, 2, 4 and 8 fake CPU devices, each in a subprocess
  (`--xla_force_host_platform_device_count` must be set before JAX starts).

`--space=smoke` swaps every workload's supernet for its family's tiny `:smoke` space
(`Family.smoke_space`): the same code paths in seconds, for checking that the suite still runs
(`benchmarks/accelerator.sh --tiny`), not for figures. The JSON is written after every workload with
`"complete": false` and once more at the end with `true`, so a run stopped part way (a time limit) keeps
the workloads it finished.
"""
import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "benchmarks")]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402
import numpy as np  # noqa: E402

import chunks  # noqa: E402
import round_speed  # noqa: E402
from superfed_jax.federated import client as client_lib  # noqa: E402
from superfed_jax.supernet.ofa_resnet import cost  # noqa: E402
from superfed_jax import data as data_lib  # noqa: E402
from superfed_jax.run import memory  # noqa: E402
from superfed_jax.supernet import family as family_lib  # noqa: E402
from superfed_jax.supernet.ofa_resnet import family as ofa_family  # noqa: E402
from superfed_jax.supernet.ofa_resnet import space as space_lib  # noqa: E402
from superfed_jax.supernet.tcn import cost as tcn_cost  # noqa: E402
from superfed_jax.supernet.tcn import family as tcn_family  # noqa: E402
from superfed_jax.supernet.tcn import space as tcn_space_lib  # noqa: E402
from superfed_jax.run import build as build_lib  # noqa: E402
from superfed_jax.data import partition  # noqa: E402

SCALING_DEVICES = (1, 2, 4, 8)
ALPHAS = (100.0, 1.0, 0.1)
# Reduced CIFAR-shaped settings: the paper space costs 3.4 GMACs per image forward, ~20 GFLOP per trained
# image, so a CPU round can hold only a few dozen images; accelerators get P = 8 at batch 64. On CPU one
# client per chunk, as in the recorded results (RESULTS.md); since masked_sums adds client slices instead
# of reducing the client axis, chunks of 2 cost the same (2.11 vs 2.20 s per quick round).
CIFAR_SETTINGS = {  # (platform kind, quick) -> settings
    ("cpu", True): dict(num_clients=4, clients_per_round=2, chunk_size=1, epochs=1, batch_size=8,
                        examples_per_client=8, rounds=2),
    ("cpu", False): dict(num_clients=8, clients_per_round=4, chunk_size=1, epochs=1, batch_size=16,
                         examples_per_client=32, rounds=3),
    ("accelerator", True): dict(num_clients=20, clients_per_round=8, chunk_size=8, epochs=1,
                                batch_size=64, examples_per_client=64, rounds=3),
    ("accelerator", False): dict(num_clients=20, clients_per_round=8, chunk_size=8, epochs=1,
                                 batch_size=64, examples_per_client=256, rounds=5),
}

# The elastic TCN on synthetic Shakespeare-shaped data (`synthetic_window_counts`): clients, the cut of the
# heavy tail, timed rounds, and the client-step line's batch and repeats. Accelerators get TFF's 715 clients.
TCN_SETTINGS = {  # (platform kind, quick) -> settings
    ("cpu", True): dict(num_clients=32, max_windows=64, rounds=2, step_batch=32, step_repeats=5),
    ("cpu", False): dict(num_clients=64, max_windows=128, rounds=3, step_batch=32, step_repeats=10),
    ("accelerator", True): dict(num_clients=715, max_windows=1000, rounds=3, step_batch=32, step_repeats=10),
    ("accelerator", False): dict(num_clients=715, max_windows=1000, rounds=5, step_batch=32,
                                 step_repeats=20),
}


def load_config(name: str, variant: str = ""):
    """`get_config()` of configs/<name>.py (unlocked); `get_config(variant)` with a variant ('cpu')."""
    spec = importlib.util.spec_from_file_location(f"configs_{name}", os.path.join(ROOT, "configs",
                                                                                   f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()


def resolve_conv_impl(flag: str) -> str:
    """'auto': im2col on CPU (fast inside loops, docs/performance.md 3), XLA's convolution elsewhere."""
    if flag != "auto":
        return flag
    return "im2col" if jax.default_backend() == "cpu" else "xla"


def write_synthetic_cifar(path: str, num_train: int, seed: int = 0) -> None:
    """A CIFAR-10-shaped .npz: uint8 [N, 32, 32, 3] noise images and balanced labels of 10 classes."""
    rng = np.random.default_rng(seed)
    np.savez(path, x_train=rng.integers(0, 256, (num_train, 32, 32, 3), dtype=np.uint8),
             y_train=rng.permutation(np.arange(num_train) % 10).astype(np.int32),
             x_test=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
             y_test=(np.arange(20) % 10).astype(np.int32))


def cifar_config(settings: dict, npz_path: str, alpha: float = 0.0):
    """configs/cifar10.py on the synthetic data, with the reduced clients / examples / steps of `settings`.

    alpha 0: an IID partition (equal client sizes); else Dirichlet with that alpha (skewed sizes and
    labels, the paper's setting at 0.1), clients of at least `min_client_size` examples.
    """
    config = load_config("cifar10")
    if alpha:
        config.data.update(name="npz", path=npz_path, val_fraction=0.0, partition="dirichlet", alpha=alpha,
                           min_client_size=settings.get("min_client_size", 4))
    else:
        config.data.update(name="npz", path=npz_path, val_fraction=0.0, partition="iid")
    config.fl.update(num_clients=settings["num_clients"], clients_per_round=settings["clients_per_round"],
                     chunk_size=settings["chunk_size"], rounds=settings["rounds"] + 1)
    config.client.update(epochs=settings["epochs"], batch_size=settings["batch_size"])
    return config


def synthetic_window_counts(num_clients: int, max_windows: int, seed: int = 0) -> np.ndarray:
    """int [K]: training windows per client, heavy-tailed like TFF's Shakespeare (715 roles: min 1,
    median 17, max about 1,000 windows): log-normal with median 17 and sigma 1.4 (which puts the largest
    of 715 draws near 1,000), rounded, at least 1 and at most `max_windows` (the cut that keeps a CPU
    round short; it truncates the tail, the median stays)."""
    rng = np.random.default_rng(seed)
    counts = np.rint(np.exp(rng.normal(np.log(17.0), 1.4, num_clients)))
    return np.clip(counts, 1, max_windows).astype(np.int64)


def write_synthetic_shakespeare(folder: str, counts: np.ndarray, seed: int = 0) -> None:
    """A TFF-layout Shakespeare folder (shakespeare_train.h5, shakespeare_test.h5; examples/<client>/snippets
    byte strings, what `data.name='shakespeare'` reads) of random text: client k gets `counts[k]` snippets
    of 1 to 79 random characters of TFF's vocabulary, each exactly one 80-token window ([bos] + text +
    [eos] fits one 81-token piece), so about half of a window's positions are real characters; the test
    file holds two snippets of each of the first 10 clients (the round never reads it)."""
    import h5py
    from superfed_jax.data.text import tff_shakespeare as tff
    chars = np.array(list(tff.TFF_CHARS.replace("\r", "").replace("\n", "")))
    rng = np.random.default_rng(seed)

    def snippets(n):
        return np.array(["".join(rng.choice(chars, int(rng.integers(1, 80)))).encode() for _ in range(n)],
                        dtype="S")

    os.makedirs(folder, exist_ok=True)
    with h5py.File(os.path.join(folder, tff.TRAIN_FILE), "w") as f:
        for k, n in enumerate(counts):
            f.create_dataset(f"examples/ROLE_{k:04d}/snippets", data=snippets(int(n)))
    with h5py.File(os.path.join(folder, tff.TEST_FILE), "w") as f:
        for k in range(min(10, len(counts))):
            f.create_dataset(f"examples/ROLE_{k:04d}/snippets", data=snippets(2))


def tcn_config(settings: dict, folder: str):
    """configs/shakespeare.py:cpu (channels 128, 8 clients a round, 2 local epochs, batch 32, natural
    clients, a tenth of each client's windows held out) on the synthetic folder, K = settings' clients
    (and P = settings' clients_per_round where given).
    fl.rounds stays the config's (150): the timed rounds are its first ones, with its beta schedule."""
    config = load_config("shakespeare", "cpu")
    config.data.path = folder
    config.fl.num_clients = settings["num_clients"]
    if "clients_per_round" in settings:  # an override only: the settings tables keep the config's 8
        config.fl.clients_per_round = settings["clients_per_round"]
    return config


def apply_space(config, space: str):
    """`--space`: 'config' keeps the config's supernet space; 'smoke' puts its family's tiny smoke space
    over it (what the `:smoke` variant uses), for a run that only checks the code paths."""
    if space == "smoke":
        family = family_lib.family_class(config.model.get("family", family_lib.DEFAULT_FAMILY))
        config.space.update(**family.smoke_space())
    return config


def tcn_client_steps(family, batch: int, repeats: int) -> dict:
    """One client step (`benchmarks/tcn_step.py`) of the smallest and the largest arch, masked / sliced /
    dense, executions interleaved: median seconds, windows/s and the ratios."""
    import tcn_step
    out = {"batch": batch, "window": family.space.window, "repeats": repeats, "archs": {}}
    supernet = family.macs(family.largest())
    for name, arch in (("smallest", family.smallest()), ("largest", family.largest())):
        seconds = tcn_step.step_seconds(family, arch, batch, repeats, ("masked", "sliced", "dense"))
        out["archs"][name] = {
            "arch": family.arch_to_json(arch), "macs_per_token": family.macs(arch),
            "macs_fraction_of_supernet": family.macs(arch) / supernet, "seconds": seconds,
            "windows_per_s": {k: batch / v for k, v in seconds.items()},
            "masked_over_sliced": seconds["masked"] / seconds["sliced"],
            "sliced_over_dense": seconds["sliced"] / seconds["dense"]}
    return out


# ---------------------------------------------------------------------------------------- measurements


def peak_matmul_flops(dtype: str, repeats: int = 5, n: int = 0) -> dict:
    """The best FLOP/s of a big jitted square matmul in `dtype`, n x n (n 0: 2048 on CPU, 8192 on
    accelerators)."""
    n = n or (2048 if jax.default_backend() == "cpu" else 8192)
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(dtype))
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.dtype(dtype))
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return {"n": n, "dtype": dtype, "best_s": min(times), "flops_per_s": 2 * n ** 3 / min(times)}


def envelope_macs(space, depth: np.ndarray, expand: np.ndarray) -> int:
    """Forward MACs per image of the OFA-ResNet envelope of a group of archs (depth [C, stages], expand [C, blocks]).

    The host twin of `sliced.chunk_envelope`: per block the widest expand among the archs that keep it.
    """
    active = np.asarray(space_lib.block_active(space, space_lib.Arch(depth, expand)))
    widest = np.where(active, expand, 0).max(axis=0)
    # Kept blocks are a prefix of every stage, so the group's kept blocks are those of its deepest arch.
    return int(cost.macs_batch(space, depth.max(axis=0)[None], widest[None])[0])


def tcn_envelope_macs(space, depth: np.ndarray, expand: np.ndarray) -> int:
    """Forward MACs per token of the elastic TCN's envelope of a group of archs (depth [C], expand [C, levels]).

    The host twin of `supernet/tcn/sliced.envelope`: the most blocks any arch keeps (kept blocks are a
    prefix, so the deepest arch's) and, per block, the widest expand index among the archs that keep it.
    """
    depth, expand = np.asarray(depth), np.asarray(expand)
    keeps = tcn_space_lib.kept(space, tcn_space_lib.TCNArch(depth, expand), np)
    widest = np.where(keeps, expand, 0).max(axis=0)
    return tcn_cost.macs(space, tcn_space_lib.TCNArch(depth.max(), widest))


# Per family name: the group envelope's forward MACs per `cost_unit` (space, depth [C, ...], expand [C, ...]).
ENVELOPE_MACS = {"ofa_resnet": envelope_macs, "tcn": tcn_envelope_macs}


def units_per_example(family) -> int:
    """How many `family.macs` units one example is: the tokens of a window for a per-token cost (the
    TCN: `family.macs(arch)` is per token and a window of T tokens costs T times that), else 1 (images)."""
    if family.cost_unit == "token":
        return int(np.prod(family.data_shape.input_shape))
    if family.cost_unit == "image":
        return 1
    raise ValueError(f"family {family.name!r}: cost_unit {family.cost_unit!r} is neither 'image' nor 'token'")


def as_family(family_or_space):
    """A `Family`; an OFA-ResNet `SearchSpace` (what `round_work` took before it took families, still
    passed by benchmarks/paper_work.py and execution.py) becomes the OFA-ResNet family of that space."""
    if isinstance(family_or_space, space_lib.SearchSpace):
        return ofa_family.OFAResNet(family_or_space)
    return family_or_space


def round_work(family, sizes: np.ndarray, max_size: int, assignments: list, epochs: int,
               batch_size: int, chunk_size: int, execution: str = "masked", layout: str = "vmap",
               example_macs=None, envelope_example_macs=None) -> dict:
    """Real and computed work of rounds, from their clients and archs (host arithmetic, exact).

    `family`: the supernet family (`Family`), or an OFA-ResNet `SearchSpace` (`as_family`).
    `assignments`: per round, `clients` [P] and `archs` (the family's arch pytree [P]), as in the round's metrics.
    `example_macs(archs[C]) -> int64 [C]`: forward MACs of one example of each arch; by default
    `family.macs_batch(archs)` times `units_per_example(family)` (x 1 for an image, x the window's T
    tokens for the TCN). `envelope_example_macs(archs[C]) -> int`: forward MACs of one example at the
    sliced envelope of a group of archs; by default `ENVELOPE_MACS[family.name]` times the same units.

    Computed steps: vmapped, every client of a chunk runs the chunk's largest step count, chunks cut from
    the clients ordered by steps then MACs (`round.chunk_order`; benchmarks/chunks.py); side by side,
    every client runs its own steps. `padded_steps` is what
    the round computed before that, every client as many steps as the partition's largest client.
    Computed MACs per example: the supernet's for `execution='masked'`; for 'sliced' the envelope's
    (`supernet/*/sliced.py`): the chunk's with vmapped clients, each client's own arch side by side.
    Every row of a computed step costs an example's MACs x 3 (forward + backward); useful MACs are the
    trained archs' on the real examples only.
    """
    family = as_family(family)
    units = units_per_example(family)
    if example_macs is None:
        def example_macs(archs):
            return np.asarray(family.macs_batch(archs), np.int64) * units
    if envelope_example_macs is None:
        envelope_of = ENVELOPE_MACS.get(family.name)

        def envelope_example_macs(archs):
            if envelope_of is None:
                raise ValueError(f"family {family.name!r}: no host envelope cost; pass envelope_example_macs")
            return envelope_of(family.space, np.asarray(archs.depth), np.asarray(archs.expand)) * units
    supernet_macs = int(example_macs(jax.tree.map(lambda a: np.asarray(a)[None], family.largest()))[0])
    padded_steps_per_client = epochs * client_lib.steps_per_epoch(max_size, batch_size)
    totals = dict(real_steps=0, computed_steps=0, padded_steps=0, real_examples=0, computed_rows=0,
                  useful_macs=0, supernet_macs_on_real_examples=0, computed_macs=0)
    for m in assignments:
        clients = np.asarray(m["clients"])
        archs = jax.tree.map(np.asarray, m["archs"])
        n = sizes[clients].astype(np.int64)
        arch_macs = np.asarray(example_macs(archs), np.int64)
        steps = epochs * -(-n // batch_size)
        order = chunks.sorted_positions(steps, arch_macs)
        computed_steps = chunks.chunked_steps(steps, chunk_size, order)
        if layout == "side_by_side":  # every client runs its own steps (client.make_side_by_side_update)
            computed_steps = int(steps.sum())
        for chunk in order.reshape(-1, chunk_size):
            # Vmapped, every client of a chunk runs the chunk's largest step count.
            client_steps = steps[chunk] if layout == "side_by_side" else [int(steps[chunk].max())] * len(chunk)
            if execution == "masked":
                per_example = [supernet_macs] * len(chunk)
            elif layout == "side_by_side":
                per_example = [int(arch_macs[i]) for i in chunk]
            else:
                group = jax.tree.map(lambda a: a[chunk], archs)
                per_example = [int(envelope_example_macs(group))] * len(chunk)
            totals["computed_macs"] += 3 * batch_size * int(np.dot(client_steps, per_example))
        totals["padded_steps"] += len(clients) * padded_steps_per_client
        totals["real_steps"] += int(epochs * np.sum(-(-n // batch_size)))
        totals["computed_steps"] += computed_steps
        totals["real_examples"] += int(epochs * n.sum())
        totals["computed_rows"] += computed_steps * batch_size
        totals["useful_macs"] += int(3 * epochs * np.sum(arch_macs * n))
        totals["supernet_macs_on_real_examples"] += int(3 * epochs * n.sum() * supernet_macs)
    return totals


def peak_memory(compiled) -> dict:
    """Peak device memory with its source; the process's max RSS in any case."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        peak, source = stats["peak_bytes_in_use"], "memory_stats peak_bytes_in_use (process-wide)"
    else:
        peak = memory.compiled_peak_bytes(compiled)
        source = "XLA memory_analysis of the compiled round (arguments + outputs - aliases + temps)"
    return {"peak_bytes": peak, "source": source,
            "process_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def time_rounds(run, rounds: int):
    """Compiles the round explicitly (timed), runs one warm-up round, then times `rounds` rounds."""
    start = time.perf_counter()
    compiled = run.round_fn.lower(run.state, run.data).compile()
    compile_s = time.perf_counter() - start
    state, metrics = compiled(run.state, run.data)
    jax.block_until_ready(state)
    records, times = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        state, metrics = compiled(state, run.data)
        jax.block_until_ready(state)  # per round, to see the spread (a shared machine is noisy)
        times.append(time.perf_counter() - start)
        records.append(metrics)
    return compiled, compile_s, times, jax.device_get(records), state


def scored_targets(data) -> np.ndarray:
    """int64 [K]: per client, the training targets that are scored (labels >= 0; token windows only)."""
    labels = np.asarray(data.labels)
    per_row = (labels.reshape(labels.shape[0], -1) >= 0).sum(axis=1)
    table, sizes = np.asarray(data.index_table), np.asarray(data.sizes)
    real = np.arange(table.shape[1])[None, :] < sizes[:, None]
    return np.where(real, per_row[table], 0).sum(axis=1).astype(np.int64)


def measure(name: str, config, rounds: int, loop_impls) -> dict:
    """Every per-workload number of the module docstring for one config (its `model.execution` resolved)."""
    run = build_lib.build(config)
    layout = build_lib.client_layout(config, run.mesh)
    execution = build_lib.execution(config, layout, run.family)
    estimate = memory.config_estimate(config, run.family, num_devices=run.mesh.devices.size,
                                      data_bytes=memory.data_bytes(run.data))
    compiled, compile_s, times, assignments, state = time_rounds(run, rounds)
    elapsed = sum(times)
    sizes, max_size = np.asarray(run.data.sizes), int(run.data.index_table.shape[1])
    work = round_work(run.family, sizes, max_size, assignments, config.client.epochs,
                      config.client.batch_size, config.fl.chunk_size or config.fl.clients_per_round,
                      execution, layout)
    mem = peak_memory(compiled)
    result = {
        "workload": name, "family": run.family.name, "cost_unit": run.family.cost_unit,
        "rounds_timed": rounds, "devices": int(run.mesh.devices.size),
        "conv_impl": config.model.conv_impl, "dtype": config.model.dtype,
        "client_layout": layout, "execution": execution,
        "settings": {"num_clients": config.fl.num_clients, "clients_per_round": config.fl.clients_per_round,
                     "chunk_size": config.fl.chunk_size, "epochs": config.client.epochs,
                     "batch_size": config.client.batch_size, "train_examples": int(sizes.sum()),
                     "max_client_size": max_size, "client_sizes": sizes.tolist()},
        "compile_s": compile_s, "s_per_round": elapsed / rounds, "round_times_s": times,
        "real_client_steps_per_s": work["real_steps"] / elapsed,
        "computed_client_steps_per_s": work["computed_steps"] / elapsed,
        "examples_per_s": work["real_examples"] / elapsed,
        "useful_macs_per_s": work["useful_macs"] / elapsed,
        "computed_macs_per_s": work["computed_macs"] / elapsed,
        "padding_waste_steps": 1 - work["real_steps"] / work["computed_steps"],
        "padding_waste_steps_before_chunk_steps": 1 - work["real_steps"] / work["padded_steps"],
        "padding_waste_rows": 1 - work["real_examples"] / work["computed_rows"],
        "masked_waste": 1 - work["useful_macs"] / work["supernet_macs_on_real_examples"],
        "useful_fraction_of_computed_macs": work["useful_macs"] / work["computed_macs"],
        "computed_over_useful_macs": work["computed_macs"] / work["useful_macs"],
        "work": work, "memory": {**mem, "estimate_bytes": estimate["total_bytes"],
                                 "estimate_over_peak": estimate["total_bytes"] / mem["peak_bytes"]},
    }
    if run.family.cost_unit == "token":
        # A real window costs all T positions (the causal convolutions run on every one); the scored
        # targets (non-padding, `labels >= 0`) are a subset, reported apart.
        tokens = units_per_example(run.family)
        scored = scored_targets(run.data)
        scored_trained = sum(int(config.client.epochs * scored[np.asarray(m["clients"])].sum())
                             for m in assignments)
        result.update(tokens_per_window=tokens, tokens_per_s=work["real_examples"] * tokens / elapsed,
                      scored_tokens_per_s=scored_trained / elapsed,
                      scored_fraction_of_real_tokens=scored_trained / (work["real_examples"] * tokens))
        result["settings"]["train_scored_targets"] = int(scored.sum())
    else:
        result["images_per_s"] = result["examples_per_s"]
    if loop_impls:
        loop_s = {impl: round_speed.time_loop(run, config, assignments, state.params, impl)
                  for impl in loop_impls}
        result["loop_s_per_round"] = {impl: t / rounds for impl, t in loop_s.items()}
        result["loop_over_compiled"] = {impl: t / elapsed for impl, t in loop_s.items()}
    return result


def expected_padding(labels: np.ndarray, num_clients: int, batch_size: int, seeds=(0, 1, 2),
                     clients_per_round: int = 8, chunk_size: int = 2, draws: int = 200) -> dict:
    """Expected padding waste of a round under Dirichlet partitions (clients are sampled uniformly).

    A client of n examples needs ceil(n / batch) steps per epoch. Padded to the partition's largest client
    (as before chunks had their own step counts), every client runs ceil(max size / batch) steps; with
    chunks of `chunk_size` of `clients_per_round` sampled clients, ordered by steps, every client runs its
    chunk's largest count (`draws` random rounds per seed; archs are not modelled, ties keep the order).
    """
    out = {}
    rng = np.random.default_rng(0)
    for alpha in ALPHAS:
        steps, rows, chunked = [], [], []
        for seed in seeds:
            parts = partition.make_partition(labels, num_clients, "dirichlet", seed, alpha=alpha)
            n = np.array([len(p) for p in parts])
            computed = -(-n.max() // batch_size)
            steps.append(1 - np.mean(-(-n // batch_size)) / computed)
            rows.append(1 - np.mean(n) / (computed * batch_size))
            for _ in range(draws):
                own = -(-n[rng.choice(num_clients, clients_per_round, replace=False)] // batch_size)
                by_steps = np.argsort(own, kind="stable")
                chunked.append(1 - own.sum() / chunks.chunked_steps(own, chunk_size, by_steps))
        out[str(alpha)] = {"padding_waste_steps": float(np.mean(steps)),
                           "padding_waste_rows": float(np.mean(rows)), "seeds": list(seeds),
                           f"padding_waste_steps_sorted_chunks_of_{chunk_size}_of_{clients_per_round}":
                               float(np.mean(chunked))}
    return out


def padding_tables() -> dict:
    """Expected Dirichlet padding waste at K 20: digits (batch 32) and CIFAR-10 (45,000 images, batch 64)."""
    digits = load_config("digits")
    labels = data_lib.load_dataset(digits.data, digits.seed).y_train
    cifar_labels = np.arange(45_000) % 10  # CIFAR-10's 50,000 less the 10% validation hold-out
    return {f"digits (N={len(labels)}, K=20, B=32)": expected_padding(labels, 20, 32),
            "cifar10 (N=45000, K=20, B=64)": expected_padding(cifar_labels, 20, 64)}


# -------------------------------------------------------------------------------------------- scaling


def scaling_worker(rounds: int) -> dict:
    """In a subprocess with N fake CPU devices: the digits round with its clients split over them."""
    config = load_config("digits")
    # vmap: a chunk's clients are split over the devices. im2col: XLA:CPU miscompiles client-sharded
    # "xla" convolutions (tests/test_round.py::test_client_sharded_forward_matches_unsharded).
    config.fl.update(client_layout="vmap", chunk_size=config.fl.clients_per_round)
    config.model.conv_impl = "im2col"
    run = build_lib.build(config)
    _, compile_s, times, _, _ = time_rounds(run, rounds)
    return {"devices": jax.device_count(), "compile_s": compile_s, "s_per_round": sum(times) / rounds,
            "round_times_s": times}


def run_scaling(rounds: int) -> list:
    """`scaling_worker` for each device count, each in its own process."""
    results = []
    for devices in SCALING_DEVICES:
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} "
                             f"--xla_force_host_platform_device_count={devices}".strip())
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--scaling_worker",
                               f"--rounds={rounds}"], env=env, cwd=ROOT, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            raise RuntimeError(f"scaling worker with {devices} devices failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(lines[-1]))
    for r in results:
        r["speedup_over_1_device"] = results[0]["s_per_round"] / r["s_per_round"]
    return results


# ---------------------------------------------------------------------------------------------- report


def add_peak_fractions(results: dict) -> None:
    """MACs/s as fractions of the best peak matmul FLOP/s measured (2 FLOPs per MAC); before the end's
    measurement (a partial save), of the start's."""
    peak = max(results["peak_matmul"]["flops_per_s"],
               results.get("peak_matmul_at_end", results["peak_matmul"])["flops_per_s"])
    results["peak_flops_per_s"] = peak
    for r in results["workloads"].values():
        r["useful_fraction_of_peak"] = 2 * r["useful_macs_per_s"] / peak
        r["computed_fraction_of_peak"] = 2 * r["computed_macs_per_s"] / peak


def machine_info() -> dict:
    """Versions, devices and the CPU load when the suite started."""
    device = jax.local_devices()[0]
    return {"backend": jax.default_backend(), "device_kind": device.device_kind,
            "local_devices": jax.local_device_count(), "cpu_count": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "load_average_at_start": os.getloadavg()}


def _cpu_model() -> str:
    """The host CPU's model name (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def format_table(results: dict) -> str:
    """A plain-text summary of the JSON results."""
    peak, end = results["peak_matmul"], results.get("peak_matmul_at_end", {})
    lines = [f"peak matmul: {peak['flops_per_s'] / 1e9:.1f} GFLOP/s at the start, "
             f"{end.get('flops_per_s', float('nan')) / 1e9:.1f} at the end ({peak['dtype']}, n={peak['n']}); "
             f"load average {results['machine']['load_average_at_start'][0]:.1f} -> "
             f"{results['machine'].get('load_average_at_end', [float('nan')])[0]:.1f}", ""]
    header = (f"{'workload / execution':<26}{'s/round':>9}{'min s':>8}{'steps/s':>9}{'ex/s':>9}{'tok/s':>9}"
              f"{'GMAC/s':>9}{'%peak':>7}"
              f"{'compile':>9}{'peak MB':>9}{'est/peak':>9}{'pad':>6}{'padrow':>7}{'mask':>6}{'cmp/use':>8}{'loop/cmp':>9}")
    lines.append(header)
    for name, r in results["workloads"].items():
        loop = r.get("loop_over_compiled", {})
        best_loop = min(loop.values()) if loop else float("nan")
        lines.append(f"{name:<26}{r['s_per_round']:>9.3f}{min(r['round_times_s']):>8.3f}"
                     f"{r['real_client_steps_per_s']:>9.1f}"
                     f"{r['examples_per_s']:>9.1f}{r.get('tokens_per_s', float('nan')):>9.0f}"
                     f"{r['useful_macs_per_s'] / 1e9:>9.2f}"
                     f"{100 * r['useful_fraction_of_peak']:>7.1f}{r['compile_s']:>9.1f}"
                     f"{r['memory']['peak_bytes'] / 1e6:>9.0f}{r['memory']['estimate_over_peak']:>9.2f}"
                     f"{r['padding_waste_steps']:>6.2f}{r['padding_waste_rows']:>7.2f}{r['masked_waste']:>6.2f}"
                     f"{r['computed_over_useful_macs']:>8.2f}{best_loop:>9.2f}")
    lines.append("(ex/s: images, or token windows; tok/s: every position of the real windows; pad / padrow: "
                 "padding waste of steps / batch rows; cmp/use: computed over useful MACs)")
    steps = results.get("tcn_client_steps")
    if steps:
        lines.append(f"\nTCN client step (batch {steps['batch']} windows of {steps['window']} tokens, median of "
                     f"{steps['repeats']}), ms masked / sliced / dense:")
        for name, r in steps["archs"].items():
            ms = r["seconds"]
            lines.append(f"  {name:<9} ({r['macs_fraction_of_supernet']:.3f} of the supernet's MACs): "
                         f"{1e3 * ms['masked']:.1f} / {1e3 * ms['sliced']:.1f} / {1e3 * ms['dense']:.1f}; "
                         f"masked/sliced {r['masked_over_sliced']:.2f}x, sliced/dense {r['sliced_over_dense']:.2f}x")
    for name, by_alpha in results.get("padding_by_alpha", {}).items():
        lines.append(f"\nexpected padding waste, {name} (steps / rows, padded to the largest client; "
                     "steps, sorted chunks with own steps): " + ", ".join(
            f"alpha {a}: {v['padding_waste_steps']:.2f} / {v['padding_waste_rows']:.2f}; "
            f"{next(x for k, x in v.items() if k.startswith('padding_waste_steps_sorted')):.2f}"
            for a, v in by_alpha.items()))
    if results.get("scaling"):
        lines.append("\nfake CPU devices: " + ", ".join(
            f"{r['devices']}: {r['s_per_round']:.3f} s ({r['speedup_over_1_device']:.2f}x)"
            for r in results["scaling"]))
    return "\n".join(lines)


def save(results: dict, out: str) -> None:
    """Writes the results so far (a copy with the peak fractions of what is measured yet), replacing the
    file in one rename: a reader never sees half a JSON, even when the run is killed while writing."""
    results = json.loads(json.dumps(results))
    add_peak_fractions(results)
    with open(out + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(out + ".tmp", out)


def parse_args(argv=None):
    """The command line of the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller CIFAR workload")
    parser.add_argument("--out", default="", help="JSON path (default benchmarks/suite_<platform>.json)")
    parser.add_argument("--conv_impl", default="auto", choices=["auto", "xla", "im2col"],
                        help="model.conv_impl of both workloads; auto: im2col on CPU, xla elsewhere")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="model.dtype of both workloads and of the peak matmul")
    parser.add_argument("--only", default="digits,cifar,tcn", help="comma list of workloads: digits, cifar, tcn")
    parser.add_argument("--skip", default="", help="comma list of: loop, scaling, padding, steps (the TCN's "
                        "client-step line)")
    parser.add_argument("--rounds", type=int, default=0, help="timed rounds (default by mode)")
    parser.add_argument("--client_layout", default="auto", choices=["auto", "vmap", "side_by_side"],
                        help="fl.client_layout of both workloads")
    parser.add_argument("--cifar", default="{}", help='JSON overrides of the CIFAR settings, e.g. '
                        '\'{"chunk_size": 1, "examples_per_client": 16}\'')
    parser.add_argument("--tcn", default="{}", help='JSON overrides of the TCN settings, e.g. '
                        '\'{"num_clients": 16, "max_windows": 32}\'')
    parser.add_argument("--executions", default="masked,sliced",
                        help="comma list of model.execution values, each workload runs once per value")
    parser.add_argument("--cifar_alphas", default="100,0.1",
                        help="Dirichlet alphas of the CIFAR-shaped workload, one workload each (0: IID)")
    parser.add_argument("--space", default="config", choices=["config", "smoke"],
                        help="supernet space of every workload: the config's, or its family's tiny smoke "
                             "space (checks that the code paths run; not for figures)")
    parser.add_argument("--matmul_n", type=int, default=0,
                        help="size of the peak-rate matmul (0: 2048 on CPU, 8192 on accelerators)")
    parser.add_argument("--scaling_worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Runs the suite, prints the table and writes the JSON; returns the results."""
    args = parse_args(argv)
    if args.scaling_worker:
        print(json.dumps(scaling_worker(args.rounds or 3)))
        return {}
    kind = "cpu" if jax.default_backend() == "cpu" else "accelerator"
    skip, only = set(filter(None, args.skip.split(","))), set(args.only.split(","))
    conv_impl = resolve_conv_impl(args.conv_impl)
    out = args.out or os.path.join(ROOT, "benchmarks", f"suite_{jax.default_backend()}.json")
    results = {"machine": machine_info(), "quick": args.quick, "space": args.space, "dtype": args.dtype,
               "conv_impl": conv_impl, "complete": False, "workloads": {}}
    # Measured at the start and at the end, the best is the peak: other processes may share the machine.
    results["peak_matmul"] = peak_matmul_flops(args.dtype, n=args.matmul_n)
    executions = args.executions.split(",")
    # The loop comparison runs the masked step: once per workload, with the first execution.
    if "digits" in only:
        for execution in executions:
            config = load_config("digits")
            config.model.update(conv_impl=conv_impl, dtype=args.dtype, execution=execution)
            config.fl.client_layout = args.client_layout
            apply_space(config, args.space)
            loop = [] if "loop" in skip or execution != executions[0] else ["im2col", "xla_mmgrad", "xla"]
            rounds = args.rounds or (2 if args.quick else 5)
            results["workloads"][f"digits/{execution}"] = measure("digits", config, rounds, loop)
            save(results, out)
    if "cifar" in only:
        settings = {**CIFAR_SETTINGS[(kind, args.quick)], **json.loads(args.cifar)}
        settings["rounds"] = args.rounds or settings["rounds"]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "cifar_synthetic.npz")
            write_synthetic_cifar(path, settings["num_clients"] * settings["examples_per_client"])
            for alpha in [float(a) for a in args.cifar_alphas.split(",")]:
                name = f"cifar_alpha{alpha:g}" if alpha else "cifar_iid"
                for execution in executions:
                    config = cifar_config(settings, path, alpha)
                    config.model.update(conv_impl=conv_impl, dtype=args.dtype, execution=execution)
                    config.fl.client_layout = args.client_layout
                    apply_space(config, args.space)
                    loop = [] if "loop" in skip or execution != executions[0] else [conv_impl]
                    results["workloads"][f"{name}/{execution}"] = measure(name, config, settings["rounds"], loop)
                    save(results, out)
    if "tcn" in only:
        settings = {**TCN_SETTINGS[(kind, args.quick)], **json.loads(args.tcn)}
        settings["rounds"] = args.rounds or settings["rounds"]
        counts = synthetic_window_counts(settings["num_clients"], settings["max_windows"])
        synthetic = {"windows_per_client_min": int(counts.min()), "median": float(np.median(counts)),
                     "max": int(counts.max()), "total": int(counts.sum())}
        with tempfile.TemporaryDirectory() as tmp:
            write_synthetic_shakespeare(tmp, counts)
            for execution in executions:
                config = tcn_config(settings, tmp)
                config.model.update(dtype=args.dtype, execution=execution)
                config.fl.client_layout = args.client_layout
                apply_space(config, args.space)
                result = measure("tcn", config, settings["rounds"], [])
                result["settings"].update(channels=config.space.channels, synthetic_data=synthetic,
                                          suite_settings=settings)
                results["workloads"][f"tcn/{execution}"] = result
                save(results, out)
        if "steps" not in skip:
            family = tcn_family.ElasticTCN.from_config(config.space, dtype=args.dtype)
            results["tcn_client_steps"] = tcn_client_steps(family, settings["step_batch"],
                                                           settings["step_repeats"])
    if "padding" not in skip:
        results["padding_by_alpha"] = padding_tables()
    if "scaling" not in skip:
        results["scaling"] = run_scaling(args.rounds or (2 if args.quick else 5))
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["peak_matmul_at_end"] = peak_matmul_flops(args.dtype, n=args.matmul_n)
    add_peak_fractions(results)
    results["complete"] = True
    save(results, out)
    print(format_table(results))
    print(f"\nwrote {out}")
    return results


if __name__ == "__main__":
    main()
