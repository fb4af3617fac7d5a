"""Search of a trained run: the most accurate subnet of its supernet under each budget, into search.json.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879 (docs/algorithm.md section 9):
after training, a subnet is chosen by evolution over archs (`superfed_jax.posttrain.evolution`) under a constraint
(MACs, params or measured latency); fitness is the accuracy on held-out data of the subnet evaluated
straight from the trained supernet, with no retraining. This module parses the budgets, turns them and the
trained run into the evolution's `feasible_fn` and `fitness_fn`, runs one evolution per budget and writes
the best arch and the Pareto front of each to RUN_DIR/search.json, with every candidate evaluated, then
redraws RUN_DIR/report.md, which plots them (superfed_jax/reports/search_front.py).

Fitness is the run's validation accuracy, computed by the run's vmapped evaluation for `arch_batch` archs at
a time (one compiled program) and cached per distinct subnet. A run whose headline metric is another
(`eval.metric`: perplexity for a language model, or the loss; `superfed_jax.federated.metric`) is searched by
that metric: its value follows from the evaluated loss (perplexity = exp(loss)), the evolution maximises its
negative (lower is better), and search.json records ``"metric": "perplexity"`` with ``val_perplexity`` /
``test_perplexity`` in place of ``val_accuracy`` / ``test_accuracy``; an accuracy search's file is as
before. Randomness is a NumPy generator seeded by (seed, budget text), so a budget's search does not depend
on the other budgets of the same call.

  python -m superfed_jax.posttrain.search --workdir=RUN_DIR --budget=macs=0.8e9 --budget=params=2e6
"""
import json
import math
import os
import sys
import time
import zlib
from typing import Callable, NamedTuple, Optional

import jax
import numpy as np
from absl import flags
from absl import logging

from superfed_jax import _compilation_cache
from superfed_jax import _console
from superfed_jax import _cli
from superfed_jax import _readable
from superfed_jax.federated import metric as metric_lib
from superfed_jax.posttrain import evolution as evolution_lib
from superfed_jax.posttrain import latency
from superfed_jax.posttrain import run_dir
from superfed_jax.reports import run_report
from superfed_jax.reports import search_front
from superfed_jax.supernet import family as family_lib

BUDGET_KEYS = ("macs", "params", "latency_ms")
SEARCH_FILE = "search.json"

# ----------------------------------------------------------------------------------------------------
# Budgets.


class Budget(NamedTuple):
    """Upper limits an arch must meet, as written by the user; the first key is the Pareto axis."""

    text: str
    limits: tuple  # ((key, limit), ...), keys from BUDGET_KEYS

    @property
    def metric(self) -> str:
        """The metric the Pareto front is drawn against."""
        return self.limits[0][0]


def parse_budget(text: str) -> Budget:
    """Parses 'KEY=VALUE[,KEY=VALUE...]', e.g. 'macs=0.8e9' or 'macs=0.8e9,latency_ms=2'.

    Raises:
      ValueError: on an unknown key (the message names the allowed keys), a repeated key, or a value
        that is not a positive number.
    """
    allowed = f"allowed keys: {', '.join(BUDGET_KEYS)}"
    limits = []
    for part in text.split(","):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not key:
            raise ValueError(f"budget {text!r}: write KEY=VALUE, e.g. macs=0.8e9; {allowed}")
        if key not in BUDGET_KEYS:
            raise ValueError(f"unknown budget key {key!r} in {text!r}; {allowed}")
        if key in dict(limits):
            raise ValueError(f"budget {text!r} names {key!r} twice")
        try:
            limit = float(value)
        except ValueError:
            raise ValueError(f"budget {text!r}: {value!r} is not a number") from None
        if not math.isfinite(limit) or limit <= 0:
            raise ValueError(f"budget {text!r}: {key} must be a positive number, got {value!r}")
        limits.append((key, limit))
    return Budget(text, tuple(limits))


