"""The reports' figures and CSV files, on hand-made work directories (tests/test_report.py builds them).

Figures are read back two ways: the SVG (every data artist has a gid, which the SVG keeps as the id of its
group) and the matplotlib figure the writer returns (its artists' data). Expected values are computed by
hand here: means, sample standard deviations (n - 1), min-max bands, paired differences, the non-dominated
set of a hand-made search.json.
"""
import csv
import json
import math
import os
import re
import xml.etree.ElementTree as ET

import pytest

import test_report as R
from superfed_jax.posttrain import evolution as evolution_lib
from superfed_jax.posttrain import search as search_lib
from superfed_jax.reports import combined_files
from superfed_jax.reports import compare
from superfed_jax.reports import run_report
from superfed_jax.reports import search_front


def svg_ids(path) -> set:
    """Every id of an element of an SVG file."""
    return {element.get("id") for element in ET.parse(path).iter() if element.get("id")}


def svg_vertices(path, gid) -> int:
    """The vertices of the first path drawn in the group ``gid`` (a line: one per point)."""
    namespace = "{http://www.w3.org/2000/svg}"
    [group] = [g for g in ET.parse(path).iter(f"{namespace}g") if g.get("id") == gid]
    path_d = next(group.iter(f"{namespace}path")).get("d")
    return len(re.findall(r"[ML]", path_d))


def by_gid(figure, gid):
    """The one artist of ``figure`` with this gid."""
    [artist] = [a for a in figure.findobj() if a.get_gid() == gid]
    return artist


def capture(monkeypatch, module, name):
    """Replaces module.name (a figure writer) by one that also keeps the figures it returns."""
    figures, original = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: figures.append(original(*a, **k)) or figures[-1])
    return figures


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def linked_files(report_path) -> list[str]:
    """Files report.md links or shows, relative to it."""
    text = open(report_path).read()
    return re.findall(r"\]\(([^)]+)\)", text)


# ------------------------------------------------------------------------------------------ one run


