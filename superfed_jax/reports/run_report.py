"""Run reports: accuracy against forward MACs per tracked arch, with the run's cost, as Markdown and a plot.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879, compare one weight-shared
supernet with every subnet trained alone by FedAvg: accuracy per MACs bucket (docs/algorithm.md 10) and total
compute and communication (docs/algorithm.md 8). This module reports one finished work directory
(`config.json`, `metrics.jsonl`, `cost.json`, optionally `space.json`, read by `run_record`); the
training driver calls it at the end of every run:

* `write_run_report(workdir)`: one run -> ``WORKDIR/report.md`` and ``WORKDIR/pareto.png``: per tracked
  arch, test accuracy at the best validation round against forward MACs, and the run's cost against
  independent FedAvg as estimated by `run_cost` (``cost.json``), and for a run with differential privacy
  the epsilon it spent at its delta (from metrics.jsonl). Beside them: ``curves.png`` (validation
  and test accuracy by round per tracked arch), ``train_loss.png`` (the training loss of every round, from
  rounds.jsonl), ``search.png`` when a post-training search wrote ``search.json`` (`search_front`), every
  figure also as SVG, and each table as CSV (``report_*.csv``). A run of one tracked arch (FedAvg of one
  arch) gets no ``pareto.png``: one point is no trade-off; report.md says so. ``style`` (`plot.Style`)
  draws the figures for a screen (the default) or a paper.
* `run_name(workdir)`: what report.md's heading calls the run: its work directory's name
  (`workdirs/digits_smoke` -> 'digits_smoke', the config and its variant for a default workdir).
* `summary_table(family, tracked, best)`: the table the driver prints at the end of a run.

A run whose headline metric (`eval.metric`, `superfed_jax.federated.metric`) is not accuracy (a language
model's perplexity, or the loss) is reported in that metric instead, in its direction: the round of the
lowest mean validation perplexity, "val perplexity" / "test perplexity" columns, ``report_perplexity.csv``
in place of ``report_accuracy.csv``, perplexity on the figures' y axes.

The comparison of a weight-shared run with FedAvg runs is `compare`; the command line is `cli`.
"""
import json
import os
from typing import Optional

from superfed_jax.federated import metric as metric_lib
from superfed_jax.reports import curves as curves_lib
from superfed_jax.reports import search_front
from superfed_jax.reports.format import arch_text, compute_label, runs_title, si, size_note
from superfed_jax.reports.plot import (DEFAULT, Curve, Panel, Style, gid_of, plot_curves, plot_loss, plot_pareto,
                                      plot_search)
from superfed_jax.reports.tables import files_line, write_csv
from superfed_jax.reports.run_record import RunRecord, arch_rows, is_fedavg_baseline, read_run, select_best

__all__ = ["write_run_report", "run_name", "summary_table", "provenance_lines", "privacy_lines"]


def _cost_lines(cost: Optional[dict], cost_unit: str = "image") -> list[str]:
    """The Markdown cost section of one run (from its cost.json); MACs per the family's `cost_unit`."""
    if cost is None:
        return ["## Cost", "", "No cost.json in the work directory.", ""]
    run, base, ratios = cost["superfed"], cost["baseline"], cost["ratios"]
    lines = ["## Cost", "",
             f"{cost['rounds']} rounds, {cost['clients_per_round']} clients per round. Independent FedAvg: "
             f"each of {len(base['archs'])} archs trained alone at the same rounds and clients per round "
             "(estimated from the archs' sizes).", "",
             "| | this run | independent FedAvg | FedAvg / this run |", "|---|---|---|---|",
             f"| {compute_label(cost_unit)} | {si(run['total_macs'], 'MACs')} "
             f"| {si(base['total_macs'], 'MACs')} | {ratios['compute_ratio']:.2f}x |"]
    if "total_training_macs" in run and "example_compute_ratio" in ratios:
        lines.append(f"| compute: training MACs (examples x epochs x 3) "
                     f"| {si(run['total_training_macs'], 'MACs')} "
                     f"| {si(base['total_training_macs'], 'MACs')} "
                     f"| {ratios['example_compute_ratio']:.2f}x |")
    lines += [f"| communication per direction | {si(run['total_bytes_per_direction'], 'B')} "
              f"| {si(base['total_bytes_per_direction'], 'B')} | {ratios['comm_ratio']:.2f}x |", "",
              "FedAvg archs: " + ", ".join(arch_text(a["arch"]) for a in base["archs"]) + ".", ""]
    return lines