def check_reachable(budget: Budget, smallest_metrics: dict) -> None:
    """Raises ValueError if even the smallest arch breaks a limit (MACs and params grow with every gene).

    Args:
      budget: the budget.
      smallest_metrics: metric key -> value of the space's smallest arch.
    """
    for key, limit in budget.limits:
        if smallest_metrics[key] > limit:
            # Measured latency is noisy, so for it the smallest arch is only about the fastest.
            least = "measured on this machine" if key == "latency_ms" else "the least possible"
            raise ValueError(
                f"budget {budget.text!r}: no arch in the space has {key} <= {limit:g}; the smallest arch "
                f"{smallest_metrics['arch']} has {key}={smallest_metrics[key]:g}, {least}")


# ----------------------------------------------------------------------------------------------------
# Metrics, feasibility and fitness over gene vectors.


def make_metric_fns(family: family_lib.Family, latency_fn: Callable | None = None) -> dict:
    """Metric key -> `fn(genes [n, G]) -> [n]`: exact MACs and params, measured latency if given.

    `latency_fn(archs) -> [n]` takes a batch of archs (`latency.make_latency_fn`).
    """
    def arch_fn(fn):
        return lambda g: fn(family_lib.from_genes(family, g))

    fns = {"macs": arch_fn(family.macs_batch), "params": arch_fn(family.params_batch)}
    if latency_fn is not None:
        fns["latency_ms"] = arch_fn(latency_fn)
    return fns


def make_feasible_fn(budget: Budget, metric_fns: dict) -> Callable:
    """`feasible_fn(genes [n, G]) -> bool [n]`; latency is measured only for archs within the others."""
    limits = sorted(budget.limits, key=lambda item: item[0] == "latency_ms")

    def feasible_fn(genes):
        ok = np.ones(len(genes), bool)
        for key, limit in limits:
            if ok.any():
                ok[ok] = metric_fns[key](genes[ok]) <= limit
        return ok

    return feasible_fn


def make_accuracy_fn(family: family_lib.Family, evaluate: Callable, params, eval_set,
                     arch_batch: int, metric: metric_lib.Metric = metric_lib.ACCURACY) -> Callable:
    """`accuracy_fn(genes [n, G]) -> float64 [n]`: accuracy (or ``metric``) from the supernet, cached per
    subnet.

    Archs not yet in the cache are evaluated `arch_batch` at a time by `evaluate(params, archs,
    eval_set) -> (accuracy [A], loss [A])` (the run's vmapped evaluation); the last batch is padded with
    copies of its first arch, so every call has the same shapes and compiles once. A metric other than
    accuracy follows from the loss (`Metric.from_loss`: the loss itself, or exp of it).
    """
    cache = {}
    use_loss = metric.name != metric_lib.ACCURACY.name

    def accuracy_fn(genes):
        genes = evolution_lib.canonical_genes(family, genes)
        keys = [g.tobytes() for g in genes]
        missing = list({k: g for k, g in zip(keys, genes) if k not in cache}.items())
        for start in range(0, len(missing), arch_batch):
            chunk = [g for _, g in missing[start:start + arch_batch]]
            chunk += [chunk[0]] * (arch_batch - len(chunk))
            archs = family_lib.from_genes(family, np.stack(chunk))
            accuracy, loss = jax.device_get(evaluate(params, archs, eval_set))
            for (key, _), value in zip(missing[start:start + arch_batch], loss if use_loss else accuracy):
                cache[key] = metric.from_loss(float(value)) if use_loss else float(value)
        return np.asarray([cache[k] for k in keys], np.float64)

    return accuracy_fn


def rng_for(seed: int, budget: Budget) -> np.random.Generator:
    """The budget's own generator: a function of the seed and the budget's text only."""
    return np.random.default_rng([seed, zlib.crc32(budget.text.encode())])


# ----------------------------------------------------------------------------------------------------
# Reports.


