"""The headline metric (`eval.metric`, superfed_jax/federated/metric.py) and its direction, everywhere it acts.

A language model is chosen and compared by perplexity, where lower is better. Hand-made runs of a family
that reports perplexity (`tests/perplexity_mlp.py`: the example MLP with 'perplexity' in its metrics) whose
best-accuracy and best-perplexity rounds differ show the selection, the run report, the comparison with
FedAvg and its verdicts following perplexity; hand-computed intervals fix the verdicts' direction; the
search's Pareto front keeps the lowest values; validation refuses a metric the family does not report. The
last test trains and searches such a family through the real commands.
"""
import csv
import json
import math
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # examples/ and tests/ are imported as packages from the repository root
    sys.path.insert(0, REPO)

from superfed_jax import config as config_lib  # noqa: E402
from superfed_jax import config_schema  # noqa: E402
from superfed_jax import validation  # noqa: E402
from superfed_jax.federated import metric as metric_lib  # noqa: E402
from superfed_jax.posttrain import evolution as evolution_lib  # noqa: E402
from superfed_jax.posttrain import search as search_lib  # noqa: E402
from superfed_jax.reports import claim as claim_lib  # noqa: E402
from superfed_jax.reports import compare as report_compare  # noqa: E402
from superfed_jax.reports import run_record  # noqa: E402
from superfed_jax.reports import run_report  # noqa: E402
from superfed_jax.reports import search_front  # noqa: E402
from superfed_jax.run import progress  # noqa: E402
from superfed_jax.supernet import family as family_lib  # noqa: E402
from test_claim import _load_script as load_claim_script  # noqa: E402
from test_launch import launch, read_metrics  # noqa: E402
from test_report import make_config, make_cost, make_workdir, record, table_row  # noqa: E402
from trained_run import run_module  # noqa: E402

PPL_FAMILY = "tests.perplexity_mlp:PerplexityMLP"
MLP_SPACE = {"hidden_layers": 1, "width_choices": [2, 4], "input_shape": [2, 2, 1], "num_classes": 3}
TINY = {"depth": 1, "width": 2}
BIG = {"depth": 1, "width": 4}
PPL, ACC, LOSS = metric_lib.PERPLEXITY, metric_lib.ACCURACY, metric_lib.LOSS


def ppl_config(metric=None, fedavg=None, seed=0):
    """A real base config of the perplexity MLP tracking TINY and BIG (FedAvg of ``fedavg``), as a dict;
    ``metric`` None leaves eval.metric out (a config written before the field existed)."""
    config = config_lib.base_config(PPL_FAMILY)
    config.model.family = PPL_FAMILY
    config.space.update(MLP_SPACE)
    config.data.name = "digits"
    config.seed = seed
    config.fl.update(rounds=30, num_clients=4, clients_per_round=2)
    config.eval.tracked = json.dumps({"tiny": TINY, "big": BIG})
    if fedavg is not None:
        config = config_lib.fedavg_baseline(config, json.dumps(fedavg))
    result = config.to_dict()
    if metric is None:
        del result["eval"]["metric"]
    else:
        result["eval"]["metric"] = metric
    return result


def ppl_record(round_, **values):
    """A metrics record of the perplexity family: name_split=(accuracy, perplexity); loss = log(perplexity)."""
    result = {"round": round_, "beta": 0.5, "train_loss": 1.0, "clients_nonfinite": 0}
    for key, (accuracy, perplexity) in values.items():
        name, split = key.rsplit("_", 1)
        result[f"{name}/{split}_accuracy"] = accuracy
        result[f"{name}/{split}_loss"] = math.log(perplexity)
        result[f"{name}/{split}_perplexity"] = perplexity
    return result


