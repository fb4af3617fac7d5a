"""Accuracy (or the run's headline metric) by round, read from a run's evaluation records, and its mean and
spread over seeds.

A run's ``metrics.jsonl`` holds one record per evaluation with ``NAME/val_accuracy`` and, where the data
has a test split, ``NAME/test_accuracy`` per tracked arch (and ``NAME/val_perplexity`` ... for a language
model). `accuracy_by_round` reads one such series of a metric (accuracy unless told);
`over_seeds` combines the same series of runs that differ only in their seed: at every round that all
of them evaluated, the mean, the sample standard deviation (n - 1; 0 for one seed) and the min and max.
Reports draw the mean with the min-max band and write all four to CSV (`curve_csv_rows`).

`train_loss_by_round` reads the other per-round file, ``rounds.jsonl`` (one row per round: ``train_loss``,
the mean loss of the round's clients on their own data, docs/run_outputs.md), for the training-loss figure.
"""
import json
import math
import os
from typing import NamedTuple, Optional

import numpy as np

from superfed_jax.federated import metric as metric_lib

__all__ = ["ROUNDS_FILE", "train_loss_by_round", "TRAIN_LOSS_CSV_HEADER", "SPLITS", "split_label", "SeedCurve", "accuracy_by_round", "splits_recorded", "over_seeds",
           "CURVE_CSV_HEADER", "curve_csv_header", "curve_csv_rows"]

SPLITS = {"val": "validation accuracy (%)", "test": "test accuracy (%)"}
_SPLIT_NAMES = {"val": "validation", "test": "test"}


def split_label(split: str, metric: metric_lib.Metric = metric_lib.ACCURACY) -> str:
    """The axis label of a split's metric: 'validation accuracy (%)', 'test perplexity'."""
    return f"{_SPLIT_NAMES[split]} {metric.name}{metric.unit}"


class SeedCurve(NamedTuple):
    """One series over seeds (accuracy as fractions, or another metric's values), at the rounds every seed
    evaluated."""

    rounds: list
    mean: list
    std: list  # sample standard deviation over seeds (n - 1); 0 with one seed
    low: list  # min over seeds
    high: list  # max over seeds
    seeds: int


def accuracy_by_round(records: list[dict], name: str, split: str,
                      metric: metric_lib.Metric = metric_lib.ACCURACY) -> tuple[list, list]:
    """(rounds, values) of ``NAME/SPLIT_<metric>`` (accuracy unless told) over the records that hold it,
    by round."""
    key = metric.key(name, split)
    pairs = sorted((int(r["round"]), float(r[key])) for r in records if key in r)
    return [p[0] for p in pairs], [p[1] for p in pairs]


def splits_recorded(records: list[dict], names, metric: metric_lib.Metric = metric_lib.ACCURACY) -> list[str]:
    """The splits ('val', 'test') that some record holds the metric of for some name, in that order."""
    return [split for split in SPLITS
            if any(metric.key(name, split) in r for r in records for name in names)]


def over_seeds(series: list[tuple[list, list]]) -> SeedCurve:
    """Mean, std, min and max of (rounds, values) series of several seeds at the rounds all of them have.

    Raises:
      ValueError: no series, or no round common to all of them.
    """
    if not series:
        raise ValueError("no series to combine over seeds")
    common = sorted(set.intersection(*(set(rounds) for rounds, _ in series)))
    if not common:
        raise ValueError(f"{len(series)} seeds share no evaluation round")
    table = np.asarray([[dict(zip(rounds, values))[r] for r in common] for rounds, values in series],
                       np.float64)  # [seeds, rounds]
    std = table.std(axis=0, ddof=1) if len(series) > 1 else np.zeros(len(common))
    return SeedCurve(common, table.mean(axis=0).tolist(), std.tolist(), table.min(axis=0).tolist(),
                     table.max(axis=0).tolist(), len(series))


CURVE_CSV_HEADER = ["series", "arch", "split", "round", "seeds", "mean_accuracy_percent",
                    "std_accuracy_percent", "min_accuracy_percent", "max_accuracy_percent"]


def curve_csv_header(metric: metric_lib.Metric = metric_lib.ACCURACY) -> list[str]:
    """CURVE_CSV_HEADER for accuracy; for another metric its name in place of 'accuracy_percent'."""
    return CURVE_CSV_HEADER[:5] + [metric.csv_column(stat) for stat in ("mean", "std", "min", "max")]


def curve_csv_rows(series: str, arch: str, split: str, curve: SeedCurve,
                   metric: metric_lib.Metric = metric_lib.ACCURACY) -> list[list]:
    """Rows of `curve_csv_header` for one curve (accuracies in %, as the reports' tables)."""
    return [[series, arch, split, r, curve.seeds, metric.shown(m), metric.shown(s), metric.shown(lo),
             metric.shown(hi)]
            for r, m, s, lo, hi in zip(curve.rounds, curve.mean, curve.std, curve.low, curve.high)]


# ------------------------------------------------------------------------------ training loss by round

ROUNDS_FILE = "rounds.jsonl"  # the driver's per-round rows (run/metrics.py; the reports may not import it)
TRAIN_LOSS_CSV_HEADER = ["round", "train_loss"]


def train_loss_by_round(workdir: str) -> Optional[tuple[list, list]]:
    """(rounds, train losses) of ``WORKDIR/rounds.jsonl`` by round, or None when the run has no such file
    (a run of 0.1.0, or a copy of its result files only).

    A round written twice (a resumed run that rewound its rows) counts once, with its last row. A row
    without a number for ``train_loss`` is NaN (drawn as a gap, as a round in which every client failed).

    Raises:
      ValueError: a line that is not a JSON object with a ``round`` (the file is damaged), naming it.
    """
    path = os.path.join(workdir, ROUNDS_FILE)
    if not os.path.isfile(path):
        return None
    by_round = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                by_round[int(row["round"])] = _loss(row.get("train_loss"))
            except (ValueError, TypeError, KeyError):
                raise ValueError(f"{path}, line {number}: not a row of rounds.jsonl (a JSON object with "
                                 "'round'); the file is damaged: restore it from a copy of the run, or "
                                 "move it aside to report without the training loss") from None
    rounds = sorted(by_round)
    return rounds, [by_round[r] for r in rounds]


def _loss(value) -> float:
    """A train_loss as a float; NaN for a missing or non-numeric one (JSON's NaN reads as a float)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