def arch_entry(family: family_lib.Family, genes: np.ndarray, metric_fns: dict, keys, **accuracies) -> dict:
    """JSON-ready description of one arch: its JSON form, MACs, params (and latency), accuracies."""
    entry = {"arch": family.arch_to_json(family_lib.from_genes(family, genes))}
    for key in keys:
        value = metric_fns[key](genes[None])[0]
        entry[key] = float(value) if key == "latency_ms" else int(value)
    entry.update(accuracies)
    return entry


def budget_report(family: family_lib.Family, budget: Budget, evolution: evolution_lib.Evolution,
                  metric_fns: dict, test_accuracy_fn: Callable,
                  metric: metric_lib.Metric = metric_lib.ACCURACY) -> dict:
    """The search.json entry of one budget: its best arch (with test accuracy), the Pareto front and
    ``evaluated``: the metrics and validation accuracy of every distinct candidate, in columns.

    `test_accuracy_fn` is None when the run has no test split (the entry then says null). With another
    ``metric`` the evolution's fitness is `metric.score` of its values (higher is better), the entries
    give the values themselves under ``val_<name>`` / ``test_<name>`` and the front keeps the best.
    """
    keys = ["macs", "params"] + (["latency_ms"] if "latency_ms" in dict(budget.limits) else [])
    values = {key: np.asarray(metric_fns[key](evolution.genes), np.float64) for key in keys}
    front = evolution_lib.pareto_front(values[budget.metric], evolution.fitness)
    best = evolution.genes[front[-1]]
    val, test, name = f"val_{metric.name}", f"test_{metric.name}", metric.name

    def value(fitness):  # the metric's value of a fitness (`score` is its own inverse)
        return float(metric.score(float(fitness)))

    return {
        "budget": budget.text,
        "limits": dict(budget.limits),
        "best": arch_entry(family, best, metric_fns, keys, **{
            val: value(evolution.fitness[front[-1]]),
            test: None if test_accuracy_fn is None else float(test_accuracy_fn(best[None])[0])}),
        "front_metric": budget.metric,
        "front": [arch_entry(family, evolution.genes[i], metric_fns, keys, **{val: value(evolution.fitness[i])})
                  for i in front],
        "archs_evaluated": len(evolution.genes),
        # Every distinct candidate, as columns (the reports draw them and recompute the front from them).
        "evaluated": {**{key: [float(v) if key == "latency_ms" else int(v) for v in values[key]]
                         for key in keys}, val: [value(v) for v in evolution.fitness]},
        f"best_val_{name}_per_generation": [value(v) for v in evolution.best_per_generation],
    }


