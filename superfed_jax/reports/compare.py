"""Weight-shared vs independent FedAvg: one SuperFed run combined with FedAvg runs of single archs.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879, claim that one weight-shared
supernet matches every subnet trained alone by FedAvg at a fraction of the cost (docs/algorithm.md 8, 10). The
one-run report (`run_report`) can only set a run against its own cost estimate; this module checks the claim
on measured runs: one weight-shared work directory plus FedAvg baselines (one arch each,
`config.fedavg_baseline`), each read with `run_record.read_run`:

* `combine_runs(workdirs)`: accuracy per arch on both sides, the measured cost of both approaches (the
  baselines' own ``cost.json`` totals, summed) and the settings that differ.
* `write_combined_report(workdirs, out)`: that comparison as ``OUT/report.md`` and ``OUT/pareto.png``.

The command line (`python -m superfed_jax.reports.cli` with several RUN_DIRs) calls it.
"""
import json
import math
import os
from typing import Optional

from superfed_jax.supernet import space as space_lib
from superfed_jax.reports.format import arch_text, percent, runs_title, si, size_note
from superfed_jax.reports.plot import plot_pareto
from superfed_jax.reports.run_record import (RunRecord, arch_key, arch_rows, is_fedavg_baseline, read_run,
                                             required_file, select_best, setting)

__all__ = ["combine_runs", "write_combined_report"]

# Settings that must agree for the accuracy and cost comparison to be like for like.
_SHARED_SETTINGS = ("seed", "data.name", "data.partition", "data.alpha", "data.val_fraction",
                    "fl.num_clients", "fl.clients_per_round", "fl.rounds", "client.epochs",
                    "client.batch_size", "client.learning_rate")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _trained_arch(run: RunRecord) -> str:
    """The name under which a FedAvg run evaluates the one arch of its pool; ValueError if it does not."""
    spec = json.loads(run.config["fl"]["pool"])[0]
    try:
        arch = (space_lib.default_tracked(run.space)[spec] if isinstance(spec, str)
                else space_lib.arch_from_dict(run.space, spec))
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"{run.workdir}: config.json fl.pool {spec!r}: {error}") from None
    key = arch_key(run.space, arch)
    for name, tracked in run.tracked.items():
        if arch_key(run.space, tracked) == key:
            return name
    raise ValueError(f"{run.workdir}: FedAvg run of {arch_text(space_lib.arch_to_dict(run.space, arch))} "
                     f"does not evaluate that arch (tracked: {list(run.tracked)})")


def _split_runs(runs: list[RunRecord]) -> tuple[RunRecord, list[RunRecord]]:
    """(the weight-shared run, the FedAvg runs); ValueError unless exactly one run is weight-shared."""
    shared = [r for r in runs if not is_fedavg_baseline(r.config)]
    if not shared:
        raise ValueError("no weight-shared run among " + ", ".join(r.workdir for r in runs)
                         + ": every one is FedAvg of one arch (fl.heuristic 'static', a one-arch fl.pool)")
    if len(shared) > 1:
        raise ValueError("more than one weight-shared run: " + ", ".join(r.workdir for r in shared)
                         + "; give one, plus FedAvg runs of single archs")
    baselines = [r for r in runs if r is not shared[0]]
    for run in [shared[0]] + baselines:
        if run.cost is None:
            required_file(run.workdir, "cost.json")  # raises, naming the directory
    for run in baselines:
        if run.space != shared[0].space:
            raise ValueError(f"{run.workdir}: its search space {run.space} differs from that of the "
                             f"weight-shared run {shared[0].workdir} ({shared[0].space})")
    return shared[0], baselines


