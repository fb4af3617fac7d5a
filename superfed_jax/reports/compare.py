"""Weight-shared vs independent FedAvg: SuperFed runs combined with FedAvg runs of single archs.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879, claim that one weight-shared
supernet matches every subnet trained alone by FedAvg at a fraction of the cost (docs/algorithm.md 8, 10). The
one-run report (`run_report`) can only set a run against its own cost estimate; this module checks the claim
on measured runs: weight-shared work directories (one per seed, otherwise alike) plus FedAvg baselines (one
arch each, `config.fedavg_baseline`, one per arch and seed), each read with `run_record.read_run`:

* `combine_runs(workdirs)`: accuracy per arch on both sides (with several seeds: every seed's, their mean,
  sample std and min-max, and the paired per-seed differences), the measured cost of both approaches per
  seed (the runs' own ``cost.json`` totals; FedAvg summed over its archs) and the settings that differ.
* `write_combined_report(workdirs, out)`: that comparison as ``OUT/report.md`` with ``pareto.png`` and
  ``curves.png`` (also as SVG) and its tables as CSV (`combined_files`). One seed on each side gives the
  plain numbers of those runs.

The command line (`python -m superfed_jax.reports.cli` with several RUN_DIRs) calls it.

Every run is read at its best validation round and compared in the runs' headline metric (`eval.metric`;
`superfed_jax.federated.metric`), which all runs must share: accuracy by default (rows ``shared_test_accuracy``
..., in %), or e.g. perplexity for a language model (rows ``shared_test_perplexity``, ``*_perplexities``,
report_perplexity.csv; the difference is still weight-shared minus FedAvg, so a negative one is the
weight-shared subnet ahead).
"""
import json
import math
import os
import statistics
from typing import Optional

from superfed_jax.federated import metric as metric_lib
from superfed_jax.reports import combined_files
from superfed_jax.reports import plot
from superfed_jax.reports.format import arch_text, cost_labels, runs_title, si, size_note
from superfed_jax.reports.run_record import (RunRecord, arch_key, arch_rows, is_fedavg_baseline, read_run,
                                             required_file, select_best, setting, space_text)

__all__ = ["combine_runs", "write_combined_report"]

# Settings that must agree for the accuracy and cost comparison to be like for like. The seed comes first:
# runs of several seeds are compared on the rest (_SHARED_SETTINGS[1:]).
_SHARED_SETTINGS = ("seed", "data.name", "data.partition", "data.alpha", "data.val_fraction",
                    "fl.num_clients", "fl.clients_per_round", "fl.rounds", "client.epochs",
                    "client.batch_size", "client.learning_rate")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _trained_arch(run: RunRecord) -> str:
    """The name under which a FedAvg run evaluates the one arch of its pool; ValueError if it does not."""
    spec = json.loads(run.config["fl"]["pool"])[0]
    try:
        arch = (run.family.default_tracked()[spec] if isinstance(spec, str)
                else run.family.arch_from_json(spec))
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"{run.workdir}: config.json fl.pool {spec!r}: {error}") from None
    key = arch_key(run.family, arch)
    for name, tracked in run.tracked.items():
        if arch_key(run.family, tracked) == key:
            return name
    raise ValueError(f"{run.workdir}: FedAvg run of {arch_text(run.family.arch_to_json(arch))} "
                     f"does not evaluate that arch (tracked: {list(run.tracked)})")


def _seed(run: RunRecord):
    return setting(run.config, "seed")


def _seed_order(seed):
    """Sort key of seeds: integers in order, then anything else by its text."""
    return (0, seed) if isinstance(seed, int) else (1, str(seed))


def _seed_text(seeds) -> str:
    return ", ".join(str(s) for s in seeds)


