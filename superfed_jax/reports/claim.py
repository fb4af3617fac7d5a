"""The paper's claim over several seeds: per-arch means, the paired difference, its 95% interval, a verdict.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879, claim that one weight-shared
supernet gives every subnet a test accuracy at least that of training it alone with FedAvg. One seed cannot
decide this: float summation order alone (another CPU, another SIMD width) moved a digits subnet by about
2 points, as much as the differences in question. This module turns several seeds' per-arch accuracies
(one weight-shared run and FedAvg of each arch per seed, `compare.combine_runs`) into:

* per arch and side, the mean and the sample standard deviation over seeds (`mean_std`);
* the paired difference weight-shared minus FedAvg. Runs of the same seed share the data split, the clients
  of every round and their example counts, so the per-seed difference removes what the seed does to both
  sides; its mean, sample standard deviation and a Student-t confidence interval (`paired_difference`);
* a verdict that follows from the interval alone (`verdict`, the rule is documented there);
* the measured cost ratio over all seeds (`cost_over_seeds`).

Accuracy is compared by default; runs whose headline metric is another (`eval.metric`, e.g. perplexity, where
lower is better) are compared in it: the difference stays weight-shared minus FedAvg, and the verdict reads
its interval in the metric's direction (`verdict`: an interval at or below 0 is the weight-shared subnet
"ahead").

The t quantile is computed here (`t_quantile`: the exact t CDF for integer degrees of freedom, inverted by
bisection), so no statistics package is needed. Pure functions: no files, no printing.
"""
import math
from typing import Optional, Sequence

from superfed_jax.federated import metric as metric_lib

__all__ = ["t_cdf", "t_quantile", "mean_std", "paired_difference", "verdict", "verdict_rule", "summarize_arch",
           "summarize", "cost_over_seeds", "AT_LEAST", "AHEAD", "ON_A_PAR", "BEHIND", "ONE_SEED", "NO_DATA"]

AT_LEAST = "at least as accurate"
AHEAD = "ahead"  # the verdict of AT_LEAST for a lower-is-better metric: "at least as good", in its words
ON_A_PAR = "on a par"
BEHIND = "behind"
ONE_SEED = "one seed: no verdict"
NO_DATA = "no paired seeds: no verdict"


