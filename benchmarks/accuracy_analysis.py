"""What each tracked subnet's own parameters receive per round under a config's assignment, against FedAvg of
that subnet alone: the numbers behind docs/accuracy.md (why the smallest subnet trails its FedAvg twin).

    python benchmarks/accuracy_analysis.py [--seed=0] [--out=DIR] [--config.x=value ...]

It builds `configs/digits.py` (with any `--config.x=value` overrides, as `benchmarks/options.py` applies
them) without training, replays the run's sampled clients and subnets (`federated.assignment`, the function
the compiled round uses) and, for every round and every tracked arch A, computes from A's element mask and
each client's mask, example count and aggregation weight (`federated.round.aggregation_weights`):

* ``as_itself_clients``: clients that train exactly A (FedAvg of A: all P);
* ``as_itself_examples``: the examples x epochs those clients train on, as a share of what the same P
  clients give FedAvg of A (FedAvg: 1);
* ``covered_examples``: every client's examples x epochs times the share of A's elements its subnet
  contains, summed, as a share of FedAvg's: how much training reaches A's parameters at all (as part of
  any subnet);
* ``own_weight``: the share of the aggregate of A's elements that comes from clients training A as itself,
  averaged over A's elements (the masked aggregation divides each element by the weight of the clients
  covering it; FedAvg: 1);
* ``maxnet_weight``: the same share for the client training the largest subnet (weighted beta_t);
* ``effective_clients``: how many clients A's aggregate effectively averages, per element
  (sum of the covering clients' weights)^2 / (sum of their squares), averaged over A's elements (FedAvg of A
  with P equal weights: P; one client with 90% of the weight: about 1.2);
* ``effective_classes``: how many classes the data behind A's aggregate holds: each client's share of the
  aggregate (averaged over A's elements) times its normalised class histogram, summed, as exp(entropy) (10
  equally represented classes: 10; one class: 1). Under a Dirichlet split with a small ``data.alpha`` a
  client holds one or two classes, so an aggregate dominated by one client sees few;
* ``fedavg_effective_classes``: the same for FedAvg of A on the same sampled clients (every client trains
  A; its weights are the static heuristic's: equal, or by size with ``fl.weight_by_size``).

Prints one table per quantity (mean over rounds, and over the first 10%, the middle and the last 20% of
rounds), writes OUT/accuracy_analysis.json with every per-round value and OUT/accuracy_weights.png/.svg
(own and MaxNet weight share and effective classes by round, per tracked arch). No data beyond the client sizes and labels is read;
nothing trains; a few seconds.
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import options  # noqa: E402  (benchmarks/options.py: the overrides are applied the same way)
from superfed_jax.federated import assignment  # noqa: E402
from superfed_jax.federated import heuristics  # noqa: E402
from superfed_jax.federated import round as federated_round  # noqa: E402
from superfed_jax.federated import schedules  # noqa: E402
from superfed_jax.run import build  # noqa: E402

QUANTITIES = ("as_itself_clients", "as_itself_examples", "covered_examples", "own_weight", "maxnet_weight",
              "effective_clients", "effective_classes", "fedavg_effective_classes")


def per_round(family, settings, params, arch, archs, clients, is_maxnet, beta_t, sizes, epochs, class_counts):
    """The QUANTITIES of one round for one tracked arch (see the module docstring); `params` gives the
    shapes the family's broadcastable masks are expanded to, so every element counts once; `class_counts`
    is float32 [K, classes], each client's training examples per class."""
    own_mask = jax.tree.map(lambda m, p: jnp.broadcast_to(m, p.shape), family.masks(arch), params)
    client_masks = jax.tree.map(lambda m, p: jnp.broadcast_to(m, m.shape[:1] + p.shape),
                                jax.vmap(family.masks)(archs), params)
    weights = federated_round.aggregation_weights(settings, beta_t, is_maxnet, sizes, clients)
    itself = heuristics.matches(family, archs, arch)
    examples = sizes[clients].astype(jnp.float32) * epochs
    own_elements = sum(jnp.sum(m) for m in jax.tree.leaves(own_mask))
    coverage = sum(jnp.sum(cm * m[None], axis=tuple(range(1, cm.ndim)))
                   for cm, m in zip(jax.tree.leaves(client_masks), jax.tree.leaves(own_mask))) / own_elements

    # Per client: its share of the aggregate of each of A's elements, (weight * covers) / (covering weight),
    # averaged over A's elements; and per element the effective number of clients averaged.
    shares, effective = 0.0, 0.0
    for cm, m in zip(jax.tree.leaves(client_masks), jax.tree.leaves(own_mask)):
        w = weights.reshape((-1,) + (1,) * (cm.ndim - 1)) * cm
        total = jnp.maximum(jnp.sum(w, axis=0), 1e-30)
        part = jnp.where(m[None] > 0, w / total, 0.0)
        shares = shares + jnp.sum(part, axis=tuple(range(1, cm.ndim)))
        squares = jnp.maximum(jnp.sum(jnp.square(part), axis=0), 1e-30)
        effective = effective + jnp.sum(jnp.where(m > 0, 1.0 / squares, 0.0))
    shares = shares / own_elements

    def classes(client_shares):
        """exp(entropy) of the class mixture sum_c share_c * (client c's class histogram, normalised)."""
        counts = class_counts[clients]
        mixture = jnp.sum(client_shares[:, None] * counts / jnp.maximum(counts.sum(1, keepdims=True), 1), 0)
        mixture = mixture / jnp.sum(mixture)
        return jnp.exp(-jnp.sum(jnp.where(mixture > 0, mixture * jnp.log(jnp.where(mixture > 0, mixture, 1)), 0)))

    fedavg_weights = jnp.where(settings.weight_by_size, sizes[clients].astype(jnp.float32), 1.0)
    return {"as_itself_clients": jnp.sum(itself),
            "as_itself_examples": jnp.sum(examples * itself) / jnp.sum(examples),
            "covered_examples": jnp.sum(examples * coverage) / jnp.sum(examples),
            "own_weight": jnp.sum(shares * itself),
            "maxnet_weight": jnp.sum(shares * is_maxnet),
            "effective_clients": effective / own_elements,
            "effective_classes": classes(shares),
            "fedavg_effective_classes": classes(fedavg_weights / jnp.sum(fedavg_weights))}