def _check_same_settings(first: RunRecord, run: RunRecord) -> None:
    """ValueError unless ``run`` agrees with ``first`` on every shared setting but the seed, and on the
    space and tracked archs: weight-shared runs of several seeds are averaged, so only the seed may differ."""
    for name in _SHARED_SETTINGS[1:]:
        if setting(run.config, name) != setting(first.config, name):
            raise ValueError(f"weight-shared runs {first.workdir} and {run.workdir} differ in {name} "
                             f"({setting(first.config, name)!r} vs {setting(run.config, name)!r}); runs of "
                             "several seeds must agree on every setting but the seed")
    tracked = [{name: arch_key(r.family, arch) for name, arch in r.tracked.items()} for r in (first, run)]
    if space_text(run.family) != space_text(first.family) or tracked[0] != tracked[1]:  # archs: by key
        raise ValueError(f"weight-shared runs {first.workdir} and {run.workdir} differ in their search "
                         "space or tracked archs; runs of several seeds must agree on every setting but the "
                         "seed")


def _split_runs(runs: list[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]]:
    """(the weight-shared runs by seed, the FedAvg runs); ValueError unless the weight-shared runs are one
    per seed and agree on every other setting, and every run has its cost.json."""
    shared = [r for r in runs if not is_fedavg_baseline(r.config)]
    if not shared:
        raise ValueError("no weight-shared run among " + ", ".join(r.workdir for r in runs)
                         + ": every one is FedAvg of one arch (fl.heuristic 'static', a one-arch fl.pool)")
    for i, run in enumerate(shared):
        twin = next((other for other in shared[:i] if _seed(other) == _seed(run)), None)
        if twin is not None:
            raise ValueError(f"more than one weight-shared run of seed {_seed(run)!r}: {twin.workdir}, "
                             f"{run.workdir}; give one per seed, plus FedAvg runs of single archs")
    shared.sort(key=lambda r: _seed_order(_seed(r)))
    for run in shared[1:]:
        _check_same_settings(shared[0], run)
    baselines = [r for r in runs if r not in shared]
    for run in shared[1:] + baselines:
        if run.metric != shared[0].metric:
            raise ValueError(f"{run.workdir}: its headline metric is {run.metric.name} (config.json "
                             f"eval.metric), that of the weight-shared run {shared[0].workdir} is "
                             f"{shared[0].metric.name}; compare runs selected by the same metric")
    for run in shared + baselines:
        if run.cost is None:
            required_file(run.workdir, "cost.json")  # raises, naming the directory
    for run in baselines:
        if space_text(run.family) != space_text(shared[0].family):
            raise ValueError(f"{run.workdir}: its search space {space_text(run.family)} differs from that of "
                             f"the weight-shared run {shared[0].workdir} ({space_text(shared[0].family)})")
    return shared, baselines


def _fedavg_rows(baselines: list[RunRecord]) -> dict:
    """Canonical arch key -> {seed: (row of the arch at its run's best round, run, evaluated name)}."""
    rows = {}
    for run in baselines:
        name = _trained_arch(run)
        row = next(r for r in arch_rows(run, select_best(run.records, [name], run.metric)) if r["name"] == name)
        by_seed = rows.setdefault(arch_key(run.family, run.tracked[name]), {})
        if _seed(run) in by_seed:
            raise ValueError(f"two FedAvg runs of the arch {arch_text(row['arch'])} with seed {_seed(run)!r}: "
                             f"{by_seed[_seed(run)][1].workdir} and {run.workdir}")
        by_seed[_seed(run)] = (row, run, name)
    return {key: dict(sorted(by_seed.items(), key=lambda item: _seed_order(item[0])))
            for key, by_seed in rows.items()}


def _mean_cost(runs: list[RunRecord], field: str) -> float:
    return sum(r.cost["superfed"][field] for r in runs) / len(runs)


