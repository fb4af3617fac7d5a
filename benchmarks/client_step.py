"""One client's training step on the paper CIFAR space: masked supernet, sliced supernet, dense subnet.

    python benchmarks/client_step.py [--batch=64] [--steps=3] [--conv_impl=im2col] [--dtype=float32]
        [--archs=smallest,small,medium,largest] [--out=FILE.json]

For each of the four archs of docs/performance.md 8 (the space's default tracked archs) and each execution,
times a jitted SGD step (forward, backward, global-norm clipping, update) of one client on a batch of
random 32x32x3 images, after one untimed step that compiles, and prints images per second (the median
over `--steps` steps, the executions of an arch timed in turns, since a shared machine's load drifts). The executions:

* masked: `model.Supernet` with the arch as arrays (one program for every arch; full width always);
* sliced: `supernet/ofa_resnet/sliced.py` with the arch as its own envelope (one program for every arch, the arch
  traced: a `lax.cond` per width group runs the groups the arch uses), on the params as width-group
  pieces as a client trains them;
* dense: `subnet.DenseSubnet` with the arch's exact shapes (one program per arch): the floor for these
  kernels.

The last line is one JSON object with every measurement.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from superfed_jax.federated import client as client_lib  # noqa: E402
from superfed_jax.supernet.ofa_resnet import cost  # noqa: E402
from superfed_jax.supernet.ofa_resnet import model as model_lib  # noqa: E402
from superfed_jax.supernet.ofa_resnet import sliced  # noqa: E402
from superfed_jax.supernet.ofa_resnet import space as space_lib  # noqa: E402
from superfed_jax.supernet.ofa_resnet import subnet as subnet_lib  # noqa: E402

EXECUTIONS = ("masked", "sliced", "dense")


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per arch and execution")
    parser.add_argument("--conv_impl", default="im2col")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--archs", default="smallest,small,medium,largest",
                        help="names among the space's default tracked archs")
    parser.add_argument("--executions", default=",".join(EXECUTIONS))
    parser.add_argument("--out", default="", help="also write the JSON here")
    return parser.parse_args(argv)


def _step_fn(forward, optimizer):
    """Jitted `(params, opt_state, arch, images, labels) -> (params, opt_state, loss)` around `forward`."""
    def loss_fn(params, arch, images, labels, weights, key):
        del key  # no augmentation: the step alone is measured
        return client_lib.cross_entropy(forward(params, images, arch), labels, weights)

    train_step = client_lib.make_train_step(loss_fn, optimizer)
    return jax.jit(lambda p, o, a, x, y, w: train_step(p, o, a, x, y, w, None))


def _time_step(run, images, labels, weights) -> float:
    """Seconds of one step of `run` = [step, params, opt_state, arch]; advances its params in place."""
    step, params, opt_state, arch = run
    start = time.perf_counter()
    params, opt_state, loss = jax.block_until_ready(step(params, opt_state, arch, images, labels, weights))
    elapsed = time.perf_counter() - start
    assert np.isfinite(float(loss))
    run[1], run[2] = params, opt_state
    return elapsed


def main(argv=None):
    args = _parse_args(argv)
    space = space_lib.SearchSpace()  # the paper's CIFAR space
    dtype = jnp.dtype(args.dtype)
    model = model_lib.Supernet(space, args.conv_impl, dtype)
    params = model_lib.init_params(space, jax.random.key(0), args.conv_impl)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.standard_normal((args.batch, 32, 32, 3)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, 10, args.batch).astype(np.int32))
    weights = jnp.ones(args.batch, jnp.float32)
    optimizer = client_lib.make_optimizer(0.1, 1.0)
    pieces = sliced.to_pieces(space, params)  # what a client trains on in sliced execution
    named = space_lib.default_tracked(space)
    masked_step = _step_fn(lambda p, x, a: model.apply({"params": p}, x, a), optimizer)
    sliced_step = _step_fn(lambda p, x, a: sliced.apply(model, p, x, *a), optimizer)
    rows = []
    for name in args.archs.split(","):
        arch = jax.tree.map(jnp.asarray, named[name])
        gmacs = round(cost.macs(space, named[name]) / 1e9, 3)
        runs = {}  # execution -> [step, params, opt_state, arch argument]
        for execution in args.executions.split(","):
            if execution == "masked":
                step, p, a = masked_step, params, arch
            elif execution == "sliced":
                step, p, a = sliced_step, pieces, (arch, sliced.arch_envelope(space, arch))
            else:
                dense = subnet_lib.DenseSubnet(space, subnet_lib.subnet_shape(space, named[name]),
                                               args.conv_impl, dtype)
                step = _step_fn(lambda q, x, _, net=dense: net.apply({"params": q}, x), optimizer)
                p, a = subnet_lib.extract(space, params, named[name]), None
            runs[execution] = [step, p, optimizer.init(p), a]
        # Compile and run once, then time the executions in turns: on a shared machine the load drifts,
        # and alternating spreads the drift over all of them alike.
        first = {e: _time_step(runs[e], images, labels, weights) for e in runs}
        times = {e: [] for e in runs}
        for _ in range(args.steps):
            for e in runs:
                times[e].append(_time_step(runs[e], images, labels, weights))
        for execution in runs:
            median = statistics.median(times[execution])
            row = dict(arch=name, arch_json=space_lib.arch_to_dict(space, named[name]), fwd_gmacs=gmacs,
                       execution=execution, first_step_s=round(first[execution], 3),
                       step_s=[round(t, 3) for t in times[execution]], median_step_s=round(median, 3),
                       images_per_s=round(args.batch / median, 2))
            rows.append(row)
            print(f"{name:9s} {execution:7s} {row['images_per_s']:8.2f} img/s  (median {median:.2f} s/step, "
                  f"first step with compile {first[execution]:.1f} s)", flush=True)
    result = dict(machine=dict(platform=platform.platform(), processor=platform.processor(),
                               cpus=os.cpu_count(), load_average=os.getloadavg(), backend=jax.default_backend(),
                               jax=jax.__version__),
                  batch=args.batch, steps=args.steps, conv_impl=args.conv_impl, dtype=args.dtype, rows=rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
