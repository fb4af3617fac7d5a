"""Cost accounting of a whole federated run, and of independent FedAvg of a set of archs.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879, claim that training one
weight-shared supernet costs about 9.43x less compute and about 10.4x less communication than training
the 9 archs of their table independently with FedAvg (docs/algorithm.md section 8). The cost model:

  compute(SuperFed)  = sum over rounds t, sampled clients c: MACs(arch_{t,c})
  comm(SuperFed)     = sum over t, c: bytes_per_param * params(arch_{t,c})     (each direction)
  compute(iFedAvg S) = sum over archs s in S: rounds * P * MACs(s);  comm likewise with params

with MACs the forward multiply-accumulates of one image (`cost.macs`) and params the subnet's parameter
count (`cost.params`). Samples, epochs and the backward pass cancel in these ratios in expectation; when
client example counts are given, `run_cost` also multiplies MACs out by the examples actually trained
(n_c * epochs per sampled client) and by a forward+backward factor (3: the backward pass costs about two
forwards, one for activation gradients and one for weight gradients), and reports that ratio separately.

The assignment sequence comes from `federated.assignment.assignment_sequence` (or from a real run's metrics). Exact
integer arithmetic throughout: per-arch costs are int64 from `cost.macs_batch` / `cost.params_batch`,
totals are Python ints.
"""
import dataclasses
import json
import os
from typing import Optional, Sequence

import numpy as np

from superfed_jax.supernet.ofa_resnet import cost
from superfed_jax.supernet.ofa_resnet import space as space_lib

__all__ = ["PAPER_BASELINE", "BACKWARD_FACTOR", "run_cost", "independent_fedavg_cost", "compare",
           "default_baseline_archs", "is_paper_family", "conventions", "cost_report",
           "write_cost_report", "trains_only_its_baseline", "cost_summary"]

# docs/algorithm.md 2.3: the 9 archs the paper trains independently with FedAvg for its cost comparison.
PAPER_BASELINE = (
    {"d": [0, 0, 0, 0], "e": 0.10},
    {"d": [0, 0, 0, 1], "e": 0.14},
    {"d": [0, 1, 0, 1], "e": 0.14},
    {"d": [0, 1, 1, 1], "e": 0.14},
    {"d": [1, 1, 1, 1], "e": 0.18},
    {"d": [1, 1, 1, 2], "e": 0.22},
    {"d": [1, 2, 1, 2], "e": 0.22},
    {"d": [1, 2, 2, 2], "e": 0.22},
    {"d": [2, 2, 2, 2], "e": 0.25},
)
# Training MACs per forward MAC: forward, plus a backward pass of about two forwards (gradients with
# respect to the activations and to the weights).
BACKWARD_FACTOR = 3


# ------------------------------------------------------------------------------------------ helpers


def _arch_costs(space, depth, expand, bn_affine: bool, count_padding: bool):
    """(MACs, params), int64 arrays shaped like the archs' leading axes."""
    return (cost.macs_batch(space, depth, expand, count_padding=count_padding),
            cost.params_batch(space, depth, expand, bn_affine=bn_affine))


def _total(values) -> int:
    """Exact sum of an integer array as a Python int (no int64 overflow however long the run)."""
    return int(np.sum(np.asarray(values).astype(object))) if np.size(values) else 0


def _client_examples(sequence_clients, examples_per_client, epochs) -> np.ndarray:
    """int64 [R, P]: examples each sampled client trains in its round (n_c * epochs)."""
    if epochs is None:
        raise ValueError("examples_per_client given without epochs: need both to count trained examples")
    sizes = np.asarray(examples_per_client, np.int64)
    clients = np.asarray(sequence_clients)
    if sizes.ndim != 1 or clients.size and clients.max() >= sizes.shape[0]:
        raise ValueError(f"examples_per_client has shape {sizes.shape}: need one count per client "
                         f"(clients up to id {int(clients.max()) if clients.size else -1})")
    return sizes[clients] * int(epochs)


# ------------------------------------------------------------------------------------------- SuperFed