# Round 10 has the best mean validation accuracy (0.8), round 20 the lowest mean validation perplexity
# (mean of 12 and 8 = 10, against 20 and 15 at rounds 10 and 30); round 30 is the last.
PPL_RECORDS = [ppl_record(10, tiny_val=(0.8, 24.0), tiny_test=(0.75, 25.0), big_val=(0.8, 16.0),
                          big_test=(0.7, 17.0)),
               ppl_record(20, tiny_val=(0.5, 12.0), tiny_test=(0.45, 12.5), big_val=(0.6, 8.0),
                          big_test=(0.55, 8.25)),
               ppl_record(30, tiny_val=(0.6, 18.0), tiny_test=(0.55, 19.0), big_val=(0.7, 12.0),
                          big_test=(0.65, 13.0))]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


# ------------------------------------------------------------------------------ the metric itself


def test_headline_metric_resolves_auto_by_the_family_and_refuses_what_it_does_not_report():
    assert metric_lib.headline_metric("auto", ("accuracy", "loss")) is ACC
    assert metric_lib.headline_metric(None, ("accuracy", "loss")) is ACC  # an old config: auto
    assert metric_lib.headline_metric("auto", ("accuracy", "loss", "perplexity")) is PPL
    assert metric_lib.headline_metric("accuracy", ("accuracy", "loss", "perplexity")) is ACC
    assert metric_lib.headline_metric("loss", ("accuracy", "loss")) is LOSS
    with pytest.raises(ValueError) as error:
        metric_lib.headline_metric("perplexity", ("accuracy", "loss"))
    assert str(error.value) == ("eval.metric='perplexity': not reported by the model family; allowed for this "
                                "family: 'auto', 'accuracy', 'loss'")
    with pytest.raises(ValueError, match="eval.metric='bleu': unknown"):
        metric_lib.headline_metric("bleu", ("accuracy", "loss"))
    assert metric_lib.config_metric({"eval": {}}, ("accuracy", "loss", "perplexity")) is PPL
    assert metric_lib.config_metric({}, ("accuracy", "loss")) is ACC


def test_each_metric_has_its_direction_and_display():
    assert ACC.higher_is_better and not PPL.higher_is_better and not LOSS.higher_is_better
    assert PPL.is_better(9.0, 10.0) and not PPL.is_better(10.0, 9.0) and ACC.is_better(0.9, 0.8)
    assert (ACC.text(0.8125), PPL.text(12.345), LOSS.text(2.5), PPL.text(math.nan)) == ("81.25", "12.35",
                                                                                         "2.5000", "n/a")
    assert (ACC.difference_text(-0.0125), PPL.difference_text(-1.5)) == ("-1.25", "-1.50")
    assert PPL.key("tiny", "val") == "tiny/val_perplexity"
    assert PPL.from_loss(math.log(7.0)) == pytest.approx(7.0) and PPL.from_loss(1e6) == math.inf
    assert LOSS.from_loss(2.0) == 2.0
    with pytest.raises(ValueError):
        ACC.from_loss(2.0)


def test_the_config_field_is_resumable_and_absent_means_auto():
    field = config_schema.field("eval.metric")
    assert (field.default, field.kind, field.allowed, field.resumable, field.absent) == (
        "auto", "choice", ("auto", "accuracy", "loss", "perplexity"), True, "auto")
    assert config_lib.base_config().eval.metric == "auto"


def test_validation_refuses_a_metric_the_family_does_not_report():
    config = config_lib.base_config()
    config.eval.metric = "perplexity"  # the OFA-ResNet reports accuracy and loss only
    with pytest.raises(ValueError) as error:
        validation.check_config(config, check_files=False)
    assert ("eval.metric='perplexity': not reported by the model family; allowed for this family: 'auto', "
            "'accuracy', 'loss'") in str(error.value)
    config.eval.metric = "ppl"
    with pytest.raises(ValueError, match=r"eval.metric='ppl': allowed values are \['auto', 'accuracy', "
                                         r"'loss', 'perplexity'\]"):
        validation.check_config(config, check_files=False)
    for value in ("auto", "accuracy", "loss"):
        config.eval.metric = value
        validation.check_config(config, check_files=False)
    config = config_lib.base_config(PPL_FAMILY)
    config.model.family = PPL_FAMILY
    config.eval.metric = "perplexity"
    validation.check_config(config, check_files=False)