def _fedavg_rows(baselines: list[RunRecord]) -> dict:
    """Canonical arch key -> (row of the arch at its run's best round, workdir); one run per arch."""
    rows = {}
    for run in baselines:
        name = _trained_arch(run)
        row = next(r for r in arch_rows(run, select_best(run.records, [name])) if r["name"] == name)
        key = arch_key(run.space, run.tracked[name])
        if key in rows:
            raise ValueError(f"two FedAvg runs of the arch {arch_text(row['arch'])}: {rows[key][1]} and "
                             f"{run.workdir}")
        rows[key] = (row, run.workdir)
    return rows


def _measured_cost(shared: RunRecord, baselines: list[RunRecord]) -> dict:
    """Totals of the weight-shared run and the sum over the FedAvg runs (their own cost.json), and ratios."""
    fields = ["total_macs", "total_bytes_per_direction"]
    if all("total_training_macs" in r.cost["superfed"] for r in [shared] + baselines):
        fields.insert(1, "total_training_macs")
    result = {"weight_shared": {f: shared.cost["superfed"][f] for f in fields},
              "fedavg": {f: sum(r.cost["superfed"][f] for r in baselines) for f in fields},
              "fedavg_runs": len(baselines)}
    if baselines:
        result["ratios"] = {f: result["fedavg"][f] / result["weight_shared"][f] for f in fields}
    return result


def combine_runs(workdirs: list[str]) -> dict:
    """Accuracy per arch of one weight-shared run and of FedAvg runs of single archs, and both costs.

    Returns:
      ``shared`` / ``baselines``: the `RunRecord`s; ``rows``: per arch (the weight-shared run's tracked archs,
      then FedAvg-only archs by MACs) name, arch, macs, params, ``shared_test_accuracy`` and
      ``shared_round``, ``fedavg_test_accuracy``, ``fedavg_round`` and ``fedavg_workdir`` (NaN / None
      where a side lacks the arch) and ``difference`` (weight-shared minus FedAvg); ``cost``
      (`_measured_cost`); ``warnings``: settings that differ from the weight-shared run's.
    """
    shared, baselines = _split_runs([read_run(w) for w in workdirs])
    fedavg = _fedavg_rows(baselines)
    rows = []
    for row in arch_rows(shared):
        other, workdir = fedavg.pop(arch_key(shared.space, shared.tracked[row["name"]]), (None, None))
        rows.append(_combined_row(row, other, workdir))
    rows += sorted((_combined_row(None, other, workdir) for other, workdir in fedavg.values()),
                   key=lambda r: r["macs"])
    warnings = [f"{run.workdir}: {name} = {setting(run.config, name)!r}, the weight-shared run has "
                f"{setting(shared.config, name)!r}"
                for run in baselines for name in _SHARED_SETTINGS
                if setting(run.config, name) != setting(shared.config, name)]
    return {"shared": shared, "baselines": baselines, "rows": rows,
            "cost": _measured_cost(shared, baselines), "warnings": warnings}


def _combined_row(shared_row: Optional[dict], fedavg_row: Optional[dict], fedavg_workdir) -> dict:
    base = shared_row or fedavg_row
    row = {key: base[key] for key in ("name", "arch", "macs", "params", "size_source")}
    row["shared_test_accuracy"] = shared_row["test_accuracy"] if shared_row else math.nan
    row["shared_round"] = shared_row["round"] if shared_row else None
    row["fedavg_test_accuracy"] = fedavg_row["test_accuracy"] if fedavg_row else math.nan
    row["fedavg_round"] = fedavg_row["round"] if fedavg_row else None
    row["fedavg_workdir"] = fedavg_workdir
    row["difference"] = row["shared_test_accuracy"] - row["fedavg_test_accuracy"]
    return row