def privacy_lines(run: RunRecord, best_round: int) -> list[str]:
    """The Markdown section on differential privacy of a run that added noise (`dp.noise_multiplier` >
    0): the epsilon spent by all its rounds at its delta, from the last record of metrics.jsonl (and at
    the table's round). [] for any other run, whose records have no `dp_epsilon`."""
    last = run.records[-1]
    if "dp_epsilon" not in last:
        return []
    dp, fl = run.config.get("dp", {}), run.config.get("fl", {})
    lines = ["## Differential privacy", "",
             f"User-level differential privacy, a client being a user: after all {last['round']} rounds the "
             f"run is (epsilon, delta)-DP with **epsilon = {last['dp_epsilon']:.4g} at delta = "
             f"{last['dp_delta']:g}**. Each round clipped every client's update to L2 norm "
             f"dp.clip_norm = {dp.get('clip_norm')} and added Gaussian noise of std dp.noise_multiplier = "
             f"{dp.get('noise_multiplier')} times it, {fl.get('clients_per_round')} of "
             f"{fl.get('num_clients')} clients sampled without replacement; epsilon from dp-accounting's RDP "
             "accountant, replace-one neighbours (docs/algorithm.md 4.3)."]
    best = next((r for r in run.records if r["round"] == best_round), None)
    if best is not None and best is not last and "dp_epsilon" in best:
        lines += ["", f"The table's round {best_round} alone had spent epsilon = {best['dp_epsilon']:.4g}; "
                  "the run's figure is the one above, since every round's model was released."]
    lines.append("")
    lines.append("The guarantee covers what the rounds release, the server's model after each round; the "
                 "accuracies and losses in this report are computed without noise on held-out data (the "
                 "validation split held out of the training set, and the test set) and are not covered.")
    return lines + [""]


def run_name(workdir: str) -> str:
    """The name a report gives a run: its work directory's name (`workdirs/digits_smoke` -> 'digits_smoke',
    which names the config and its variant for a default workdir)."""
    return os.path.basename(os.path.normpath(os.path.abspath(workdir)))


def _run_title(run: RunRecord) -> str:
    """What the run is: its dataset, rounds and kind ('digits, 2 rounds, weight-shared (SuperFed)')."""
    kind = "FedAvg of one arch" if is_fedavg_baseline(run.config) else "weight-shared (SuperFed)"
    return f"{runs_title(run)}, {kind}"