def summary_table(results: list[dict], metric: metric_lib.Metric = metric_lib.ACCURACY) -> str:
    """A short table of the best arch per budget, each followed by its arch JSON."""
    short = metric.short
    width = max(9, len(f"test {short}") + 1)
    lines = [f"{'budget':<28}{'MMACs':>10}{'params':>12}{'latency ms':>12}{'val ' + short:>{width}}"
             f"{'test ' + short:>{width}}{'front':>7}"]
    for result in results:
        best = result["best"]
        latency_text = f"{best['latency_ms']:.3f}" if "latency_ms" in best else "-"
        test = best[f"test_{metric.name}"]
        test = test if test is not None else float("nan")
        lines.append(f"{result['budget']:<28}{best['macs'] / 1e6:>10.2f}{best['params']:>12,}"
                     f"{latency_text:>12}{best[f'val_{metric.name}']:>{width}.4f}{test:>{width}.4f}"
                     f"{len(result['front']):>7}")
        lines.append(f"  {json.dumps(best['arch'])}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# The whole search of a trained run.


class SearchOptions(NamedTuple):
    """Everything besides the run and the budgets that a search depends on."""

    evolution: evolution_lib.EvolutionSettings = evolution_lib.EvolutionSettings()
    seed: int = 0
    arch_batch: int = 25  # archs evaluated together (vmap); memory grows with arch_batch * eval batch
    eval_batch_size: int = 0  # images per evaluation step; 0 = the run's eval.batch_size
    # conv_impl '' = the run's (what an exported subnet runs with).
    timing: latency.LatencySettings = latency.LatencySettings(conv_impl="")
    latency_cache: str = ""  # '' = RUN_DIR/latency_cache.json


def check_options(options: SearchOptions) -> None:
    """Raises ValueError naming a bad option."""
    evolution_lib.check_evolution(options.evolution)
    if options.arch_batch < 1 or options.eval_batch_size < 0:
        raise ValueError(f"arch_batch={options.arch_batch} must be >= 1 and "
                         f"eval_batch_size={options.eval_batch_size} >= 0")
    latency.check_settings(options.timing)


def parse_budgets(budget_texts: list) -> list[Budget]:
    """Parses every budget; ValueError when there is none, one is bad, or two are the same text."""
    if not budget_texts:
        raise ValueError(f"no budget given; pass --budget KEY=VALUE with keys {', '.join(BUDGET_KEYS)}")
    budgets = [parse_budget(text) for text in budget_texts]
    if len({b.text for b in budgets}) < len(budgets):
        raise ValueError(f"budgets {list(budget_texts)} repeat one another")
    return budgets


def make_run_metric_fns(loaded: run_dir.TrainedRun, budgets: list, options: SearchOptions) -> dict:
    """MACs and params, plus latency measured on this machine when some budget limits it."""
    if not any(key == "latency_ms" for b in budgets for key, _ in b.limits):
        return make_metric_fns(loaded.family)
    settings = options.timing._replace(conv_impl=options.timing.conv_impl
                                       or loaded.config["model"]["conv_impl"])
    path = options.latency_cache or os.path.join(loaded.workdir, latency.CACHE_FILE)
    return make_metric_fns(loaded.family, latency.make_latency_fn(loaded.family, loaded.params, settings,
                                                                  path))


def smallest_metrics(family: family_lib.Family, metric_fns: dict) -> dict:
    """Every metric of the family's smallest arch, and its JSON text under 'arch'."""
    smallest = family.smallest()
    genes = family_lib.to_genes(family, smallest)[None]
    values = {key: fn(genes)[0] for key, fn in metric_fns.items()}
    values["arch"] = json.dumps(family.arch_to_json(smallest))
    return values


def search_loaded(loaded: run_dir.TrainedRun, budgets: list, options: SearchOptions = SearchOptions(),
                  log=sys.stderr) -> dict:
    """Searches a loaded run under every budget; returns the search.json content.

    Raises:
      ValueError: the run has no validation split, or a budget no arch meets.
    """
    if loaded.val_set is None:
        raise ValueError(f"{loaded.workdir}: the run has no validation split (data.val_fraction=0); the "
                         "search selects subnets on held-out data, so train with data.val_fraction > 0")
    family, evaluate = loaded.family, loaded.run.evaluate
    try:
        metric = metric_lib.config_metric(loaded.config, family.metrics)
    except ValueError as error:
        raise ValueError(f"{loaded.workdir}: config.json {error}") from None
    metric_fns = make_run_metric_fns(loaded, budgets, options)
    least = smallest_metrics(family, metric_fns)
    for budget in budgets:
        check_reachable(budget, least)
    val_fn = make_accuracy_fn(family, evaluate, loaded.params, loaded.val_set, options.arch_batch, metric)
    test_fn = None if loaded.test_set is None else make_accuracy_fn(
        family, evaluate, loaded.params, loaded.test_set, options.arch_batch, metric)
    if metric.higher_is_better:
        fitness_fn = val_fn
    else:  # the evolution maximises: the negative of a lower-is-better metric
        fitness_fn = lambda genes: np.asarray([metric.score(v) for v in val_fn(genes)], np.float64)  # noqa: E731
    results = []
    for budget in budgets:
        start = time.perf_counter()
        evolution = evolution_lib.evolve(family, options.evolution, rng_for(options.seed, budget),
                                         make_feasible_fn(budget, metric_fns), fitness_fn)
        results.append(budget_report(family, budget, evolution, metric_fns, test_fn, metric))
        print(f"{budget.text}: {len(evolution.genes)} distinct archs evaluated in "
              f"{time.perf_counter() - start:.1f} s", file=log, flush=True)
    # The round and the digest of the searched checkpoint: export and the report refuse this file once
    # the run's newest checkpoint is another (reports/search_front.py `check_current`).
    return {"workdir": loaded.workdir, "checkpoint_round": loaded.round,
            search_front.CHECKPOINT_DIGEST_KEY: loaded.digest, "seed": options.seed,
            **({} if metric.name == metric_lib.ACCURACY.name else {"metric": metric.name}),  # accuracy: as before
            "evolution": options.evolution._asdict(),
            "val_examples": int(loaded.val_set.weights.sum()),
            "test_examples": 0 if loaded.test_set is None else int(loaded.test_set.weights.sum()),
            "results": results}


def search_run(workdir: str, budget_texts: list, options: SearchOptions = SearchOptions(),
               log=sys.stderr) -> dict:
    """Loads the trained run in `workdir` and searches it under every budget (see `search_loaded`).

    Raises:
      ValueError: bad budgets or options (checked before the run is loaded), or a budget no arch meets.
      FileNotFoundError: `workdir` has no config.json or no checkpoint.
    """
    budgets = parse_budgets(budget_texts)
    check_options(options)
    return search_loaded(run_dir.load_trained_run(workdir, options.eval_batch_size), budgets, options, log)


# ----------------------------------------------------------------------------------------------------
# Command line.


def options_from_flags(values) -> SearchOptions:
    """SearchOptions from the parsed flags."""
    evolution = evolution_lib.EvolutionSettings(values.population, values.generations, values.parent_ratio,
                                  values.mutation_ratio, values.mutate_prob, values.max_tries)
    timing = latency.LatencySettings(values.latency_batch, values.latency_warmup, values.latency_repeats,
                                     values.latency_conv_impl)
    return SearchOptions(evolution, values.seed, values.arch_batch, values.eval_batch_size, timing,
                         values.latency_cache)


def main(argv) -> None:
    """Runs the search of the flags' run, writes search.json and prints the table (--json: one JSON object
    of the best arch per budget, exact, with absolute paths)."""
    del argv
    _compilation_cache.enable()  # before anything compiles; the default: no config here names another
    values = flags.FLAGS
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint read at INFO
    with _cli.user_errors():  # a bad run directory, arch or file: one message, exit status 2
        report = search_run(values.workdir, values.budget, options_from_flags(values))
    out = values.out or os.path.join(values.workdir, SEARCH_FILE)
    with _cli.user_errors():  # e.g. --out in a read-only directory: the message names the path
        with open(out, "w") as f:
            json.dump(report, f, indent=2)
    redrawn = None  # (report.md written or None, why not)
    if os.path.abspath(out) == os.path.abspath(os.path.join(values.workdir, SEARCH_FILE)):
        redrawn = redraw_report(values.workdir)
    if values.json:
        print(_readable.json_line(summary_record(report, out, redrawn)))
        return
    print(summary_table(report["results"], search_front.search_metric(report)))
    print(f"wrote {_readable.path(out)}")
    if redrawn is not None:
        print(redrawn_text(values.workdir, *redrawn))


def summary_record(report: dict, out: str, redrawn: Optional[tuple] = None) -> dict:
    """What `--json` prints: search.json's absolute path, the report it redrew (absolute; None when none
    was, with `report_error` saying why, if it failed), and per budget the best arch as search.json has
    it (every figure exact), the size of its front and the archs evaluated."""
    record = {"out": os.path.abspath(out), "report": None}
    if redrawn is not None:
        written, error = redrawn
        record["report"] = None if written is None else os.path.abspath(written)
        if error is not None:
            record["report_error"] = error
    record["results"] = [{"budget": result["budget"], "best": result["best"],
                          "front_size": len(result["front"]), "archs_evaluated": result["archs_evaluated"]}
                         for result in report["results"]]
    return record


def redraw_report(workdir: str) -> tuple[Optional[str], Optional[str]]:
    """Rewrites the run's report.md, which then draws its new search.json (search.png): (the report's path,
    None), or (None, why not) when it cannot be written (a missing file, no matplotlib); search.json stays
    as it is either way."""
    try:
        return run_report.write_run_report(workdir)["report"], None
    except (ValueError, OSError, ImportError) as error:
        return None, str(error)


def redrawn_text(workdir: str, written: Optional[str], error: Optional[str]) -> str:
    """The line saying what `redraw_report` did (paths relative to the current directory when under it)."""
    if written is None:
        return (f"report.md not redrawn ({error}); superfed-report {_readable.path(workdir)} draws the "
                "search front once that is fixed")
    return f"report: {_readable.path(written)} now draws the search front (search.png, search.svg)"


def refresh_report(workdir: str) -> str:
    """Rewrites the run's report.md, which then draws its new search.json (search.png, `redraw_report`);
    says what it did in one line (`redrawn_text`)."""
    return redrawn_text(workdir, *redraw_report(workdir))


def _define_flags() -> None:
    # Only when run as a program, so that importing this module defines no flags (see cost.py).
    d = evolution_lib.EvolutionSettings()
    flags.DEFINE_string("workdir", None, "A trained run directory (config.json and checkpoints/).")
    flags.DEFINE_multi_string("budget", [], "KEY=VALUE[,KEY=VALUE]; keys: " + ", ".join(BUDGET_KEYS)
                              + ". Repeat the flag for several searches, e.g. --budget macs=0.8e9.")
    flags.DEFINE_string("out", "", "Output JSON (default: RUN_DIR/search.json).")
    flags.DEFINE_integer("seed", 0, "Seed of the search (with the budget text).")
    flags.DEFINE_integer("population", d.population, "Archs per population.")
    flags.DEFINE_integer("generations", d.generations, "Populations bred after the first.")
    flags.DEFINE_float("parent_ratio", d.parent_ratio, "Share of a population kept as parents.")
    flags.DEFINE_float("mutation_ratio", d.mutation_ratio, "Share of a new population made by mutation.")
    flags.DEFINE_float("mutate_prob", d.mutate_prob, "Per-gene resample probability of a mutation.")
    flags.DEFINE_integer("max_tries", d.max_tries, "Draws of an over-budget child before it copies a parent.")
    flags.DEFINE_integer("arch_batch", 25, "Archs evaluated together (vmap).")
    flags.DEFINE_integer("eval_batch_size", 0, "Images per evaluation step (0: the run's).")
    flags.DEFINE_integer("latency_batch", 1, "Images per timed forward call.")
    flags.DEFINE_integer("latency_warmup", 3, "Untimed calls after compiling.")
    flags.DEFINE_integer("latency_repeats", 20, "Timed calls (median).")
    flags.DEFINE_string("latency_conv_impl", "", "Convolution of the timed subnet (default: the run's).")
    flags.DEFINE_string("latency_cache", "", "Latency cache file (default: RUN_DIR/latency_cache.json).")
    _cli.define_json_flag()
    flags.mark_flag_as_required("workdir")


ABOUT = ("superfed-search: evolutionary search of a trained run's subnets under MACs, params or latency "
         "budgets; writes search.json, redraws the run's report with the search front and prints the best "
         "arch per budget (MACs in millions, the metric to 4 decimals).\n\n"
         "usage: superfed-search --workdir=RUN_DIR --budget=KEY=VALUE[,KEY=VALUE] [--budget=...] "
         "[--out=FILE] [--seed=N] [--json] [evolution and latency flags below]")


def console() -> None:
    """The `superfed-search` command: the same as `python -m superfed_jax.posttrain.search`."""
    _console.quiet_backend_probe()
    _cli.run(main, _define_flags, about=ABOUT)


if __name__ == "__main__":
    console()