def class_counts(data, num_classes: int = 0) -> np.ndarray:
    """float32 [K, num_classes]: each client's training examples per class (`FederatedData`'s index table);
    ``num_classes`` 0: the largest label + 1 (a class absent from every client changes no entropy)."""
    labels, table, sizes = (np.asarray(x) for x in (data.labels, data.index_table, data.sizes))
    num_classes = num_classes or int(labels.max()) + 1
    counts = np.zeros((len(sizes), num_classes), np.float32)
    for k, n in enumerate(sizes):
        np.add.at(counts[k], labels[table[k, :n]].reshape(-1), 1)
    return counts


def analyse(config) -> dict:
    """Per tracked arch, every quantity by round (lists over rounds 0 .. rounds - 1) and the betas."""
    run = build.build(config)
    settings = run.settings
    sequence = assignment.assignment_sequence(run.family, settings, config.seed, config.fl.rounds)
    sizes = jnp.asarray(run.data.sizes)
    betas = [float(schedules.beta(settings.beta_schedule, t, beta0=settings.beta0,
                                  beta_final=settings.beta_final, decay_rounds=settings.decay_rounds))
             for t in range(config.fl.rounds)]
    counts = jnp.asarray(class_counts(run.data))
    one_round = jax.jit(per_round, static_argnums=(0, 1))
    result = {"beta": betas, "archs": {}}
    for name, arch in run.tracked.items():
        values = {q: [] for q in QUANTITIES}
        for t in range(config.fl.rounds):
            archs = jax.tree.map(lambda x: x[t], sequence["archs"])
            row = one_round(run.family, settings, run.state.params, arch, archs, jnp.asarray(sequence["clients"][t]),
                            jnp.asarray(sequence["is_maxnet"][t]), jnp.float32(betas[t]), sizes,
                            config.client.epochs, counts)
            for q in QUANTITIES:
                values[q].append(float(row[q]))
        result["archs"][name] = values
    return result