# ---------------------------------------------------------------------------------- Student's t


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` (a positive integer) degrees of freedom.

    The closed form for integer df (Abramowitz and Stegun 26.7.3 and 26.7.4): with
    theta = atan(t / sqrt(df)), P(|T| <= |t|) is a finite series in sin(theta) and cos(theta) whose terms
    follow from one another, so no special function is needed.
    """
    if not isinstance(df, int) or isinstance(df, bool) or df < 1:
        raise ValueError(f"t_cdf: df={df!r}; allowed: a positive integer")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:
        # (2/pi) * [theta + sin(theta) * (cos + (2/3) cos^3 + (2*4)/(3*5) cos^5 + ... up to cos^(df-2))]
        series, term = 0.0, math.cos(theta)
        for k in range(1, (df - 1) // 2 + 1):
            series += term
            term *= c2 * (2 * k) / (2 * k + 1)
        central = (2 / math.pi) * (theta + s * series)
    else:
        # sin(theta) * [1 + (1/2) cos^2 + (1*3)/(2*4) cos^4 + ... up to cos^(df-2)]
        series, term = 0.0, 1.0
        for k in range(1, df // 2 + 1):
            series += term
            term *= c2 * (2 * k - 1) / (2 * k)
        central = s * series
    central = min(max(central, 0.0), 1.0)
    return 0.5 + central / 2 if t >= 0 else 0.5 - central / 2


def t_quantile(p: float, df: int) -> float:
    """The t with P(T <= t) = ``p`` for Student's t with ``df`` degrees of freedom (e.g. 2.776 for
    p=0.975, df=4): `t_cdf` inverted by bisection to about 1e-12 (the CDF is increasing)."""
    if not 0 < p < 1:
        raise ValueError(f"t_quantile: p={p!r}; allowed: 0 < p < 1")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:  # df=1, p=0.9995 needs about 637
        low, high = high, 2 * high
    for _ in range(200):
        middle = (low + high) / 2
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


# ---------------------------------------------------------------------------------- over seeds


def mean_std(values: Sequence[float]) -> tuple[float, Optional[float]]:
    """(mean, sample standard deviation with n - 1) of ``values``; the std is None for one value.

    NaN (a side that lacks the arch in some seed) is not dropped: it makes the result NaN, so a missing
    number never passes silently. ValueError for an empty sequence.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std: no values")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def paired_difference(shared: Sequence[float], fedavg: Sequence[float], confidence: float = 0.95) -> dict:
    """Statistics of the per-seed differences ``shared[i] - fedavg[i]`` (same seed, same split and clients).

    Returns ``n``, ``differences``, ``mean``, ``std`` (sample, None for n = 1) and ``low`` / ``high``: the
    two-sided Student-t interval mean -+ t((1 + confidence) / 2, n - 1) * std / sqrt(n), which assumes the
    per-seed differences are independent draws of one normal distribution; None for n = 1 (no spread to
    estimate from one seed). Pairs where either side is NaN are left out (``n`` counts the rest).
    """
    if len(shared) != len(fedavg):
        raise ValueError(f"paired_difference: {len(shared)} weight-shared and {len(fedavg)} FedAvg values")
    if not 0 < confidence < 1:
        raise ValueError(f"paired_difference: confidence={confidence!r}; allowed: 0 < confidence < 1")
    differences = [float(a) - float(b) for a, b in zip(shared, fedavg) if not (math.isnan(a) or math.isnan(b))]
    result = {"n": len(differences), "differences": differences, "confidence": confidence,
              "mean": None, "std": None, "low": None, "high": None}
    if not differences:
        return result
    mean, std = mean_std(differences)
    result.update(mean=mean, std=std)
    if std is not None:
        half = t_quantile((1 + confidence) / 2, len(differences) - 1) * std / math.sqrt(len(differences))
        result.update(low=mean - half, high=mean + half)
    return result


def verdict(difference: dict, metric: metric_lib.Metric = metric_lib.ACCURACY) -> str:
    """The plain verdict that follows from `paired_difference`'s interval [low, high] (weight-shared minus
    FedAvg), and from nothing else. For accuracy (higher is better):

    * low >= 0: "at least as accurate" (the interval excludes the weight-shared subnet being worse);
    * high < 0: "behind" (the interval excludes it being as good);
    * otherwise (the interval holds 0, or starts below it and ends at it): "on a par";
    * one paired seed: "one seed: no verdict" (no interval); none: "no paired seeds: no verdict".

    For a lower-is-better ``metric`` (perplexity, loss) the same rule on the interval mirrored: high <= 0:
    "ahead" (the weight-shared subnet's value is not above FedAvg's); low > 0: "behind"; otherwise "on a par".
    """
    if difference["n"] == 0:
        return NO_DATA
    if difference["low"] is None:
        return ONE_SEED
    low, high = ((difference["low"], difference["high"]) if metric.higher_is_better
                 else (-difference["high"], -difference["low"]))  # the gain of weight-shared, either way
    if low >= 0:
        return AT_LEAST if metric.higher_is_better else AHEAD
    if high < 0:
        return BEHIND
    return ON_A_PAR


def verdict_rule(metric: metric_lib.Metric = metric_lib.ACCURACY) -> str:
    """`verdict`'s rule in one line (claim.json's ``verdict_rule``)."""
    if metric.higher_is_better:
        return (f"95% interval of the paired difference: lower bound >= 0 -> {AT_LEAST}, upper bound < 0 -> "
                f"{BEHIND}, otherwise {ON_A_PAR}; one seed -> no verdict")
    return (f"95% interval of the paired difference of {metric.name} (lower is better): upper bound <= 0 -> "
            f"{AHEAD}, lower bound > 0 -> {BEHIND}, otherwise {ON_A_PAR}; one seed -> no verdict")


def summarize_arch(shared: Sequence[float], fedavg: Sequence[float], confidence: float = 0.95,
                   metric: metric_lib.Metric = metric_lib.ACCURACY) -> dict:
    """One arch over seeds: ``shared`` / ``fedavg`` (each {mean, std}), ``difference`` (`paired_difference`)
    and ``verdict`` (in ``metric``'s direction)."""
    sides = {}
    for side, values in (("shared", shared), ("fedavg", fedavg)):
        mean, std = mean_std(values)
        sides[side] = {"mean": mean, "std": std}
    difference = paired_difference(shared, fedavg, confidence)
    return dict(sides, difference=difference, verdict=verdict(difference, metric))


def summarize(per_seed_rows: dict, confidence: float = 0.95,
              metric: metric_lib.Metric = metric_lib.ACCURACY) -> list[dict]:
    """Per arch over seeds, from {seed: rows}, rows as `compare.combine_runs` gives them (``name``, ``arch``,
    ``macs``, ``params``, ``shared_test_accuracy``, ``fedavg_test_accuracy``; NaN where a side lacks it).

    Returns one dict per arch in the first seed's order: name, arch, macs, params, seeds, the per-seed
    ``shared_test_accuracy`` / ``fedavg_test_accuracy`` lists, and `summarize_arch`'s fields. ValueError if
    a seed lacks an arch the first seed has, or gives it another size (the seeds would not be one setup).
    With another ``metric`` the rows' and the result's keys name it (``shared_test_perplexity`` ...) and
    the verdicts follow its direction.
    """
    key = f"test_{metric.name}"
    if not per_seed_rows:
        raise ValueError("summarize: no seeds")
    seeds = list(per_seed_rows)
    by_seed = {seed: {row["name"]: row for row in rows} for seed, rows in per_seed_rows.items()}
    result = []
    for first in per_seed_rows[seeds[0]]:
        name, rows = first["name"], []
        for seed in seeds:
            row = by_seed[seed].get(name)
            if row is None:
                raise ValueError(f"seed {seed} has no arch {name!r} (seed {seeds[0]} has)")
            if (row["arch"], row["macs"], row["params"]) != (first["arch"], first["macs"], first["params"]):
                raise ValueError(f"arch {name!r}: seed {seed} has {row['arch']} ({row['macs']} MACs, "
                                 f"{row['params']} params), seed {seeds[0]} has {first['arch']} "
                                 f"({first['macs']} MACs, {first['params']} params)")
            rows.append(row)
        shared = [r[f"shared_{key}"] for r in rows]
        fedavg = [r[f"fedavg_{key}"] for r in rows]
        result.append(dict({k: first[k] for k in ("name", "arch", "macs", "params")}, seeds=seeds,
                           **{f"shared_{key}": shared, f"fedavg_{key}": fedavg},
                           **summarize_arch(shared, fedavg, confidence, metric)))
    return result


def cost_over_seeds(per_seed_cost: dict) -> dict:
    """The measured cost over all seeds, from {seed: `compare.combine_runs`'s ``cost``}.

    Returns ``weight_shared`` and ``fedavg``: each field's total over the seeds; ``ratios``: FedAvg total /
    weight-shared total per field (the cost of getting every arch's seed-averaged figure both ways);
    ``per_seed_ratios``: {field: [ratio of each seed]} (they differ only through which archs and clients
    each seed's rounds drew). Fields are those every seed has.
    """
    if not per_seed_cost:
        raise ValueError("cost_over_seeds: no seeds")
    costs = list(per_seed_cost.values())
    fields = [f for f in costs[0]["weight_shared"] if all(f in c["weight_shared"] for c in costs)]
    totals = {side: {f: sum(c[side][f] for c in costs) for f in fields} for side in ("weight_shared", "fedavg")}
    result = dict(totals, seeds=list(per_seed_cost), fedavg_runs_per_seed=[c["fedavg_runs"] for c in costs])
    if all(c["fedavg_runs"] for c in costs):
        result["ratios"] = {f: totals["fedavg"][f] / totals["weight_shared"][f] for f in fields}
        result["per_seed_ratios"] = {f: [c["fedavg"][f] / c["weight_shared"][f] for c in costs] for f in fields}
    return result
