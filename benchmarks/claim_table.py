"""Several claims side by side, and each option's weight-shared runs paired against a baseline claim's.

    python benchmarks/claim_table.py LABEL=CLAIM_JSON [LABEL=CLAIM_JSON ...] [--baseline=LABEL] [--json]

Each CLAIM_JSON is a `benchmarks/claim.py` result (claim.json). Prints, in Markdown:

1. the claim table: one row per arch, one column per claim, each cell "weight-shared vs FedAvg (%): paired
   difference [95% interval] verdict", and a last row with FedAvg's compute over the weight-shared run's
   (total training MACs over all seeds);
2. with ``--baseline=LABEL``: every other claim's weight-shared accuracy paired against the baseline claim's
   weight-shared accuracy of the same seed (same data split and clients of every round, since a seed fixes
   both), with the interval and a verdict read from the interval alone ("better": it lies above 0; "worse":
   below 0; otherwise "on a par"), followed by a line saying whether the option helps every arch and
   whether any arch gets worse. This is the evidence a default change needs.

The tables are computed from the JSON files alone with `superfed_jax.reports.claim`, so the figures in the
docs can be regenerated from the committed files. Claims to be paired must share seeds and archs (a claim
missing a seed or an arch of the baseline is an error naming it). ``--json`` prints the same figures as
one JSON object.
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import claim as claim_script  # noqa: E402  (benchmarks/claim.py: claim.md's number formats, reused so the tables agree)
from superfed_jax.reports import claim as claim_lib  # noqa: E402

interval_text = claim_script.interval_text  # ``-0.06 [-2.81, +2.70]`` in percentage points
points = claim_script.points  # a fraction as percent with two decimals


def load(spec: str) -> tuple[str, dict]:
    """``LABEL=PATH`` -> (label, the claim.json object); the last ``=`` ends the label, so a label may hold
    one (``smallest_clients=3=claim.json``). ValueError names a malformed spec or a file that is not a
    claim.json."""
    label, sep, path = spec.rpartition("=")
    if not sep or not label or not path:
        raise ValueError(f"{spec!r}: allowed: LABEL=PATH/TO/claim.json")
    with open(path) as f:
        claim = json.load(f)
    if "summary" not in claim or "cost" not in claim:
        raise ValueError(f"{path}: not a claim.json (no 'summary' or 'cost'); write one with benchmarks/claim.py")
    return label, claim


def _accuracy_key(row: dict, side: str) -> str:
    keys = [k for k in row if k.startswith(f"{side}_test_") and isinstance(row[k], list)]
    if len(keys) != 1:
        raise ValueError(f"arch {row['name']!r}: expected one {side}_test_* list, found {keys}")
    return keys[0]


def claim_cells(claim: dict) -> dict:
    """{arch name: "shared vs fedavg: difference [low, high] verdict"} and {"cost": "4.25x"} for one claim."""
    cells = {}
    for row in claim["summary"]:
        verdict = row["verdict"]
        shown = f"**{verdict}**" if verdict == claim_lib.BEHIND else verdict
        means = f"{points(row['shared']['mean'])} vs {points(row['fedavg']['mean'])}"
        cells[row["name"]] = f"{means}: {interval_text(row['difference'])} {shown}"
    cells["cost"] = f"{claim['cost']['ratios']['total_training_macs']:.2f}x"
    return cells


def paired_against(option: dict, baseline: dict, option_label: str, baseline_label: str) -> list[dict]:
    """Per arch of ``baseline``: the option's weight-shared accuracy minus the baseline's, paired by seed.

    Returns dicts with name, seeds, option_mean, baseline_mean, difference (`claim.paired_difference`) and
    verdict (`option_verdict`). ValueError when the option lacks an arch or a seed of the baseline.
    """
    option_rows = {row["name"]: row for row in option["summary"]}
    result = []
    for base_row in baseline["summary"]:
        name = base_row["name"]
        row = option_rows.get(name)
        if row is None:
            raise ValueError(f"{option_label} has no arch {name!r} ({baseline_label} has)")
        base_by_seed = dict(zip(base_row["seeds"], base_row[_accuracy_key(base_row, "shared")]))
        option_by_seed = dict(zip(row["seeds"], row[_accuracy_key(row, "shared")]))
        missing = [s for s in base_by_seed if s not in option_by_seed]
        if missing:
            raise ValueError(f"{option_label}, arch {name!r}: no seed {missing} ({baseline_label} has them)")
        seeds = list(base_by_seed)
        option_values = [option_by_seed[s] for s in seeds]
        base_values = [base_by_seed[s] for s in seeds]
        difference = claim_lib.paired_difference(option_values, base_values)
        result.append({"name": name, "seeds": seeds,
                       "option_mean": claim_lib.mean_std(option_values)[0],
                       "baseline_mean": claim_lib.mean_std(base_values)[0],
                       "difference": difference, "verdict": option_verdict(difference)})
    return result


BETTER, WORSE = "better", "worse"


def option_verdict(difference: dict) -> str:
    """An option against the baseline, from the paired interval alone: low > 0 -> "better", high < 0 ->
    "worse", otherwise "on a par" (also for one seed, which has no interval)."""
    if difference["low"] is not None and difference["low"] > 0:
        return BETTER
    if difference["high"] is not None and difference["high"] < 0:
        return WORSE
    return claim_lib.ON_A_PAR


def summary_line(rows: list[dict]) -> str:
    """Whether the option helps every arch (every interval above 0) and whether one gets worse."""
    helps = [r["name"] for r in rows if r["verdict"] == BETTER]
    worse = [r["name"] for r in rows if r["verdict"] == WORSE]
    if len(helps) == len(rows):
        first = "helps every arch (every interval above 0)"
    elif helps:
        first = f"helps {', '.join(helps)} (interval above 0), not the others"
    else:
        first = "helps no arch significantly"
    second = f"worse for {', '.join(worse)}" if worse else "no arch worse"
    return f"{first}; {second}"


def markdown(claims: list[tuple[str, dict]], baseline: str = "") -> str:
    """The claim table and, with a ``baseline`` label, the paired table of the other claims against it."""
    cells = [(label, claim_cells(claim)) for label, claim in claims]
    names = [row["name"] for row in claims[0][1]["summary"]]
    lines = ["| arch | " + " | ".join(f"{label}: weight-shared vs FedAvg" for label, _ in cells) + " |",
             "|---" * (len(cells) + 1) + "|"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(c.get(name, "(not in this claim)") for _, c in cells) + " |")
    lines.append("| FedAvg's compute / weight-shared's | " + " | ".join(c["cost"] for _, c in cells) + " |")
    if baseline:
        by_label = dict(claims)
        if baseline not in by_label:
            raise ValueError(f"--baseline={baseline!r}: allowed: one of the labels {sorted(by_label)}")
        others = [(label, claim) for label, claim in claims if label != baseline]
        paired = [(label, paired_against(claim, by_label[baseline], label, baseline)) for label, claim in others]
        lines += ["", f"Weight-shared against weight-shared, paired by seed: each option minus {baseline}.", "",
                  "| arch | " + " | ".join(f"{label} vs {baseline}" for label, _ in paired) + " |",
                  "|---" * (len(paired) + 1) + "|"]
        for i, name in enumerate(names):
            row_cells = []
            for _, rows in paired:
                r = rows[i]
                means = f"{points(r['option_mean'])} vs {points(r['baseline_mean'])}"
                row_cells.append(f"{means}: {interval_text(r['difference'])} {r['verdict']}")
            lines.append(f"| {name} | " + " | ".join(row_cells) + " |")
        lines.append("| in short | " + " | ".join(summary_line(rows) for _, rows in paired) + " |")
    return "\n".join(lines) + "\n"


def as_json(claims: list[tuple[str, dict]], baseline: str = "") -> dict:
    """The figures `markdown` shows, as one object (fractions, not percent)."""
    result = {"claims": {label: {"summary": [{k: row[k] for k in ("name", "shared", "fedavg", "difference",
                                                                   "verdict")} for row in claim["summary"]],
                                 "fedavg_over_weight_shared_training_macs":
                                     claim["cost"]["ratios"]["total_training_macs"]}
                         for label, claim in claims}}
    if baseline:
        by_label = dict(claims)
        if baseline not in by_label:
            raise ValueError(f"--baseline={baseline!r}: allowed: one of the labels {sorted(by_label)}")
        result["paired_against"] = baseline
        result["paired"] = {label: paired_against(claim, by_label[baseline], label, baseline)
                            for label, claim in claims if label != baseline}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("claims", nargs="+", metavar="LABEL=CLAIM_JSON")
    parser.add_argument("--baseline", default="", help="label of the claim the others' weight-shared runs are "
                        "paired against")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    try:
        claims = [load(spec) for spec in args.claims]
        if len({label for label, _ in claims}) != len(claims):
            raise ValueError("labels must differ")
        text = (json.dumps(as_json(claims, args.baseline), indent=1) if args.json
                else markdown(claims, args.baseline))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text, end="" if text.endswith("\n") else "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