def _measured_cost(shared: list[RunRecord], fedavg: dict) -> dict:
    """Measured cost of one seed of each side (each run's cost.json): the weight-shared run's, and the sum
    over archs of their FedAvg runs'; with several seeds, each run's cost is the mean over its seeds."""
    baselines = [run for by_seed in fedavg.values() for _, run, _ in by_seed.values()]
    fields = ["total_macs", "total_bytes_per_direction"]
    if all("total_training_macs" in r.cost["superfed"] for r in shared + baselines):
        fields.insert(1, "total_training_macs")
    per_arch = [[run for _, run, _ in by_seed.values()] for by_seed in fedavg.values()]
    result = {"weight_shared": {f: _mean_cost(shared, f) for f in fields},
              "fedavg": {f: sum(_mean_cost(runs, f) for runs in per_arch) for f in fields},
              "fedavg_runs": len(per_arch), "weight_shared_runs_total": len(shared),
              "fedavg_runs_total": len(baselines), "seeds": [_seed(r) for r in shared]}
    if baselines:
        result["ratios"] = {f: result["fedavg"][f] / result["weight_shared"][f] for f in fields}
    return result


def _seed_warnings(shared: list[RunRecord], fedavg: dict) -> list[str]:
    """Settings of FedAvg runs that differ from the weight-shared run of their seed (or the first one),
    and archs whose FedAvg seeds are not the weight-shared runs' seeds."""
    by_seed = {_seed(r): r for r in shared}
    warnings = []
    for runs in fedavg.values():
        for seed, (_, run, _) in runs.items():
            other = by_seed.get(seed, shared[0])
            names = _SHARED_SETTINGS if len(shared) == 1 else _SHARED_SETTINGS[1:]
            warnings += [f"{run.workdir}: {name} = {setting(run.config, name)!r}, the weight-shared run has "
                         f"{setting(other.config, name)!r}" for name in names
                         if setting(run.config, name) != setting(other.config, name)]
        if len(shared) > 1 and set(runs) != set(by_seed):
            name = next(iter(runs.values()))[0]["arch"]
            warnings.append(f"FedAvg of {arch_text(name)}: seeds {_seed_text(runs)}, the weight-shared "
                            f"runs: seeds {_seed_text(by_seed)}; the paired difference uses the common seeds")
    return warnings


def combine_runs(workdirs: list[str]) -> dict:
    """Accuracy per arch of weight-shared runs and of FedAvg runs of single archs, and both costs.

    The weight-shared runs are one per seed (at least one) and agree on every other setting; the FedAvg
    runs are at most one per arch and seed. With one seed on each side the numbers are those runs'.

    Returns:
      ``shared``: the first weight-shared `RunRecord` (lowest seed), ``shared_runs``: all of them, by
      seed; ``baselines``: the FedAvg `RunRecord`s; ``rows``: per arch (the weight-shared runs' tracked
      archs, then FedAvg-only archs by MACs) name, arch, macs, params, and per side (``shared_`` and
      ``fedavg_``): ``test_accuracies`` and ``rounds`` ({seed: value} at each run's best validation
      round), ``test_accuracy`` (the mean over seeds; NaN where a side lacks the arch),
      ``test_accuracy_std`` (sample std, n - 1; 0 for one seed), ``test_accuracy_low`` / ``_high``
      (min, max) and ``round`` (the best round when there is one seed, else None); ``fedavg_workdir``
      (the lowest seed's FedAvg run) and ``fedavg_workdirs``; ``difference`` (mean weight-shared minus
      mean FedAvg) and ``difference_std`` (sample std of the per-seed differences over the seeds both
      sides ran, NaN for fewer than 2); ``cost`` (`_measured_cost`, per seed); ``warnings``: settings
      that differ; ``sources``: per row, the (run, evaluated name) pairs of each side (for the curves).
    """
    shared_runs, baselines = _split_runs([read_run(w) for w in workdirs])
    metric = shared_runs[0].metric
    fedavg = _fedavg_rows(baselines)
    cost, warnings = _measured_cost(shared_runs, fedavg), _seed_warnings(shared_runs, fedavg)
    shared_rows = [{r["name"]: r for r in arch_rows(run)} for run in shared_runs]
    fedavg_only = dict(fedavg)  # what is left once the weight-shared runs' archs are taken out
    pairs = []
    for name in shared_runs[0].tracked:
        shared_side = {_seed(run): (by_name[name], run, name)
                       for run, by_name in zip(shared_runs, shared_rows)}
        fedavg_side = fedavg_only.pop(arch_key(shared_runs[0].family, shared_runs[0].tracked[name]), {})
        pairs.append((shared_side, fedavg_side))
    pairs += sorted((({}, side) for side in fedavg_only.values()),
                    key=lambda pair: next(iter(pair[1].values()))[0]["macs"])
    return {"shared": shared_runs[0], "shared_runs": shared_runs, "baselines": baselines, "metric": metric,
            "rows": [_combined_row(*pair, metric) for pair in pairs], "cost": cost, "warnings": warnings,
            "sources": [{"shared": [(run, n) for _, run, n in shared_side.values()],
                         "fedavg": [(run, n) for _, run, n in fedavg_side.values()]}
                        for shared_side, fedavg_side in pairs]}


