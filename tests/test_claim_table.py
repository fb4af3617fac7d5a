"""benchmarks/claim_table.py: claims side by side and options paired against a baseline, from claim.json files,
against hand-computed intervals (t(0.975, 2) = 4.302653)."""
import importlib.util
import json
import math
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("claim_table", os.path.join(ROOT, "benchmarks", "claim_table.py"))
claim_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(claim_table)

from superfed_jax.reports import claim as claim_lib  # noqa: E402

T_975_2 = 4.302653


def _claim(shared_by_arch: dict, fedavg_by_arch: dict, ratio: float, seeds=(0, 1, 2)) -> dict:
    """A claim.json as benchmarks/claim.py writes it, for the given per-seed accuracies."""
    summary = []
    for name, shared in shared_by_arch.items():
        fedavg = fedavg_by_arch[name]
        summary.append(dict(name=name, arch={}, macs=1, params=1, seeds=list(seeds),
                            shared_test_accuracy=shared, fedavg_test_accuracy=fedavg,
                            **claim_lib.summarize_arch(shared, fedavg)))
    return {"summary": summary, "cost": {"ratios": {"total_training_macs": ratio}}}


BASE = _claim({"smallest": [0.90, 0.92, 0.94], "largest": [0.95, 0.95, 0.96]},
              {"smallest": [0.91, 0.93, 0.93], "largest": [0.90, 0.90, 0.90]}, 4.25)
OPTION = _claim({"smallest": [0.93, 0.94, 0.95], "largest": [0.90, 0.90, 0.90]},
                {"smallest": [0.91, 0.93, 0.93], "largest": [0.95, 0.95, 0.96]}, 4.94)


def test_claim_cells_hand_computed():
    # smallest: differences -0.01, -0.01, +0.01 -> mean -0.00333, std 0.011547, half 4.302653 * 0.011547 / sqrt 3
    half = T_975_2 * 0.011547005 / math.sqrt(3)
    low, high = 100 * (-1 / 300 - half), 100 * (-1 / 300 + half)
    cells = claim_table.claim_cells(BASE)
    assert cells["smallest"] == f"92.00 vs 92.33: -0.33 [{low:+.2f}, {high:+.2f}] on a par"
    assert (f"{low:+.2f}", f"{high:+.2f}") == ("-3.20", "+2.54")
    # largest: differences 0.05, 0.05, 0.06 -> mean 0.053333, std 0.0057735, half 0.014343
    assert cells["largest"] == "95.33 vs 90.00: +5.33 [+3.90, +6.77] at least as accurate"
    assert cells["cost"] == "4.25x"
    # the option's largest is behind its FedAvg: the verdict is shown in bold
    assert claim_table.claim_cells(OPTION)["largest"] == "90.00 vs 95.33: -5.33 [-6.77, -3.90] **behind**"


def test_paired_against_baseline_hand_computed():
    rows = claim_table.paired_against(OPTION, BASE, "option", "base")
    by_name = {r["name"]: r for r in rows}
    # smallest: option - base per seed 0.03, 0.02, 0.01 -> mean 0.02, std 0.01, half 4.302653 * 0.01 / sqrt 3
    small = by_name["smallest"]["difference"]
    assert small["mean"] == pytest.approx(0.02)
    assert small["low"] == pytest.approx(0.02 - T_975_2 * 0.01 / math.sqrt(3), abs=1e-6)
    assert by_name["smallest"]["verdict"] == claim_lib.ON_A_PAR
    # largest: -0.05, -0.05, -0.06: the interval lies below 0
    assert by_name["largest"]["verdict"] == claim_table.WORSE
    assert claim_table.summary_line(rows) == "helps no arch significantly; worse for largest"


def test_option_verdict_rule():
    def diff(low, high):
        return {"low": low, "high": high}
    assert claim_table.option_verdict(diff(0.001, 0.02)) == claim_table.BETTER
    assert claim_table.option_verdict(diff(0.0, 0.02)) == claim_lib.ON_A_PAR  # touching 0 is not "better"
    assert claim_table.option_verdict(diff(-0.02, -0.001)) == claim_table.WORSE
    assert claim_table.option_verdict(diff(None, None)) == claim_lib.ON_A_PAR
    rows = [{"name": "a", "verdict": claim_table.BETTER}, {"name": "b", "verdict": claim_table.BETTER}]
    assert claim_table.summary_line(rows) == "helps every arch (every interval above 0); no arch worse"


def test_markdown_and_json_from_files(tmp_path, capsys):
    paths = {}
    for label, claim in (("base", BASE), ("option", OPTION)):
        paths[label] = tmp_path / f"{label}.json"
        paths[label].write_text(json.dumps(claim))
    argv = [f"base={paths['base']}", f"option={paths['option']}", "--baseline=base"]
    assert claim_table.load(f"smallest_clients=3={paths['option']}")[0] == "smallest_clients=3"
    assert claim_table.main(argv) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == "| arch | base: weight-shared vs FedAvg | option: weight-shared vs FedAvg |"
    assert "| FedAvg's compute / weight-shared's | 4.25x | 4.94x |" in lines
    assert "| arch | option vs base |" in lines
    assert any(line.startswith("| largest | 90.00 vs 95.33: -5.33 [-6.77, -3.90] worse") for line in lines)
    assert lines[-1] == "| in short | helps no arch significantly; worse for largest |"
    assert claim_table.main(argv + ["--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["paired_against"] == "base"
    assert figures["claims"]["option"]["fedavg_over_weight_shared_training_macs"] == 4.94
    assert [r["verdict"] for r in figures["paired"]["option"]] == [claim_lib.ON_A_PAR, claim_table.WORSE]


def test_errors_name_the_problem(tmp_path, capsys):
    good = tmp_path / "c.json"
    good.write_text(json.dumps(BASE))
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert claim_table.main([str(good)]) == 2
    assert "LABEL=PATH" in capsys.readouterr().err
    assert claim_table.main([f"a={bad}"]) == 2
    assert "not a claim.json" in capsys.readouterr().err
    assert claim_table.main([f"a={good}", "--baseline=b"]) == 2
    assert "--baseline='b'" in capsys.readouterr().err
    short = _claim({"smallest": [0.9, 0.9]}, {"smallest": [0.9, 0.9]}, 1.0, seeds=(0, 1))
    with pytest.raises(ValueError, match=r"option, arch 'smallest': no seed \[2\]"):
        claim_table.paired_against(short, BASE, "option", "base")
    with pytest.raises(ValueError, match="option has no arch 'largest'"):
        claim_table.paired_against(_claim({"smallest": [0.9] * 3}, {"smallest": [0.9] * 3}, 1.0), BASE,
                                   "option", "base")