# ------------------------------------------------------------------------------------- selection


def test_select_best_follows_the_metric_in_its_direction():
    names = ["tiny", "big"]
    assert run_record.select_best(PPL_RECORDS, names)["round"] == 10  # accuracy: highest mean 0.8
    assert run_record.select_best(PPL_RECORDS, names, PPL)["round"] == 20  # perplexity: lowest mean 10
    assert run_record.select_best(PPL_RECORDS, names, LOSS)["round"] == 20  # loss: monotone in it
    diverged = [ppl_record(1, tiny_val=(0.1, 50.0), big_val=(0.1, 60.0)),
                ppl_record(2, tiny_val=(0.1, math.nan), big_val=(0.1, 1.0)),
                ppl_record(3, tiny_val=(0.1, math.inf), big_val=(0.1, 1.0))]
    assert run_record.select_best(diverged, names, PPL)["round"] == 1  # NaN and inf never win
    tie = [ppl_record(1, tiny_val=(0.1, 5.0), big_val=(0.1, 5.0)), ppl_record(2, tiny_val=(0.1, 4.0),
                                                                              big_val=(0.1, 6.0))]
    assert run_record.select_best(tie, names, PPL)["round"] == 1  # equal means: the first


def test_a_perplexity_run_is_selected_and_reported_by_perplexity(tmp_path):
    cost = make_cost(2_000_000, 6_000_000_000, 1_500_000, ratios=(3.5, 3.25, 3.0))
    workdir = make_workdir(tmp_path, ppl_config(), PPL_RECORDS, cost)  # eval.metric absent: auto
    run = run_record.read_run(workdir)
    assert run.metric is PPL
    result = run_report.write_run_report(workdir)
    assert result["best_round"] == 20
    assert [(r["name"], r["val_perplexity"], r["test_perplexity"]) for r in result["rows"]] == [
        ("tiny", 12.0, 12.5), ("big", 8.0, 8.25)]
    text = open(tmp_path / "report.md").read()
    assert ("Perplexities at round 20 of 30: the evaluation with the lowest mean validation perplexity over the "
            "tracked archs.") in text
    assert "| arch | d / e | MMACs | params | val perplexity | test perplexity |" in text
    assert table_row(text, "tiny")[-2:] == ["12.00", "12.50"] and table_row(text, "big")[-2:] == ["8.00", "8.25"]
    assert "## Perplexity by round" in text and "![perplexity vs MACs](pareto.png)" in text
    assert "accuracy" not in text.lower().replace("report_accuracy", "")  # nothing else says accuracy
    assert not os.path.exists(tmp_path / "report_accuracy.csv")
    rows = read_csv(tmp_path / "report_perplexity.csv")
    assert rows[0] == ["arch", "d / e", "MACs", "params", "round", "val_perplexity", "test_perplexity"]
    assert rows[1][0] == "tiny" and [float(v) for v in rows[1][4:]] == [20, 12.0, 12.5]
    curves = read_csv(tmp_path / "report_curves.csv")
    assert curves[0][5:] == ["mean_perplexity", "std_perplexity", "min_perplexity", "max_perplexity"]
    assert [float(r[5]) for r in curves[1:] if r[1] == "tiny" and r[2] == "val"] == [24.0, 12.0, 18.0]
    # The same run with eval.metric='accuracy' is the accuracy report of round 10.
    again = make_workdir(tmp_path / "acc", ppl_config("accuracy"), PPL_RECORDS, cost)
    assert run_report.write_run_report(again)["best_round"] == 10
    assert os.path.exists(tmp_path / "acc" / "report_accuracy.csv")
    assert "| val acc (%) | test acc (%) |" in open(tmp_path / "acc" / "report.md").read()


