"""The paper's claim over several seeds: weight-shared runs against FedAvg of each arch alone, any config.

    python benchmarks/claim.py --config=CONFIG [--seeds=0,1,2,3,4] [--archs=smallest,small,medium,largest]
                               [--out=DIR] [--smoke] [--config.x=...]

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879, claim that one weight-shared
supernet gives every subnet an accuracy at least that of training it alone with FedAvg, for a fraction of
the compute and communication (docs/algorithm.md 8 and 10). For every seed S this script trains, through the
real entry point (`launch.py`, one subprocess per run, the same config and overrides for all, plus
`--config.seed=S`):

* the weight-shared run of CONFIG into OUT/seed_S/superfed, and
* FedAvg of every arch of --archs (`CONFIG:fedavg=ARCH`: same rounds, clients per round, data split and
  client training; only that arch in every client) into OUT/seed_S/fedavg_ARCH.

Runs of one seed share the data split and the clients of every round, so the per-seed difference
weight-shared minus FedAvg is paired; `superfed_jax.reports.claim` gives its mean, std, 95% Student-t
interval and the verdict the interval implies. Before anything trains, every run still to train is
checked by a dry run of launch.py (a bad arch name or override is one `error:` line, not a failure hours
in), and --out must be a directory. A run whose work directory is complete (config.json of this seed,
metrics.jsonl up to its last round, cost.json and report.md) is skipped without a subprocess; an incomplete
one is started again and resumes from its last checkpoint (or, killed before its first one, starts over by
itself). Writes:

* OUT/seed_S/report.md and its figures: the combined report of that seed (`reports.compare`);
* OUT/report.md and its figures: the combined report of all seeds (mean +- std tables, accuracy curves with
  min-max bands over seeds);
* OUT/claim.json: every per-seed number, the summary per arch, the cost over seeds, each run's wall time
  (kept in OUT/seed_S/wall_seconds.json, so a run skipped later keeps its time), the environment (versions,
  CPU, commit); paths in it are relative to OUT;
* OUT/claim.md: the table (per arch MMACs, params, both sides' mean +- std, the paired difference with its
  interval, the verdict), the per-seed numbers and the cost ratios.

The runs are compared in their headline metric (`eval.metric`: accuracy by default, perplexity for a language
model; `superfed_jax.federated.metric`): for a lower-is-better metric the tables show it as it is (not in
%), and the verdict reads the interval in its direction (`reports.claim.verdict`: at or below 0 -> "ahead").
claim.json then records ``"metric"`` and names its keys after it (``shared_test_perplexity`` ...).

CONFIG is any config file (`configs/digits.py`, `configs/cifar10.py` with its data present, or any `.npz`
via `--config.data.name=npz --config.data.path=FILE`), optionally with its own `:variant`. `--smoke` adds
the `:smoke` variant (seconds per run, to try the pipeline, not to measure the claim).
"""
import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from superfed_jax.federated import metric as metric_lib  # noqa: E402
from superfed_jax.reports import claim as claim_lib  # noqa: E402
from superfed_jax.reports import compare as report_compare  # noqa: E402
from superfed_jax.reports import format as report_format  # noqa: E402
from superfed_jax.reports.format import arch_text, si  # noqa: E402
from superfed_jax.reports import run_record  # noqa: E402
from superfed_jax.reports.run_record import is_fedavg_baseline  # noqa: E402
from superfed_jax.run import provenance  # noqa: E402

WALL_FILE = "wall_seconds.json"  # OUT/seed_S/: each run's training wall time, kept across invocations


# --------------------------------------------------------------------------------------- the runs


def split_config(config: str) -> tuple[str, list[str]]:
    """('FILE.py', [its variants]) of a --config value 'FILE.py[:variant,...]'."""
    match = re.match(r"^(.*?\.py)(?::(.*))?$", config)
    if not match:
        raise ValueError(f"--config={config!r}: expected a config file path ending in .py, optionally with "
                         "':variant' (e.g. configs/digits.py or configs/digits.py:smoke)")
    return match.group(1), [match.group(2)] if match.group(2) else []


def config_arg(config_file: str, variants: list[str], smoke: bool, fedavg_arch: str) -> str:
    """The --config value of one run: the file, its variants, smoke and fedavg=ARCH comma-joined."""
    parts = list(variants) + (["smoke"] if smoke and "smoke" not in variants else [])
    parts += [f"fedavg={fedavg_arch}"] if fedavg_arch else []
    return config_file + (":" + ",".join(parts) if parts else "")