def test_run_report_writes_png_svg_curves_and_csv(tmp_path, monkeypatch):
    curves = capture(monkeypatch, run_report, "plot_curves")
    cost = R.make_cost(2_000_000, 6_000_000_000, 1_500_000, ratios=(3.5, 3.25, 3.0))
    workdir = R.make_workdir(tmp_path, R.make_config(), R.SINGLE_RECORDS, cost)
    run_report.write_run_report(workdir)
    for name in ("pareto", "curves"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0 and (tmp_path / f"{name}.svg").stat().st_size > 0
    links = linked_files(tmp_path / "report.md")
    assert {"pareto.svg", "curves.svg", "report_accuracy.csv", "report_cost.csv",
            "report_curves.csv"} <= set(links)
    assert all((tmp_path / link).is_file() for link in links)
    assert "search" not in " ".join(links)  # no search.json, no search figure

    # The curves: one line per tracked arch and split, no band (one seed), the records' numbers.
    ids = svg_ids(tmp_path / "curves.svg")
    assert {"curve-val-tiny", "curve-val-big", "curve-test-tiny", "curve-test-big"} <= ids
    assert not any(i.endswith("-band") for i in ids)
    assert svg_vertices(tmp_path / "curves.svg", "curve-val-tiny") == 3
    line = by_gid(curves[0], "curve-test-big")
    assert list(line.get_xdata()) == [10, 20, 30] and list(line.get_ydata()) == pytest.approx([65, 55, 35])
    assert svg_vertices(tmp_path / "pareto.svg", "pareto-tracked") == 2
    assert list(by_gid(curves[0], "panel-val-marked").get_xdata()) == [20, 20]  # the table's round

    # The CSVs hold the Markdown tables' numbers.
    text = open(tmp_path / "report.md").read()
    for row in read_csv(tmp_path / "report_accuracy.csv"):
        cells = R.table_row(text, row["arch"])
        assert cells[1] == f"`{row['d / e']}`" and cells[2] == f"{int(row['MACs']) / 1e6:.4g}"
        assert cells[3] == f"{int(row['params']):,}"
        assert cells[4:] == [f"{float(row['val_accuracy_percent']):.2f}",
                             f"{float(row['test_accuracy_percent']):.2f}"]
    cost_rows = read_csv(tmp_path / "report_cost.csv")
    assert [(float(r["this_run"]), float(r["independent_fedavg"]), float(r["fedavg_over_this_run"]))
            for r in cost_rows] == [(2e6, 2e7, 3.5), (6e9, 6e10, 3.0), (1.5e6, 1.5e7, 3.25)]
    curve_rows = read_csv(tmp_path / "report_curves.csv")
    assert [(r["arch"], r["split"], int(r["round"]), float(r["mean_accuracy_percent"])) for r in curve_rows
            if r["arch"] == "tiny" and r["split"] == "val"] == [
        ("tiny", "val", 10, 50.0), ("tiny", "val", 20, 80.0), ("tiny", "val", 30, 90.0)]


# ----------------------------------------------------------------------------- a search's Pareto front

# (MACs, val accuracy) of a hand-made search. By hand, the non-dominated points, by MACs:
# (500, 0.40) beats the later (500, 0.30), (600, 0.40) and the duplicate (500, 0.40) (the first is kept);
# (700, 0.55); (800, 0.55) is beaten by (700, 0.55); (900, 0.70); (950, 0.65) is beaten by (900, 0.70).
CANDIDATES = [(700, 0.55), (500, 0.40), (900, 0.70), (500, 0.30), (600, 0.40), (800, 0.55), (950, 0.65),
              (500, 0.40)]
HAND_FRONT = [1, 0, 2]  # indices into CANDIDATES, by MACs


def make_search(front_only=False):
    evaluated = {"macs": [m for m, _ in CANDIDATES], "params": [m // 4 for m, _ in CANDIDATES],
                 "val_accuracy": [a for _, a in CANDIDATES]}
    front = [{"arch": {}, "macs": CANDIDATES[i][0], "params": CANDIDATES[i][0] // 4,
              "val_accuracy": CANDIDATES[i][1]} for i in HAND_FRONT]
    result = {"budget": "macs=1000", "limits": {"macs": 1000}, "front_metric": "macs", "front": front,
              "archs_evaluated": len(CANDIDATES)}
    if not front_only:
        result["evaluated"] = evaluated
    return {"checkpoint_round": 20, "results": [result]}


def test_non_dominated_set_by_hand_and_as_the_search_computes_it():
    assert search_front.non_dominated(CANDIDATES) == HAND_FRONT
    macs, accuracy = map(list, zip(*CANDIDATES))
    import numpy as np
    assert list(evolution_lib.pareto_front(np.array(macs, float), np.array(accuracy))) == HAND_FRONT
    assert search_front.non_dominated([]) == []


def test_run_report_draws_the_front_of_search_json(tmp_path, monkeypatch):
    figures = capture(monkeypatch, run_report, "plot_search")
    workdir = R.make_workdir(tmp_path, R.make_config(), R.SINGLE_RECORDS, space=dict(R.SPACE))
    (tmp_path / "search.json").write_text(json.dumps(make_search()))
    run_report.write_run_report(workdir)
    figure = figures[0]
    front = by_gid(figure, "search-0-front")
    assert list(front.get_xdata()) == pytest.approx([CANDIDATES[i][0] / 1e6 for i in HAND_FRONT])
    assert list(front.get_ydata()) == pytest.approx([100 * CANDIDATES[i][1] for i in HAND_FRONT])
    assert front.get_drawstyle() == "steps-post"
    assert len(by_gid(figure, "search-0-evaluated").get_offsets()) == len(CANDIDATES)
    # Tracked archs at the searched round (20): tiny 548 MACs val 0.8, big 980 MACs val 0.6.
    tracked = by_gid(figure, "search-0-tracked").get_offsets()
    assert [v for p in tracked for v in p] == pytest.approx([548e-6, 80.0, 980e-6, 60.0])
    assert list(by_gid(figure, "search-0-limit").get_xdata()) == pytest.approx([1e-3, 1e-3])
    assert {"search-0-front", "search-0-evaluated", "search-0-tracked"} <= svg_ids(tmp_path / "search.svg")
    assert (tmp_path / "search.png").stat().st_size > 0
    rows = read_csv(tmp_path / "report_search.csv")
    assert [int(r["on_front"]) for r in rows] == [int(i in HAND_FRONT) for i in range(len(CANDIDATES))]
    assert {"search.png", "search.svg", "report_search.csv"} <= set(linked_files(tmp_path / "report.md"))


def test_search_json_without_candidates_shows_its_front(tmp_path, monkeypatch):
    figures = capture(monkeypatch, run_report, "plot_search")
    workdir = R.make_workdir(tmp_path, R.make_config(), R.SINGLE_RECORDS, space=dict(R.SPACE))
    (tmp_path / "search.json").write_text(json.dumps(make_search(front_only=True)))
    run_report.write_run_report(workdir)
    assert len(by_gid(figures[0], "search-0-evaluated").get_offsets()) == len(HAND_FRONT)
    assert "front only" in figures[0].axes[0].get_title()
    (tmp_path / "search.json").write_text(json.dumps({"results": "no"}))
    with pytest.raises(ValueError, match="search.json: not a search.json"):
        run_report.write_run_report(workdir)


def test_search_command_redraws_the_report(tmp_path):
    workdir = R.make_workdir(tmp_path, R.make_config(), R.SINGLE_RECORDS, space=dict(R.SPACE))
    (tmp_path / "search.json").write_text(json.dumps(make_search()))
    assert "now draws the search front" in search_lib.refresh_report(workdir)
    assert (tmp_path / "search.svg").is_file()
    assert "report.md not redrawn" in search_lib.refresh_report(str(tmp_path / "missing"))


# ------------------------------------------------------------------------------------------ seeds

# Weight-shared runs of seeds 0 and 1 (best rounds: 10 and 20), FedAvg of TINY and BIG with seeds 0, 1.
SHARED_SEEDS = {0: [R.record(10, tiny_val=0.6, tiny_test=0.60, big_val=0.8, big_test=0.80),
                    R.record(20, tiny_val=0.5, tiny_test=0.90, big_val=0.8, big_test=0.90)],
                1: [R.record(10, tiny_val=0.5, tiny_test=0.50, big_val=0.5, big_test=0.70),
                    R.record(20, tiny_val=0.7, tiny_test=0.66, big_val=0.8, big_test=0.84)]}
FEDAVG_SEEDS = {("tiny", 0): [R.record(10, fedavg_val=0.5, fedavg_test=0.52),
                              R.record(20, fedavg_val=0.4, fedavg_test=0.70)],
                ("tiny", 1): [R.record(10, fedavg_val=0.6, fedavg_test=0.58),
                              R.record(20, fedavg_val=0.5, fedavg_test=0.90)],
                ("big", 0): [R.record(10, fedavg_val=0.9, fedavg_test=0.86)],
                ("big", 1): [R.record(10, fedavg_val=0.9, fedavg_test=0.74)]}


def seed_workdirs(tmp_path):
    workdirs = []
    for seed, records in SHARED_SEEDS.items():
        config = dict(R.make_config(), seed=seed)
        workdirs.append(R.make_workdir(tmp_path / f"shared_{seed}", config, records,
                                       R.make_cost(1000 + 200 * seed, 3000 + 600 * seed, 4000)))
    for (name, seed), records in FEDAVG_SEEDS.items():
        config = dict(R.make_config(fedavg=R.TINY if name == "tiny" else R.BIG), seed=seed)
        macs = 1000 if name == "tiny" else 2000
        workdirs.append(R.make_workdir(tmp_path / f"fedavg_{name}_{seed}", config, records,
                                       R.make_cost(macs + 100 * seed, 3 * macs, 5000)))
    return workdirs


def test_several_seeds_give_mean_std_paired_differences_and_bands(tmp_path, monkeypatch):
    pareto = capture(monkeypatch, combined_files, "plot_pareto")
    curves = capture(monkeypatch, combined_files, "plot_curves")
    workdirs = seed_workdirs(tmp_path)
    out = tmp_path / "out"
    result = compare.write_combined_report(workdirs[::-1], str(out))  # any order
    # tiny: weight-shared 0.60 (seed 0, round 10), 0.66 (seed 1, round 20); FedAvg 0.52, 0.58 (round 10).
    # Mean 63 and 55; sample std of (60, 66) = sqrt(18) = 4.2426 and of (52, 58) too; paired differences
    # 8 and 8: +8.00, std 0.
    # big: weight-shared 0.80, 0.84: mean 82, std sqrt(8) = 2.8284; FedAvg 0.86, 0.74: mean 80, std
    # sqrt(72) = 8.4853; paired differences -6 and +10: +2.00, std sqrt(128) = 11.3137.
    text = open(out / "report.md").read()
    assert R.table_row(text, "tiny")[4:] == ["63.00 +- 4.24 (2)", "55.00 +- 4.24 (2)", "+8.00 +- 0.00"]
    assert R.table_row(text, "big")[4:] == ["82.00 +- 2.83 (2)", "80.00 +- 8.49 (2)", "+2.00 +- 11.31"]
    tiny = result["rows"][0]
    assert tiny["shared_test_accuracies"] == {0: 0.60, 1: 0.66} and tiny["shared_rounds"] == {0: 10, 1: 20}
    assert tiny["shared_round"] is None and tiny["fedavg_rounds"] == {0: 10, 1: 10}
    # Cost per seed: weight-shared mean(1000, 1200) = 1100; FedAvg mean(1000, 1100) + mean(2000, 2100) = 3100.
    assert result["cost"]["weight_shared"]["total_macs"] == 1100
    assert result["cost"]["fedavg"]["total_macs"] == 3100
    assert result["cost"]["ratios"]["total_macs"] == pytest.approx(3100 / 1100)
    assert result["cost"]["fedavg_runs"] == 2 and result["cost"]["fedavg_runs_total"] == 4
    assert result["warnings"] == []
    assert "weight-shared run, per seed" in text and "seed 0, round 10" in text

    # The accuracy-vs-MACs figure: means with min-max bars; the legend states each side's measured cost.
    figure = pareto[0]
    line = by_gid(figure, "pareto-weight-shared")
    assert list(line.get_ydata()) == pytest.approx([63.0, 82.0])
    segments = by_gid(figure, "pareto-weight-shared-spread").get_segments()
    assert [y for s in segments for y in (s[0][1], s[1][1])] == pytest.approx([60.0, 66.0, 80.0, 84.0])
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    # training MACs per seed: weight-shared mean(3000, 3600) = 3300; FedAvg 3000 + 6000 = 9000.
    assert legend == ["weight-shared subnets, one supernet: 1 run per seed (mean of 2 seeds), 3.3 kMACs of "
                      "training", "FedAvg, each arch trained alone: 2 runs per seed (mean of 2 seeds), "
                      "9 kMACs of training"]
    assert "2.73x the compute" in figure.axes[0].get_title()  # 9000 / 3300

    # The curves: per arch and split, mean over seeds at the common rounds with a min-max band.
    figure = curves[0]
    shared_val = by_gid(figure, "curve-val-tiny-weight-shared")
    assert list(shared_val.get_xdata()) == [10, 20]
    assert list(shared_val.get_ydata()) == pytest.approx([55.0, 60.0])  # (60+50)/2, (50+70)/2
    band = by_gid(figure, "curve-val-tiny-weight-shared-band").get_paths()[0].vertices
    assert {round(y, 6) for y in band[:, 1]} == {50.0, 60.0, 70.0}  # min 50, 50; max 60, 70
    fedavg_big = by_gid(figure, "curve-test-big-fedavg")
    assert list(fedavg_big.get_xdata()) == [10] and list(fedavg_big.get_ydata()) == pytest.approx([80.0])
    ids = svg_ids(out / "curves.svg")
    assert {"curve-val-tiny-weight-shared-band", "curve-val-tiny-fedavg-band", "panel-test-big"} <= ids
    assert {"pareto-weight-shared", "pareto-fedavg",
            "pareto-weight-shared-spread"} <= svg_ids(out / "pareto.svg")

    # CSV: the table at full precision, and every run's own number.
    for row in read_csv(out / "report_accuracy.csv"):
        cells = R.table_row(text, row["arch"])
        assert cells[4] == (f"{float(row['weight_shared_mean_percent']):.2f} +- "
                            f"{float(row['weight_shared_std_percent']):.2f} ({row['weight_shared_seeds']})")
        assert cells[5] == (f"{float(row['fedavg_mean_percent']):.2f} +- "
                            f"{float(row['fedavg_std_percent']):.2f} ({row['fedavg_seeds']})")
        assert cells[6] == (f"{float(row['difference_points']):+.2f} +- "
                            f"{float(row['difference_std_points']):.2f}")
    seeds = read_csv(out / "report_seeds.csv")
    tiny_seeds = [r for r in seeds if r["arch"] == "tiny"]
    assert [(r["side"], r["seed"], r["round"]) for r in tiny_seeds] == [
        ("weight-shared", "0", "10"), ("weight-shared", "1", "20"),
        ("FedAvg", "0", "10"), ("FedAvg", "1", "10")]
    assert [float(r["test_accuracy_percent"]) for r in tiny_seeds] == pytest.approx([60, 66, 52, 58])
    assert tiny_seeds[2]["workdir"] == str(tmp_path / "fedavg_tiny_0")
    assert all(os.path.isfile(out / link) for link in linked_files(out / "report.md"))
    assert sorted(os.path.basename(p) for p in result["files"]) == sorted(p.name for p in out.iterdir())
    assert set(linked_files(out / "report.md")) == {os.path.basename(p) for p in result["files"][1:]}


def test_one_seed_keeps_plain_numbers_and_no_bands(tmp_path, monkeypatch):
    curves = capture(monkeypatch, combined_files, "plot_curves")
    out = tmp_path / "out"
    compare.write_combined_report(R.combined_workdirs(tmp_path), str(out))
    text = open(out / "report.md").read()
    assert "+-" not in text and R.table_row(text, "tiny")[4:] == ["62.00", "57.00", "+5.00"]
    assert not any(str(a.get_gid()).endswith("-band") for a in curves[0].findobj())
    ids = svg_ids(out / "curves.svg") | svg_ids(out / "pareto.svg")
    assert not any(i.endswith(("-band", "-spread")) for i in ids)
    legend = [t.get_text() for t in curves[0].axes[0].get_legend().get_texts()]
    assert legend == ["weight-shared", "FedAvg"]


def test_seeds_must_agree_on_every_other_setting(tmp_path, capsys):
    workdirs = seed_workdirs(tmp_path)
    with open(os.path.join(workdirs[1], "config.json")) as f:
        config = json.load(f)
    config["fl"]["rounds"] = 40
    with open(os.path.join(workdirs[1], "config.json"), "w") as f:
        json.dump(config, f)
    with pytest.raises(ValueError, match="differ in fl.rounds"):
        compare.combine_runs(workdirs)
    again = R.make_workdir(tmp_path / "fedavg_tiny_0_again", dict(R.make_config(fedavg=R.TINY), seed=0),
                           FEDAVG_SEEDS[("tiny", 0)], R.make_cost(1, 1, 1))
    with pytest.raises(ValueError, match="two FedAvg runs of the arch .* with seed 0"):
        compare.combine_runs([workdirs[0], workdirs[2], again])


def test_fedavg_seeds_missing_from_the_weight_shared_side_are_warned(tmp_path):
    workdirs = seed_workdirs(tmp_path)
    result = compare.combine_runs([w for w in workdirs if not w.endswith("fedavg_big_1")])
    assert result["warnings"] == ['FedAvg of {"d":[0],"e":1.0}: seeds 0, the weight-shared runs: seeds 0, 1; '
                                  "the paired difference uses the common seeds"]
    big = result["rows"][1]
    assert big["fedavg_test_accuracy"] == pytest.approx(0.86) and big["fedavg_test_accuracy_std"] == 0.0
    assert math.isnan(big["difference_std"]) and big["paired_seeds"] == 1


DIGEST = "a" * 64  # the state digest of the hand-made checkpoint below


def add_checkpoint(workdir, step, digest=DIGEST):
    """A checkpoint's host JSON as run/checkpoint.py writes it (all the report reads of a checkpoint)."""
    host = os.path.join(workdir, "checkpoints", str(step), "host")
    os.makedirs(host)
    with open(os.path.join(host, "metadata"), "w") as f:
        json.dump({"round": step, "digest": digest, "pending": []}, f)


def test_the_report_reads_a_checkpoint_where_the_run_writes_it(tmp_path):
    from superfed_jax.run import checkpoint
    add_checkpoint(str(tmp_path), 20)
    assert checkpoint.host_json_path(str(tmp_path), 20) == str(tmp_path / "checkpoints/20/host/metadata")
    assert search_front.newest_checkpoint(str(tmp_path)) == (20, DIGEST)
    add_checkpoint(str(tmp_path), 30)
    (tmp_path / "checkpoints/30/host/metadata").write_text("{torn")  # unreadable: the next older one
    assert search_front.newest_checkpoint(str(tmp_path)) == (20, DIGEST)
    assert search_front.newest_checkpoint(str(tmp_path / "none")) is None


def test_stale_reason_compares_round_and_digest():
    search = dict(make_search(), checkpoint_digest=DIGEST)
    assert search_front.stale_reason(search, (20, DIGEST)) is None
    assert search_front.stale_reason(search, None) is None  # no checkpoint to compare with
    assert "round 20, but the run's newest checkpoint is of round 30" in search_front.stale_reason(
        search, (30, DIGEST))
    assert "--config.overwrite=True" in search_front.stale_reason(search, (20, "b" * 64))
    old = make_search()  # written before the digest was recorded: the round only
    assert search_front.stale_reason(old, (20, "b" * 64)) is None
    assert search_front.stale_reason(old, (30, "b" * 64)) is not None


def stale_message(workdir, searched_round):
    return (f"{os.path.join(workdir, 'search.json')} is stale: it searched the supernet of round "
            f"{searched_round}, but the run's newest checkpoint is of round 30 (the run trained on, or was "
            "started over, after the search). Its subnets and accuracies are not those of the run's "
            "supernet, so they are not used. Search again: python -m superfed_jax.posttrain.search "
            f"--workdir={workdir} --budget=macs=1000")


def test_a_search_of_an_earlier_checkpoint_is_refused_by_the_report(tmp_path, capsys):
    workdir = R.make_workdir(tmp_path, R.make_config(), R.SINGLE_RECORDS, space=dict(R.SPACE))
    add_checkpoint(workdir, 30)
    (tmp_path / "search.json").write_text(json.dumps(dict(make_search(), checkpoint_digest=DIGEST)))
    with pytest.raises(search_front.StaleSearch) as refused:
        run_report.write_run_report(workdir)
    assert str(refused.value) == stale_message(workdir, 20)
    assert not (tmp_path / "report.md").exists()  # refused before anything was written
    from superfed_jax.reports import cli
    assert cli.main([workdir]) == 2
    assert capsys.readouterr().err.strip() == f"error: {stale_message(workdir, 20)}"


def test_a_search_of_an_overwritten_run_is_refused_by_the_report(tmp_path):
    workdir = R.make_workdir(tmp_path, R.make_config(), R.SINGLE_RECORDS, space=dict(R.SPACE))
    add_checkpoint(workdir, 20, digest="b" * 64)  # round 20 again, other weights
    (tmp_path / "search.json").write_text(json.dumps(dict(make_search(), checkpoint_digest=DIGEST)))
    with pytest.raises(search_front.StaleSearch, match=r"search.json is stale: it searched a supernet of "
                       r"round 20 whose weights the run no longer holds: .* started over "
                       r"\(--config.overwrite=True\).* Search again: python -m superfed_jax.posttrain.search "
                       r"--workdir=\S+ --budget=macs=1000$"):
        run_report.write_run_report(workdir)


def test_a_current_search_and_an_old_one_of_the_same_round_are_drawn(tmp_path):
    workdir = R.make_workdir(tmp_path, R.make_config(), R.SINGLE_RECORDS, space=dict(R.SPACE))
    add_checkpoint(workdir, 20)
    for search in (dict(make_search(), checkpoint_digest=DIGEST), make_search()):
        (tmp_path / "search.json").write_text(json.dumps(search))
        assert run_report.write_run_report(workdir)["stale_search"] is None
        assert "search.png" in linked_files(tmp_path / "report.md")


def test_the_training_runs_report_leaves_a_stale_search_out(tmp_path):
    workdir = R.make_workdir(tmp_path, R.make_config(), R.SINGLE_RECORDS, space=dict(R.SPACE))
    add_checkpoint(workdir, 20)
    (tmp_path / "search.json").write_text(json.dumps(dict(make_search(), checkpoint_digest=DIGEST)))
    run_report.write_run_report(workdir)
    assert (tmp_path / "search.png").exists()
    add_checkpoint(workdir, 30)  # the run resumed and trained on
    written = run_report.write_run_report(workdir, skip_stale_search=True)
    assert written["stale_search"] == stale_message(workdir, 20)
    assert f"Not drawn: {stale_message(workdir, 20)}" in open(tmp_path / "report.md").read()
    assert not any((tmp_path / n).exists() for n in ("search.png", "search.svg", "report_search.csv"))


def test_seeds_of_a_two_stage_space_combine_and_must_track_the_same_archs(tmp_path):
    """Archs of several blocks (arrays of depths) are compared by value, not by array truth."""
    space = dict(R.SPACE, stage_widths=(4, 4), stage_strides=(1, 1))
    tracked = {"tiny": {"d": [0, 0], "e": 0.5}, "big": {"d": [0, 0], "e": 1.0}}
    workdirs = []
    for seed, archs in ((0, tracked), (1, tracked), (2, dict(tracked, big={"d": [0, 0], "e": 0.75}))):
        config = dict(R.make_config(space=space), seed=seed)
        config["eval"]["tracked"] = json.dumps(archs)
        workdirs.append(R.make_workdir(tmp_path / f"shared_{seed}", config, SHARED_SEEDS[seed % 2],
                                       R.make_cost(1000, 3000, 4000)))
    result = compare.combine_runs(workdirs[:2])
    assert [r["shared_test_accuracies"] for r in result["rows"]] == [{0: 0.60, 1: 0.66}, {0: 0.80, 1: 0.84}]
    with pytest.raises(ValueError, match="differ in their search space or tracked archs"):
        compare.combine_runs(workdirs)


# ------------------------------------------------------------------------------- figure styles (issue 25.6)

from superfed_jax.reports import cli as report_cli  # noqa: E402
from superfed_jax.reports import plot  # noqa: E402

FIGURES = ("pareto", "curves", "train_loss")


def write_rounds(workdir, losses, first=1):
    """rounds.jsonl with one row per loss, rounds from `first`, as the driver writes them."""
    with open(os.path.join(workdir, "rounds.jsonl"), "w") as f:
        f.writelines(json.dumps({"round": first + i, "beta": 0.5, "train_loss": loss, "clients_nonfinite": 0,
                                 "seconds": 0.1, "wall_time": 1.0}) + "\n" for i, loss in enumerate(losses))


def styled_run(tmp_path, monkeypatch, style):
    """The one-run report of SINGLE_RECORDS (rounds 10, 20, 30) with 30 rounds of rounds.jsonl, in `style`;
    returns ({writer name: its figure}, the report's result)."""
    captured = {name: capture(monkeypatch, run_report, name) for name in ("plot_pareto", "plot_curves", "plot_loss")}
    workdir = R.make_workdir(tmp_path, R.make_config(), R.SINGLE_RECORDS)
    write_rounds(workdir, [2.0 - 0.05 * r for r in range(30)])
    result = run_report.write_run_report(workdir, style=style)
    return {name: figures[0] for name, figures in captured.items()}, result


def suptitle(figure) -> str:
    return figure._suptitle.get_text() if figure._suptitle is not None else ""


def test_paper_style_drops_titles_shares_y_and_has_column_widths(tmp_path, monkeypatch):
    figures, _ = styled_run(tmp_path, monkeypatch, plot.PAPER)
    for name, figure in figures.items():
        assert suptitle(figure) == "" and all(a.get_title() in ("", "validation accuracy", "test accuracy")
                                              for a in figure.axes), name
    assert figures["plot_pareto"].axes[0].get_title() == ""  # a one-axes figure: the caption's job
    assert tuple(figures["plot_pareto"].get_size_inches()) == pytest.approx((plot.PAPER_SINGLE, 2.5))
    assert tuple(figures["plot_loss"].get_size_inches()) == pytest.approx((plot.PAPER_SINGLE, 2.0))
    assert figures["plot_curves"].get_size_inches()[0] == pytest.approx(plot.PAPER_DOUBLE)
    # validation and test accuracy: one y axis, labelled once, one legend.
    val, test = figures["plot_curves"].axes
    assert val.get_shared_y_axes().joined(val, test) and val.get_ylim() == test.get_ylim()
    assert val.get_ylabel() == "accuracy (%)" and test.get_ylabel() == ""
    assert val.get_legend() is not None and test.get_legend() is None
    assert val.yaxis.label.get_fontsize() == 8 and val.xaxis.get_ticklabels()[0].get_fontsize() == 7
    # 300 dpi: a 3.3 in PNG is 990 pixels wide.
    assert matplotlib_image().imread(tmp_path / "pareto.png").shape[1] == 990


def matplotlib_image():
    import matplotlib.image
    return matplotlib.image


def test_default_style_keeps_titles_sizes_and_own_y_axes(tmp_path, monkeypatch):
    figures, _ = styled_run(tmp_path, monkeypatch, plot.DEFAULT)
    assert "accuracy by round" in suptitle(figures["plot_curves"])
    assert "best validation" in figures["plot_pareto"].axes[0].get_title()
    assert "training loss by round" in figures["plot_loss"].axes[0].get_title()
    assert tuple(figures["plot_pareto"].get_size_inches()) == (7, 4.5)
    val, test = figures["plot_curves"].axes
    assert not val.get_shared_y_axes().joined(val, test)
    assert (val.get_ylabel(), test.get_ylabel()) == ("validation accuracy (%)", "test accuracy (%)")


def test_width_and_height_override_every_figure(tmp_path, monkeypatch):
    figures, _ = styled_run(tmp_path, monkeypatch, plot.style_named("paper", width=5.0, height=4.0))
    assert all(tuple(f.get_size_inches()) == pytest.approx((5.0, 4.0)) for f in figures.values())
    # A width alone keeps each figure's shape: the paper pareto's 3.3 x 2.5 in becomes 6.6 x 5.
    assert plot.style_named("paper", width=6.6).size(3.3, 2.5) == pytest.approx((6.6, 5.0))
    assert plot.style_named("default").size(7, 4.5) == (7, 4.5)


def test_training_loss_figure_and_csv_hold_rounds_jsonl(tmp_path, monkeypatch):
    captured = capture(monkeypatch, run_report, "plot_loss")
    workdir = R.make_workdir(tmp_path, R.make_config(), R.SINGLE_RECORDS)
    losses = [2.0, 1.5, float("nan"), 1.0, 0.75]  # round 3: every client failed (NaN in rounds.jsonl)
    write_rounds(workdir, losses)
    with open(os.path.join(workdir, "rounds.jsonl"), "a") as f:  # a resumed run's rewritten round 5 wins
        f.write(json.dumps({"round": 5, "train_loss": 0.5}) + "\n")
    run_report.write_run_report(workdir)
    [line] = [a for a in captured[0].findobj() if a.get_gid() == "train-loss"]
    assert list(line.get_xdata()) == [1, 2, 3, 4, 5]
    expected = [2.0, 1.5, math.nan, 1.0, 0.5]
    assert list(line.get_ydata()) == pytest.approx(expected, nan_ok=True)
    rows = read_csv(tmp_path / "report_train_loss.csv")
    assert [int(r["round"]) for r in rows] == [1, 2, 3, 4, 5]
    # write_csv leaves a NaN's cell empty, as in the other tables.
    assert [float(r["train_loss"] or "nan") for r in rows] == pytest.approx(expected, nan_ok=True)
    assert svg_vertices(tmp_path / "train_loss.svg", "train-loss") >= 4  # the gap splits the line
    # The ticks are the evaluation rounds (metrics.jsonl: 10, 20, 30), not every round.
    assert list(captured[0].axes[0].get_xticks()) == [10, 20, 30]
    text = open(tmp_path / "report.md").read()
    assert "![training loss by round](train_loss.png)" in text and "report_train_loss.csv" in text


def test_a_run_without_rounds_jsonl_says_so(tmp_path):
    workdir = R.make_workdir(tmp_path, R.make_config(), R.SINGLE_RECORDS)
    run_report.write_run_report(workdir)
    assert "Not drawn: the run has no rounds.jsonl." in open(tmp_path / "report.md").read()
    assert not (tmp_path / "train_loss.png").exists()


def test_a_damaged_rounds_jsonl_is_one_error_line(tmp_path, capsys):
    workdir = R.make_workdir(tmp_path, R.make_config(), R.SINGLE_RECORDS)
    write_rounds(workdir, [1.0])
    with open(os.path.join(workdir, "rounds.jsonl"), "a") as f:
        f.write("{not json\n")
    R.expect_error(capsys, [workdir], "rounds.jsonl, line 2")


def test_a_single_arch_run_has_no_pareto_figure(tmp_path):
    workdir = R.make_workdir(tmp_path, R.make_config(fedavg=R.TINY), [
        R.record(10, fedavg_val=0.5, fedavg_test=0.5), R.record(20, fedavg_val=0.7, fedavg_test=0.6)])
    for name in ("pareto.png", "pareto.svg"):  # left by an earlier report: a single dot
        (tmp_path / name).write_text("old")
    result = run_report.write_run_report(workdir)
    assert not (tmp_path / "pareto.png").exists() and not (tmp_path / "pareto.svg").exists()
    text = open(tmp_path / "report.md").read()
    assert "No accuracy-vs-MACs figure: the run tracks one arch (fedavg, FedAvg of one arch)" in text
    assert "pareto" not in " ".join(linked_files(tmp_path / "report.md"))
    assert result["plot"] == str(tmp_path / "curves.png") and (tmp_path / "curves.png").is_file()


def test_round_ticks_are_the_evaluation_rounds_thinned_from_the_last():
    assert plot.round_ticks([30, 10, 20, 20], 6) == [10, 20, 30]
    assert plot.round_ticks(range(5, 105, 5), 8) == [10, 25, 40, 55, 70, 85, 100]  # 20 evaluations, every 3rd
    assert plot.round_ticks(range(1, 151), 6)[-1] == 150 and len(plot.round_ticks(range(1, 151), 6)) <= 6
    assert plot.round_ticks([], 6) == []


def test_curves_are_ticked_at_the_evaluation_rounds(tmp_path, monkeypatch):
    figures, _ = styled_run(tmp_path, monkeypatch, plot.DEFAULT)
    assert all(list(a.get_xticks()) == [10, 20, 30] for a in figures["plot_curves"].axes)


@pytest.mark.parametrize("style", ["default", "paper"])
def test_every_figure_is_written_as_png_and_svg_in_both_styles(tmp_path, style):
    workdir = R.make_workdir(tmp_path / "run", R.make_config(), R.SINGLE_RECORDS)
    write_rounds(workdir, [1.0, 0.5])
    assert report_cli.main([workdir, f"--style={style}"]) == 0
    combined = R.combined_workdirs(tmp_path)
    assert report_cli.main(combined + [f"--out={tmp_path / 'cmp'}", f"--style={style}"]) == 0
    for out, names in ((tmp_path / "run", FIGURES), (tmp_path / "cmp", ("pareto", "curves"))):
        for name in names:
            for ext in ("png", "svg"):
                assert (out / f"{name}.{ext}").stat().st_size > 0, (out, name, ext)
        links = linked_files(out / "report.md")
        assert {f"{name}.svg" for name in names} <= set(links)


def test_the_combined_report_in_paper_style(tmp_path, monkeypatch):
    pareto = capture(monkeypatch, combined_files, "plot_pareto")
    curves = capture(monkeypatch, combined_files, "plot_curves")
    assert report_cli.main(R.combined_workdirs(tmp_path) + [f"--out={tmp_path / 'out'}", "--style=paper"]) == 0
    [axes] = pareto[0].axes
    assert axes.get_title() == "" and [t.get_text() for t in axes.get_legend().get_texts()] == [
        "weight-shared", "FedAvg"]  # the costs are in report.md's table, for the caption
    assert pareto[0].get_size_inches()[0] == pytest.approx(plot.PAPER_SINGLE)
    figure = curves[0]
    assert suptitle(figure) == "" and figure.get_size_inches()[0] == pytest.approx(plot.PAPER_DOUBLE)
    first = figure.axes[0]
    assert all(first.get_shared_y_axes().joined(first, a) for a in figure.axes)  # 3 archs x 2 splits
    # y labels in the first column (a row is a split), x labels in the bottom row, one legend.
    assert [a.get_ylabel() for a in figure.axes] == ["validation accuracy (%)", "", "", "test accuracy (%)", "", ""]
    assert [a.get_xlabel() for a in figure.axes] == ["", "", "", "round", "round", "round"]
    assert sum(a.get_legend() is not None for a in figure.axes) == 1


def test_an_unknown_style_or_size_is_one_error_line(tmp_path, capsys):
    workdir = R.make_workdir(tmp_path, R.make_config(), R.SINGLE_RECORDS)
    for argv, message in (([workdir, "--style=poster"], "unknown figure style 'poster'; the styles are default, paper"),
                          ([workdir, "--width=wide"], "--width=wide: not a number of inches"),
                          ([workdir, "--height=0"], "--height=0: a figure's height is a positive number")):
        assert report_cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "report.md").exists()  # refused before anything is written


def test_the_search_figure_in_paper_style(tmp_path, monkeypatch):
    figures = capture(monkeypatch, run_report, "plot_search")
    workdir = R.make_workdir(tmp_path, R.make_config(), R.SINGLE_RECORDS, space=dict(R.SPACE))
    search = make_search()
    search["results"].append(dict(search["results"][0], budget="macs=900"))  # a second budget, a second panel
    (tmp_path / "search.json").write_text(json.dumps(search))
    run_report.write_run_report(workdir, style=plot.PAPER)
    figure = figures[0]
    first, second = figure.axes
    assert suptitle(figure) == "" and first.get_shared_y_axes().joined(first, second)
    assert figure.get_size_inches()[0] == pytest.approx(plot.PAPER_DOUBLE)
    assert first.get_ylabel() == "validation accuracy (%)" and second.get_ylabel() == ""
    assert first.get_legend() is not None and second.get_legend() is None
    assert (tmp_path / "search.png").is_file() and (tmp_path / "search.svg").is_file()