def test_old_run_directories_and_accuracy_runs_read_as_before(tmp_path):
    config = make_config()
    del config["eval"]["metric"]  # written before the field existed
    records = [record(10, tiny_val=0.5, big_val=0.7), record(20, tiny_val=0.8, big_val=0.6)]
    run = run_record.read_run(make_workdir(tmp_path / "old", config, records))
    assert run.metric is ACC
    assert run_record.arch_rows(run)[0]["val_accuracy"] == 0.8
    loss_config = make_config()
    loss_config["eval"]["metric"] = "loss"  # every family reports the loss; lower is better
    records = [record(10, tiny_val=0.5, big_val=0.7), record(20, tiny_val=0.8, big_val=0.6)]
    records[0]["tiny/val_loss"], records[1]["tiny/val_loss"] = 0.5, 2.0
    run = run_record.read_run(make_workdir(tmp_path / "loss", loss_config, records))
    assert run.metric is LOSS and run_record.arch_rows(run)[0]["round"] == 10
    bad = make_config()
    bad["eval"]["metric"] = "perplexity"
    with pytest.raises(ValueError, match="config.json eval.metric='perplexity': not reported"):
        run_record.read_run(make_workdir(tmp_path / "bad", bad, records))


def test_summary_table_and_progress_line_show_the_metric():
    family = family_lib.family_class(PPL_FAMILY).from_config(MLP_SPACE)
    tracked = {"tiny": family.arch_from_json(TINY)}
    table = run_report.summary_table(family, tracked, PPL_RECORDS[1], PPL)
    header, row = table.splitlines()
    assert header.split()[-4:] == ["val", "perplexity", "test", "perplexity"]
    assert row.split()[-2:] == ["12.0000", "12.5000"]
    values = progress.record_accuracies(PPL_RECORDS[1], ["tiny", "big"], PPL)
    assert values == {"tiny": 12.0, "big": 8.0}
    assert progress.validation_text(values, 20, 25, PPL) == "val@20 perplexity tiny=12.000 big=8.000"
    assert progress.validation_text({"tiny": 0.5}, 20, 20) == "val tiny=0.500"  # accuracy: as before


# ------------------------------------------------------------------------- compare and the claim


def test_claim_verdicts_follow_the_metric_direction_by_hand():
    # Perplexities of three seeds: differences weight-shared - FedAvg = -2, -1.5, -1.5; mean -5/3; sample
    # std sqrt(((-1/3)^2 + 2 (1/6)^2) / 2) = sqrt(1/12); t(0.975, 2) = 4.302653; half-width
    # 4.302653 * sqrt(1/12) / sqrt(3) = 4.302653 / 6 = 0.717109: interval [-2.383776, -0.949558].
    shared, fedavg = [10.0, 11.0, 12.0], [12.0, 12.5, 13.5]
    summary = claim_lib.summarize_arch(shared, fedavg, metric=PPL)
    difference = summary["difference"]
    assert difference["mean"] == pytest.approx(-5 / 3)
    assert difference["std"] == pytest.approx(math.sqrt(1 / 12))
    assert (difference["low"], difference["high"]) == (pytest.approx(-5 / 3 - 4.302653 / 6, abs=1e-6),
                                                       pytest.approx(-5 / 3 + 4.302653 / 6, abs=1e-6))
    assert summary["verdict"] == claim_lib.AHEAD == "ahead"  # lower perplexity: weight-shared ahead
    assert claim_lib.summarize_arch(shared, fedavg)["verdict"] == claim_lib.BEHIND  # read as accuracy
    assert claim_lib.summarize_arch(fedavg, shared, metric=PPL)["verdict"] == claim_lib.BEHIND
    assert claim_lib.summarize_arch([10.0, 12.0, 11.0], [11.0, 11.0, 11.0], metric=PPL)["verdict"] == \
        claim_lib.ON_A_PAR
    # The interval's ends decide, mirrored: high == 0 is 'ahead' as low == 0 is 'at least as accurate'.
    edge = {"n": 3, "low": -1.0, "high": 0.0}
    assert claim_lib.verdict(edge, PPL) == claim_lib.AHEAD and claim_lib.verdict(edge) == claim_lib.ON_A_PAR
    assert claim_lib.verdict({"n": 3, "low": 0.0, "high": 1.0}, PPL) == claim_lib.ON_A_PAR
    assert claim_lib.verdict({"n": 3, "low": 1e-9, "high": 1.0}, PPL) == claim_lib.BEHIND
    assert claim_lib.verdict_rule() == ("95% interval of the paired difference: lower bound >= 0 -> at least as "
                                        "accurate, upper bound < 0 -> behind, otherwise on a par; one seed -> "
                                        "no verdict")
    rows = {seed: [{"name": "tiny", "arch": TINY, "macs": 1, "params": 2, "shared_test_perplexity": a,
                    "fedavg_test_perplexity": b}] for seed, a, b in zip((0, 1, 2), shared, fedavg)}
    [row] = claim_lib.summarize(rows, metric=PPL)
    assert row["shared_test_perplexity"] == shared and row["verdict"] == "ahead"


