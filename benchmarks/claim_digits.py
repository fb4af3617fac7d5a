"""The paper's claim on the embedded digits data: one weight-shared run against FedAvg of each arch alone.

    python benchmarks/claim_digits.py [--out DIR] [--archs=smallest,small,medium,largest] [--smoke] [--config.x=...]

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879, claim that one weight-shared
supernet gives every subnet an accuracy at least that of training it alone with FedAvg, for a fraction of
the compute and communication (docs/algorithm.md 8 and 10). This script trains, through the real entry point
(`launch.py`, one subprocess per run, same config and overrides for all):

* the weight-shared run of `configs/digits.py` into OUT/superfed, and
* FedAvg of every tracked arch (`configs/digits.py:fedavg=ARCH`: same rounds, clients per round, data
  split and client training; only the one arch in every client) into OUT/fedavg_ARCH,

then writes the combined report (`superfed_jax.reports.compare`) to OUT/report.md and OUT/pareto.png, and
OUT/claim.json (the table, the measured costs and each run's wall time). `--config.x=...` overrides go to
every run (e.g. fewer rounds for a quick try); `--smoke` trains every run with the `:smoke` variant of
`configs/digits.py` (seconds per run, to try the pipeline, not to measure the claim).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from superfed_jax.reports import compare as report_compare  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "digits.py")


def train(variant: str, workdir: str, overrides: list[str]) -> float:
    """Runs `launch.py --config=configs/digits.py<variant>` into ``workdir``; returns its wall seconds."""
    command = [sys.executable, os.path.join(ROOT, "launch.py"), f"--config={CONFIG}{variant}",
               f"--workdir={workdir}", *overrides]
    print("$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed with exit status {result.returncode}")
    return time.perf_counter() - start


def variant_arg(smoke: bool, fedavg_arch: str) -> str:
    """The `:arg` of `--config=configs/digits.py:arg` for one run ('' for a plain weight-shared run)."""
    parts = (["smoke"] if smoke else []) + ([f"fedavg={fedavg_arch}"] if fedavg_arch else [])
    return ":" + ",".join(parts) if parts else ""


def summary(result: dict, seconds: dict) -> dict:
    """The JSON-ready claim: per-arch accuracies, the measured costs and ratios, wall times."""
    keys = ("name", "arch", "macs", "params", "shared_test_accuracy", "shared_round",
            "fedavg_test_accuracy", "fedavg_round", "difference")
    # NaN (an arch one side lacks) as null: claim.json stays strict JSON.
    rows = [{key: None if row[key] != row[key] else row[key] for key in keys} for row in result["rows"]]
    return {"rows": rows, "cost": result["cost"], "warnings": result["warnings"],
            "wall_seconds": seconds, "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "python": platform.python_version()}


def main(argv=None) -> int:
    """Trains the runs, writes the combined report and claim.json; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join("workdirs", "claim_digits"),
                        help="directory for the runs and the report")
    parser.add_argument("--archs", default="smallest,small,medium,largest",
                        help="tracked arch names to train alone with FedAvg, comma-separated")
    parser.add_argument("--smoke", action="store_true",
                        help="train every run with the :smoke config variant (a seconds-long try)")
    args, overrides = parser.parse_known_args(argv)
    unknown = [a for a in overrides if not a.startswith("--config.")]
    if unknown:
        parser.error(f"unknown arguments {unknown}; only --config.x=value overrides are passed on")
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    workdirs = {"superfed": os.path.join(args.out, "superfed")}
    workdirs.update({f"fedavg_{a}": os.path.join(args.out, f"fedavg_{a}") for a in archs})
    seconds = {}
    for name, workdir in workdirs.items():
        variant = variant_arg(args.smoke, "" if name == "superfed" else name[len("fedavg_"):])
        seconds[name] = round(train(variant, workdir, overrides), 1)
    result = report_compare.write_combined_report(list(workdirs.values()), args.out)
    with open(os.path.join(args.out, "claim.json"), "w") as f:
        json.dump(summary(result, seconds), f, indent=2)
    with open(result["report"]) as f:
        print(f.read())
    print(f"wrote {result['report']}, {result['plot']} and {os.path.join(args.out, 'claim.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
