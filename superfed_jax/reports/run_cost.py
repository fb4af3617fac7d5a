"""Cost accounting of a whole federated run, and of independent FedAvg of a set of archs.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879, claim that training one
weight-shared supernet costs about 9.43x less compute and about 10.4x less communication than training
the 9 archs of their table independently with FedAvg (docs/algorithm.md section 8). The cost model:

  compute(SuperFed)  = sum over rounds t, sampled clients c: MACs(arch_{t,c})
  comm(SuperFed)     = sum over t, c: bytes_per_param * params(arch_{t,c})     (each direction)
  compute(iFedAvg S) = sum over archs s in S: rounds * P * MACs(s);  comm likewise with params

with MACs the forward multiply-accumulates of one image, or of the family's `cost_unit` (`Family.macs`),
and params the subnet's parameter count (`Family.params`). Samples, epochs and the backward pass cancel in
these ratios in expectation; when
client example counts are given, `run_cost` also multiplies MACs out by the examples actually trained
(n_c * epochs per sampled client) and by a forward+backward factor (3: the backward pass costs about two
forwards, one for activation gradients and one for weight gradients), and reports that ratio separately.

The assignment sequence comes from `federated.assignment.assignment_sequence` (or from a real run's metrics). Exact
integer arithmetic throughout: per-arch costs are int64 from `Family.cost_batch`, totals are Python ints.
A family may count by conventions of its own (`**counting`, passed to `Family.cost_batch` and
`Family.cost_conventions`; the OFA-ResNet's give the paper's); none given, its defaults.
"""
import json
import math
import os
from typing import Optional, Sequence

import numpy as np

from superfed_jax import _readable
from superfed_jax.supernet import archs as archs_lib
from superfed_jax.supernet import family as family_lib

__all__ = ["BACKWARD_FACTOR", "run_cost", "independent_fedavg_cost", "compare", "default_baseline_archs",
           "conventions", "cost_report", "write_cost_report", "trains_only_its_baseline", "cost_summary"]
# Training MACs per forward MAC: forward, plus a backward pass of about two forwards (gradients with
# respect to the activations and to the weights).
BACKWARD_FACTOR = 3


# ------------------------------------------------------------------------------------------ helpers


def _arch_costs(family: family_lib.Family, archs, counting: dict):
    """(MACs, params), int64 arrays shaped like the archs' leading axes."""
    arch_macs, arch_params = family.cost_batch(archs, **counting)
    return np.asarray(arch_macs, np.int64), np.asarray(arch_params, np.int64)


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


def run_cost(family: family_lib.Family, sequence: dict, *, examples_per_client=None,
             epochs: Optional[int] = None, bytes_per_param: int = 4,
             fwd_bwd_factor: int = BACKWARD_FACTOR, **counting) -> dict:
    """Compute and communication of a run from its assignment sequence (docs/algorithm.md 8).

    Args:
      family: the run's supernet family.
      sequence: ``clients`` [R, P] and ``archs`` (the family's arch pytree with leading axes [R, P]), as
        returned by `assignment.assignment_sequence`; ``clients`` is needed only with ``examples_per_client``.
      examples_per_client: optional int [K] training examples of every client.
      epochs: local epochs per round; required with ``examples_per_client``.
      bytes_per_param: bytes sent per parameter (4: float32).
      fwd_bwd_factor: training MACs per forward MAC (3, see `BACKWARD_FACTOR`).
      **counting: the family's own counting conventions (`Family.cost_batch`; the OFA-ResNet's give the
        paper's conventions); none: the family's defaults.

    Returns:
      ``client_macs`` / ``client_params`` int64 [R, P]: per-image (per `cost_unit`) forward MACs and
      params of each sampled client's arch; ``round_macs`` int64 [R] (sum over the round's clients);
      ``round_bytes`` int64 [R] (bytes each direction: download = upload); ``total_macs``,
      ``total_bytes`` (Python ints); ``mean_client_macs`` (float); ``rounds``, ``clients_per_round``. With example counts also
      ``round_example_macs`` int64 [R] (forward MACs over the examples trained: sum_c n_c * epochs *
      MACs), ``total_example_macs`` and ``total_training_macs`` (= fwd_bwd_factor * total_example_macs).
    """
    client_macs, client_params = _arch_costs(family, sequence["archs"], counting)
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


