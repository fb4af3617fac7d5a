"""superfed_jax.reports.run_report: reports of hand-made work directories checked against hand computation.

The hand-made runs use a one-block space whose sizes are small enough to count by hand (docs/algorithm.md 2.3
conventions: conv = Cin*k*k*Cout*Hout*Wout with padding taps, dense = in*out):

  stem 3x3 1->2 on 2x2:  1*9*2*4 = 72      block conv1 3x3 2->mid: 2*9*mid*4 = 72*mid
  conv2 3x3 mid->4:      mid*9*4*4 = 144*mid       1x1 projection 2->4: 2*4*4 = 32      head 4*3 = 12
  MACs = 116 + 216*mid: mid 2 (e 0.5) 548, mid 3 (e 0.75) 764, mid 4 (e 1.0) 980
  params = stem 18 + block 54*mid + projection 8 + head 4*3+3 = 41 + 54*mid: 149, 203, 257
  on 4x4 inputs: MACs = 288 + 864*mid + 128 + 12: mid 2 -> 2156, mid 4 -> 3884
"""
import json
import math
import os
import shutil

import matplotlib.image
import pytest

from superfed_jax import config as config_lib
from superfed_jax.reports import cli as report_cli
from superfed_jax.reports import combined_files
from superfed_jax.reports import compare as report_compare
from superfed_jax.reports import plot
from superfed_jax.reports import run_record
from superfed_jax.reports import run_report as report

SPACE = dict(stem_width=2, stage_widths=(4,), stage_strides=(1,), blocks_per_stage=1,
             expand_choices=(0.5, 0.75, 1.0), divisor=1, input_size=2, input_channels=1, num_classes=3)
TINY = {"d": [0], "e": 0.5}
MID = {"d": [0], "e": 0.75}
BIG = {"d": [0], "e": 1.0}


def make_config(space=SPACE, fedavg=None, **fl):
    """A real base config on SPACE tracking TINY and BIG, or FedAvg of the arch ``fedavg``, as a dict."""
    config = config_lib.base_config()
    config.space.update(space)
    config.data.name = "digits"
    config.fl.update({**dict(rounds=30, num_clients=4, clients_per_round=2), **fl})
    config.eval.tracked = json.dumps({"tiny": TINY, "big": BIG})
    if fedavg is not None:
        config = config_lib.fedavg_baseline(config, json.dumps(fedavg))
    return config.to_dict()


def make_cost(macs, training_macs, bytes_, ratios=(1.0, 1.0, 1.0), baseline_archs=()):
    """A cost.json with the fields the report reads; the baseline side is 10x the run."""
    return {"rounds": 30, "clients_per_round": 2,
            "superfed": {"total_macs": macs, "total_training_macs": training_macs,
                         "total_bytes_per_direction": bytes_},
            "baseline": {"archs": list(baseline_archs), "total_macs": 10 * macs,
                         "total_training_macs": 10 * training_macs, "total_bytes_per_direction": 10 * bytes_},
            "ratios": dict(zip(("compute_ratio", "comm_ratio", "example_compute_ratio"), ratios))}


def record(round_, **accuracies):
    """A metrics record; accuracies as name_split=value, e.g. tiny_val=0.5."""
    result = {"round": round_, "beta": 0.5, "train_loss": 1.0, "clients_nonfinite": 0}
    for key, value in accuracies.items():
        name, split = key.rsplit("_", 1)
        result[f"{name}/{split}_accuracy"] = value
        result[f"{name}/{split}_loss"] = 1.0
    return result


def make_workdir(path, config, records, cost=None, space=None):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    if cost is not None:
        with open(os.path.join(path, "cost.json"), "w") as f:
            json.dump(cost, f)
    if space is not None:
        with open(os.path.join(path, "space.json"), "w") as f:
            json.dump(space, f)
    return str(path)


