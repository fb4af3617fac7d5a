"""One client step of the elastic TCN: masked vs sliced vs dense execution of one arch, on this machine.

    python benchmarks/tcn_step.py [--arch=smallest] [--batch=32] [--repeats=20] [--space=shakespeare]

A step is the forward and backward pass of the summed cross-entropy over every position of a batch of
token windows, plus the SGD update of the params it trains (what a client runs per local step), with
dropout on. 'masked' trains the full supernet with the arch's masks; 'sliced' the supernet at the arch's
own envelope (`Family.sliced`, a group of one client); 'dense' the extracted subnet alone (the lower
bound: no supernet at all). Each is jitted and warmed up, then timed as the median of `--repeats` steps,
the executions interleaved.
The space 'shakespeare' is the reference's char model (V 80, C 450, 3 levels, e 0.2/0.5/1.0), 'ptb' the
word model (V 10000, C 600, 4 levels). The last line of output is one JSON object with every figure.
"""
import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from superfed_jax.supernet import archs as archs_lib  # noqa: E402
from superfed_jax.supernet.tcn.family import ElasticTCN, TCNSpace  # noqa: E402

SPACES = {"shakespeare": TCNSpace(channels=450, levels=3, expand_choices=(0.2, 0.5, 1.0), num_classes=80),
          "ptb": TCNSpace()}


def _loss(logits, labels):
    logp = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.take_along_axis(logp, labels[..., None], axis=-1))


def _timed(steps: dict, starts: dict, repeats: int) -> dict:
    """Median seconds of one step of each execution, the executions interleaved (one step of each per
    repeat), so that load from other processes on a shared machine hits them alike."""
    state = {name: jax.block_until_ready(step(starts[name])) for name, step in steps.items()}  # compile
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            begin = time.perf_counter()
            state[name] = jax.block_until_ready(step(state[name]))
            times[name].append(time.perf_counter() - begin)
    return {name: statistics.median(values) for name, values in times.items()}


EXECUTIONS = ("masked", "sliced", "sliced_no_dropout", "dense")


def step_seconds(family: ElasticTCN, arch, batch: int, repeats: int, executions=EXECUTIONS,
                 seed: int = 0) -> dict:
    """{execution: median seconds of one SGD step} of `arch` on random windows [batch, T] (`_timed`).

    The step of each execution of the module docstring, on the same tokens, labels and dropout key;
    `benchmarks/suite.py` calls it for its TCN workload's family.
    """
    params = family.init(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    shape = (batch, family.space.window)
    tokens = jnp.asarray(rng.integers(0, family.space.num_classes, shape), jnp.int32)
    labels = jnp.asarray(rng.integers(0, family.space.num_classes, shape), jnp.int32)
    key = jax.random.key(seed + 1)
    sliced = family.sliced
    envelope = sliced.envelope(jax.tree.map(lambda a: np.asarray(a)[None], arch))

    def sgd(forward):
        @jax.jit
        def step(params):
            grads = jax.grad(lambda p: _loss(forward(p), labels))(params)
            return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)
        return step

    forwards = {
        "masked": lambda p: family.apply(p, tokens, arch, train=True, rng=key),
        "sliced": lambda p: sliced.apply(p, tokens, arch, envelope, True, key),
        "sliced_no_dropout": lambda p: sliced.apply(p, tokens, arch, envelope, False, None),
        "dense": lambda p: family.dense_apply(p, tokens, arch),
    }
    forwards = {name: forwards[name] for name in executions}
    starts = {name: family.extract(params, arch) if name == "dense" else params for name in forwards}
    return _timed({name: sgd(forward) for name, forward in forwards.items()}, starts, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="smallest", help="a tracked name or an arch's JSON form")
    parser.add_argument("--space", default="shakespeare", choices=sorted(SPACES))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    family = ElasticTCN(SPACES[args.space])
    arch = archs_lib.arch_from_spec(family, args.arch)
    seconds = step_seconds(family, arch, args.batch, args.repeats)
    for name, value in seconds.items():
        print(f"{name:17s} {value * 1e3:8.2f} ms/step")
    macs = family.macs(arch) / family.macs(family.largest())
    print(f"arch {json.dumps(family.arch_to_json(arch))}: {macs:.3f} of the supernet's MACs; masked/sliced "
          f"{seconds['masked'] / seconds['sliced']:.2f}x, sliced/dense {seconds['sliced'] / seconds['dense']:.2f}x")
    print(json.dumps({"space": args.space, "arch": family.arch_to_json(arch), "batch": args.batch,
                      "window": family.space.window, "macs_fraction": macs,
                      "seconds": seconds, "devices": str(jax.devices())}))


if __name__ == "__main__":
    main()
