"""The figures and CSV files of the combined report (`compare.write_combined_report`), beside report.md.

* ``pareto.png`` / ``.svg``: test accuracy against each subnet's forward MACs, weight-shared and FedAvg.
  Both sides' points sit at the subnet's own MACs (its inference size); what it cost to train them differs,
  so each legend entry states its side's measured training cost (runs and MACs, per seed), and the title
  the ratio. With several seeds a point is the mean and its bar spans min to max over the seeds.
* ``curves.png`` / ``.svg``: accuracy by round per arch (columns) and split (rows: validation, test),
  weight-shared solid and FedAvg dashed; with several seeds the mean with a min-max band.
* ``report_accuracy.csv``, ``report_seeds.csv`` (every run's own number), ``report_cost.csv`` and
  ``report_curves.csv``: the tables and the curves' data at full precision.

Runs compared in another headline metric than accuracy (`eval.metric`, e.g. perplexity) show it in its place:
y axes "test perplexity", ``report_perplexity.csv`` with columns named after it (`compare`).

Each writer returns the Markdown lines that show or link what it wrote. Each figure is drawn in a
`plot.Style`: in the paper style without titles, and with the pareto legend's short labels ("weight-shared",
"FedAvg"; the costs the default legend quotes are in report.md's cost table, for the caption).
"""
import math
import os

from superfed_jax.federated import metric as metric_lib
from superfed_jax.reports import curves as curves_lib
from superfed_jax.reports.format import arch_text, cost_labels, runs_title, si
from superfed_jax.reports.plot import DEFAULT, Curve, Panel, Style, gid_of, plot_curves, plot_pareto
from superfed_jax.reports.tables import files_line, write_csv

__all__ = ["FILES", "headline_cost_field", "cost_legends", "several_seeds", "write_pareto", "write_curves",
           "write_tables"]

# Every file the writers may put beside report.md.
FILES = ("pareto.png", "pareto.svg", "curves.png", "curves.svg", "report_accuracy.csv", "report_seeds.csv",
         "report_cost.csv", "report_curves.csv", "report_perplexity.csv", "report_loss.csv")

SIDES = (("shared", "weight-shared", "C0", "-"), ("fedavg", "FedAvg", "C1", "--"))


def headline_cost_field(cost: dict) -> str:
    """The cost the figure quotes: training MACs when every run measured them, else forward MACs x clients."""
    return "total_training_macs" if "total_training_macs" in cost["weight_shared"] else "total_macs"


def cost_legends(cost: dict) -> tuple[str, str]:
    """Legend labels of both sides with their measured cost, e.g. 'FedAvg, each arch trained alone: 4 runs,
    12 TMACs of training' ('per seed' and the seed count when there are several seeds)."""
    field = headline_cost_field(cost)
    kind = "of training" if field == "total_training_macs" else "(forward MACs x clients)"
    seeds = len(cost.get("seeds", [None]))
    per = f" per seed (mean of {seeds} seeds)" if seeds > 1 else ""
    runs = cost["fedavg_runs"]
    return (f"weight-shared subnets, one supernet: 1 run{per}, "
            f"{si(cost['weight_shared'][field], 'MACs')} {kind}",
            f"FedAvg, each arch trained alone: {runs} run{'s' if runs != 1 else ''}{per}, "
            f"{si(cost['fedavg'][field], 'MACs')} {kind}")


def several_seeds(combined: dict) -> bool:
    """Whether some side of some arch has more than one seed (the tables then show mean +- std)."""
    key = "fedavg_test_" + combined.get("metric", metric_lib.ACCURACY).plural.lower()
    return len(combined["shared_runs"]) > 1 or any(len(r[key]) > 1 for r in combined["rows"])