def last_override(overrides: list[str], name: str):
    """The value of the last `--config.NAME=value` in ``overrides``, or None."""
    values = [a.split("=", 1)[1] for a in overrides if a.startswith(f"--config.{name}=")]
    return values[-1] if values else None


def completion(workdir: str, seed: int, fedavg: bool, rounds_override) -> tuple[bool, str]:
    """(whether ``workdir`` holds a finished run of this seed, why not / what it holds).

    Complete: config.json of seed ``seed`` and of the expected kind (FedAvg or weight-shared), metrics.jsonl
    whose last record is round fl.rounds (and that equals an ``--config.fl.rounds`` override, if any),
    cost.json and report.md (train.py writes these last). A run of another seed or kind in the directory
    is an error (ValueError), not something to resume over.
    """
    config_path = os.path.join(workdir, "config.json")
    if not os.path.isfile(config_path):
        return False, "not started"
    config = run_record.read_json(config_path)  # a damaged file is named, with what to do
    if config.get("seed") != seed:
        raise ValueError(f"{workdir}: config.json has seed {config.get('seed')!r}, this run is seed {seed}; "
                         "use another --out or remove the directory")
    if is_fedavg_baseline(config) != fedavg:
        kind = "FedAvg of one arch" if fedavg else "weight-shared"
        raise ValueError(f"{workdir}: config.json is not a {kind} run; use another --out or remove it")
    rounds = config.get("fl", {}).get("rounds")
    if rounds_override is not None and str(rounds) != str(rounds_override).strip():
        return False, f"config.json has fl.rounds={rounds}, asked for {rounds_override}"
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    # train.py creates metrics.jsonl empty when it starts: a run stopped before its first evaluation has nothing
    # in it yet and is resumed like any other incomplete run (read_metrics rejects a file with no records).
    records = run_record.read_metrics(metrics_path) if _has_text(metrics_path) else []
    if not records:
        return False, f"not evaluated yet (0 of {rounds} rounds)"
    last = records[-1].get("round")
    if last != rounds:
        return False, f"evaluated up to round {last} of {rounds}"
    missing = [name for name in ("cost.json", "report.md") if not os.path.isfile(os.path.join(workdir, name))]
    if missing:
        return False, f"all {rounds} rounds done, no {' or '.join(missing)}"
    return True, f"complete: {rounds} of {rounds} rounds, report.md present"


def train(config: str, workdir: str, seed: int, overrides: list[str]) -> float:
    """Runs `launch.py --config=CONFIG --workdir=WORKDIR --config.seed=SEED OVERRIDES`; its wall seconds."""
    command = [sys.executable, os.path.join(ROOT, "launch.py"), f"--config={config}", f"--workdir={workdir}",
               f"--config.seed={seed}", *overrides]
    print("$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed with exit status {result.returncode}")
    return time.perf_counter() - start


def dry_run_problem(config: str, seed: int, overrides: list[str]):
    """What launch.py says is wrong with one run (its config, arch name or overrides), or None.

    A dry run (`--config.dry_run=True`: the config checked, the cost replayed, no data read, seconds) into
    a temporary directory, through the same entry point and arguments as the run itself, so it refuses
    exactly what the run would refuse.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="claim_check_") as workdir:
        command = [sys.executable, os.path.join(ROOT, "launch.py"), f"--config={config}",
                   f"--workdir={workdir}", f"--config.seed={seed}", *overrides, "--config.dry_run=True"]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode == 0:
        return None
    # Its first error line: the others name the same mistake in the fields a variant derives from it.
    errors = [line[len("error: "):] for line in result.stderr.splitlines() if line.startswith("error: ")]
    return errors[0] if errors else f"launch.py exited with status {result.returncode}"


def check_runs_to_train(args, overrides) -> None:
    """Before anything trains: every run still to train (each arch once) must pass launch.py's checks.

    Otherwise a bad arch name (`--archs=huge`) would stop claim.py only after the runs before it had
    trained (hours for a real config). Complete runs are not checked again (`completion`).
    """
    rounds_override = last_override(overrides, "fl.rounds")
    checked = set()
    for seed in args.seeds:
        for name in run_names(args.archs):
            arch = name[len("fedavg_"):] if name != "superfed" else ""
            done, _ = completion(os.path.join(args.out, f"seed_{seed}", name), seed, bool(arch),
                                 rounds_override)
            if done or arch in checked:
                continue
            checked.add(arch)
            config = config_arg(args.config_file, args.variants, args.smoke, arch)
            problem = dry_run_problem(config, seed, overrides)
            if problem:
                raise ValueError(f"run {name} (--config={config}) cannot start: {problem}; nothing was "
                                 "trained")


def run_names(archs: list[str]) -> list[str]:
    """The work directory names of one seed's runs: the weight-shared one, then FedAvg of each arch."""
    return ["superfed"] + [f"fedavg_{a}" for a in archs]