def ppl_runs(tmp_path, shared_records, fedavg_records, seed=0, suffix=""):
    """A weight-shared perplexity run and FedAvg of TINY of one seed, with their cost.json."""
    cost = make_cost(1_000, 3_000, 500)
    return [make_workdir(tmp_path / f"shared{suffix}", ppl_config(seed=seed), shared_records, cost),
            make_workdir(tmp_path / f"fedavg_tiny{suffix}", ppl_config(fedavg=TINY, seed=seed), fedavg_records,
                         cost)]


def test_the_combined_report_compares_perplexity_shared_minus_fedavg(tmp_path):
    # A FedAvg run evaluates its one arch under the name 'fedavg' (config.fedavg_baseline).
    fedavg_records = [ppl_record(10, fedavg_val=(0.9, 20.0), fedavg_test=(0.9, 16.0)),
                      ppl_record(20, fedavg_val=(0.5, 14.0), fedavg_test=(0.4, 14.5)),
                      ppl_record(30, fedavg_val=(0.6, 15.0), fedavg_test=(0.5, 13.0))]  # best: round 20
    workdirs = ppl_runs(tmp_path, PPL_RECORDS, fedavg_records)
    result = report_compare.write_combined_report(workdirs, str(tmp_path / "out"))
    assert result["metric"] is PPL
    tiny = result["rows"][0]
    # weight-shared at round 20: 12.5; FedAvg at its round 20 (lowest validation perplexity, not the
    # highest accuracy of round 10 nor the lowest test perplexity of round 30): 14.5.
    assert (tiny["shared_round"], tiny["shared_test_perplexity"]) == (20, 12.5)
    assert (tiny["fedavg_round"], tiny["fedavg_test_perplexity"]) == (20, 14.5)
    assert tiny["difference"] == -2.0 and tiny["shared_test_perplexities"] == {0: 12.5}
    text = open(tmp_path / "out" / "report.md").read()
    assert ("| arch | d / e | MMACs | params | weight-shared test perplexity | FedAvg test perplexity "
            "| weight-shared - FedAvg (perplexity) |") in text
    assert table_row(text, "tiny")[4:] == ["12.50", "14.50", "-2.00"]
    assert "the lowest mean validation perplexity over its 2 tracked archs" in text
    header = read_csv(tmp_path / "out" / "report_perplexity.csv")[0]
    assert header[4:] == ["weight_shared_mean_perplexity", "weight_shared_std_perplexity", "weight_shared_seeds",
                          "fedavg_mean_perplexity", "fedavg_std_perplexity", "fedavg_seeds",
                          "difference_perplexity", "difference_std_perplexity"]
    seeds = read_csv(tmp_path / "out" / "report_seeds.csv")
    assert seeds[0][4] == "test_perplexity" and ["tiny", "FedAvg", "0", "20", "14.5"] in [r[:5] for r in seeds]
    assert not os.path.exists(tmp_path / "out" / "report_accuracy.csv")


