"""Compiled round vs the reference execution model, on the same config, in one run.

    python benchmarks/round_speed.py [--config=configs/digits.py] [--rounds=5] [--config.x=...]

The reference SuperFed code (PyTorch/FedML) and FedJAX run a federated round as a Python loop over the
sampled clients and their local steps, calling a compiled single-client step. `superfed_jax` compiles the
whole round (`federated_round.make_round_fn`) into one program. Both are timed here on the same clients,
archs and data (after one warm-up round each, so compilation is excluded) and reported as *real*
client-steps per second (steps holding at least one real example; the compiled round also computes
padding steps, which count as cost, not as work).
"""
import json
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags

import chunks  # benchmarks/chunks.py: the round's computed client-steps
from superfed_jax import aggregation
from superfed_jax.federated import client as client_lib
from superfed_jax.federated import objective
from superfed_jax.run import build as build_lib
from superfed_jax.supernet import conv
from superfed_jax.supernet.ofa_resnet.family import OFAResNet



def define_flags() -> None:
    """This script's flags; defined only when it runs as a program, so that importing it (benchmarks/suite.py,
    tests) defines no global absl flag that a command's own `--config` would collide with."""
    config_flags.DEFINE_config_file("config", "configs/digits.py", "Experiment config.", lock_config=True)
    flags.DEFINE_integer("rounds", 5, "Timed rounds per execution model (after one warm-up round).")
    flags.DEFINE_string("json_out", "", "Optional path for the JSON results.")


def real_steps(sizes: np.ndarray, clients: np.ndarray, epochs: int, batch_size: int) -> int:
    """Client-steps with at least one real example in one round."""
    return int(epochs * np.sum(-(-sizes[clients] // batch_size)))


def make_loop_round(run, config, conv_impl):
    """A Python loop over clients and steps around one jitted single-client step, then jitted aggregation."""
    optimizer = client_lib.make_optimizer(config.client.learning_rate, config.client.clip_norm)
    family = OFAResNet(run.family.space, conv_impl, config.model.dtype)
    train_step = client_lib.make_train_step(
        objective.make_loss_fn(family, run.dataset.mean, run.dataset.std, config.data), optimizer)
    batch_size, epochs = config.client.batch_size, config.client.epochs

    @jax.jit
    def step(params, opt_state, arch, rows, weights, key, images, labels):
        return train_step(params, opt_state, arch, images[rows], labels[rows], weights, key)

    @jax.jit
    def aggregate(client_params, archs, weights, previous):
        client_masks = jax.vmap(family.masks)(archs)
        return aggregation.masked_mean(client_params, client_masks, weights, previous)

    table, sizes = np.asarray(run.data.index_table), np.asarray(run.data.sizes)

    def loop_round(params, clients, archs, weights, seed):
        rng = np.random.default_rng(seed)
        trained = []
        for position, c in enumerate(clients):
            arch = jax.tree.map(lambda x: x[position], archs)
            p, opt_state = params, optimizer.init(params)
            for _ in range(epochs):
                order = rng.permutation(table[c, :sizes[c]])
                for start in range(0, len(order), batch_size):
                    rows = order[start:start + batch_size]
                    real = len(rows)  # the last partial batch is padded to keep one compiled shape
                    rows = np.pad(rows, (0, batch_size - real))
                    mask = (np.arange(batch_size) < real).astype(np.float32)
                    p, opt_state, _ = step(p, opt_state, arch, rows, mask, jax.random.key(start),
                                           run.data.images, run.data.labels)
            trained.append(p)
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *trained)
        return aggregate(stacked, archs, weights, params)

    return loop_round


def time_compiled(run, rounds):
    state, metrics = run.round_fn(run.state, run.data)  # warm-up: compiles
    jax.block_until_ready(state)
    assignments, start = [], time.perf_counter()
    for _ in range(rounds):
        state, metrics = run.round_fn(state, run.data)
        assignments.append(metrics)
    jax.block_until_ready(state)
    return time.perf_counter() - start, jax.device_get(assignments), state


def time_loop(run, config, assignments, params, conv_impl):
    loop_round = make_loop_round(run, config, conv_impl)
    weights = jnp.ones((config.fl.clients_per_round,), jnp.float32)

    def archs_of(m):
        return jax.tree.map(jnp.asarray, m["archs"])

    jax.block_until_ready(loop_round(params, assignments[0]["clients"], archs_of(assignments[0]),
                                     weights, 0))  # warm-up: compiles
    start = time.perf_counter()
    for i, m in enumerate(assignments):
        params = loop_round(params, m["clients"], archs_of(m), weights, i)
    jax.block_until_ready(params)
    return time.perf_counter() - start


def main(argv):
    del argv
    config = flags.FLAGS.config
    run = build_lib.build(config)
    compiled_s, assignments, state = time_compiled(run, flags.FLAGS.rounds)
    # The loop runs with every convolution implementation: the baseline is its fastest.
    loop_s = {impl: time_loop(run, config, assignments, state.params, impl) for impl in conv.CONV_IMPLS}
    sizes = np.asarray(run.data.sizes)
    steps = sum(real_steps(sizes, m["clients"], config.client.epochs, config.client.batch_size)
                for m in assignments)
    computed = sum(chunks.round_steps(sizes, int(run.data.index_table.shape[1]), np.asarray(m["clients"]),
                                      np.asarray(m["archs"].depth), np.asarray(m["archs"].expand),
                                      run.family.space,
                                      epochs=config.client.epochs, batch_size=config.client.batch_size,
                                      chunk_size=config.fl.chunk_size or config.fl.clients_per_round
                                      )["chunked_sorted"] for m in assignments)
    best_loop = min(loop_s.values())
    result = {
        "backend": jax.default_backend(), "devices": jax.device_count(),
        "conv_impl": config.model.conv_impl, "scan_unroll": config.client.scan_unroll,
        "rounds": flags.FLAGS.rounds, "real_client_steps": steps, "computed_client_steps": computed,
        "compiled_s_per_round": compiled_s / flags.FLAGS.rounds,
        "compiled_client_steps_per_s": steps / compiled_s,
        **{f"loop_{impl}_s_per_round": t / flags.FLAGS.rounds for impl, t in loop_s.items()},
        **{f"loop_{impl}_client_steps_per_s": steps / t for impl, t in loop_s.items()},
        "speedup_compiled_over_same_impl_loop": loop_s[config.model.conv_impl] / compiled_s,
        "speedup_compiled_over_fastest_loop": best_loop / compiled_s,
    }
    print(json.dumps(result, indent=2))
    if flags.FLAGS.json_out:
        with open(flags.FLAGS.json_out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    sys.path.insert(0, ".")
    define_flags()
    app.run(main)