def table_row(text, name):
    """The cells of the Markdown table row of ``name``."""
    [line] = [line for line in text.splitlines() if line.startswith(f"| {name} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


# Round 20 has the best mean validation accuracy (0.7) although round 30 has tiny's best (0.9) and
# round 10 big's best (0.7); round 30 is the last.
SINGLE_RECORDS = [record(10, tiny_val=0.5, tiny_test=0.45, big_val=0.7, big_test=0.65),
                  record(20, tiny_val=0.8, tiny_test=0.75, big_val=0.6, big_test=0.55),
                  record(30, tiny_val=0.9, tiny_test=0.95, big_val=0.4, big_test=0.35)]


# ------------------------------------------------------------------------------------------ one run


def test_run_report_table_and_cost_match_hand_computation(tmp_path):
    cost = make_cost(2_000_000, 6_000_000_000, 1_500_000, ratios=(3.5, 3.25, 3.0))
    workdir = make_workdir(tmp_path, make_config(), SINGLE_RECORDS, cost)
    result = report.write_run_report(workdir)
    assert result["best_round"] == 20
    assert [(r["name"], r["macs"], r["params"]) for r in result["rows"]] == [("tiny", 548, 149),
                                                                             ("big", 980, 257)]
    text = open(tmp_path / "report.md").read()
    assert table_row(text, "tiny") == ["tiny", '`{"d":[0],"e":0.5}`', "0.000548", "149", "80.00", "75.00"]
    assert table_row(text, "big") == ["big", '`{"d":[0],"e":1.0}`', "0.00098", "257", "60.00", "55.00"]
    assert "round 20 of 30" in text
    assert "| compute: forward MACs per image, summed over clients | 2 MMACs | 20 MMACs | 3.50x |" in text
    assert "| compute: training MACs (examples x epochs x 3) | 6 GMACs | 60 GMACs | 3.00x |" in text
    assert "| communication per direction | 1.5 MB | 15 MB | 3.25x |" in text
    image = matplotlib.image.imread(tmp_path / "pareto.png")
    assert image.shape[:2] == (540, 840)  # 7 x 4.5 inches at 120 dpi


def test_run_with_differential_privacy_reports_its_epsilon_and_delta(tmp_path):
    config = make_config()
    config["dp"].update(clip_norm=0.5, noise_multiplier=1.2, delta=1e-6)
    records = [dict(r, dp_epsilon=eps, dp_delta=1e-6) for r, eps in zip(SINGLE_RECORDS, (2.5, 3.75, 4.625))]
    text = open(report.write_run_report(make_workdir(tmp_path, config, records))["report"]).read()
    assert "## Differential privacy" in text
    assert ("after all 30 rounds the run is (epsilon, delta)-DP with **epsilon = 4.625 at delta = 1e-06**"
            in text)
    assert "dp.clip_norm = 0.5" in text and "dp.noise_multiplier = 1.2" in text
    assert "2 of 4 clients sampled without replacement" in text
    assert "The table's round 20 alone had spent epsilon = 3.75" in text


def test_run_without_differential_privacy_has_no_privacy_section(tmp_path):
    workdir = make_workdir(tmp_path, make_config(), SINGLE_RECORDS)
    text = open(report.write_run_report(workdir)["report"]).read()
    assert "privacy" not in text.lower() and "epsilon" not in text


def test_plot_has_labelled_axes_legend_and_the_points(tmp_path):
    rows = [{"name": "a", "macs": 2_500_000, "test_accuracy": 0.5},
            {"name": "b", "macs": 500_000, "test_accuracy": 0.25},
            {"name": "c", "macs": 1_000_000, "test_accuracy": math.nan}]
    figure = plot.plot_pareto(str(tmp_path / "p.png"), [("series one", rows)], "a title")
    [axes] = figure.axes
    assert "MMACs" in axes.get_xlabel() and "accuracy" in axes.get_ylabel()
    assert axes.get_title() == "a title"
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["series one"]
    [line] = axes.get_lines()
    assert list(line.get_xdata()) == [0.5, 2.5] and list(line.get_ydata()) == [25.0, 50.0]  # NaN left out
    assert (tmp_path / "p.png").stat().st_size > 0


def test_best_round_selection():
    names = ["tiny", "big"]
    assert run_record.select_best(SINGLE_RECORDS, names)["round"] == 20
    tie = [record(1, tiny_val=0.5, big_val=0.5), record(2, tiny_val=0.4, big_val=0.6)]
    assert run_record.select_best(tie, names)["round"] == 1  # equal means: the first
    no_val = [record(1, tiny_test=0.9, big_test=0.9), record(2, tiny_test=0.1, big_test=0.1)]
    assert run_record.select_best(no_val, names)["round"] == 2  # no validation split: the last
    diverged = [record(1, tiny_val=0.2, big_val=0.2), record(2, tiny_val=math.nan, big_val=0.9)]
    assert run_record.select_best(diverged, names)["round"] == 1
    partial = [record(1, tiny_val=0.2, big_val=0.2), record(2, tiny_val=0.9)]  # big missing: skipped
    assert run_record.select_best(partial, names)["round"] == 1


def test_run_without_validation_reports_the_last_round(tmp_path):
    records = [record(5, tiny_test=0.5, big_test=0.5), record(10, tiny_test=0.25, big_test=0.75)]
    workdir = make_workdir(tmp_path, make_config(), records)
    result = report.write_run_report(workdir)
    assert result["best_round"] == 10
    text = open(tmp_path / "report.md").read()
    assert table_row(text, "big")[4:] == ["n/a", "75.00"]
    assert "No cost.json" in text and "the last evaluation" in text


def test_sizes_prefer_space_json_then_cost_json_then_config(tmp_path):
    config = make_config(space=dict(SPACE, input_size=4))  # as if the data were 2x2 but config said 4x4
    cost_entry = {"arch": TINY, "macs": 548, "params": 149}
    fallback = make_workdir(tmp_path / "config_only", config, SINGLE_RECORDS)
    assert run_record.load_family(fallback).data_shape.input_shape == (4, 4, 1)
    assert run_record.arch_rows(run_record.read_run(fallback))[0]["macs"] == 2156
    assert "no space.json" in open(report.write_run_report(fallback)["report"]).read()
    from_cost = make_workdir(tmp_path / "cost", config, SINGLE_RECORDS,
                             make_cost(1, 1, 1, baseline_archs=[cost_entry]))
    rows = run_record.arch_rows(run_record.read_run(from_cost))
    assert [(r["macs"], r["size_source"]) for r in rows] == [(548, "cost.json"), (3884, "config.json")]
    from_space = make_workdir(tmp_path / "space", config, SINGLE_RECORDS, space=dict(SPACE))
    assert run_record.load_family(from_space).data_shape.input_shape == (2, 2, 1)
    assert [r["macs"] for r in run_record.arch_rows(run_record.read_run(from_space))] == [548, 980]


def test_is_fedavg_baseline_recognises_config_fedavg_baseline():
    assert run_record.is_fedavg_baseline(make_config(fedavg=BIG))
    named = config_lib.fedavg_baseline(config_lib.base_config(), "largest").to_dict()
    assert run_record.is_fedavg_baseline(named)
    assert not run_record.is_fedavg_baseline(make_config())
    assert not run_record.is_fedavg_baseline(make_config(heuristic="static", pool=json.dumps([TINY, BIG])))


# ------------------------------------------------------------------------------------ combined runs


def combined_workdirs(tmp_path, fedavg_rounds=30):
    """One weight-shared run and FedAvg runs of TINY, BIG and MID (MID not tracked by the shared run)."""
    shared = make_workdir(tmp_path / "shared", make_config(), [
        record(10, tiny_val=0.6, tiny_test=0.62, big_val=0.8, big_test=0.81),  # best mean (0.7)
        record(20, tiny_val=0.5, tiny_test=0.9, big_val=0.8, big_test=0.9)],
        make_cost(1000, 3000, 4000, ratios=(3.9, 3.8, 3.7)))
    tiny = make_workdir(tmp_path / "fedavg_tiny", make_config(fedavg=TINY), [
        record(10, fedavg_val=0.5, fedavg_test=0.50), record(20, fedavg_val=0.7, fedavg_test=0.57),
        record(30, fedavg_val=0.6, fedavg_test=0.70)], make_cost(1200, 3600, 5000))
    big = make_workdir(tmp_path / "fedavg_big", make_config(fedavg=BIG, rounds=fedavg_rounds), [
        record(10, fedavg_val=0.9, fedavg_test=0.835), record(20, fedavg_val=0.8, fedavg_test=0.9)],
        make_cost(2000, 6000, 8000))
    mid = make_workdir(tmp_path / "fedavg_mid", make_config(fedavg=MID), [
        record(10, fedavg_val=0.5, fedavg_test=0.66)], make_cost(800, 2400, 1000))
    return [shared, tiny, big, mid]


def test_combined_report_matches_hand_computation(tmp_path):
    workdirs = combined_workdirs(tmp_path)
    out = tmp_path / "out"
    result = report_compare.write_combined_report(workdirs, str(out))
    text = open(out / "report.md").read()
    # tiny: 0.62 (shared, round 10) vs 0.57 (its FedAvg run's best validation round 20): +5 points.
    assert table_row(text, "tiny") == ["tiny", '`{"d":[0],"e":0.5}`', "0.000548", "149", "62.00", "57.00",
                                       "+5.00"]
    # big: 0.81 vs 0.835 (round 10): the weight-shared subnet loses 2.5 points.
    assert table_row(text, "big") == ["big", '`{"d":[0],"e":1.0}`', "0.00098", "257", "81.00", "83.50",
                                      "-2.50"]
    # MID was trained alone only: its run's name, no weight-shared accuracy.
    assert table_row(text, "fedavg") == ["fedavg", '`{"d":[0],"e":0.75}`', "0.000764", "203", "n/a",
                                         "66.00", "n/a"]
    assert [r["fedavg_round"] for r in result["rows"]] == [20, 10, 10]
    assert [r["name"] for r in result["rows"]] == ["tiny", "big", "fedavg"]
    # Costs: shared 1000 / 3000 / 4000; FedAvg sums 4000 / 12000 / 14000.
    assert "| compute: forward MACs per image, summed over clients | 1 kMACs | 4 kMACs | 4.00x |" in text
    assert "| compute: training MACs (examples x epochs x 3) | 3 kMACs | 12 kMACs | 4.00x |" in text
    assert "| communication per direction | 4 kB | 14 kB | 3.50x |" in text
    assert result["cost"]["ratios"] == {"total_macs": 4.0, "total_training_macs": 4.0,
                                        "total_bytes_per_direction": 3.5}
    assert "3.90x the compute, 3.80x the communication" in text  # the shared run's own estimate
    assert result["warnings"] == [] and "Warnings" not in text
    assert matplotlib.image.imread(out / "pareto.png").shape[:2] == (540, 840)


def test_combined_plot_has_both_series(tmp_path, monkeypatch):
    calls = []
    original = combined_files.plot_pareto
    monkeypatch.setattr(combined_files, "plot_pareto", lambda *args, **kw: calls.append(original(*args, **kw)))
    report_compare.write_combined_report(combined_workdirs(tmp_path), str(tmp_path / "out"))
    [axes] = calls[0].axes
    shared, fedavg = axes.get_lines()
    assert list(shared.get_xdata()) == [0.000548, 0.00098] and list(shared.get_ydata()) == [62.0, 81.0]
    assert list(fedavg.get_xdata()) == [0.000548, 0.000764, 0.00098]
    assert list(fedavg.get_ydata()) == pytest.approx([57.0, 66.0, 83.5])
    assert len(axes.get_legend().get_texts()) == 2 and "4.00x the compute" in axes.get_title()


def test_combined_report_warns_about_different_settings(tmp_path):
    workdirs = combined_workdirs(tmp_path, fedavg_rounds=40)
    result = report_compare.write_combined_report(workdirs, str(tmp_path / "out"))
    assert result["warnings"] == [f"{workdirs[2]}: fl.rounds = 40, the weight-shared run has 30"]
    assert "fl.rounds = 40" in open(tmp_path / "out" / "report.md").read()


def test_cli_writes_combined_report_to_the_first_run_by_default(tmp_path, capsys):
    workdirs = combined_workdirs(tmp_path)
    assert report_cli.main(workdirs) == 0
    assert "+5.00" in open(os.path.join(workdirs[0], "report.md")).read()
    assert os.path.isfile(os.path.join(workdirs[0], "pareto.png"))
    assert "wrote" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------- bad input


def expect_error(capsys, argv, *fragments):
    """The CLI exits with status 2 and an 'error: ...' naming every fragment."""
    assert report_cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    for fragment in fragments:
        assert str(fragment) in err


def test_directory_without_run_files(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(capsys, [empty], empty, "config.json")
    no_metrics = tmp_path / "no_metrics"
    no_metrics.mkdir()
    (no_metrics / "config.json").write_text(json.dumps(make_config()))
    expect_error(capsys, [no_metrics], no_metrics, "metrics.jsonl")
    expect_error(capsys, [tmp_path / "missing"], tmp_path / "missing", "no such directory")
    shared = combined_workdirs(tmp_path)[0]
    expect_error(capsys, [shared, no_metrics], no_metrics, "metrics.jsonl")


def test_empty_or_corrupt_metrics(tmp_path, capsys):
    workdir = make_workdir(tmp_path, make_config(), [])
    expect_error(capsys, [workdir], "metrics.jsonl", "no evaluation records")
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.write(json.dumps(record(1, tiny_val=0.5)) + "\n{not json\n")
    expect_error(capsys, [workdir], "metrics.jsonl, line 2", "not valid JSON")
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.write(json.dumps(record(1, tiny_val=0.5)) + "\n\n" + json.dumps({"train_loss": 1.0}) + "\n")
    expect_error(capsys, [workdir], "metrics.jsonl, line 3", "'round'")


def test_two_weight_shared_runs(tmp_path, capsys):
    workdirs = combined_workdirs(tmp_path / "a")[:1] + combined_workdirs(tmp_path / "b")[:1]
    expect_error(capsys, workdirs, "more than one weight-shared run", *workdirs)


def test_no_weight_shared_run(tmp_path, capsys):
    workdirs = combined_workdirs(tmp_path)[1:]
    expect_error(capsys, workdirs, "no weight-shared run", *workdirs)


def test_two_fedavg_runs_of_one_arch(tmp_path, capsys):
    workdirs = combined_workdirs(tmp_path)
    copy = make_workdir(tmp_path / "fedavg_tiny_again", make_config(fedavg=TINY),
                        [record(1, fedavg_val=0.5, fedavg_test=0.5)], make_cost(1, 1, 1))
    expect_error(capsys, workdirs + [copy], "two FedAvg runs", workdirs[1], copy)


def test_fedavg_run_without_cost_or_with_another_space(tmp_path, capsys):
    workdirs = combined_workdirs(tmp_path)
    os.remove(os.path.join(workdirs[1], "cost.json"))
    expect_error(capsys, workdirs[:2], workdirs[1], "cost.json")
    other = make_workdir(tmp_path / "other_space", make_config(space=dict(SPACE, stem_width=3), fedavg=BIG),
                         [record(1, fedavg_val=0.5, fedavg_test=0.5)], make_cost(1, 1, 1))
    expect_error(capsys, [workdirs[0], other], other, "search space")


# The real tiny runs (weight-shared + FedAvg through benchmarks/claim.py, then the CLI) are in
# tests/test_claim.py, which trains them once for both.


def test_a_directory_where_report_md_goes_is_one_error_line(tmp_path, capsys):
    # Before: an IsADirectoryError traceback from superfed-report.
    run = tmp_path / "run"
    shutil.copytree(os.path.join(os.path.dirname(__file__), "fixtures", "run_v0_1_0"), run)
    (run / "report.md").mkdir()
    assert report_cli.main([str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {run / 'report.md'}: it is a directory") and err.count("\n") == 1
    assert "--out=DIR" in err and (run / "report.md").is_dir()