def test_runs_selected_by_different_metrics_are_not_compared(tmp_path):
    shared, fedavg = ppl_runs(tmp_path, PPL_RECORDS, PPL_RECORDS)
    config = json.load(open(os.path.join(fedavg, "config.json")))
    config["eval"]["metric"] = "accuracy"
    json.dump(config, open(os.path.join(fedavg, "config.json"), "w"))
    with pytest.raises(ValueError, match="its headline metric is accuracy .* the weight-shared run .* is "
                                         "perplexity"):
        report_compare.combine_runs([shared, fedavg])


def test_the_claim_script_writes_perplexity_tables(tmp_path):
    script = load_claim_script()
    shared, fedavg = [10.0, 11.0, 12.0], [12.0, 12.5, 13.5]
    rows = {seed: [{"name": "tiny", "arch": TINY, "macs": 1_000, "params": 2, "shared_test_perplexity": a,
                    "fedavg_test_perplexity": b}] for seed, a, b in zip((0, 1, 2), shared, fedavg)}
    cost = {"weight_shared": {"total_macs": 1.0}, "fedavg": {"total_macs": 2.0}, "fedavg_runs": 1}
    result = {"config": "c.py", "seeds": [0, 1, 2], "overrides": [], "metric": "perplexity",
              "summary": claim_lib.summarize(rows, metric=PPL),
              "cost": claim_lib.cost_over_seeds({s: cost for s in (0, 1, 2)}),
              "per_seed": {str(s): {"wall_seconds": {}, "warnings": []} for s in (0, 1, 2)},
              "environment": {"cpu": {"model": "cpu", "cores": 2, "simd_flags": []}, "python": "3",
                              "versions": {}, "git": {"commit": "abc", "dirty": False}, "date": "today"}}
    text = script.claim_markdown(result)
    assert ("| arch | d / e | MMACs | params | weight-shared test perplexity | FedAvg test perplexity "
            "| difference (perplexity), mean [95% CI] | verdict |") in text
    assert "| 11.00 +- 1.00 | 12.67 +- 0.76 | -1.67 [-2.38, -0.95] | ahead |" in text
    assert 'Lower perplexity is better. Verdict: interval upper bound <= 0 -> "ahead"' in text
    assert "| tiny | 10.00 / 12.00 | 11.00 / 12.50 | 12.00 / 13.50 |" in text


# ---------------------------------------------------------------------------------------- search


def test_the_pareto_front_keeps_the_lowest_values_of_a_lower_is_better_metric():
    # (cost, perplexity): 0 (1, 30) front; 1 (2, 40) beaten by 0; 2 (2, 20) front; 3 (3, 20) beaten by 2
    # (same value, more cost); 4 (4, 10) front; 5 (5, 15) beaten by 4.
    points = [(1, 30.0), (2, 40.0), (2, 20.0), (3, 20.0), (4, 10.0), (5, 15.0)]
    assert search_front.non_dominated(points, higher_is_better=False) == [0, 2, 4]
    costs = np.array([p[0] for p in points], float)
    values = np.array([p[1] for p in points])
    assert evolution_lib.pareto_front(costs, PPL.score(values)).tolist() == [0, 2, 4]  # the search's own
    assert search_front.non_dominated(points) == [0, 1]  # read as accuracy: the highest


def ppl_search(evaluated=True):
    result = {"budget": "macs=5", "limits": {"macs": 5}, "front_metric": "macs",
              "front": [{"macs": 1, "val_perplexity": 30.0}, {"macs": 2, "val_perplexity": 20.0},
                        {"macs": 4, "val_perplexity": 10.0}]}
    if evaluated:
        result["evaluated"] = {"macs": [1, 2, 2, 3, 4, 5], "params": [1] * 6,
                               "val_perplexity": [30.0, 40.0, 20.0, 20.0, 10.0, 15.0]}
    return {"metric": "perplexity", "checkpoint_round": 30, "results": [result]}


