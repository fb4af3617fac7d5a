"""Training options against the paper's rules, on the digits claim's setting, over several seeds.

    python benchmarks/options.py [--seeds=0,1,2,3,4] [--settings=iid,alpha0.1]
                                 [--options=none,fedavgm,adam,...] [--out=DIR] [--smoke]

`none` is the paper's method as configured (`configs/digits.py`); every other option (OPTIONS: the server
optimisers FedAvgM and FedAdam, more clients training the smallest subnet, other beta schedules) changes
a few config fields. For every setting, option and seed this trains `configs/digits.py` (150 rounds, 8 of 20 clients, tracking
sandwich) through the real entry point, one subprocess per run, into OUT/SETTING/OPTION/seed_S, and then
compares each option with `none` per tracked arch: the test accuracy at each run's best validation round
(`reports.run_record.select_best`), mean +- std over seeds, and the paired per-seed difference option minus
none with its 95% Student-t interval (`reports.claim`). Runs of one seed share the data split, the clients
of every round and their archs (the assignment does not depend on the server's step), so the pairs differ
only in the server's rule. A run whose metrics.jsonl already reaches its last round and that has its
report.md is not trained again.

It also measures each option's cost per round: the median of the per-round seconds in rounds.jsonl over
all of its runs (rounds 2 on; these move with whatever else the machine runs), and, with --time_rounds=N,
in short runs of N rounds per option, interleaved (none, fedavgm, adam, none, ...) --time_repeats times,
meant to be run on an otherwise idle machine; and the peak device bytes of the compiled round from XLA's
memory analysis (`run.memory.compiled_peak_bytes`).

Writes OUT/options.json (every number) and prints the tables; benchmarks/server_optimizers.md and
docs/accuracy.md hold committed results.
"""
import argparse
import ast
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from superfed_jax.reports import claim as claim_lib  # noqa: E402
from superfed_jax.reports import run_record  # noqa: E402

CONFIG = "configs/digits.py"
# Each option's overrides. FedAvgM: Hsu et al. (2019) find the effective step lr / (1 - momentum) near 1
# best, so lr 0.1 with momentum 0.9; FedAdam: Reddi et al.'s (2021) tau = 1e-3 with server lr 1e-2, the
# middle of their best CIFAR-10 and EMNIST rates. Neither is tuned here.
OPTIONS = {
    "none": [],
    "fedavgm": ["--config.server.optimizer=sgd", "--config.server.learning_rate=0.1",
                "--config.server.momentum=0.9"],
    "adam": ["--config.server.optimizer=adam", "--config.server.learning_rate=0.01",
             "--config.server.eps=0.001"],
    # Levers for the smallest subnet (docs/accuracy.md): more clients train it as itself each round...
    "smallest2": ["--config.fl.smallest_clients=2"],
    "smallest3": ["--config.fl.smallest_clients=3"],
    # ... or no MaxNet weighting (every client weighs the same from round 0).
    "uniform": ["--config.fl.beta_schedule=uniform"],
}
# ... and both at once: FedAdam with three clients training the smallest subnet.
OPTIONS["adam_smallest3"] = OPTIONS["adam"] + OPTIONS["smallest3"]
# FedAdam without the MaxNet weighting, and the three together: at data.alpha=0.1 (one or two classes per
# client) the weighting puts 90% of the first rounds' aggregate on one client's data (docs/accuracy.md).
OPTIONS["adam_uniform"] = OPTIONS["adam"] + OPTIONS["uniform"]
OPTIONS["adam_uniform_smallest3"] = OPTIONS["adam"] + OPTIONS["uniform"] + OPTIONS["smallest3"]
SETTINGS = {"iid": [], "alpha0.1": ["--config.data.alpha=0.1"]}


def run_dir(out: str, setting: str, option: str, seed: int) -> str:
    return os.path.join(out, setting, option, f"seed_{seed}")


def complete(workdir: str) -> bool:
    """Whether a run finished: report.md written and metrics.jsonl at the config's last round."""
    if not os.path.isfile(os.path.join(workdir, "report.md")):
        return False
    try:
        run = run_record.read_run(workdir)
    except (OSError, ValueError):
        return False
    return bool(run.records) and run.records[-1]["round"] == run.config["fl"]["rounds"]


def train(workdir: str, seed: int, overrides: list, smoke: bool) -> float:
    """One run through launch.py; its wall seconds. Raises on failure, naming the command."""
    config = CONFIG + (":smoke" if smoke else "")
    command = [sys.executable, os.path.join(ROOT, "launch.py"), f"--config={config}", f"--config.seed={seed}",
               *overrides, f"--workdir={workdir}"]
    start = time.time()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return time.time() - start


def test_accuracies(workdir: str) -> dict:
    """Tracked arch name -> test accuracy at the run's best validation round."""
    run = run_record.read_run(workdir)
    names = list(run.tracked)
    best = run_record.select_best(run.records, names, run.metric)
    return {name: best[f"{name}/test_accuracy"] for name in names}