def write_pareto(combined: dict, out: str, style: Style = DEFAULT) -> list[str]:
    """Draws pareto.png / .svg; returns the lines showing it."""
    rows, cost = combined["rows"], combined["cost"]
    metric = combined.get("metric", metric_lib.ACCURACY)
    key = f"test_{metric.name}"
    # A paper's column has no room for the costs in the legend; its caption quotes the cost table.
    shared_label, fedavg_label = cost_legends(cost) if style.titles else ("weight-shared", "FedAvg")
    series = []
    for prefix, label, gid in (("shared", shared_label, "pareto-weight-shared"),
                               ("fedavg", fedavg_label, "pareto-fedavg")):
        series.append((label, [dict(r, **{key: r[f"{prefix}_{key}"], f"{key}_low": r[f"{prefix}_{key}_low"],
                                          f"{key}_high": r[f"{prefix}_{key}_high"]}) for r in rows], gid))
    ratios, field = cost.get("ratios"), headline_cost_field(cost)
    title = f"{runs_title(combined['shared'])}: test {metric.name} at the best validation round"
    if ratios:
        title += (f"\nFedAvg of {cost['fedavg_runs']} arch{'s' if cost['fedavg_runs'] != 1 else ''}: "
                  f"{ratios[field]:.2f}x the compute, {ratios['total_bytes_per_direction']:.2f}x the "
                  "communication of the weight-shared run")
    if several_seeds(combined):
        title += "\nmean over seeds; bars: min to max over seeds"
    unit = combined["shared"].family.cost_unit
    xlabel = (f"forward MACs per {unit} of each subnet (MMACs); training cost: see legend" if style.titles
              else f"forward MACs per {unit} (MMACs)")
    plot_pareto(os.path.join(out, "pareto.png"), series, title, xlabel=xlabel, metric=metric, style=style)
    return [f"![{metric.name} vs MACs](pareto.png)", "",
            "Both sides' points sit at each subnet's own forward MACs (its size at inference); the cost of "
            "training them is each side's total, in the legend and the cost table.", "",
            files_line(out, [os.path.join(out, n) for n in ("pareto.png", "pareto.svg")]), ""]


def _unique_names(rows: list[dict]) -> list[str]:
    """Row names, a repeated one (two FedAvg-only archs both called 'fedavg') suffixed by its index."""
    names = [r["name"] for r in rows]
    return [n if names.count(n) == 1 else f"{n}-{i}" for i, n in enumerate(names)]


def _side_curve(sources: list, split: str, name: str, side: tuple,
                metric: metric_lib.Metric = metric_lib.ACCURACY):
    """(Curve, SeedCurve) of one side of one arch, or None when its runs recorded no such accuracy."""
    prefix, label, color, linestyle = side
    series = [s for s in (curves_lib.accuracy_by_round(run.records, evaluated, split, metric)
                          for run, evaluated in sources) if s[0]]
    if not series:
        return None
    curve = curves_lib.over_seeds(series)
    band = curve.seeds > 1
    text = f"{label} ({curve.seeds} seeds, min-max band)" if band else label
    return Curve(text, gid_of("curve", split, name, label), curve.rounds, curve.mean,
                 curve.low if band else None, curve.high if band else None, color, linestyle), curve


def write_curves(combined: dict, out: str, style: Style = DEFAULT) -> list[str]:
    """Draws curves.png / .svg and writes report_curves.csv; returns the lines showing them."""
    rows, sources = combined["rows"], combined["sources"]
    metric = combined.get("metric", metric_lib.ACCURACY)
    runs = [(run, name) for source in sources for side in source.values() for run, name in side]
    splits = [s for s in curves_lib.SPLITS if any(curves_lib.accuracy_by_round(run.records, name, s, metric)[0]
                                                   for run, name in runs)]
    if not splits:
        return []
    panels, csv_rows = [], []
    for split in splits:
        for row, name, source in zip(rows, _unique_names(rows), sources):
            curves = []
            for side in SIDES:
                drawn = _side_curve(source[side[0]], split, name, side, metric)
                if drawn:
                    curves.append(drawn[0])
                    csv_rows += curves_lib.curve_csv_rows(side[1], row["name"], split, drawn[1], metric)
            label = curves_lib.split_label(split, metric)
            split_name = label.split(" ")[0]  # 'validation' or 'test'
            panels.append(Panel(f"{row['name']} ({row['macs'] / 1e6:.4g} MMACs): {split_name}",
                                label, curves, gid_of("panel", split, name), scale=metric.shown(1.0)))
    plot_curves(os.path.join(out, "curves.png"), panels,
                f"{runs_title(combined['shared'])}: {metric.name} by round, weight-shared (solid) and FedAvg "
                "(dashed)", columns=len(rows), style=style)
    csv_path = write_csv(os.path.join(out, "report_curves.csv"), curves_lib.curve_csv_header(metric), csv_rows)
    band = (" With several seeds: the mean over seeds, the band from min to max." if several_seeds(combined)
            else "")
    return [f"## {metric.name.capitalize()} by round", "", "Every evaluation of every run (metrics.jsonl), per "
            f"arch; the table quotes each run at its best validation round.{band}", "",
            f"![{metric.name} by round](curves.png)", "",
            files_line(out, [os.path.join(out, n) for n in ("curves.png", "curves.svg")] + [csv_path]), ""]