def run_cost(space: space_lib.SearchSpace, sequence: dict, *, examples_per_client=None,
             epochs: Optional[int] = None, bytes_per_param: int = 4,
             fwd_bwd_factor: int = BACKWARD_FACTOR, bn_affine: bool = False,
             count_padding: bool = True) -> dict:
    """Compute and communication of a run from its assignment sequence (docs/algorithm.md 8).

    Args:
      space: the search space.
      sequence: ``clients`` [R, P], ``depth`` [R, P, S], ``expand`` [R, P, B] (as returned by
        `dry_run.assignment_sequence`; ``clients`` is needed only with ``examples_per_client``).
      examples_per_client: optional int [K] training examples of every client.
      epochs: local epochs per round; required with ``examples_per_client``.
      bytes_per_param: bytes sent per parameter (4: float32).
      fwd_bwd_factor: training MACs per forward MAC (3, see `BACKWARD_FACTOR`).
      bn_affine: count the reference code's frozen BN affine pairs in params (the paper's table) or
        not (default: the parameters this model has).
      count_padding: count kernel taps on the zero padding in MACs (the paper's convention, default).

    Returns:
      ``client_macs`` / ``client_params`` int64 [R, P]: per-image forward MACs and params of each
      sampled client's arch; ``round_macs`` int64 [R] (sum over the round's clients); ``round_bytes``
      int64 [R] (bytes each direction: download = upload); ``total_macs``, ``total_bytes`` (Python
      ints); ``mean_client_macs`` (float); ``rounds``, ``clients_per_round``. With example counts also
      ``round_example_macs`` int64 [R] (forward MACs over the examples trained: sum_c n_c * epochs *
      MACs), ``total_example_macs`` and ``total_training_macs`` (= fwd_bwd_factor * total_example_macs).
    """
    client_macs, client_params = _arch_costs(space, sequence["depth"], sequence["expand"], bn_affine,
                                             count_padding)
    rounds, per_round = client_macs.shape
    result = {
        "rounds": rounds,
        "clients_per_round": per_round,
        "client_macs": client_macs,
        "client_params": client_params,
        "round_macs": client_macs.sum(axis=1),
        "round_bytes": bytes_per_param * client_params.sum(axis=1),
        "total_macs": _total(client_macs),
        "total_bytes": bytes_per_param * _total(client_params),
        "mean_client_macs": _total(client_macs) / max(client_macs.size, 1),
    }
    if examples_per_client is not None:
        examples = _client_examples(sequence["clients"], examples_per_client, epochs)
        example_macs = examples.astype(object) * client_macs.astype(object)  # exact, n_c * MACs is large
        result["round_example_macs"] = example_macs.sum(axis=1).astype(np.int64)
        result["total_example_macs"] = _total(example_macs)
        result["total_training_macs"] = fwd_bwd_factor * result["total_example_macs"]
    return result


# -------------------------------------------------------------------------------- independent FedAvg


def independent_fedavg_cost(space: space_lib.SearchSpace, archs: Sequence[space_lib.Arch], rounds: int,
                            clients_per_round: int, *, clients=None, examples_per_client=None,
                            epochs: Optional[int] = None, bytes_per_param: int = 4,
                            fwd_bwd_factor: int = BACKWARD_FACTOR, bn_affine: bool = False,
                            count_padding: bool = True) -> dict:
    """Cost of training every arch of ``archs`` alone with FedAvg, same rounds and P (docs/algorithm.md 8).

    Args:
      space: the search space.
      archs: the baseline set S (concrete archs).
      rounds: rounds of every FedAvg run.
      clients_per_round: P.
      clients: int [rounds, P] sampled clients; needed only with ``examples_per_client``. Sampling depends
        only on (seed, round), so a FedAvg run with the same seed samples the SuperFed run's clients.
      examples_per_client, epochs, bytes_per_param, fwd_bwd_factor, bn_affine, count_padding: as in
        `run_cost`.

    Returns:
      ``arch_macs`` / ``arch_params`` int64 [A]; ``total_macs`` = rounds * P * sum MACs(s);
      ``total_bytes`` = bytes_per_param * rounds * P * sum params(s) (each direction); with example
      counts also ``total_example_macs`` and ``total_training_macs`` as in `run_cost`.
    """
    if not archs:
        raise ValueError("independent FedAvg baseline: need at least one arch")
    batch = space_lib.stack(list(archs))
    arch_macs, arch_params = _arch_costs(space, batch.depth, batch.expand, bn_affine, count_padding)
    client_rounds = int(rounds) * int(clients_per_round)
    result = {
        "arch_macs": arch_macs,
        "arch_params": arch_params,
        "total_macs": client_rounds * _total(arch_macs),
        "total_bytes": bytes_per_param * client_rounds * _total(arch_params),
    }
    if examples_per_client is not None:
        if clients is None:
            raise ValueError("examples_per_client given without the sampled clients: pass clients")
        examples = _client_examples(clients, examples_per_client, epochs)
        if examples.shape != (rounds, clients_per_round):
            raise ValueError(f"clients has shape {examples.shape}: need [{rounds}, {clients_per_round}]")
        result["total_example_macs"] = _total(examples) * _total(arch_macs)
        result["total_training_macs"] = fwd_bwd_factor * result["total_example_macs"]
    return result