def phases(rounds: int) -> dict:
    """Round ranges: all, the first 10% (beta near beta0), the middle, the last 20% (beta at its end)."""
    first, last = max(1, rounds // 10), max(1, rounds - rounds // 5)
    return {"all": (0, rounds), f"rounds 1-{first}": (0, first), f"rounds {first + 1}-{last}": (first, last),
            f"rounds {last + 1}-{rounds}": (last, rounds)}


def summary(result: dict, rounds: int) -> dict:
    """quantity -> arch -> phase -> mean over the phase's rounds."""
    return {q: {name: {phase: float(np.mean(values[q][a:b])) for phase, (a, b) in phases(rounds).items()}
                for name, values in result["archs"].items()} for q in QUANTITIES}


def print_tables(table: dict, rounds: int) -> None:
    names = list(phases(rounds))
    for q, rows in table.items():
        fedavg = {"as_itself_clients": "P", "effective_clients": "P", "effective_classes":
                  "fedavg_effective_classes"}.get(q, "1" if q != "fedavg_effective_classes" else "itself")
        print(f"\n{q} (FedAvg of the arch alone: {fedavg})")
        print("| arch | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for arch, row in rows.items():
            print(f"| {arch} | " + " | ".join(f"{row[n]:.3f}" for n in names) + " |")


def plot(result: dict, path: str) -> None:
    """Own and MaxNet weight share by round, one line per tracked arch, and beta_t; the effective classes
behind each arch's aggregate against FedAvg's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    axes[1].sharey(axes[0])
    rounds = np.arange(1, len(result["beta"]) + 1)
    never = []
    for index, (name, values) in enumerate(result["archs"].items()):
        color = f"C{index}"
        if any(values["own_weight"]):
            axes[0].plot(rounds, values["own_weight"], color=color, label=name)
        else:
            never.append(name)
        axes[1].plot(rounds, values["maxnet_weight"], color=color, label=name)
        axes[2].plot(rounds, values["effective_classes"], color=color, label=name)
    # FedAvg's value is the same for every arch (every client trains it): one dashed line.
    axes[2].plot(rounds, next(iter(result["archs"].values()))["fedavg_effective_classes"], "k--",
                 label="FedAvg of any arch")
    if never:  # a subnet no client trains as itself (random draws almost never hit one exactly)
        axes[0].text(0.98, 0.5, f"{', '.join(never)}: 0 (never trained as itself)", ha="right",
                     transform=axes[0].transAxes, fontsize=8)
    axes[1].plot(rounds, result["beta"], "k:", label="beta_t")
    axes[0].set_title("share from clients training the arch itself", fontsize=9)
    axes[1].set_title("share from the MaxNet client", fontsize=9)
    axes[2].set_title("classes in the data behind the aggregate (exp entropy)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of the arch's aggregate")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    figure.tight_layout()
    for extension in ("png", "svg"):
        figure.savefig(f"{path}.{extension}", dpi=150)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(ROOT, "workdirs", "accuracy_analysis"))
    args, overrides = parser.parse_known_args(argv)
    unknown = [a for a in overrides if not a.startswith("--config.")]
    if unknown:
        parser.error(f"unknown arguments {unknown}; only --config.x=value overrides are accepted")
    config = options.config_with(overrides, smoke=False)
    config.seed = args.seed
    result = analyse(config)
    table = summary(result, config.fl.rounds)
    print_tables(table, config.fl.rounds)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "accuracy_analysis.json"), "w") as f:
        json.dump({"overrides": overrides, "seed": args.seed, "summary": table, "per_round": result}, f)
    plot(result, os.path.join(args.out, "accuracy_weights"))
    print(f"\nwrote {os.path.join(args.out, 'accuracy_analysis.json')} and accuracy_weights.png/.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