def provenance_lines(workdir: str) -> list[str]:
    """The Markdown provenance section: one row per session of WORKDIR/provenance.json (written by
    `superfed_jax.run.provenance`); one line saying so when the file is missing or unreadable."""
    path = os.path.join(workdir, "provenance.json")
    try:
        with open(path) as f:
            sessions = json.load(f)["sessions"]
    except (OSError, ValueError, KeyError, TypeError):
        return ["## Provenance", "", "No readable provenance.json in the work directory.", ""]
    lines = ["## Provenance", "", "Each start or resume of the run that computed the rounds reported here "
             "(from `provenance.json`; a commit marked *dirty* had uncommitted changes).", "",
             "| from round | started (UTC) | commit | jax / jaxlib / flax / optax / orbax / numpy | Python "
             "| platform | devices | CPU, SIMD flags |", "|---|---|---|---|---|---|---|---|"]
    for s in sessions:
        git, versions, device, cpu = (s.get(k) or {} for k in ("git", "packages", "jax", "cpu"))
        commit = (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
        packages = " / ".join(str(versions.get(n)) for n in ("jax", "jaxlib", "flax", "optax",
                                                              "orbax-checkpoint", "numpy"))
        lines.append(f"| {s.get('from_round')} | {s.get('started_at')} | `{commit}` | {packages} "
                     f"| {(s.get('python') or {}).get('version')} | {(s.get('platform') or {}).get('platform')} "
                     f"| {device.get('device_count')} x {device.get('device_kind')} ({device.get('backend')}, "
                     f"{device.get('process_count')} processes) "
                     f"| {cpu.get('model')}: {' '.join(cpu.get('simd_flags') or []) or 'flags unknown'} |")
    return lines + [""]


def write_run_report(workdir: str, out: Optional[str] = None, skip_stale_search: bool = False,
                     style: Style = DEFAULT) -> dict:
    """Writes ``report.md`` and ``pareto.png`` of one run into ``out`` (default: the work directory), with
    ``curves.png``, ``train_loss.png`` (when the run has a rounds.jsonl), ``search.png`` (when it has a
    search.json), each figure also as SVG, and the tables as ``report_*.csv``, the figures in ``style``.

    A run of one tracked arch gets no pareto.png (a single point): report.md says so instead, and a
    pareto.png/.svg left in ``out`` by an earlier report is removed.

    A search.json that did not search the run's newest checkpoint (`search_front.check_current`) is
    refused before anything is written, unless `skip_stale_search`: then the report says why it is not
    drawn and removes the search figure and table it drew before (the training driver's report at the end
    of a resumed run must not fail over a search the user has not yet repeated).

    Returns:
      ``best_round``, ``rows`` (`arch_rows`), ``cost`` (cost.json or None), the written ``report`` and
      ``plot`` paths (``plot``: pareto.png, or the first other figure of a one-arch run), ``figures`` (every
      PNG written) and ``stale_search``: why search.json was not drawn, or None.

    Raises:
      search_front.StaleSearch: search.json is stale and `skip_stale_search` is off.
      ValueError: a file of the run is missing or malformed.
    """
    run = read_run(workdir)
    search, stale = search_front.read_search(workdir), None
    if search is not None:
        try:
            search_front.check_current(workdir, search)
        except search_front.StaleSearch as error:
            if not skip_stale_search:
                raise
            search, stale = None, str(error)
    out = out or workdir
    os.makedirs(out, exist_ok=True)
    metric = run.metric
    best = select_best(run.records, run.tracked, metric)
    rows = arch_rows(run, best)
    has_val = any(metric.key(n, "val") in best for n in run.tracked)
    selection = (f"the evaluation with the {metric.best_word} mean validation {metric.name} over the tracked "
                 "archs" if has_val
                 else f"the last evaluation (the run has no validation {metric.plural.lower()})")
    short = metric.short
    lines = [f"# Run report: {run_name(workdir)}", "", f"{_run_title(run)}. Work directory: `{workdir}`.", "",
             f"{metric.plural} at round {best['round']} of {run.records[-1]['round']}: {selection}.", "",
             f"| arch | d / e | MMACs | params | val {short}{metric.unit} | test {short}{metric.unit} |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | `{arch_text(r['arch'])}` | {r['macs'] / 1e6:.4g} | {r['params']:,} "
              f"| {metric.text(r[f'val_{metric.name}'])} | {metric.text(r[f'test_{metric.name}'])} |"
              for r in rows]
    lines += (["", size_note(rows), ""] + privacy_lines(run, int(best["round"]))
              + _cost_lines(run.cost, run.family.cost_unit))
    pareto = _pareto_lines(run, out, rows, int(best["round"]), style)
    lines += pareto[:2] + provenance_lines(workdir) + pareto[2:]
    lines += _curve_lines(run, out, int(best["round"]), style) + _loss_lines(run, out, style)
    lines += (_search_lines(run, out, search, stale, style)
              + _table_files_lines(out, rows, run.cost, metric, run.family.cost_unit))
    report_path = os.path.join(out, "report.md")
    with open(report_path, "w") as f:
        f.write("\n".join(lines))
    figures = [os.path.join(out, name) for name in ("pareto.png", "curves.png", "train_loss.png", "search.png")
               if f"]({name})" in "\n".join(lines)]  # the PNGs this report shows
    return {"best_round": int(best["round"]), "rows": rows, "cost": run.cost, "report": report_path,
            "plot": figures[0] if figures else report_path, "figures": figures, "stale_search": stale}


def _pareto_lines(run: RunRecord, out: str, rows: list[dict], best_round: int, style: Style) -> list[str]:
    """Draws pareto.png/.svg (metric against MACs of the tracked archs); returns its two lines (the image)
    and then the line linking its files. A run of one tracked arch would draw a single point: it gets a
    note in place of the figure, and an earlier report's pareto files are removed."""
    metric = run.metric
    if len(rows) < 2:
        for name in ("pareto.png", "pareto.svg"):  # drawn by an earlier version of the report
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        return [f"No {metric.name}-vs-MACs figure: the run tracks one arch ({rows[0]['name'] if rows else 'none'}"
                f"{', FedAvg of one arch' if is_fedavg_baseline(run.config) else ''}), a single point. To set it "
                "against the subnets of a weight-shared run, report them together: `superfed-report "
                "WEIGHT_SHARED_DIR FEDAVG_DIR ...`.", ""]
    plot_pareto(os.path.join(out, "pareto.png"), [("tracked archs", rows, "pareto-tracked")],
                f"{_run_title(run)}\ntest {metric.name} at round {best_round} (best validation)", metric=metric,
                xlabel=f"forward MACs per {run.family.cost_unit} (MMACs)", style=style)
    return [f"![{metric.name} vs MACs](pareto.png)", ""] + _figure_files_lines(out, "pareto")


def _loss_lines(run: RunRecord, out: str, style: Style) -> list[str]:
    """Draws the training loss of every round (train_loss.png/.svg and report_train_loss.csv, from the
    same lists) with round ticks on the evaluation grid; returns its section ([] without rounds.jsonl)."""
    loss = curves_lib.train_loss_by_round(run.workdir)
    if loss is None:
        return ["## Training loss by round", "", "Not drawn: the run has no rounds.jsonl.", ""]
    rounds, losses = loss
    plot_loss(os.path.join(out, "train_loss.png"), rounds, losses, f"{_run_title(run)}: training loss by round",
              eval_rounds=[int(r["round"]) for r in run.records], style=style)
    csv_path = write_csv(os.path.join(out, "report_train_loss.csv"), curves_lib.TRAIN_LOSS_CSV_HEADER,
                         [[r, v] for r, v in zip(rounds, losses)])
    return ["## Training loss by round", "", "The mean loss of each round's clients on their own training data, "
            "every round (rounds.jsonl; a gap: a round in which every client failed); the ticks are the "
            "evaluation rounds.", "", "![training loss by round](train_loss.png)", "",
            files_line(out, [os.path.join(out, n) for n in ("train_loss.png", "train_loss.svg")] + [csv_path]),
            ""]


def _figure_files_lines(out: str, name: str) -> list[str]:
    """The line under a figure linking its PNG and SVG."""
    return [files_line(out, [os.path.join(out, f"{name}.{ext}") for ext in ("png", "svg")]), ""]


ACCURACY_CSV_HEADER = ["arch", "d / e", "MACs", "params", "round", "val_accuracy_percent",
                       "test_accuracy_percent"]
COST_CSV_HEADER = ["quantity", "unit", "this_run", "independent_fedavg", "fedavg_over_this_run"]


def metric_csv_name(metric: metric_lib.Metric) -> str:
    """The file of the per-arch table: report_accuracy.csv, report_perplexity.csv, report_loss.csv."""
    return f"report_{metric.name}.csv"


def metric_csv_header(metric: metric_lib.Metric) -> list[str]:
    """ACCURACY_CSV_HEADER for accuracy; val_perplexity / test_perplexity (...) for another metric."""
    return ACCURACY_CSV_HEADER[:5] + [metric.csv_column("val"), metric.csv_column("test")]


def _table_files_lines(out: str, rows: list[dict], cost: Optional[dict],
                       metric: metric_lib.Metric = metric_lib.ACCURACY, cost_unit: str = "image") -> list[str]:
    """Writes the accuracy table (and the cost table, with cost.json) as CSV; the lines linking them."""
    name = metric.name
    paths = [write_csv(os.path.join(out, metric_csv_name(metric)), metric_csv_header(metric),
                       [[r["name"], arch_text(r["arch"]), r["macs"], r["params"], r["round"],
                         metric.shown(r[f"val_{name}"]), metric.shown(r[f"test_{name}"])] for r in rows])]
    if cost is not None:
        run, base, ratios = cost["superfed"], cost["baseline"], cost["ratios"]
        table = [[compute_label(cost_unit), "MACs", run["total_macs"],
                  base["total_macs"], ratios["compute_ratio"]]]
        if "total_training_macs" in run and "example_compute_ratio" in ratios:
            table.append(["compute: training MACs (examples x epochs x 3)", "MACs", run["total_training_macs"],
                          base["total_training_macs"], ratios["example_compute_ratio"]])
        table.append(["communication per direction", "B", run["total_bytes_per_direction"],
                      base["total_bytes_per_direction"], ratios["comm_ratio"]])
        paths.append(write_csv(os.path.join(out, "report_cost.csv"), COST_CSV_HEADER, table))
    units = "accuracies in %" if metric.percent else f"{metric.name} as computed"
    return ["## Tables as CSV", "", f"The tables above at full precision ({units}, MACs and params "
            "as counts).", "", files_line(out, paths), ""]


def _curve_lines(run: RunRecord, out: str, best_round: int, style: Style = DEFAULT) -> list[str]:
    """Draws the run's metric by round of every tracked arch (curves.png/.svg, report_curves.csv), marking
    the table's round; returns its section."""
    metric = run.metric
    splits = curves_lib.splits_recorded(run.records, run.tracked, metric)
    if not splits:
        return []
    panels, csv_rows = [], []
    for split in splits:
        curves = []
        for index, name in enumerate(run.tracked):
            rounds, values = curves_lib.accuracy_by_round(run.records, name, split, metric)
            if rounds:
                curves.append(Curve(name, gid_of("curve", split, name), rounds, values, color=f"C{index}"))
                csv_rows += curves_lib.curve_csv_rows("run", name, split,
                                                      curves_lib.over_seeds([(rounds, values)]), metric)
        label = curves_lib.split_label(split, metric)
        panels.append(Panel(label.replace(" (%)", ""), label, curves, gid_of("panel", split),
                            marked_round=best_round, scale=metric.shown(1.0)))
    plot_curves(os.path.join(out, "curves.png"), panels, f"{_run_title(run)}: {metric.name} by round",
                style=style, shared_ylabel=f"{metric.name}{metric.unit}")
    csv_path = write_csv(os.path.join(out, "report_curves.csv"), curves_lib.curve_csv_header(metric), csv_rows)
    return [f"## {metric.name.capitalize()} by round", "", "Every evaluation of every tracked arch "
            "(metrics.jsonl); the table above quotes the dotted round.", "",
            f"![{metric.name} by round](curves.png)", "",
            files_line(out, [os.path.join(out, n) for n in ("curves.png", "curves.svg")] + [csv_path]), ""]


SEARCH_OUTPUTS = ("search.png", "search.svg", "report_search.csv")


def _search_lines(run: RunRecord, out: str, search: Optional[dict], stale: Optional[str],
                  style: Style = DEFAULT) -> list[str]:
    """With a current search.json: draws every budget's candidates and front (search.png/.svg,
    report_search.csv). With a stale one (`stale`: why): removes those files and says why."""
    if stale is not None:
        for name in SEARCH_OUTPUTS:  # drawn from a supernet the run no longer holds
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        return ["## Post-training search", "", f"Not drawn: {stale}", ""]
    if search is None or not search["results"]:
        return []
    plot_search(os.path.join(out, "search.png"), search_front.search_panels(run, search),
                f"{_run_title(run)}: post-training search of round {search.get('checkpoint_round', '?')}",
                style=style)
    csv_path = write_csv(os.path.join(out, "report_search.csv"), search_front.search_csv_header(search),
                         search_front.search_csv_rows(search))
    value = search_front.search_metric(search)
    reach = f"{value.best_word} {value.name}"  # 'best accuracy', 'lowest perplexity'
    return ["## Post-training search: Pareto front", "",
            "From search.json: every subnet the evolution evaluated (grey), the ones no other beats in both "
            f"cost and validation {value.name} (the step line: the {reach} reachable at each cost), the "
            "tracked subnets at the searched round (stars) and the budget (dotted).", "",
            "![search front](search.png)", "",
            files_line(out, [os.path.join(out, n) for n in ("search.png", "search.svg")] + [csv_path]), ""]


def _mmacs(macs: int) -> str:
    """MMACs with two decimals, or three significant digits below 0.1 (a text model's few kMACs/token)."""
    value = macs / 1e6
    return f"{value:.2f}" if value >= 0.1 or value == 0 else f"{value:.3g}"


def summary_table(family, tracked: dict, best: dict, metric: metric_lib.Metric = metric_lib.ACCURACY) -> str:
    """Per tracked arch: MACs, params and validation/test accuracy (or ``metric``) at the best validation
    round."""
    short = metric.short
    width = max(9, len(f"test {short}") + 1)
    lines = [f"{'arch':<12}{'MMACs':>10}{'params':>12}{'best round':>12}{'val ' + short:>{width}}"
             f"{'test ' + short:>{width}}"]
    for name, arch in tracked.items():
        lines.append(f"{name:<12}{_mmacs(family.macs(arch)):>10}{family.params(arch):>12,}"
                     f"{best['round']:>12}{best.get(metric.key(name, 'val'), float('nan')):>{width}.4f}"
                     f"{best.get(metric.key(name, 'test'), float('nan')):>{width}.4f}")
    return "\n".join(lines)