def compare(run: dict, baseline: dict) -> dict:
    """Baseline cost over SuperFed cost: how many times cheaper the run is.

    Returns:
      ``compute_ratio`` = compute(baseline) / compute(run) (per-image forward MACs), ``comm_ratio``
      (bytes), and ``example_compute_ratio`` when both carry example-multiplied MACs.
    """
    ratios = {"compute_ratio": baseline["total_macs"] / run["total_macs"],
              "comm_ratio": baseline["total_bytes"] / run["total_bytes"]}
    if "total_example_macs" in run and "total_example_macs" in baseline:
        ratios["example_compute_ratio"] = baseline["total_example_macs"] / run["total_example_macs"]
    return ratios


# --------------------------------------------------------------------------------------- baseline set


def is_paper_family(space: space_lib.SearchSpace) -> bool:
    """Whether ``space`` is the paper's CIFAR space, any number of classes (docs/algorithm.md 2)."""
    reference = space_lib.SearchSpace()
    return dataclasses.replace(space, num_classes=reference.num_classes) == reference


def default_baseline_archs(space: space_lib.SearchSpace) -> list:
    """The independent-FedAvg set S: the paper's 9 archs (docs/algorithm.md 2.3) or the tracked archs.

    The paper's table is defined for its own space, so any other space gets its default tracked archs
    (`space.default_tracked`: smallest, small, medium, largest).
    """
    if is_paper_family(space):
        return [space_lib.arch_from_dict(space, spec) for spec in PAPER_BASELINE]
    return list(space_lib.default_tracked(space).values())


# ------------------------------------------------------------------------------------------- report


def conventions(bytes_per_param: int, fwd_bwd_factor: int, bn_affine: bool, count_padding: bool) -> dict:
    """The counting conventions of a report, as strings."""
    return {
        "macs": "forward multiply-accumulates of one image; conv = Cin*k*k*Cout*Hout*Wout "
                + ("(padding taps counted, the paper's convention)" if count_padding
                   else "(only taps on real input)") + ", dense = in*out; ReLU, pooling, adds free",
        "params": "the subnet's parameters " + ("including the reference code's frozen BN affine pairs "
                                                "(the paper's table)" if bn_affine
                                                else "as this model has them (no BN affine pairs)"),
        "bytes": f"{bytes_per_param} bytes per parameter, per direction (download = upload)",
        "compute": "sum over rounds and sampled clients of per-image forward MACs of the client's arch",
        "baseline": "independent FedAvg: every arch of the set trained alone, same rounds and clients "
                    "per round (docs/algorithm.md 8)",
        "example_macs": "sum over rounds and sampled clients of n_c * epochs * MACs (forward only); "
                        f"training MACs = {fwd_bwd_factor} x that (backward about 2 forwards)",
    }


def _ints(values) -> list:
    return [int(v) for v in np.asarray(values).reshape(-1)]


def _totals(cost: dict) -> dict:
    """The totals shared by both sides of the report (the per-example ones when examples were given)."""
    totals = {"total_macs": cost["total_macs"], "total_gmacs": cost["total_macs"] / 1e9,
              "total_bytes_per_direction": cost["total_bytes"],
              "total_gbytes_per_direction": cost["total_bytes"] / 1e9}
    totals.update({name: cost[name] for name in ("total_example_macs", "total_training_macs")
                   if name in cost})
    return totals


def _superfed_summary(run: dict) -> dict:
    return {**_totals(run), "mean_client_gmacs": run["mean_client_macs"] / 1e9}


def _baseline_summary(space, archs, baseline: dict) -> dict:
    table = [{"arch": space_lib.arch_to_dict(space, a), "macs": int(m), "gmacs": int(m) / 1e9,
              "params": int(p)}
             for a, m, p in zip(archs, baseline["arch_macs"], baseline["arch_params"])]
    return {"method": "independent FedAvg", "archs": table,
            "sum_gmacs": _total(baseline["arch_macs"]) / 1e9, **_totals(baseline)}