def test_key(metric: metric_lib.Metric) -> str:
    """A combined row's key of a side's mean test value after 'shared_' / 'fedavg_': 'test_accuracy'."""
    return f"test_{metric.name}"


def seeds_key(metric: metric_lib.Metric) -> str:
    """A combined row's key of a side's per-seed test values: 'test_accuracies', 'test_perplexities'."""
    return f"test_{metric.plural.lower()}"


def _side(prefix: str, side: dict, metric: metric_lib.Metric = metric_lib.ACCURACY) -> dict:
    """The fields of one side of a combined row from {seed: (row, run, name)} (see `combine_runs`)."""
    key = test_key(metric)
    accuracies = {seed: row[key] for seed, (row, _, _) in side.items()}
    values = list(accuracies.values())
    fields = {seeds_key(metric): accuracies,
              "rounds": {seed: row["round"] for seed, (row, _, _) in side.items()},
              key: statistics.fmean(values) if values else math.nan,
              f"{key}_std": (statistics.stdev(values) if len(values) > 1
                             else 0.0 if values else math.nan),
              f"{key}_low": min(values) if values else math.nan,
              f"{key}_high": max(values) if values else math.nan,
              "round": next(iter(side.values()))[0]["round"] if len(side) == 1 else None}
    return {f"{prefix}_{key}": value for key, value in fields.items()}


def _combined_row(shared_side: dict, fedavg_side: dict, metric: metric_lib.Metric = metric_lib.ACCURACY) -> dict:
    """One arch's row of `combine_runs` from both sides' {seed: (row, run, name)}."""
    base = next(iter((shared_side or fedavg_side).values()))[0]
    row = {key: base[key] for key in ("name", "arch", "macs", "params", "size_source")}
    row.update(_side("shared", shared_side, metric))
    row.update(_side("fedavg", fedavg_side, metric))
    row["fedavg_workdirs"] = {seed: run.workdir for seed, (_, run, _) in fedavg_side.items()}
    row["fedavg_workdir"] = next(iter(row["fedavg_workdirs"].values()), None)
    key, per_seed = test_key(metric), seeds_key(metric)
    row["difference"] = row[f"shared_{key}"] - row[f"fedavg_{key}"]
    paired = [row[f"shared_{per_seed}"][s] - row[f"fedavg_{per_seed}"][s]
              for s in row[f"shared_{per_seed}"] if s in row[f"fedavg_{per_seed}"]]
    row["difference_std"] = statistics.stdev(paired) if len(paired) > 1 else math.nan
    row["paired_seeds"] = len(paired)
    return row