# ---------------------------------------------------------------------------------- environment


def environment() -> dict:
    """Where the claim was measured: the run provenance's CPU, versions and commit (`run.provenance`),
    flattened for claim.json and the table's machine line."""
    cpu = provenance.cpu_info()
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": {"model": cpu["model"] or platform.machine(), "simd_flags": cpu["simd_flags"],
                    "cores": cpu["logical_cpus"], "machine": platform.machine()},
            "versions": provenance.package_versions(),
            "git": {k: v for k, v in provenance.git_state(ROOT).items() if k != "source"},  # no local path
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


# ----------------------------------------------------------------------------------- the outputs


def strict(value):
    """``value`` with NaN as None, so claim.json stays strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def points(value, sign: bool = False, metric: metric_lib.Metric = metric_lib.ACCURACY) -> str:
    """An accuracy fraction or difference as percentage points ('n/a' for None/NaN); another metric's value
    as it is."""
    if value is None or math.isnan(value):
        return "n/a"
    return metric.difference_text(value) if sign else metric.text(value)


def mean_std_text(side: dict, metric: metric_lib.Metric = metric_lib.ACCURACY) -> str:
    if side["std"] is None:
        return points(side["mean"], metric=metric)
    return f"{points(side['mean'], metric=metric)} +- {points(side['std'], metric=metric)}"


def interval_text(difference: dict, metric: metric_lib.Metric = metric_lib.ACCURACY) -> str:
    if difference["mean"] is None:
        return "n/a"
    if difference["low"] is None:
        return f"{points(difference['mean'], True, metric)} (one seed, no interval)"
    return (f"{points(difference['mean'], True, metric)} [{points(difference['low'], True, metric)}, "
            f"{points(difference['high'], True, metric)}]")


def verdict_sentence(metric: metric_lib.Metric) -> str:
    """The verdict rule as claim.md states it."""
    if metric.higher_is_better:
        return (f"Verdict: interval lower bound >= 0 -> \"{claim_lib.AT_LEAST}\", upper bound < 0 -> "
                f"\"{claim_lib.BEHIND}\", otherwise \"{claim_lib.ON_A_PAR}\".")
    return (f"Lower {metric.name} is better. Verdict: interval upper bound <= 0 -> \"{claim_lib.AHEAD}\", "
            f"lower bound > 0 -> \"{claim_lib.BEHIND}\", otherwise \"{claim_lib.ON_A_PAR}\".")


def claim_markdown(result: dict) -> str:
    """The claim table, the per-seed numbers and the cost over seeds as Markdown."""
    seeds, summary, cost = result["seeds"], result["summary"], result["cost"]
    env = result["environment"]
    metric = metric_lib.metric_named(result.get("metric", "accuracy"))
    key, column = f"test_{metric.name}", f"test {metric.short}{metric.unit}"
    lines = [f"# The claim over {len(seeds)} seed{'s' if len(seeds) != 1 else ''}: `{result['config']}`", "",
             f"Seeds {', '.join(map(str, seeds))}; overrides: {' '.join(result['overrides']) or 'none'}. "
             f"Test {metric.name} of each run at its best validation round (`reports.compare`). Mean +- sample "
             f"std over seeds; the difference is weight-shared minus FedAvg of the same seed (same data split "
             f"and clients), with its 95% Student-t interval. {verdict_sentence(metric)}", "",
             f"Machine: {env['cpu']['model']} ({env['cpu']['cores']} cores; SIMD "
             f"{', '.join(env['cpu']['simd_flags']) or 'unknown'}), Python {env['python']}, "
             + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
             + f"; commit {env['git']['commit']}{' (dirty tree)' if env['git']['dirty'] else ''}; "
             f"{env['date']}.", "",
             f"| arch | d / e | MMACs | params | weight-shared {column} | FedAvg {column} "
             f"| difference ({metric.difference_unit}), mean [95% CI] | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for row in summary:
        lines.append(f"| {row['name']} | `{arch_text(row['arch'])}` | {row['macs'] / 1e6:.4g} | {row['params']:,} "
                     f"| {mean_std_text(row['shared'], metric)} | {mean_std_text(row['fedavg'], metric)} "
                     f"| {interval_text(row['difference'], metric)} | {row['verdict']} |")
    lines += ["", f"Per seed, test {metric.name}{metric.unit} weight-shared / FedAvg:", "",
              "| arch | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---" * (len(seeds) + 1) + "|"]
    for row in summary:
        cells = [f"{points(a, metric=metric)} / {points(b, metric=metric)}"
                 for a, b in zip(row[f"shared_{key}"], row[f"fedavg_{key}"])]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    labels = report_format.cost_labels(result.get("cost_unit", "image"))
    runs = cost["fedavg_runs_per_seed"]
    lines += ["", f"Cost, measured from each run's own cost.json, summed over the {len(seeds)} seeds "
              f"(FedAvg: {runs[0] if len(set(runs)) == 1 else runs} runs per seed):", "",
              "| | weight-shared runs | FedAvg runs | FedAvg / weight-shared | per seed |", "|---|---|---|---|---|"]
    for field, (label, unit) in labels.items():
        if field not in cost["weight_shared"]:
            continue
        ratio = f"{cost['ratios'][field]:.2f}x" if "ratios" in cost else "n/a"
        per_seed = (", ".join(f"{r:.2f}x" for r in cost["per_seed_ratios"][field])
                    if "per_seed_ratios" in cost else "n/a")
        lines.append(f"| {label} | {si(cost['weight_shared'][field], unit)} | {si(cost['fedavg'][field], unit)} "
                     f"| {ratio} | {per_seed} |")
    lines += ["", "Wall seconds per run (None: skipped with no recorded time):", ""]
    for seed in seeds:
        walls = result["per_seed"][str(seed)]["wall_seconds"]
        lines.append(f"- seed {seed}: " + ", ".join(f"{name} {value}" for name, value in walls.items()))
    if any(result["per_seed"][str(s)]["warnings"] for s in seeds):
        lines += ["", "## Warnings: settings differ", ""]
        lines += [f"- seed {s}: {w}" for s in seeds for w in result["per_seed"][str(s)]["warnings"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------- main


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one `error: ...` line and exit status 2, as every command of the package
    (argparse's own prints its usage first)."""

    def error(self, message):
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)


