"""Per-chunk local steps: computed / useful client-steps and seconds per round at a Dirichlet alpha.

    python benchmarks/chunks.py [--alpha=0.1] [--rounds=5] [--chunk_size=2] [--seed=0]

Runs `configs/digits.py` (K 20, P 8, 2 epochs, batch 32, side by side on one CPU device) on a Dirichlet
label-skew partition, times `--rounds` rounds after compiling and one warm-up round, and counts, exactly
and on the host, the client-steps of the rounds it ran:

* useful: epochs * ceil(n / batch) per sampled client of n examples;
* padded: what every client ran before chunks had their own step counts, epochs * ceil(largest client of
  the partition / batch) each;
* chunked: what the round runs now, every client of a chunk as many steps as the chunk's largest client,
  with chunks cut from the round's clients ordered by steps, then MACs (`round.chunk_order`); and, for
  comparison, the same without the ordering (chunks cut in sampled order).

Seconds per round are those of the code on the Python path: to time the code before this change, copy
this file outside the repository and run it with `PYTHONPATH` set to an older checkout (the step counts
do not depend on the code). The last line of output is one JSON object with every figure.
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from superfed_jax.configs import digits  # noqa: E402
from superfed_jax.run import build as build_lib  # noqa: E402
from superfed_jax.supernet.ofa_resnet import cost  # noqa: E402


def sorted_positions(steps: np.ndarray, macs: np.ndarray) -> np.ndarray:
    """The host twin of `round.chunk_order`: fewest steps first, then fewest MACs, then position."""
    return np.lexsort((np.arange(len(steps)), macs, steps))


def chunked_steps(steps: np.ndarray, chunk_size: int, order=None) -> int:
    """Client-steps computed when every client of a chunk runs the chunk's largest count."""
    steps = steps if order is None else steps[order]
    return int(chunk_size * steps.reshape(-1, chunk_size).max(axis=1).sum())


def round_steps(sizes, max_size: int, clients, depth, expand, space, *, epochs: int, batch_size: int,
                chunk_size: int) -> dict:
    """Useful, padded and chunked (sorted and unsorted) client-steps of one round's sampled clients."""
    steps = epochs * -(-np.asarray(sizes)[clients] // batch_size)
    macs = cost.macs_batch(space, depth, expand)
    return {"useful": int(steps.sum()),
            "padded": int(len(clients) * epochs * -(-max_size // batch_size)),
            "chunked_sampled_order": chunked_steps(steps, chunk_size),
            "chunked_sorted": chunked_steps(steps, chunk_size, sorted_positions(steps, macs))}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alpha", type=float, default=0.1, help="Dirichlet concentration (data.alpha)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after one warm-up round")
    parser.add_argument("--chunk_size", type=int, default=2, help="fl.chunk_size (divides P = 8)")
    parser.add_argument("--seed", type=int, default=0, help="config seed (partition, sampling, archs)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    config = digits.get_config()
    config.seed = args.seed
    config.data.update(partition="dirichlet", alpha=args.alpha)
    config.fl.chunk_size = args.chunk_size
    run = build_lib.build(config)
    start = time.perf_counter()
    compiled = run.round_fn.lower(run.state, run.data).compile()
    compile_s = time.perf_counter() - start
    state, _ = compiled(run.state, run.data)  # warm-up round
    jax.block_until_ready(state)
    times, totals = [], {}
    sizes, max_size = np.asarray(run.data.sizes), int(run.data.index_table.shape[1])
    for _ in range(args.rounds):
        start = time.perf_counter()
        state, metrics = compiled(state, run.data)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
        metrics = jax.device_get(metrics)
        counts = round_steps(sizes, max_size, np.asarray(metrics["clients"]), metrics["archs"].depth,
                             metrics["archs"].expand, run.family.space, epochs=config.client.epochs,
                             batch_size=config.client.batch_size, chunk_size=args.chunk_size)
        totals = {k: totals.get(k, 0) + v for k, v in counts.items()}
    useful = totals["useful"]
    result = {"alpha": args.alpha, "seed": args.seed, "chunk_size": args.chunk_size,
              "client_sizes_min_max": [int(sizes.min()), int(sizes.max())],
              "rounds": args.rounds, "compile_s": compile_s, "s_per_round": float(np.mean(times)),
              "round_times_s": times, "client_steps": totals,
              "computed_over_useful_padded": totals["padded"] / useful,
              "computed_over_useful_chunked_sampled_order": totals["chunked_sampled_order"] / useful,
              "computed_over_useful_chunked_sorted": totals["chunked_sorted"] / useful,
              "jax": jax.__version__, "load_average": os.getloadavg()}
    print(f"alpha {args.alpha}: computed / useful client-steps: padded to the partition's largest "
          f"{result['computed_over_useful_padded']:.2f}, own chunk steps in sampled order "
          f"{result['computed_over_useful_chunked_sampled_order']:.2f}, sorted chunks "
          f"{result['computed_over_useful_chunked_sorted']:.2f}; {result['s_per_round']:.3f} s per round")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
