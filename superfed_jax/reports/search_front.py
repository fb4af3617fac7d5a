"""The Pareto front of a post-training search (``search.json``) for the run report: data, figure, CSV.

`python -m superfed_jax.posttrain.search` evolves subnets of a trained run under each budget and writes
``RUN_DIR/search.json`` (superfed_jax/posttrain/search.py): per budget its ``front_metric`` (macs, params
or latency_ms), its ``front`` (non-dominated archs with that metric and ``val_accuracy``) and, since the
search also records them, ``evaluated``: the metric values and validation accuracy of every distinct
candidate (columns of equal length). This module recomputes the non-dominated set from all points
(`non_dominated`), so the figure does not rest on the search's own bookkeeping, and places the run's
tracked subnets at their validation accuracy in the evaluation of the searched checkpoint's round.
A search.json without ``evaluated`` (written before it was recorded) shows its front only; one older than
the run's metrics.jsonl searched a checkpoint that later training replaced (`is_stale`) and is not drawn.
"""
import os
from typing import Optional

from superfed_jax.reports.plot import SearchPanel, gid_of
from superfed_jax.reports.run_record import RunRecord, arch_rows, read_json

__all__ = ["SEARCH_FILE", "read_search", "is_stale", "non_dominated", "search_points", "search_panels",
           "SEARCH_CSV_HEADER", "search_csv_rows"]

SEARCH_FILE = "search.json"  # the name posttrain.search writes (the reports layer may not import it)
# metric -> (axis label, factor from the stored value to the axis unit)
METRIC_AXES = {"macs": ("forward MACs per image (MMACs)", 1e-6), "params": ("params (millions)", 1e-6),
               "latency_ms": ("latency (ms)", 1.0)}


def read_search(workdir: str) -> Optional[dict]:
    """``WORKDIR/search.json`` or None when no search was run; ValueError naming the file when malformed."""
    path = os.path.join(workdir, SEARCH_FILE)
    if not os.path.isfile(path):
        return None
    search = read_json(path)
    results = search.get("results") if isinstance(search, dict) else None
    if not isinstance(results, list) or not all(isinstance(r, dict) and isinstance(r.get("front"), list)
                                                for r in results):
        raise ValueError(f"{path}: not a search.json (a 'results' list of budgets, each with a 'front' "
                         "list); write it with python -m superfed_jax.posttrain.search")
    return search


def is_stale(workdir: str) -> bool:
    """Whether search.json predates the run's last training (metrics.jsonl modified after it): a rerun
    with --config.overwrite=True or a resumed run has replaced the checkpoint the search evaluated."""
    search, metrics = (os.path.join(workdir, name) for name in (SEARCH_FILE, "metrics.jsonl"))
    return os.path.getmtime(search) < os.path.getmtime(metrics)


def non_dominated(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, accuracy) points that no other point beats (cost <= and accuracy >=, one of
    them strictly), by cost ascending. Of equal points the first is kept."""
    front, best = [], -float("inf")
    for index in sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i)):
        if points[index][1] > best:
            front.append(index)
            best = points[index][1]
    return front


def search_points(result: dict) -> tuple[str, list[tuple[float, float]], bool]:
    """(metric, every (metric value, val accuracy) point of one budget, whether they are all candidates).

    With ``evaluated`` the points are every candidate; without it, the front entries only (False).
    """
    metric = result.get("front_metric", "macs")
    evaluated = result.get("evaluated")
    if evaluated and metric in evaluated:
        return metric, list(zip(map(float, evaluated[metric]), map(float, evaluated["val_accuracy"]))), True
    return metric, [(float(e[metric]), float(e["val_accuracy"])) for e in result["front"]], False


def _tracked_points(run: RunRecord, search: dict, metric: str) -> list[tuple[str, float, float]]:
    """(name, metric value, val accuracy) of the tracked subnets at the searched checkpoint's round."""
    if metric not in ("macs", "params"):
        return []  # latency of the tracked archs is not measured by the report
    at = [r for r in run.records if r["round"] == search.get("checkpoint_round")] or run.records[-1:]
    return [(row["name"], float(row[metric]), row["val_accuracy"]) for row in arch_rows(run, at[0])
            if row["val_accuracy"] == row["val_accuracy"]]  # NaN: no validation accuracy, no point


def search_panels(run: RunRecord, search: dict) -> list[SearchPanel]:
    """One `SearchPanel` per budget of ``search``, in the axis units of `METRIC_AXES`."""
    panels = []
    for index, result in enumerate(search["results"]):
        metric, points, complete = search_points(result)
        label, factor = METRIC_AXES.get(metric, (metric, 1.0))
        front = [points[i] for i in non_dominated(points)]
        limit = result.get("limits", {}).get(metric)
        count = f"{len(points)} candidates" if complete else "front only: no 'evaluated' in search.json"
        panels.append(SearchPanel(
            title=f"budget {result.get('budget', '?')} ({count})", xlabel=label,
            evaluated=[(x * factor, y) for x, y in points], front=[(x * factor, y) for x, y in front],
            tracked=[(n, x * factor, y) for n, x, y in _tracked_points(run, search, metric)],
            limit=None if limit is None else limit * factor, gid=gid_of("search", index)))
    return panels


SEARCH_CSV_HEADER = ["budget", "metric", "value", "val_accuracy_percent", "on_front"]


def search_csv_rows(search: dict) -> list[list]:
    """Every point of every budget (metric value as stored, accuracy in %), marked when non-dominated."""
    rows = []
    for result in search["results"]:
        metric, points, _ = search_points(result)
        front = set(non_dominated(points))
        rows += [[result.get("budget", ""), metric, x, 100 * y, int(i in front)]
                 for i, (x, y) in enumerate(points)]
    return rows