def _combined_cost_lines(combined: dict) -> list[str]:
    cost, shared = combined["cost"], combined["shared"]
    seeds = len(combined["shared_runs"])
    runs = _plural(cost["fedavg_runs"], "run")
    if seeds == 1:
        lines = ["## Cost", "", "Measured: each run's own cost.json (its clients and archs, round by round); "
                 f"FedAvg is the sum over its {runs}.", "",
                 f"| | weight-shared run | FedAvg, {runs} | FedAvg / weight-shared |", "|---|---|---|---|"]
    else:
        lines = ["## Cost", "", "Measured: each run's own cost.json (its clients and archs, round by round), "
                 f"per seed: the mean over the {seeds} seeds of the weight-shared run, and FedAvg's sum over "
                 f"its {runs} (one per arch, each the mean over its seeds). Running all {seeds} seeds costs "
                 f"{seeds} times each column.", "",
                 f"| | weight-shared run, per seed | FedAvg, {runs} per seed | FedAvg / weight-shared |",
                 "|---|---|---|---|"]
    labels = cost_labels(shared.family.cost_unit)
    for field, value in cost["weight_shared"].items():
        label, unit = labels[field]
        ratio = f"{cost['ratios'][field]:.2f}x" if "ratios" in cost else "n/a"
        lines.append(f"| {label} | {si(value, unit)} | {si(cost['fedavg'][field], unit)} | {ratio} |")
    estimate = shared.cost["ratios"]
    whose = "The weight-shared run's" if seeds == 1 else f"The weight-shared run (seed {_seed(shared)})'s"
    lines += ["", f"{whose} own estimate (its cost.json: independent FedAvg of "
              f"{len(shared.cost['baseline']['archs'])} archs at its rounds and clients per round): "
              f"{estimate['compute_ratio']:.2f}x the compute, {estimate['comm_ratio']:.2f}x the "
              "communication.", ""]
    return lines


def _side_source_lines(combined: dict) -> list[str]:
    """The bullet list of the runs read: the weight-shared run(s) and each arch's FedAvg run(s)."""
    shared_runs, rows, metric = combined["shared_runs"], combined["rows"], combined["metric"]
    tracked = len(shared_runs[0].tracked)
    name, best = metric.name, metric.best_word
    if len(shared_runs) == 1:
        lines = [f"- weight-shared: `{shared_runs[0].workdir}`, test {name} at round "
                 f"{rows[0]['shared_round']} (the {best} mean validation {name} over its {tracked} tracked "
                 "archs)"]
    else:
        rounds = rows[0]["shared_rounds"]
        lines = [f"- weight-shared, {len(shared_runs)} seeds, each at its round of {best} mean validation "
                 f"{name} over its {tracked} tracked archs: "
                 + ", ".join(f"`{r.workdir}` (seed {_seed(r)}, round {rounds[_seed(r)]})" for r in shared_runs)]
    for r in rows:
        if not r["fedavg_workdirs"]:
            continue
        if len(shared_runs) == 1 and len(r["fedavg_workdirs"]) == 1:
            lines.append(f"- FedAvg of {r['name']}: `{r['fedavg_workdir']}`, test {name} at its best "
                         f"validation round {r['fedavg_round']}")
        else:
            lines.append(f"- FedAvg of {r['name']}, {_plural(len(r['fedavg_workdirs']), 'seed')}, each at its "
                         "best validation round: " + ", ".join(
                             f"`{w}` (seed {s}, round {r['fedavg_rounds'][s]})"
                             for s, w in r["fedavg_workdirs"].items()))
    return lines


def _seed_cell(row: dict, prefix: str, metric: metric_lib.Metric = metric_lib.ACCURACY) -> str:
    """'mean +- std (seeds)' in % (accuracy; another metric as it is); 'n/a' without runs."""
    key = test_key(metric)
    count = len(row[f"{prefix}_{seeds_key(metric)}"])
    if not count or math.isnan(row[f"{prefix}_{key}"]):
        return "n/a"
    mean, std = metric.text(row[f"{prefix}_{key}"]), metric.text(row[f"{prefix}_{key}_std"])
    return f"{mean} +- {std} ({count})"


