"""Run reports: accuracy against forward MACs per tracked arch, with the run's cost, as Markdown and a plot.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879, compare one weight-shared
supernet with every subnet trained alone by FedAvg: accuracy per MACs bucket (algorithm.md 10) and total
compute and communication (algorithm.md 8). This module reads one finished work directory (`config.json`,
`metrics.jsonl`, `cost.json`, optionally `space.json`) and reports it; the training driver calls it at
the end of every run, so it holds only what one run needs:

* `write_run_report(workdir)`: one run -> ``WORKDIR/report.md`` and ``WORKDIR/pareto.png``: per tracked
  arch, test accuracy at the best validation round against forward MACs, and the run's cost against
  independent FedAvg as estimated by `run_cost` (``cost.json``).
* `read_run`, `select_best`, `arch_rows`, `plot_pareto`: the pieces `report_compare` reuses to combine a
  weight-shared run with FedAvg baselines.

Command line (exit status 2 and ``error: ...`` on bad input); several RUN_DIRs give the combined report
of `report_compare.write_combined_report`:
  python -m superfed_jax.reports.run_report RUN_DIR [RUN_DIR ...] [--out DIR]
"""
import argparse
import json
import math
import os
import sys
from typing import NamedTuple, Optional

import numpy as np

from superfed_jax import _extras
from superfed_jax.supernet import cost as cost_lib
from superfed_jax.supernet import space as space_lib

__all__ = ["Run", "load_space", "read_run", "select_best", "is_fedavg_baseline", "arch_rows",
           "write_run_report", "plot_pareto", "main"]


class Run(NamedTuple):
    """A finished run's work directory, read back."""

    workdir: str
    config: dict  # config.json
    space: space_lib.SearchSpace
    space_file: str  # 'space.json' or 'config.json': where `space` came from
    tracked: dict  # name -> concrete Arch, in the config's order
    records: list  # metrics.jsonl, one dict per evaluation
    cost: Optional[dict]  # cost.json, None when missing


# ------------------------------------------------------------------------------------------- reading


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def _read_metrics(path: str) -> list[dict]:
    with open(path) as f:
        lines = [(number, line) for number, line in enumerate(f, 1) if line.strip()]
    records = []
    for number, line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {number}: not valid JSON ({error})") from None
        if not isinstance(records[-1], dict) or "round" not in records[-1]:
            raise ValueError(f"{path}, line {number}: not an evaluation record (an object with 'round')")
    if not records:
        raise ValueError(f"{path}: no evaluation records")
    return records


def _required(workdir: str, name: str) -> str:
    path = os.path.join(workdir, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{workdir}: no {name} here; is it the work directory of a finished run?")
    return path


def load_space(workdir: str) -> space_lib.SearchSpace:
    """The run's search space: ``space.json`` (the final space, after the dataset's input shape and class
    count replaced the config's) if present, else the ``space`` fields of ``config.json``."""
    path = os.path.join(workdir, "space.json")
    if os.path.isfile(path):
        fields = _read_json(path)
    else:
        fields = _read_json(_required(workdir, "config.json")).get("space")
        path = os.path.join(workdir, "config.json") + " field 'space'"
    try:
        return space_lib.SearchSpace(**fields)
    except TypeError as error:  # missing, unknown or not a dict of fields
        raise ValueError(f"{path}: not the fields of space.SearchSpace ({error})") from None
    except ValueError as error:  # a field value the space rejects
        raise ValueError(f"{path}: {error}") from None


def _setting(config: dict, dotted: str):
    """The value of a dotted field ('fl.rounds') of a config dict; None when missing."""
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def _tracked(space: space_lib.SearchSpace, text: str) -> dict:
    """config eval.tracked (JSON object name -> arch or default name; '' = the defaults) as archs.

    Resolved here rather than with `train.tracked_archs`, which would make this module (used by the
    training driver) import the driver.
    """
    defaults = space_lib.default_tracked(space)
    specs = json.loads(text) if text else {name: name for name in defaults}
    return {name: defaults[spec] if isinstance(spec, str) else space_lib.arch_from_dict(space, spec)
            for name, spec in specs.items()}


def read_run(workdir: str) -> Run:
    """Reads a work directory; FileNotFoundError / ValueError name the directory and the problem."""
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"{workdir}: no such directory")
    config = _read_json(_required(workdir, "config.json"))
    records = _read_metrics(_required(workdir, "metrics.jsonl"))
    space = load_space(workdir)
    try:
        tracked = _tracked(space, config.get("eval", {}).get("tracked", ""))
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{workdir}: config.json eval.tracked: {error}") from None
    cost_path = os.path.join(workdir, "cost.json")
    space_file = "space.json" if os.path.isfile(os.path.join(workdir, "space.json")) else "config.json"
    return Run(workdir, config, space, space_file, tracked, records,
               _read_json(cost_path) if os.path.isfile(cost_path) else None)


# ---------------------------------------------------------------------------------------- selection