ACCURACY_CSV_HEADER = ["arch", "d / e", "MACs", "params", "weight_shared_mean_percent",
                       "weight_shared_std_percent", "weight_shared_seeds", "fedavg_mean_percent",
                       "fedavg_std_percent", "fedavg_seeds", "difference_points", "difference_std_points"]
SEEDS_CSV_HEADER = ["arch", "side", "seed", "round", "test_accuracy_percent", "workdir"]
COST_CSV_HEADER = ["quantity", "unit", "weight_shared", "fedavg", "fedavg_over_weight_shared"]
COST_LABELS = cost_labels("image")  # an image family's; `cost_labels(unit)` for another cost unit


def _percent(value: float) -> float:
    return 100 * value if not math.isnan(value) else math.nan


def table_headers(metric: metric_lib.Metric) -> tuple[list[str], list[str]]:
    """(the per-arch table's header, report_seeds.csv's): ACCURACY_CSV_HEADER and SEEDS_CSV_HEADER for
    accuracy; for another metric its name in place of '_percent' / '_points' ('weight_shared_mean_perplexity',
    'difference_perplexity', 'test_perplexity')."""
    if metric.percent:
        return ACCURACY_CSV_HEADER, SEEDS_CSV_HEADER
    name = metric.name
    header = [h.replace("_percent", f"_{name}").replace("_points", f"_{name}") for h in ACCURACY_CSV_HEADER]
    return header, SEEDS_CSV_HEADER[:4] + [f"test_{name}"] + SEEDS_CSV_HEADER[5:]


def write_tables(combined: dict, out: str) -> list[str]:
    """Writes the accuracy, per-seed and cost tables as CSV; returns the lines linking them."""
    rows, cost = combined["rows"], combined["cost"]
    metric = combined.get("metric", metric_lib.ACCURACY)
    key, per_seed = f"test_{metric.name}", f"test_{metric.plural.lower()}"
    shown = _percent if metric.percent else (lambda value: value)
    accuracy = [[r["name"], arch_text(r["arch"]), r["macs"], r["params"],
                 shown(r[f"shared_{key}"]), shown(r[f"shared_{key}_std"]),
                 len(r[f"shared_{per_seed}"]), shown(r[f"fedavg_{key}"]),
                 shown(r[f"fedavg_{key}_std"]), len(r[f"fedavg_{per_seed}"]),
                 shown(r["difference"]), shown(r["difference_std"])] for r in rows]
    shared_dirs = {run.config.get("seed"): run.workdir for run in combined["shared_runs"]}
    seeds = [[r["name"], label, seed, r[f"{prefix}_rounds"][seed], shown(value),
              shared_dirs[seed] if prefix == "shared" else r["fedavg_workdirs"][seed]]
             for r in rows for prefix, label, _, _ in SIDES
             for seed, value in r[f"{prefix}_{per_seed}"].items()]
    labels = cost_labels(combined["shared"].family.cost_unit)
    costs = [[*labels[f], cost["weight_shared"][f], cost["fedavg"][f], cost.get("ratios", {}).get(f)]
             for f in cost["weight_shared"]]
    header, seeds_header = table_headers(metric)
    paths = [write_csv(os.path.join(out, f"report_{metric.name}.csv"), header, accuracy),
             write_csv(os.path.join(out, "report_seeds.csv"), seeds_header, seeds),
             write_csv(os.path.join(out, "report_cost.csv"), COST_CSV_HEADER, costs)]
    if metric.percent:
        units = "accuracies and their spread in %, differences in points"
    else:
        units = f"{metric.name} and its spread and differences as computed"
    return ["## Tables as CSV", "", f"The tables above at full precision ({units}, MACs and params as counts, "
            f"costs per seed), and every run's own test {metric.name} (report_seeds.csv).", "",
            files_line(out, paths), ""]
