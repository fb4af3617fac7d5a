"""The Pareto front of a post-training search (``search.json``) for the run report: data, figure, CSV.

`python -m superfed_jax.posttrain.search` evolves subnets of a trained run under each budget and writes
``RUN_DIR/search.json`` (superfed_jax/posttrain/search.py): per budget its ``front_metric`` (macs, params
or latency_ms), its ``front`` (non-dominated archs with that metric and ``val_accuracy``) and, since the
search also records them, ``evaluated``: the metric values and validation accuracy of every distinct
candidate (columns of equal length). A search of a run whose headline metric is not accuracy (`eval.metric`,
e.g. perplexity) records ``"metric": "perplexity"`` and ``val_perplexity`` in place of ``val_accuracy``
(`search_metric`); the front then keeps the lowest values. This module recomputes the non-dominated set
from all points (`non_dominated`), so the figure does not rest on the search's own bookkeeping, and places
the run's tracked subnets at their validation accuracy in the evaluation of the searched checkpoint's round.
A search.json without ``evaluated`` (written before it was recorded) shows its front only.

A search.json is *current* when the supernet it searched is the run's newest checkpoint: the same round
(``checkpoint_round``) and the same weights (``checkpoint_digest``, the SHA-256 of the checkpoint's state
that every checkpoint's host JSON records). The round alone would not do: a run started over with
--config.overwrite=True and trained to the same round has a checkpoint of that round with other weights.
`stale_reason` compares them, `check_current` refuses a stale one with the command that searches again.
A search.json written before the digest was recorded is judged by its round only.
"""
import json
import os
from typing import Optional

from superfed_jax.federated import metric as metric_lib
from superfed_jax.reports.plot import SearchPanel, gid_of
from superfed_jax.reports.run_record import RunRecord, arch_rows, read_json

__all__ = ["SEARCH_FILE", "search_metric", "CHECKPOINT_DIGEST_KEY", "StaleSearch", "read_search",
           "newest_checkpoint", "stale_reason", "rerun_command", "check_current", "non_dominated", "search_points",
           "search_panels", "SEARCH_CSV_HEADER", "search_csv_header", "search_csv_rows"]

SEARCH_FILE = "search.json"  # the name posttrain.search writes (the reports layer may not import it)
CHECKPOINT_DIGEST_KEY = "checkpoint_digest"  # search.json: the digest of the checkpoint it searched
# metric -> (axis label, factor from the stored value to the axis unit)
METRIC_AXES = {"macs": ("forward MACs per image (MMACs)", 1e-6), "params": ("params (millions)", 1e-6),
               "latency_ms": ("latency (ms)", 1.0)}


def search_metric(search: dict) -> metric_lib.Metric:
    """The metric a search.json ranked its candidates by: its ``metric`` (written when not accuracy), else
    accuracy (every search.json of an accuracy run, and those written before the field existed)."""
    name = search.get("metric", metric_lib.ACCURACY.name)
    try:
        return metric_lib.metric_named(name)
    except ValueError as error:
        raise ValueError(f"search.json 'metric': {error}") from None


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
    try:
        search_metric(search)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return search


class StaleSearch(ValueError):
    """search.json searched a supernet that is not the run's newest checkpoint."""


def newest_checkpoint(workdir: str) -> Optional[tuple[int, Optional[str]]]:
    """(round, state digest) of the newest checkpoint of `workdir` whose host JSON reads, or None.

    Read from ``checkpoints/STEP/host/metadata`` (where run/checkpoint.py's `host_json_path` puts it; the
    reports layer may not import the run layer), without orbax: a report must not restore a supernet.
    None when the run holds no checkpoint (e.g. a copy of its result files only).
    """
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return None
    for step in sorted((int(n) for n in os.listdir(directory) if n.isdigit()), reverse=True):
        try:
            with open(os.path.join(directory, str(step), "host", "metadata")) as f:
                host = json.load(f)
        except (OSError, ValueError):
            continue  # unreadable: the restore that loads the run judges it, and falls back past it
        if isinstance(host, dict):
            digest = host.get("digest")
            return step, digest if isinstance(digest, str) else None
    return None


def stale_reason(search: dict, newest: Optional[tuple[int, Optional[str]]]) -> Optional[str]:
    """Why `search` (a search.json) did not search the checkpoint `newest` (round, digest); None if it did.

    Nothing to compare with (no checkpoint) is not stale. A search.json without a digest (written before
    it was recorded) is judged by its round only.
    """
    if newest is None:
        return None
    round_now, digest_now = newest
    searched = search.get("checkpoint_round")
    if searched != round_now:
        return (f"it searched the supernet of round {searched}, but the run's newest checkpoint is of round "
                f"{round_now} (the run trained on, or was started over, after the search)")
    digest = search.get(CHECKPOINT_DIGEST_KEY)
    if digest and digest_now and digest != digest_now:  # either unknown: the round decides
        return (f"it searched a supernet of round {searched} whose weights the run no longer holds: the "
                f"checkpoint of round {round_now} has other weights (digest {digest_now[:12]}, the search's "
                f"{str(digest)[:12]}), so the run was started over (--config.overwrite=True) or replaced "
                "after the search")
    return None