def independent_fedavg_cost(family: family_lib.Family, archs: Sequence, rounds: int,
                            clients_per_round: int, *, clients=None, examples_per_client=None,
                            epochs: Optional[int] = None, bytes_per_param: int = 4,
                            fwd_bwd_factor: int = BACKWARD_FACTOR, **counting) -> dict:
    """Cost of training every arch of ``archs`` alone with FedAvg, same rounds and P (docs/algorithm.md 8).

    Args:
      family: the run's supernet family.
      archs: the baseline set S (concrete archs).
      rounds: rounds of every FedAvg run.
      clients_per_round: P.
      clients: int [rounds, P] sampled clients; needed only with ``examples_per_client``. Sampling depends
        only on (seed, round), so a FedAvg run with the same seed samples the SuperFed run's clients.
      examples_per_client, epochs, bytes_per_param, fwd_bwd_factor, counting: as in `run_cost`.

    Returns:
      ``arch_macs`` / ``arch_params`` int64 [A]; ``total_macs`` = rounds * P * sum MACs(s);
      ``total_bytes`` = bytes_per_param * rounds * P * sum params(s) (each direction); with example
      counts also ``total_example_macs`` and ``total_training_macs`` as in `run_cost`.
    """
    if not archs:
        raise ValueError("independent FedAvg baseline: need at least one arch")
    arch_macs, arch_params = _arch_costs(family, family_lib.stack(list(archs)), counting)
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


def default_baseline_archs(family: family_lib.Family) -> list:
    """The independent-FedAvg set S: a published baseline (`Family.paper_baseline`: the paper's 9 archs,
    docs/algorithm.md 2.3, on its own space) or the tracked archs.

    A published table is defined for its own space, so any other space (and any family without one) gets
    its default tracked archs (`Family.default_tracked`, e.g. smallest, small, medium, largest).
    """
    published = family.paper_baseline()
    if published is not None:
        return list(published)
    return list(family.default_tracked().values())


# ------------------------------------------------------------------------------------------- report


def cost_units_per_example(family: family_lib.Family) -> int:
    """How many `cost_unit`s one training example holds: 1 for an image, T for a window of T tokens."""
    return math.prod(family.data_shape.input_shape) if family.cost_unit == "token" else 1


def _per_example(family: family_lib.Family) -> str:
    """What the example-MACs convention adds for a family whose MACs are per token ('' for images)."""
    if family.cost_unit != "token":
        return ""
    return f" * {cost_units_per_example(family)} (n_c windows of {cost_units_per_example(family)} tokens)"