def _accuracy_table_lines(rows: list[dict], several: bool,
                          metric: metric_lib.Metric = metric_lib.ACCURACY) -> list[str]:
    """The per-arch table: one seed as plain numbers, several as mean +- std (seeds) and paired differences."""
    column, unit = f"test {metric.short}{metric.unit}", metric.difference_unit
    if not several:
        lines = [f"| arch | d / e | MMACs | params | weight-shared {column} | FedAvg {column} "
                 f"| weight-shared - FedAvg ({unit}) |", "|---|---|---|---|---|---|---|"]
    else:
        lines = [f"| arch | d / e | MMACs | params | weight-shared {column}, mean +- std (seeds) "
                 f"| FedAvg {column}, mean +- std (seeds) | weight-shared - FedAvg ({unit}), "
                 "mean +- std of paired differences |", "|---|---|---|---|---|---|---|"]
    key = test_key(metric)
    for r in rows:
        difference = metric.difference_text(r["difference"])
        if several and not math.isnan(r["difference_std"]):
            difference += f" +- {metric.text(r['difference_std'])}"
        cells = ([metric.text(r[f"shared_{key}"]), metric.text(r[f"fedavg_{key}"])] if not several
                 else [_seed_cell(r, "shared", metric), _seed_cell(r, "fedavg", metric)])
        lines.append(f"| {r['name']} | `{arch_text(r['arch'])}` | {r['macs'] / 1e6:.4g} | {r['params']:,} "
                     f"| {cells[0]} | {cells[1]} | {difference} |")
    if several:
        lines += ["", "+- is the sample standard deviation over seeds (n - 1); a difference's is that of the "
                  "per-seed differences over the seeds both sides ran (same seed: same data split and "
                  "clients), shown with 2 or more such seeds."]
    return lines


def write_combined_report(workdirs: list[str], out: str, style: Optional[plot.Style] = None) -> dict:
    """Writes the combined report of `combine_runs` into ``out``: ``report.md``, ``pareto.png`` and
    ``curves.png`` (each also as SVG, drawn in ``style``, default `plot.DEFAULT`) and the tables as CSV
    (`combined_files`).

    ``workdirs`` may hold weight-shared runs of several seeds and FedAvg runs of several seeds per arch;
    the tables then give mean +- std over seeds and the figures the mean with the min-max spread.

    Returns:
      `combine_runs`'s dict, less the `RunRecord`s, plus ``cost_unit`` (the family's), the written
      ``report`` and ``plot`` paths and ``files`` (every file written).
    """
    combined = combine_runs(workdirs)
    shared, rows = combined["shared"], combined["rows"]
    os.makedirs(out, exist_ok=True)
    several = combined_files.several_seeds(combined)
    lines = [f"# Weight-shared vs independent FedAvg: {runs_title(shared)}", ""] + _side_source_lines(combined)
    lines += [""] + _accuracy_table_lines(rows, several, combined["metric"])
    lines += ["", size_note(rows), ""] + _combined_cost_lines(combined)
    if combined["warnings"]:
        lines += ["## Warnings: settings differ", ""] + [f"- {w}" for w in combined["warnings"]] + [""]
    style = style or plot.DEFAULT
    lines += combined_files.write_pareto(combined, out, style)
    lines += combined_files.write_curves(combined, out, style)
    lines += combined_files.write_tables(combined, out)
    report_path, plot_path = os.path.join(out, "report.md"), os.path.join(out, "pareto.png")
    with open(report_path, "w") as f:
        f.write("\n".join(lines))
    result = {k: v for k, v in combined.items() if k not in ("shared", "shared_runs", "baselines", "sources")}
    result["cost_unit"] = shared.family.cost_unit  # what the MACs are per: 'image', 'token'
    files = [report_path] + [os.path.join(out, n) for n in combined_files.FILES
                             if os.path.isfile(os.path.join(out, n))]
    return dict(result, report=report_path, plot=plot_path, files=files)