def rerun_command(workdir: str, search: dict) -> str:
    """The command that searches the run again under the budgets `search` held."""
    budgets = [r.get("budget") for r in search.get("results", []) if isinstance(r, dict)]
    flags = " ".join(f"--budget={b}" for b in budgets if isinstance(b, str)) or "--budget=KEY=VALUE"
    return f"python -m superfed_jax.posttrain.search --workdir={workdir} {flags}"


def check_current(workdir: str, search: dict, newest="read") -> None:
    """Raises StaleSearch when `search` (WORKDIR/search.json) is not of the run's newest checkpoint.

    Args:
      workdir: the run directory.
      search: its search.json content.
      newest: (round, digest) of the supernet to compare with; "read": the newest checkpoint on disk.
    """
    reason = stale_reason(search, newest_checkpoint(workdir) if newest == "read" else newest)
    if reason is not None:
        raise StaleSearch(
            f"{os.path.join(workdir, SEARCH_FILE)} is stale: {reason}. Its subnets and accuracies are not "
            f"those of the run's supernet, so they are not used. Search again: {rerun_command(workdir, search)}")


def non_dominated(points: list[tuple[float, float]], higher_is_better: bool = True) -> list[int]:
    """Indices of the (cost, accuracy) points that no other point beats (cost <= and accuracy >=, one of
    them strictly), by cost ascending. Of equal points the first is kept. With `higher_is_better` False
    (perplexity, loss) a point beats another with cost <= and value <=."""
    sign = 1.0 if higher_is_better else -1.0
    front, best = [], -float("inf")
    for index in sorted(range(len(points)), key=lambda i: (points[i][0], -sign * points[i][1], i)):
        if sign * points[index][1] > best:
            front.append(index)
            best = sign * points[index][1]
    return front


def search_points(result: dict, value: metric_lib.Metric = metric_lib.ACCURACY
                  ) -> tuple[str, list[tuple[float, float]], bool]:
    """(metric, every (metric value, val accuracy) point of one budget, whether they are all candidates).

    ``value``: the search's metric (`search_metric`); the points' second element is its validation value
    (``val_perplexity`` ...) when it is not accuracy. With ``evaluated`` the points are every candidate;
    without it, the front entries only (False).
    """
    metric, column = result.get("front_metric", "macs"), f"val_{value.name}"
    evaluated = result.get("evaluated")
    if evaluated and metric in evaluated:
        return metric, list(zip(map(float, evaluated[metric]), map(float, evaluated[column]))), True
    return metric, [(float(e[metric]), float(e[column])) for e in result["front"]], False


def _tracked_points(run: RunRecord, search: dict, metric: str) -> list[tuple[str, float, float]]:
    """(name, metric value, val value) of the tracked subnets at the searched checkpoint's round, in the
    run's headline metric (None of them when the search ranked by another metric)."""
    if metric not in ("macs", "params"):
        return []  # latency of the tracked archs is not measured by the report
    if run.metric != search_metric(search):
        return []  # the run's records are compared in another metric than the search's
    at = [r for r in run.records if r["round"] == search.get("checkpoint_round")] or run.records[-1:]
    column = f"val_{run.metric.name}"
    return [(row["name"], float(row[metric]), row[column]) for row in arch_rows(run, at[0])
            if row[column] == row[column]]  # NaN: no validation value, no point


def search_panels(run: RunRecord, search: dict) -> list[SearchPanel]:
    """One `SearchPanel` per budget of ``search``, in the axis units of `METRIC_AXES`."""
    panels, value = [], search_metric(search)
    for index, result in enumerate(search["results"]):
        metric, points, complete = search_points(result, value)
        label, factor = METRIC_AXES.get(metric, (metric, 1.0))
        label = label.replace("per image", f"per {run.family.cost_unit}")  # a language model: per token
        front = [points[i] for i in non_dominated(points, value.higher_is_better)]
        limit = result.get("limits", {}).get(metric)
        count = f"{len(points)} candidates" if complete else "front only: no 'evaluated' in search.json"
        panels.append(SearchPanel(
            title=f"budget {result.get('budget', '?')} ({count})", xlabel=label,
            evaluated=[(x * factor, y) for x, y in points], front=[(x * factor, y) for x, y in front],
            tracked=[(n, x * factor, y) for n, x, y in _tracked_points(run, search, metric)],
            limit=None if limit is None else limit * factor, gid=gid_of("search", index), metric=value))
    return panels


SEARCH_CSV_HEADER = ["budget", "metric", "value", "val_accuracy_percent", "on_front"]


def search_csv_header(search: dict) -> list[str]:
    """SEARCH_CSV_HEADER for an accuracy search; 'val_perplexity' ... in place of its 4th column."""
    value = search_metric(search)
    return SEARCH_CSV_HEADER[:3] + [value.csv_column("val")] + SEARCH_CSV_HEADER[4:]


def search_csv_rows(search: dict) -> list[list]:
    """Every point of every budget (metric value as stored, accuracy in %), marked when non-dominated."""
    rows, value = [], search_metric(search)
    for result in search["results"]:
        metric, points, _ = search_points(result, value)
        front = set(non_dominated(points, value.higher_is_better))
        rows += [[result.get("budget", ""), metric, x, value.shown(y), int(i in front)]
                 for i, (x, y) in enumerate(points)]
    return rows
