"""The headline of sliced execution in one command: a CIFAR-shaped round, masked against sliced.

    python benchmarks/execution.py [--alpha=0.1] [--rounds=1] [--settings='{"batch_size": 8}']

The paper's CIFAR space (`configs/cifar10.py`) on synthetic 32x32x3 data split over clients by a
Dirichlet partition (alpha 0.1 by default, the paper's strongest skew), scaled down so both executions
compile and run in a few minutes on a 2-core CPU. For each of `model.execution` = 'masked' and 'sliced':
compile time, seconds per round (after one warm-up round), and computed MACs over useful MACs:

* useful: the forward MACs of each client's arch x its real images x epochs x 3 (forward + backward);
* computed: what the program executes on every row of every step, padding included (a chunk runs its
  largest client's steps): the supernet's MACs for 'masked', the envelope's (`supernet/ofa_resnet/sliced.py`) for
  'sliced' (`suite.round_work`).

Both executions see the same clients, archs and data (same config and seed). The last line printed is one
JSON object: masked_s_per_round, sliced_s_per_round, speedup, computed_over_useful_masked,
computed_over_useful_sliced (and the details).
"""
import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "benchmarks")]

import numpy as np  # noqa: E402

import suite  # noqa: E402
from superfed_jax.run import build as build_lib  # noqa: E402

# Small enough for about 3 minutes on 2 CPU cores: a masked step of the paper space costs ~20 GFLOP per image.
SETTINGS = dict(num_clients=4, clients_per_round=2, chunk_size=1, epochs=1, batch_size=8, examples=64,
                min_client_size=4)


def make_config(settings: dict, alpha: float, npz_path: str, execution: str):
    config = suite.load_config("cifar10")
    config.data.update(name="npz", path=npz_path, val_fraction=0.0, partition="dirichlet", alpha=alpha,
                       min_client_size=settings["min_client_size"])
    config.fl.update(num_clients=settings["num_clients"], clients_per_round=settings["clients_per_round"],
                     chunk_size=settings["chunk_size"], rounds=100)
    config.client.update(epochs=settings["epochs"], batch_size=settings["batch_size"])
    config.model.update(conv_impl=suite.resolve_conv_impl("auto"), execution=execution)
    return config


def measure(config, rounds: int, execution: str) -> dict:
    run = build_lib.build(config)
    start = time.perf_counter()
    compiled, compile_s, times, metrics, _ = suite.time_rounds(run, rounds)
    sizes, max_size = np.asarray(run.data.sizes), int(run.data.index_table.shape[1])
    work = suite.round_work(run.family.space, sizes, max_size, metrics, config.client.epochs, config.client.batch_size,
                            config.fl.chunk_size or config.fl.clients_per_round, execution,
                            build_lib.client_layout(config, run.mesh))
    computed, useful = work["computed_macs"], work["useful_macs"]
    print(f"{execution}: compile {compile_s:.1f} s, {np.mean(times):.2f} s per round, computed/useful MACs "
          f"{computed / useful:.2f} (total {time.perf_counter() - start:.0f} s)", flush=True)
    return dict(compile_s=compile_s, s_per_round=float(np.mean(times)), round_times_s=times,
                computed_over_useful=computed / useful, client_sizes=sizes.tolist(),
                memory=suite.peak_memory(compiled))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=1, help="timed rounds after one warm-up round")
    parser.add_argument("--settings", default="{}", help=f"JSON overrides of {SETTINGS}")
    args = parser.parse_args(argv)
    settings = {**SETTINGS, **json.loads(args.settings)}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cifar_synthetic.npz")
        suite.write_synthetic_cifar(path, settings["examples"])
        results = {execution: measure(make_config(settings, args.alpha, path, execution), args.rounds,
                                      execution) for execution in ("masked", "sliced")}
    headline = dict(masked_s_per_round=results["masked"]["s_per_round"],
                    sliced_s_per_round=results["sliced"]["s_per_round"],
                    speedup=results["masked"]["s_per_round"] / results["sliced"]["s_per_round"],
                    computed_over_useful_masked=results["masked"]["computed_over_useful"],
                    computed_over_useful_sliced=results["sliced"]["computed_over_useful"],
                    alpha=args.alpha, settings=settings, machine=suite.machine_info(), details=results)
    print(json.dumps(headline))
    return headline


if __name__ == "__main__":
    main()