def _combined_cost_lines(combined: dict) -> list[str]:
    cost, shared = combined["cost"], combined["shared"]
    labels = {"total_macs": ("compute: forward MACs per image, summed over clients", "MACs"),
              "total_training_macs": ("compute: training MACs (examples x epochs x 3)", "MACs"),
              "total_bytes_per_direction": ("communication per direction", "B")}
    lines = ["## Cost", "", "Measured: each run's own cost.json (its clients and archs, round by round); "
             f"FedAvg is the sum over its {_plural(cost['fedavg_runs'], 'run')}.", "",
             f"| | weight-shared run | FedAvg, {_plural(cost['fedavg_runs'], 'run')} "
             "| FedAvg / weight-shared |",
             "|---|---|---|---|"]
    for field, value in cost["weight_shared"].items():
        label, unit = labels[field]
        ratio = f"{cost['ratios'][field]:.2f}x" if "ratios" in cost else "n/a"
        lines.append(f"| {label} | {si(value, unit)} | {si(cost['fedavg'][field], unit)} | {ratio} |")
    estimate = shared.cost["ratios"]
    lines += ["", f"The weight-shared run's own estimate (its cost.json: independent FedAvg of "
              f"{len(shared.cost['baseline']['archs'])} archs at its rounds and clients per round): "
              f"{estimate['compute_ratio']:.2f}x the compute, {estimate['comm_ratio']:.2f}x the "
              "communication.", ""]
    return lines


def write_combined_report(workdirs: list[str], out: str) -> dict:
    """Writes the combined ``report.md`` and ``pareto.png`` of `combine_runs` into ``out``.

    Returns:
      `combine_runs`'s dict, less the `RunRecord`s, plus the written ``report`` and ``plot`` paths.
    """
    combined = combine_runs(workdirs)
    shared, baselines, rows = combined["shared"], combined["baselines"], combined["rows"]
    os.makedirs(out, exist_ok=True)
    best_round = rows[0]["shared_round"]
    lines = [f"# Weight-shared vs independent FedAvg: {runs_title(shared)}", "",
             f"- weight-shared: `{shared.workdir}`, test accuracy at round {best_round} (the best mean "
             f"validation accuracy over its {len(shared.tracked)} tracked archs)"]
    lines += [f"- FedAvg of {r['name']}: `{r['fedavg_workdir']}`, test accuracy at its best validation "
              f"round {r['fedavg_round']}" for r in rows if r["fedavg_workdir"]]
    lines += ["", "| arch | d / e | MMACs | params | weight-shared test acc (%) | FedAvg test acc (%) "
              "| weight-shared - FedAvg (points) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        difference = "n/a" if math.isnan(r["difference"]) else f"{100 * r['difference']:+.2f}"
        lines.append(f"| {r['name']} | `{arch_text(r['arch'])}` | {r['macs'] / 1e6:.4g} | {r['params']:,} "
                     f"| {percent(r['shared_test_accuracy'])} | {percent(r['fedavg_test_accuracy'])} "
                     f"| {difference} |")
    lines += ["", size_note(rows), ""] + _combined_cost_lines(combined)
    if combined["warnings"]:
        lines += ["## Warnings: settings differ", ""] + [f"- {w}" for w in combined["warnings"]] + [""]
    lines += ["![accuracy vs MACs](pareto.png)", ""]
    report_path, plot_path = os.path.join(out, "report.md"), os.path.join(out, "pareto.png")
    with open(report_path, "w") as f:
        f.write("\n".join(lines))
    ratios = combined["cost"].get("ratios")
    subtitle = (f"FedAvg of {_plural(len(baselines), 'arch')}: {ratios['total_macs']:.2f}x the compute, "
                f"{ratios['total_bytes_per_direction']:.2f}x the communication" if ratios else "")
    shared_series = [dict(r, test_accuracy=r["shared_test_accuracy"]) for r in rows]
    fedavg_series = [dict(r, test_accuracy=r["fedavg_test_accuracy"]) for r in rows]
    plot_pareto(plot_path, [("weight-shared subnets (one supernet)", shared_series),
                            ("FedAvg, each arch trained alone", fedavg_series)],
                f"{runs_title(shared)}: test accuracy at the best validation round\n{subtitle}")
    result = {k: v for k, v in combined.items() if k not in ("shared", "baselines")}
    return dict(result, report=report_path, plot=plot_path)