def select_best(records: list[dict], names) -> dict:
    """The record maximising the mean validation accuracy over ``names`` (the first on ties).

    Records without every name's validation accuracy do not compete; with none left (no validation
    split) the last record is returned. A NaN mean (a diverged evaluation) never wins.
    """
    keys = [f"{name}/val_accuracy" for name in names]
    candidates = [r for r in records if all(k in r for k in keys)]
    if not candidates:
        return records[-1]

    def score(record):
        mean = float(np.mean([record[k] for k in keys]))
        return -math.inf if math.isnan(mean) else mean

    return max(candidates, key=score)


def is_fedavg_baseline(config: dict) -> bool:
    """Whether a run's config is FedAvg of one arch (`config.fedavg_baseline`): a static one-arch pool."""
    fl = config.get("fl", {})
    if fl.get("heuristic") != "static" or not fl.get("pool"):
        return False
    try:
        pool = json.loads(fl["pool"])
    except json.JSONDecodeError:
        return False
    return isinstance(pool, list) and len(pool) == 1


def _arch_key(space: space_lib.SearchSpace, arch: space_lib.Arch) -> str:
    """A canonical string of an arch (equal for archs that are the same subnet)."""
    return json.dumps(space_lib.arch_to_dict(space, arch), sort_keys=True)


def _size(run: Run, arch: space_lib.Arch) -> tuple[int, int, str]:
    """(forward MACs of one image, params, where they come from) of one arch of a run.

    Without ``space.json`` the config's space may have the wrong input shape or class count (the data
    sets them), but ``cost.json`` holds the sizes of its baseline archs computed on the run's final space.
    """
    if run.space_file == "config.json" and run.cost:
        key = _arch_key(run.space, arch)
        for entry in run.cost.get("baseline", {}).get("archs", []):
            if json.dumps(entry["arch"], sort_keys=True) == key:
                return int(entry["macs"]), int(entry["params"]), "cost.json"
    return cost_lib.macs(run.space, arch), cost_lib.params(run.space, arch), run.space_file


def arch_rows(run: Run, best: Optional[dict] = None) -> list[dict]:
    """Per tracked arch: name, arch (JSON form), macs, params, round, val/test accuracy at ``best``.

    ``best`` defaults to `select_best` over the tracked archs; missing accuracies are NaN.
    """
    best = select_best(run.records, run.tracked) if best is None else best
    rows = []
    for name, arch in run.tracked.items():
        macs, params, source = _size(run, arch)
        rows.append({"name": name, "arch": space_lib.arch_to_dict(run.space, arch), "macs": macs,
                     "params": params, "size_source": source, "round": int(best["round"]),
                     "val_accuracy": float(best.get(f"{name}/val_accuracy", math.nan)),
                     "test_accuracy": float(best.get(f"{name}/test_accuracy", math.nan))})
    return rows


# -------------------------------------------------------------------------------------- formatting