def conventions(family: family_lib.Family, bytes_per_param: int, fwd_bwd_factor: int, **counting) -> dict:
    """The counting conventions of a report, as strings (MACs and params in the family's words,
    `Family.cost_conventions`, under its `counting` options as in `run_cost`)."""
    counted = family.cost_conventions(**counting)
    return {
        "macs": counted["macs"],
        "params": counted["params"],
        "bytes": f"{bytes_per_param} bytes per parameter, per direction (download = upload)",
        "compute": f"sum over rounds and sampled clients of per-{family.cost_unit} forward MACs of the "
                   "client's arch",
        "baseline": "independent FedAvg: every arch of the set trained alone, same rounds and clients "
                    "per round (docs/algorithm.md 8)",
        "example_macs": f"sum over rounds and sampled clients of n_c * epochs * MACs{_per_example(family)} "
                        f"(forward only); training MACs = {fwd_bwd_factor} x that (backward about 2 forwards)",
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


def _baseline_summary(family: family_lib.Family, archs, baseline: dict) -> dict:
    table = [{"arch": family.arch_to_json(a), "macs": int(m), "gmacs": int(m) / 1e9,
              "params": int(p)}
             for a, m, p in zip(archs, baseline["arch_macs"], baseline["arch_params"])]
    return {"method": "independent FedAvg", "archs": table,
            "sum_gmacs": _total(baseline["arch_macs"]) / 1e9, **_totals(baseline)}


def cost_report(family: family_lib.Family, sequence: dict, baseline_archs=None, *,
                examples_per_client=None, epochs: Optional[int] = None, bytes_per_param: int = 4,
                fwd_bwd_factor: int = BACKWARD_FACTOR, **counting) -> dict:
    """The JSON-ready cost of a run against independent FedAvg (to be written as ``cost.json``).

    Args:
      family: the run's supernet family.
      sequence: the run's assignment sequence (`assignment.assignment_sequence`).
      baseline_archs: the independent-FedAvg set; default `default_baseline_archs(family)`.
      examples_per_client, epochs, bytes_per_param, fwd_bwd_factor, counting: as in `run_cost`.

    Returns:
      A dict of plain Python values: ``conventions`` (strings), ``rounds``, ``clients_per_round``,
      ``superfed`` and ``baseline`` totals, ``ratios`` and ``per_round`` arrays (lists).
    """
    archs = default_baseline_archs(family) if baseline_archs is None else list(baseline_archs)
    options = dict(bytes_per_param=bytes_per_param, fwd_bwd_factor=fwd_bwd_factor,
                   examples_per_client=examples_per_client, epochs=epochs, **counting)
    run = run_cost(family, sequence, **options)
    baseline = independent_fedavg_cost(family, archs, run["rounds"], run["clients_per_round"],
                                       clients=sequence.get("clients"), **options)
    per_round = {"macs": _ints(run["round_macs"]), "bytes_per_direction": _ints(run["round_bytes"])}
    if "round_example_macs" in run:
        per_round["example_macs"] = _ints(run["round_example_macs"])
    return {
        "conventions": conventions(family, bytes_per_param, fwd_bwd_factor, **counting),
        "rounds": run["rounds"],
        "clients_per_round": run["clients_per_round"],
        "superfed": _superfed_summary(run),
        "baseline": _baseline_summary(family, archs, baseline),
        "ratios": compare(run, baseline),
        "per_round": per_round,
    }


def write_cost_report(config, family: family_lib.Family, sequence: dict, workdir: str,
                      examples_per_client=None) -> dict:
    """Writes `WORKDIR/cost.json` (a run's compute and communication vs independent FedAvg); returns it.

    Args:
      config: the experiment config (reads cost.baseline, cost.bytes_per_param, client.epochs).
      family: the run's final family (with the data's input shape and classes).
      sequence: the run's assignment sequence (`federated.assignment.assignment_sequence`).
      workdir: where cost.json goes.
      examples_per_client: [K] example counts; when given, training MACs are multiplied out too (for a
        family whose MACs are per token, each example counts its tokens: `cost_units_per_example`).
    """
    baseline = (archs_lib.parse_archs(family, config.cost.baseline, "cost.baseline")
                if config.cost.baseline else None)
    if examples_per_client is not None:  # in cost units: a window of T tokens costs T times a token's MACs
        examples_per_client = np.asarray(examples_per_client, np.int64) * cost_units_per_example(family)
    report = cost_report(family, sequence, baseline, examples_per_client=examples_per_client,
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


def cost_summary(report: dict, cost_unit: str = "image") -> str:
    """Two lines for stdout: the run's cost (MACs per `cost_unit`, the family's), then its ratios against
    independent FedAvg.

    A FedAvg baseline run (`trains_only_its_baseline`) gets, instead of a ratio of 1 against itself, the
    command that sets it against a weight-shared run.
    """
    superfed, ratios = report["superfed"], report["ratios"]
    first = (f"cost: {_readable.si(superfed['total_macs'], 'MACs')} forward per {cost_unit} summed over the "
             f"run's clients (mean client {_readable.si(superfed['mean_client_gmacs'] * 1e9, 'MACs')}), "
             f"{_readable.binary_bytes(superfed['total_bytes_per_direction'])} communicated per direction")
    if trains_only_its_baseline(report):
        return (f"{first}\nthis is a FedAvg baseline (one arch on every client): its cost is the "
                "FedAvg side of a comparison; `superfed-report WEIGHT_SHARED_WORKDIR THIS_WORKDIR ...` "
                "sets it against a weight-shared run")
    archs = len(report["baseline"]["archs"])
    return (f"{first}\nindependent FedAvg of {archs} arch{'' if archs == 1 else 's'} costs "
            f"{ratios['compute_ratio']:.2f}x the compute and {ratios['comm_ratio']:.2f}x the communication")