def test_search_front_reads_and_writes_a_perplexity_search():
    search = ppl_search()
    assert search_front.search_metric(search) is PPL
    assert search_front.search_metric({"results": []}) is ACC  # an accuracy search has no 'metric'
    assert search_front.search_csv_header(search) == ["budget", "metric", "value", "val_perplexity", "on_front"]
    rows = search_front.search_csv_rows(search)
    assert [r[4] for r in rows] == [1, 0, 1, 0, 1, 0] and rows[0][3] == 30.0
    assert search_front.search_csv_header({"results": []}) == search_front.SEARCH_CSV_HEADER
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        search_front.search_metric({"metric": "bleu"})


def test_budget_report_records_the_metric_values_not_the_fitness():
    family = family_lib.family_class(PPL_FAMILY).from_config(MLP_SPACE)
    genes = np.stack([family_lib.to_genes(family, family.arch_from_json(a)) for a in (TINY, BIG)])
    perplexity = np.array([9.0, 4.0])
    evolution = evolution_lib.Evolution(genes, PPL.score(perplexity), [-9.0, -4.0])
    budget = search_lib.parse_budget("macs=1e9")
    report = search_lib.budget_report(family, budget, evolution, search_lib.make_metric_fns(family),
                                      lambda g: np.array([4.5]), PPL)
    assert report["best"]["val_perplexity"] == 4.0 and report["best"]["test_perplexity"] == 4.5
    assert report["best"]["arch"] == family.arch_to_json(family.arch_from_json(BIG))
    assert report["evaluated"]["val_perplexity"] == [9.0, 4.0]
    assert report["best_val_perplexity_per_generation"] == [9.0, 4.0]
    assert "val_accuracy" not in json.dumps(report)
    table = search_lib.summary_table([report], PPL)
    assert "val perplexity" in table and "4.0000" in table


# -------------------------------------------------------------------------- through the commands


def test_a_perplexity_family_trains_reports_and_searches_by_perplexity(tmp_path):
    run = tmp_path / "run"
    result = launch("--config=configs/digits.py:smoke", f"--config.model.family={PPL_FAMILY}",
                    "--config.fl.rounds=4", "--config.eval.every_rounds=1", f"--workdir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val perplexity" in result.stderr  # the progress line names the metric
    assert "val perplexity" in result.stdout and "test perplexity" in result.stdout  # the summary table
    records = read_metrics(run)
    names = ["smallest", "small", "medium", "largest"]
    for r in records:
        for name in names:
            assert r[f"{name}/val_perplexity"] == pytest.approx(math.exp(r[f"{name}/val_loss"]))
    means = [np.mean([r[f"{n}/val_perplexity"] for n in names]) for r in records]
    best = records[int(np.argmin(means))]
    text = open(run / "report.md").read()
    assert f"Perplexities at round {best['round']} of 4: the evaluation with the lowest mean validation" in text
    assert os.path.exists(run / "report_perplexity.csv") and not os.path.exists(run / "report_accuracy.csv")

    result = run_module("-m", "superfed_jax.posttrain.search", f"--workdir={run}", "--budget", "macs=5000",
                        "--population=8", "--generations=2")
    assert result.returncode == 0, result.stderr[-3000:]
    search = json.load(open(run / "search.json"))
    assert search["metric"] == "perplexity"
    [budget] = search["results"]
    evaluated = budget["evaluated"]["val_perplexity"]
    assert budget["best"]["val_perplexity"] == min(evaluated)  # every candidate meets the budget
    front = [e["val_perplexity"] for e in budget["front"]]
    assert front == sorted(front, reverse=True)  # dearer archs on the front have lower perplexity
    assert budget["best"]["test_perplexity"] > 1.0 and "val_accuracy" not in json.dumps(search)
    text = open(run / "report.md").read()
    assert "cost and validation perplexity (the step line: the lowest perplexity reachable at each cost)" in text
    assert read_csv(run / "report_search.csv")[0][3] == "val_perplexity"