def _si(value: float, unit: str) -> str:
    """``value`` with an SI prefix, e.g. 4.043e6 MACs -> '4.043 MMACs'."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def _percent(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def _arch_text(arch: dict) -> str:
    return json.dumps(arch, separators=(",", ":"))


def _size_note(rows: list[dict]) -> str:
    sources = {row["size_source"] for row in rows}
    notes = {"space.json": "computed on the run's final space (space.json)",
             "cost.json": "as the run computed them on its final space (cost.json)",
             "config.json": "computed on config.json's space, which the dataset's input shape and class "
                            "count may have changed (no space.json in the work directory)"}
    return "MACs and params: " + "; ".join(notes[s] for s in sorted(sources)) + "."


def _cost_lines(cost: Optional[dict]) -> list[str]:
    """The Markdown cost section of one run (from its cost.json)."""
    if cost is None:
        return ["## Cost", "", "No cost.json in the work directory.", ""]
    run, base, ratios = cost["superfed"], cost["baseline"], cost["ratios"]
    lines = ["## Cost", "",
             f"{cost['rounds']} rounds, {cost['clients_per_round']} clients per round. Independent FedAvg: "
             f"each of {len(base['archs'])} archs trained alone at the same rounds and clients per round "
             "(estimated from the archs' sizes).", "",
             "| | this run | independent FedAvg | FedAvg / this run |", "|---|---|---|---|",
             f"| compute: forward MACs per image, summed over clients | {_si(run['total_macs'], 'MACs')} "
             f"| {_si(base['total_macs'], 'MACs')} | {ratios['compute_ratio']:.2f}x |"]
    if "total_training_macs" in run and "example_compute_ratio" in ratios:
        lines.append(f"| compute: training MACs (examples x epochs x 3) "
                     f"| {_si(run['total_training_macs'], 'MACs')} "
                     f"| {_si(base['total_training_macs'], 'MACs')} "
                     f"| {ratios['example_compute_ratio']:.2f}x |")
    lines += [f"| communication per direction | {_si(run['total_bytes_per_direction'], 'B')} "
              f"| {_si(base['total_bytes_per_direction'], 'B')} | {ratios['comm_ratio']:.2f}x |", "",
              "FedAvg archs: " + ", ".join(_arch_text(a["arch"]) for a in base["archs"]) + ".", ""]
    return lines


# -------------------------------------------------------------------------------------------- plot


def plot_pareto(path: str, series: list[tuple[str, list[dict]]], title: str):
    """Writes a PNG of test accuracy (%) against forward MMACs, one line per series.

    Args:
      path: the PNG file.
      series: (legend label, rows) pairs; rows as `arch_rows` returns them (name, macs, test_accuracy);
        rows with a NaN accuracy are left out.
      title: the plot title.

    Returns:
      The matplotlib `Figure` (already saved).
    """
    # Imported here: only reports need matplotlib (the optional 'plots' extra). The object API with an
    # explicit Agg canvas touches no global backend state (no pyplot), so it works headless and inside any
    # host program.
    FigureCanvasAgg = _extras.require("matplotlib.backends.backend_agg", "plots").FigureCanvasAgg
    Figure = _extras.require("matplotlib.figure", "plots").Figure

    figure = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    named = set()  # an arch's name once, even when several series have a point at its MACs
    for (label, rows), marker in zip(series, "osD^v"):
        points = sorted((r["macs"] / 1e6, 100 * r["test_accuracy"], r["name"]) for r in rows
                        if not math.isnan(r["test_accuracy"]))
        if not points:
            continue
        xs, ys, _ = zip(*points)
        axes.plot(xs, ys, marker=marker, label=label)
        for x, y, name in points:
            if (x, name) not in named:
                named.add((x, name))
                axes.annotate(name, (x, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
    axes.margins(x=0.1, y=0.15)
    axes.set_xlabel("forward MACs per image (MMACs)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    return figure


# ---------------------------------------------------------------------------------------- one run


def _runs_title(run: Run) -> str:
    """'<dataset>, <rounds> rounds' of a run."""
    return f"{_setting(run.config, 'data.name')}, {_setting(run.config, 'fl.rounds')} rounds"


def _run_title(run: Run) -> str:
    kind = "FedAvg of one arch" if is_fedavg_baseline(run.config) else "weight-shared (SuperFed)"
    return f"{_runs_title(run)}, {kind}"



def write_run_report(workdir: str, out: Optional[str] = None) -> dict:
    """Writes ``report.md`` and ``pareto.png`` of one run into ``out`` (default: the work directory).

    Returns:
      ``best_round``, ``rows`` (`arch_rows`), ``cost`` (cost.json or None) and the written ``report`` and
      ``plot`` paths.
    """
    run = read_run(workdir)
    out = out or workdir
    os.makedirs(out, exist_ok=True)
    best = select_best(run.records, run.tracked)
    rows = arch_rows(run, best)
    has_val = any(f"{n}/val_accuracy" in best for n in run.tracked)
    selection = ("the evaluation with the best mean validation accuracy over the tracked archs" if has_val
                 else "the last evaluation (the run has no validation accuracies)")
    lines = [f"# Run report: {_run_title(run)}", "", f"Work directory: `{workdir}`.", "",
             f"Accuracies at round {best['round']} of {run.records[-1]['round']}: {selection}.", "",
             "| arch | d / e | MMACs | params | val acc (%) | test acc (%) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | `{_arch_text(r['arch'])}` | {r['macs'] / 1e6:.4g} | {r['params']:,} "
              f"| {_percent(r['val_accuracy'])} | {_percent(r['test_accuracy'])} |" for r in rows]
    lines += ["", _size_note(rows), ""] + _cost_lines(run.cost) + ["![accuracy vs MACs](pareto.png)", ""]
    report_path, plot_path = os.path.join(out, "report.md"), os.path.join(out, "pareto.png")
    with open(report_path, "w") as f:
        f.write("\n".join(lines))
    plot_pareto(plot_path, [("tracked archs", rows)],
                f"{_run_title(run)}\ntest accuracy at round {best['round']} (best validation)")
    return {"best_round": int(best["round"]), "rows": rows, "cost": run.cost, "report": report_path,
            "plot": plot_path}


# ------------------------------------------------------------------------------------------ command


def main(argv: Optional[list] = None) -> int:
    """The command line; returns the exit status (2 on bad input, with ``error: ...`` on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m superfed_jax.reports.run_report",
        description="One RUN_DIR: its report. Several: one weight-shared run combined with FedAvg runs "
                    "of single archs (configs/X.py:fedavg=ARCH) into one table and plot.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="work directories of finished runs")
    parser.add_argument("--out", default=None, help="where report.md and pareto.png go "
                                                   "(default: the first RUN_DIR)")
    args = parser.parse_args(argv)
    # Imported here: report_compare imports this module, and one-run reports (train.py) never need it.
    from superfed_jax.reports import compare as report_compare
    try:
        if len(args.run_dirs) == 1:
            result = write_run_report(args.run_dirs[0], args.out)
        else:
            result = report_compare.write_combined_report(args.run_dirs, args.out or args.run_dirs[0])
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {result['report']} and {result['plot']}")
    return 0


def console() -> None:
    """The `superfed-report` command: the same as `python -m superfed_jax.reports.run_report`."""
    sys.exit(main())


if __name__ == "__main__":
    console()