def round_seconds(workdir: str) -> list:
    with open(os.path.join(workdir, "rounds.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [row["seconds"] for row in rows if row["round"] > 1]


def compiled_round_bytes(overrides: list, smoke: bool) -> int:
    """Peak bytes of the compiled round of the config with `overrides` (XLA's memory analysis)."""
    from superfed_jax.run import build, memory
    run = build.build(config_with(overrides, smoke))
    return memory.compiled_peak_bytes(run.round_fn.lower(run.state, run.data).compile())


def config_with(overrides: list, smoke: bool):
    """configs/digits.py (:smoke) with `--config.a.b=v` overrides applied (values read as Python literals)."""
    from superfed_jax.configs import digits
    config = digits.get_config("smoke" if smoke else "")
    for override in overrides:
        name, _, value = override[len("--config."):].partition("=")
        section, key = name.split(".")
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass  # a string such as 'adam'
        config[section][key] = value
    return config


def interleaved_round_seconds(args, options: list) -> dict:
    """Per option, the per-round seconds of `args.time_repeats` runs of `args.time_rounds` rounds each, run
    in turn (one of each option, then again), seed 0, the IID setting; their median and all values."""
    values = {option: [] for option in options}
    for repeat in range(args.time_repeats):
        for option in options:
            workdir = os.path.join(args.out, "timing", option, f"repeat_{repeat}")
            if not complete(workdir):
                train(workdir, 0, OPTIONS[option] + [f"--config.fl.rounds={args.time_rounds}",
                                                     f"--config.eval.every_rounds={args.time_rounds}"],
                      args.smoke)
            values[option].extend(round_seconds(workdir))
    return {option: {"median": statistics.median(v), "seconds": v} for option, v in values.items()}


def compare(values: dict, option: str, names: list, seeds: list) -> dict:
    """Per arch: both sides' mean and std, and the paired difference option minus none (points)."""
    rows = {}
    for name in names:
        base = [values["none"][seed][name] * 100 for seed in seeds]
        other = [values[option][seed][name] * 100 for seed in seeds]
        rows[name] = {"none": claim_lib.mean_std(base), option: claim_lib.mean_std(other),
                      "difference": claim_lib.paired_difference(other, base)}
    return rows


def print_table(setting: str, option: str, rows: dict) -> None:
    print(f"\n{setting}: {option} vs none (test accuracy %, mean +- std; difference mean [95% CI])")
    for name, row in rows.items():
        (m0, s0), (m1, s1), d = row["none"], row[option], row["difference"]
        interval = f"[{d['low']:+.2f}, {d['high']:+.2f}]" if d["low"] is not None else ""
        print(f"  {name:9s} none {m0:6.2f} +- {s0 or 0:4.2f}   {option} {m1:6.2f} +- {s1 or 0:4.2f}   "
              f"{d['mean']:+.2f} {interval}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--options", default=",".join(OPTIONS))
    parser.add_argument("--out", default=os.path.join(ROOT, "workdirs", "options"))
    parser.add_argument("--smoke", action="store_true", help="the :smoke variant: tries the pipeline")
    parser.add_argument("--time_rounds", type=int, default=0, help="rounds of each interleaved timing run")
    parser.add_argument("--time_repeats", type=int, default=3, help="timing runs per option")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    settings, options = args.settings.split(","), args.options.split(",")
    for name, known in (("setting", SETTINGS), ("option", OPTIONS)):
        for value in (settings if name == "setting" else options):
            if value not in known:
                parser.error(f"--{name}s: {value!r} is not one of {list(known)}")
    if "none" not in options:
        options = ["none"] + options

    walls, accuracy, seconds = {}, {}, {}
    for setting in settings:
        for seed in seeds:  # seed-major: an interrupted benchmark has whole pairs
            for option in options:
                workdir = run_dir(args.out, setting, option, seed)
                if not complete(workdir):
                    walls[f"{setting}/{option}/{seed}"] = train(
                        workdir, seed, SETTINGS[setting] + OPTIONS[option], args.smoke)
                    print(f"{setting} {option} seed {seed}: {walls[f'{setting}/{option}/{seed}']:.0f} s",
                          flush=True)
                accuracy.setdefault(setting, {}).setdefault(option, {})[seed] = test_accuracies(workdir)
                seconds.setdefault(option, []).extend(round_seconds(workdir))

    timed = interleaved_round_seconds(args, options) if args.time_rounds else {}
    result = {"config": CONFIG, "seeds": seeds, "options": {o: OPTIONS[o] for o in options},
              "settings": {s: SETTINGS[s] for s in settings}, "accuracy": accuracy, "comparisons": {},
              "round_seconds_median": {o: statistics.median(v) for o, v in seconds.items()},
              "interleaved_round_seconds": timed,
              "compiled_round_bytes": {o: compiled_round_bytes(OPTIONS[o], args.smoke) for o in options},
              "wall_seconds_this_invocation": walls,
              "environment": {"python": platform.python_version(), "machine": platform.machine(),
                              "processor": _cpu_name()}}
    for setting in settings:
        names = list(next(iter(accuracy[setting]["none"].values())))
        for option in options:
            if option != "none":
                rows = compare(accuracy[setting], option, names, seeds)
                result["comparisons"][f"{setting}/{option}"] = rows
                print_table(setting, option, rows)
    print("\nper round: median seconds " + ", ".join(f"{o} {v:.3f}" for o, v in result["round_seconds_median"].items()))
    if timed:
        print("interleaved timing runs, median seconds per round (rounds 2 on): "
              + ", ".join(f"{o} {v['median']:.4f}" for o, v in timed.items()))
    print("compiled round peak bytes " + ", ".join(f"{o} {v}" for o, v in result["compiled_round_bytes"].items()))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "options.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
