"""What a round of the paper's CIFAR-10 run computes against what its clients need, counted without training.

    python benchmarks/paper_work.py [--rounds=200] [--seeds=0,1,2] [--alphas=100,0.1]
        [--chunk_sizes=1,2,4,8] [--out=FILE.json]

A CPU cannot train the paper's setting (the 3.4-GMAC supernet on CIFAR-10's 45,000 training images), but
what every compiled round computes follows from its clients, their data sizes and their archs alone, and
those are known without training: client sampling and subnet assignment come from
`federated.assignment.assignment_sequence` (the function the real round calls, so the same clients and
archs as a real run of `configs/cifar10.py`), and client sizes from the Dirichlet partition of CIFAR-10's
labels (balanced, 4,500 per class) by `data.partition.make_partition`. `suite.round_work` then counts, per
round, the computed MACs: every row of every local step the program runs (chunks cut from the clients in
the round's cost order, each chunk running its largest client's step count, every step a full batch), at
the supernet's width for `model.execution='masked'` and at the envelope's for 'sliced' (each client's own
arch side by side; the chunk's widest with vmapped chunks); and the useful MACs: each client's own arch on
its real examples. Forward + backward = 3 x forward MACs on both sides. For comparison, the round as it was
before chunks ran their own step counts: every client as many steps as the partition's largest, masked.

The paper's settings as `configs/cifar10.py` has them: K 20, P 8, 5 local epochs, batch 64, tracking
sandwich, 1,500 rounds (the first `--rounds` are counted). The last line is one JSON object.
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "benchmarks")]

import jax  # noqa: E402
import numpy as np  # noqa: E402

import suite  # noqa: E402
from superfed_jax.data import partition  # noqa: E402
from superfed_jax.federated import assignment  # noqa: E402
from superfed_jax.run import build  # noqa: E402
from superfed_jax.supernet.ofa_resnet import cost  # noqa: E402
from superfed_jax.supernet.ofa_resnet import space as space_lib  # noqa: E402
from superfed_jax.supernet.ofa_resnet.family import OFAResNet  # noqa: E402

BEFORE = "masked, every client padded to the largest (before)"
CIFAR10_TRAIN = 45_000  # CIFAR-10's 50,000 training images less the 10% validation hold-out


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="rounds counted, from round 0")
    parser.add_argument("--seeds", default="0,1,2", help="config seeds: partition, sampling and archs")
    parser.add_argument("--alphas", default="100,0.1", help="Dirichlet alphas of the partition")
    parser.add_argument("--chunk_sizes", default="1,2,4,8", help="vmapped chunk sizes (divisors of P)")
    parser.add_argument("--out", default="", help="also write the JSON here")
    return parser.parse_args(argv)


def layouts(chunk_sizes, clients_per_round: int):
    """(label, execution, layout, chunk size) of every counted execution."""
    rows = [("masked, vmapped chunk of P", "masked", "vmap", clients_per_round),
            ("masked, side by side", "masked", "side_by_side", clients_per_round),
            ("sliced, side by side", "sliced", "side_by_side", clients_per_round)]
    rows += [(f"sliced, vmapped chunks of {c}", "sliced", "vmap", c) for c in chunk_sizes]
    return rows


def count(config, alpha: float, seed: int, rounds: int, chunk_sizes) -> dict:
    """computed / useful MACs and client-steps of `rounds` rounds of `config` at one alpha and seed."""
    space = space_lib.SearchSpace()  # the paper's CIFAR space (configs/cifar10.py)
    labels = np.arange(CIFAR10_TRAIN) % 10
    parts = partition.make_partition(labels, config.fl.num_clients, "dirichlet", seed, alpha=alpha)
    sizes = np.array([len(p) for p in parts])
    family = OFAResNet(space)
    sequence = assignment.assignment_sequence(family, build.round_settings(config, family), seed, rounds)
    assignments = [dict(clients=c, archs=jax.tree.map(lambda x, t=t: x[t], sequence["archs"]))
                   for t, c in enumerate(sequence["clients"])]
    out = {"client_sizes": sorted(sizes.tolist())}
    for label, execution, layout, chunk in layouts(chunk_sizes, config.fl.clients_per_round):
        work = suite.round_work(space, sizes, int(sizes.max()), assignments, config.client.epochs,
                                config.client.batch_size, chunk, execution, layout)
        out[label] = {"computed_over_useful_macs": work["computed_macs"] / work["useful_macs"],
                      "computed_over_real_steps": work["computed_steps"] / work["real_steps"]}
    # The round before chunks had their own step counts: every client ran as many steps as the partition's
    # largest client, at the supernet's width (`padded_steps`, the same in every layout's count).
    supernet = 3 * config.client.batch_size * cost.macs(space, space_lib.largest(space))
    out[BEFORE] = {"computed_over_useful_macs": work["padded_steps"] * supernet / work["useful_macs"],
                   "computed_over_real_steps": work["padded_steps"] / work["real_steps"]}
    return out


def main(argv=None) -> dict:
    args = _parse_args(argv)
    config = suite.load_config("cifar10")
    seeds = [int(s) for s in args.seeds.split(",")]
    chunk_sizes = [int(c) for c in args.chunk_sizes.split(",")]
    result = {"settings": dict(rounds=args.rounds, seeds=seeds, num_clients=config.fl.num_clients,
                               clients_per_round=config.fl.clients_per_round, epochs=config.client.epochs,
                               batch_size=config.client.batch_size, heuristic=config.fl.heuristic),
              "alphas": {}}
    labels = [BEFORE] + [row[0] for row in layouts(chunk_sizes, config.fl.clients_per_round)]
    print(f"{'alpha':>6}  {'execution':52s} computed / useful MACs (seeds {args.seeds}: mean, min-max)")
    for alpha in [float(a) for a in args.alphas.split(",")]:
        per_seed = [count(config, alpha, seed, args.rounds, chunk_sizes) for seed in seeds]
        summary = {}
        for label in labels:
            ratios = [s[label]["computed_over_useful_macs"] for s in per_seed]
            summary[label] = dict(mean=float(np.mean(ratios)), min=float(min(ratios)), max=float(max(ratios)))
            print(f"{alpha:>6g}  {label:52s} {np.mean(ratios):5.2f}  ({min(ratios):.2f}-{max(ratios):.2f})")
        result["alphas"][f"{alpha:g}"] = {"summary": summary, "per_seed": per_seed}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps({alpha: {label: round(v["mean"], 3) for label, v in a["summary"].items()}
                      for alpha, a in result["alphas"].items()}))
    return result


if __name__ == "__main__":
    main()