def unknown_arguments_message(unknown: list[str]) -> str:
    """What claim.py says of arguments it does not take: a stray positional one, or a flag of its own
    it does not know (only --config.x=value overrides are passed on to the runs)."""
    positional = [a for a in unknown if not a.startswith("-")]
    if positional:
        return (f"unexpected argument{'s' if len(positional) > 1 else ''} "
                f"{' '.join(repr(a) for a in positional)}: claim.py takes only flags (a config file is "
                "--config=PATH); nothing was run")
    return f"unknown arguments {unknown}; only --config.x=value overrides are passed on; nothing was run"


def out_problem(out: str):
    """Why --out cannot hold the runs and reports (it names a file, or lies under one), or None."""
    path = out
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        path = parent if parent != path else ""
    if path and not os.path.isdir(path):
        where = "is" if path == out else f"lies under {path!r}, which is"
        return (f"--out={out!r} {where} a file; --out must be a directory (it holds one work directory per "
                "run and the reports); nothing was run")
    return None


def parse_args(argv):
    parser = _Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=os.path.join("configs", "digits.py"),
                        help="config file, optionally with ':variant' (default configs/digits.py)")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (default 0,1,2,3,4)")
    parser.add_argument("--archs", default="smallest,small,medium,largest",
                        help="tracked arch names to train alone with FedAvg, comma-separated")
    parser.add_argument("--out", default=None, help="directory for the runs and the reports "
                        "(default workdirs/claim_<config name>)")
    parser.add_argument("--smoke", action="store_true",
                        help="train every run with the :smoke config variant (a first try: 2 rounds, tiny space)")
    args, overrides = parser.parse_known_args(argv)
    unknown = [a for a in overrides if not a.startswith("--config.")]
    if unknown:
        parser.error(unknown_arguments_message(unknown))
    if any(a.startswith("--config.seed=") for a in overrides):
        parser.error("--config.seed: the seeds come from --seeds")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds={args.seeds!r}: allowed: comma-separated integers, e.g. 0,1,2,3,4")
    if not args.seeds or len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds: {args.seeds}: give at least one seed, each once")
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    try:
        args.config_file, args.variants = split_config(args.config)
    except ValueError as error:
        parser.error(str(error))
    if args.out is None:
        name = os.path.splitext(os.path.basename(args.config_file))[0]
        args.out = os.path.join("workdirs", f"claim_{name}" + ("_smoke" if args.smoke else ""))
    # The runs start in the repository root: paths given relative to the caller's directory are made
    # absolute (a config file inside the repository is named relative to it, as claim.json records it).
    args.out = os.path.abspath(args.out)
    problem = out_problem(args.out)
    if problem:
        parser.error(problem)
    if os.path.isfile(args.config_file):
        path = os.path.abspath(args.config_file)
        inside = os.path.commonpath([path, ROOT]) == ROOT
        args.config_file = os.path.relpath(path, ROOT) if inside else path
    return args, overrides