def cost_report(space: space_lib.SearchSpace, sequence: dict, baseline_archs=None, *,
                examples_per_client=None, epochs: Optional[int] = None, bytes_per_param: int = 4,
                fwd_bwd_factor: int = BACKWARD_FACTOR, bn_affine: bool = False,
                count_padding: bool = True) -> dict:
    """The JSON-ready cost of a run against independent FedAvg (to be written as ``cost.json``).

    Args:
      space: the search space.
      sequence: the run's assignment sequence (`dry_run.assignment_sequence`).
      baseline_archs: the independent-FedAvg set; default `default_baseline_archs(space)`.
      examples_per_client, epochs, bytes_per_param, fwd_bwd_factor, bn_affine, count_padding: as in
        `run_cost`.

    Returns:
      A dict of plain Python values: ``conventions`` (strings), ``rounds``, ``clients_per_round``,
      ``superfed`` and ``baseline`` totals, ``ratios`` and ``per_round`` arrays (lists).
    """
    archs = default_baseline_archs(space) if baseline_archs is None else list(baseline_archs)
    options = dict(bytes_per_param=bytes_per_param, fwd_bwd_factor=fwd_bwd_factor, bn_affine=bn_affine,
                   count_padding=count_padding, examples_per_client=examples_per_client, epochs=epochs)
    run = run_cost(space, sequence, **options)
    baseline = independent_fedavg_cost(space, archs, run["rounds"], run["clients_per_round"],
                                       clients=sequence.get("clients"), **options)
    per_round = {"macs": _ints(run["round_macs"]), "bytes_per_direction": _ints(run["round_bytes"])}
    if "round_example_macs" in run:
        per_round["example_macs"] = _ints(run["round_example_macs"])
    return {
        "conventions": conventions(bytes_per_param, fwd_bwd_factor, bn_affine, count_padding),
        "rounds": run["rounds"],
        "clients_per_round": run["clients_per_round"],
        "superfed": _superfed_summary(run),
        "baseline": _baseline_summary(space, archs, baseline),
        "ratios": compare(run, baseline),
        "per_round": per_round,
    }


def write_cost_report(config, space: space_lib.SearchSpace, sequence: dict, workdir: str,
                      examples_per_client=None) -> dict:
    """Writes `WORKDIR/cost.json` (a run's compute and communication vs independent FedAvg); returns it.

    Args:
      config: the experiment config (reads cost.baseline, cost.bytes_per_param, client.epochs).
      space: the run's final space.
      sequence: the run's assignment sequence (`federated.assignment.assignment_sequence`).
      workdir: where cost.json goes.
      examples_per_client: [K] example counts; when given, training MACs are multiplied out too.
    """
    baseline = (space_lib.parse_archs(space, config.cost.baseline, "cost.baseline")
                if config.cost.baseline else None)
    report = cost_report(space, sequence, baseline, examples_per_client=examples_per_client,
                         epochs=config.client.epochs if examples_per_client is not None else None,
                         bytes_per_param=config.cost.bytes_per_param)
    with open(os.path.join(workdir, "cost.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def trains_only_its_baseline(report: dict) -> bool:
    """Whether a cost report is that of a FedAvg baseline: every client trained the one baseline arch.

    Then the run and "independent FedAvg of its baseline set" are the same training, and the ratio is 1 by
    construction (`config.fedavg_baseline` sets `cost.baseline` to the run's own arch). Read from the
    figures alone: one baseline arch, and the run's compute and communication equal to training it alone.
    """
    run, baseline = report["superfed"], report["baseline"]
    return (len(baseline["archs"]) == 1 and run["total_macs"] == baseline["total_macs"]
            and run["total_bytes_per_direction"] == baseline["total_bytes_per_direction"])


def cost_summary(report: dict) -> str:
    """Two lines for stdout: the run's cost, then its ratios against independent FedAvg.

    A FedAvg baseline run (`trains_only_its_baseline`) gets, instead of a ratio of 1 against itself, the
    command that sets it against a weight-shared run.
    """
    superfed, ratios = report["superfed"], report["ratios"]
    first = (f"cost: {superfed['total_macs']:.4g} forward MACs per image summed over the run's clients "
             f"(mean client {superfed['mean_client_gmacs']:.4f} GMACs), "
             f"{superfed['total_bytes_per_direction']:.4g} bytes communicated per direction")
    if trains_only_its_baseline(report):
        return (f"{first}\nthis is a FedAvg baseline (one arch on every client): its cost is the "
                "FedAvg side of a comparison; `superfed-report WEIGHT_SHARED_WORKDIR THIS_WORKDIR ...` "
                "sets it against a weight-shared run")
    archs = len(report["baseline"]["archs"])
    return (f"{first}\nindependent FedAvg of {archs} arch{'' if archs == 1 else 's'} costs "
            f"{ratios['compute_ratio']:.2f}x the compute and {ratios['comm_ratio']:.2f}x the communication")
