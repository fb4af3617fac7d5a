"""The claim figures in README.md, docs/accuracy.md, benchmarks/claim_digits.md and benchmarks/claim_mnist5k.md
are the committed claim.json files' (benchmarks/claim_table.py formats them): a retrained claim, or a figure
typed by hand, that disagrees with its JSON fails here."""
import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
_spec = importlib.util.spec_from_file_location("claim_table", os.path.join(BENCHMARKS, "claim_table.py"))
claim_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(claim_table)

# README's claim table: {data column: (the JSON of the paper's method, the JSON of the best option)}. The
# data column's first word labels the row with those claims' cost ratio ("digits", "MNIST-5k").
README_ROWS = {"digits near-IID": ("claim_digits.json", "claim_digits_fedadam_uniform.json"),
               "digits alpha 0.1": ("claim_digits_alpha0.1_default.json",
                                    "claim_digits_alpha0.1_fedadam_uniform.json"),
               "MNIST-5k near-IID": ("claim_mnist5k_default.json", "claim_mnist5k_fedadam_uniform.json")}
# Claims whose side-by-side cells (claim_table.claim_cells) docs/accuracy.md section 3 shows.
ACCURACY_DOC_CLAIMS = ["claim_digits.json", "claim_digits_fedadam.json", "claim_digits_fedadam_smallest3.json",
                       "claim_digits_fedadam_uniform.json", "claim_digits_alpha0.1_default.json",
                       "claim_digits_alpha0.1_fedadam.json", "claim_digits_alpha0.1_fedadam_smallest3.json",
                       "claim_digits_alpha0.1_fedadam_uniform.json"]
# ... and benchmarks/claim_digits.md's tables of the claims added with the non-IID split.
CLAIM_DIGITS_CLAIMS = ["claim_digits_alpha0.1_default.json", "claim_digits_alpha0.1_uniform.json",
                       "claim_digits_alpha0.1_fedadam.json", "claim_digits_alpha0.1_fedadam_smallest3.json",
                       "claim_digits_alpha0.1_fedadam_uniform.json",
                       "claim_digits_alpha0.1_fedadam_uniform_smallest3.json",
                       "claim_digits_fedadam_uniform.json", "claim_digits_fedadam_uniform_smallest3.json"]
# The claims on 5,000 MNIST digits: benchmarks/claim_mnist5k.md's tables, and docs/accuracy.md 3.4's.
MNIST_CLAIMS = ["claim_mnist5k_default.json", "claim_mnist5k_fedadam_uniform.json"]


def _claim(name: str) -> dict:
    with open(os.path.join(BENCHMARKS, name)) as f:
        return json.load(f)


def _text(*path: str) -> str:
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


def _readme_cells(row: dict) -> list:
    """One side's cells of README's claim table: weight-shared and FedAvg mean +- std, difference, verdict."""
    side = [f"{100 * row[k]['mean']:.2f} +- {100 * row[k]['std']:.2f}" for k in ("shared", "fedavg")]
    return side + [claim_table.interval_text(row["difference"]), row["verdict"]]


@pytest.mark.parametrize("data", sorted(README_ROWS))
def test_readme_claim_table_matches_the_json_files(data):
    lines = _text("README.md").splitlines()
    paper, best = (_claim(name) for name in README_ROWS[data])
    for paper_row, best_row in zip(paper["summary"], best["summary"]):
        arch = paper_row["name"]
        line = next((l for l in lines if l.startswith(f"| {data} | {arch} |")), None)
        assert line is not None, f"README has no claim row for {data}, {arch}"
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2] == f"{paper_row['macs'] / 1e6:.3f}"
        assert cells[3:] == _readme_cells(paper_row) + _readme_cells(best_row), (data, arch)
    ratio_label = data.split()[0]
    ratio_line = next(l for l in lines if l.startswith(f"| {ratio_label} | FedAvg's compute / weight-shared's |"))
    for claim in (paper, best):
        assert f"{claim['cost']['ratios']['total_training_macs']:.2f}x" in ratio_line


@pytest.mark.parametrize("doc, names", [(("docs", "accuracy.md"), ACCURACY_DOC_CLAIMS + MNIST_CLAIMS),
                                        (("benchmarks", "claim_digits.md"), CLAIM_DIGITS_CLAIMS),
                                        (("benchmarks", "claim_mnist5k.md"), MNIST_CLAIMS)])
def test_docs_claim_cells_match_the_json_files(doc, names):
    text = _text(*doc)
    for name in names:
        for arch, cell in claim_table.claim_cells(_claim(name)).items():
            if arch != "cost":
                assert f"| {cell} |" in text or f"| {cell}\n" in text, f"{'/'.join(doc)}: {name}, {arch}: {cell}"