def read_walls(path: str) -> dict:
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return {}


def _has_text(path: str) -> bool:
    """Whether ``path`` is a file with something other than whitespace in it."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return bool(f.read().strip())


def run_seed(args, overrides, seed: int, index: int) -> dict:
    """Trains (or skips) the runs of one seed; writes its combined report; returns its claim.json entry."""
    seed_dir = os.path.join(args.out, f"seed_{seed}")
    os.makedirs(seed_dir, exist_ok=True)
    names = run_names(args.archs)
    wall_path = os.path.join(seed_dir, WALL_FILE)
    walls, skipped = read_walls(wall_path), []
    rounds_override = last_override(overrides, "fl.rounds")
    for number, name in enumerate(names, 1):
        workdir = os.path.join(seed_dir, name)
        arch = name[len("fedavg_"):] if name != "superfed" else ""
        tag = f"[seed {seed} ({index}/{len(args.seeds)}), run {number}/{len(names)}: {name}]"
        done, why = completion(workdir, seed, bool(arch), rounds_override)
        if done:
            print(f"{tag} skipped, {workdir} is {why}", flush=True)
            skipped.append(name)
            continue
        print(f"{tag} training ({why})", flush=True)
        walls[name] = round(train(config_arg(args.config_file, args.variants, args.smoke, arch), workdir, seed,
                                  overrides), 1)
        with open(wall_path, "w") as f:
            json.dump(walls, f, indent=2)
        print(f"{tag} done in {walls[name]:.1f} s", flush=True)
    combined = report_compare.write_combined_report([os.path.join(seed_dir, n) for n in names], seed_dir)
    key = f"test_{combined['metric'].name}"
    keys = ("name", "arch", "macs", "params", f"shared_{key}", "shared_round", f"fedavg_{key}",
            "fedavg_round", "difference")
    return {"rows": [{k: row[k] for k in keys} for row in combined["rows"]], "cost": combined["cost"],
            "warnings": combined["warnings"], "wall_seconds": {n: walls.get(n) for n in names},
            "skipped": skipped, "report": os.path.relpath(combined["report"], args.out)}  # relative: OUT moves


def main(argv=None) -> int:
    """Trains the runs of every seed, writes the per-seed reports, claim.json and claim.md."""
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        check_runs_to_train(args, overrides)  # a run that cannot start stops everything before training
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    per_seed = {}
    for index, seed in enumerate(args.seeds, 1):
        per_seed[seed] = run_seed(args, overrides, seed, index)
    # All seeds in one combined report: mean +- std tables and accuracy curves with min-max seed bands.
    all_runs = [os.path.join(args.out, f"seed_{seed}", name) for seed in args.seeds
                for name in run_names(args.archs)]
    combined = report_compare.write_combined_report(all_runs, args.out)
    metric = combined["metric"]  # every run's: the combined report refuses runs of different metrics
    unit = combined["cost_unit"]
    summary = claim_lib.summarize({s: e["rows"] for s, e in per_seed.items()}, metric=metric)
    cost = claim_lib.cost_over_seeds({s: e["cost"] for s, e in per_seed.items()})
    result = {"config": config_arg(args.config_file, args.variants, args.smoke, ""), "seeds": args.seeds,
              "archs": args.archs, "overrides": overrides, "confidence": 0.95,
              **({} if metric == metric_lib.ACCURACY else {"metric": metric.name}),  # accuracy: as before
              **({} if unit == "image" else {"cost_unit": unit}),  # MACs per token of a language model
              "verdict_rule": claim_lib.verdict_rule(metric),
              "summary": summary, "cost": cost, "per_seed": {str(s): e for s, e in per_seed.items()},
              "report": os.path.relpath(combined["report"], args.out),
              "environment": environment(), "invocation_seconds": round(time.perf_counter() - start, 1)}
    result = strict(result)
    json_path, md_path = os.path.join(args.out, "claim.json"), os.path.join(args.out, "claim.md")
    with open(json_path, "w") as f:
        json.dump(result, f, indent=2)
    text = claim_markdown(result)
    with open(md_path, "w") as f:
        f.write(text)
    print(text)
    print(f"wrote {json_path}, {md_path}, the all-seed report {combined['report']} and the per-seed reports "
          + ", ".join(os.path.join(args.out, e["report"]) for e in per_seed.values()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
