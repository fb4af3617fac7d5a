"""The multi-seed claim: `superfed_jax.reports.claim` against hand computations, `benchmarks/claim.py` end to end.

References are independent of the code under test: t quantiles from printed tables (e.g. t(0.975, 4) =
2.776445), closed forms of the t CDF for df 1 and 2, means and deviations worked out by hand, and, for the
end-to-end run, the accuracies read straight from each run's metrics.jsonl and cost.json and the statistics
recomputed with Python's `statistics` module.
"""
import json
import math
import os
import statistics
import subprocess
import sys

import pytest

from superfed_jax.reports import claim
from superfed_jax.reports import run_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Student's t quantiles from a printed table (two-sided 95% unless noted).
T_TABLE = [(0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 3, 3.1824), (0.975, 4, 2.7764),
           (0.975, 9, 2.2622), (0.975, 30, 2.0423), (0.95, 10, 1.8125), (0.995, 5, 4.0321)]


# ---------------------------------------------------------------------------------- Student's t


@pytest.mark.parametrize("p, df, expected", T_TABLE)
def test_t_quantile_matches_the_table(p, df, expected):
    assert claim.t_quantile(p, df) == pytest.approx(expected, abs=1e-4)
    assert claim.t_quantile(1 - p, df) == pytest.approx(-expected, abs=1e-4)  # symmetric


def test_t_quantile_four_degrees_of_freedom_to_six_digits():
    assert claim.t_quantile(0.975, 4) == pytest.approx(2.776445, abs=1e-6)
    assert claim.t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("t", [-3.0, -0.4, 0.0, 0.7, 2.5, 40.0])
def test_t_cdf_closed_forms_for_one_and_two_degrees_of_freedom(t):
    # df 1 is the Cauchy distribution; df 2 has F(t) = 1/2 + t / (2 sqrt(2 + t^2)).
    assert claim.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
    assert claim.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_t_cdf_approaches_the_normal_for_many_degrees_of_freedom():
    # Phi(1.959964) = 0.975; at df 201 the t CDF there is within 1e-3 of it, and below (heavier tails).
    value = claim.t_cdf(1.959964, 201)
    assert 0.974 < value < 0.975


@pytest.mark.parametrize("call", [lambda: claim.t_cdf(1.0, 0), lambda: claim.t_cdf(1.0, 2.5),
                                  lambda: claim.t_quantile(1.0, 3), lambda: claim.t_quantile(0.0, 3)])
def test_t_rejects_invalid_arguments(call):
    with pytest.raises(ValueError):
        call()


# ---------------------------------------------------------------------------------- over seeds


def test_mean_std_by_hand():
    mean, std = claim.mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == pytest.approx(2.5)
    assert std == pytest.approx(math.sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3))  # sample std, n - 1
    assert claim.mean_std([0.7]) == (pytest.approx(0.7), None)
    assert math.isnan(claim.mean_std([0.5, math.nan])[0])
    with pytest.raises(ValueError):
        claim.mean_std([])


def test_paired_difference_and_interval_by_hand():
    # Differences 0.01 .. 0.05: mean 0.03, sample std sqrt(0.001 / 4) = 0.0158114, n 5, t(0.975, 4) 2.776445.
    shared = [0.91, 0.93, 0.95, 0.97, 0.99]
    fedavg = [0.90, 0.91, 0.92, 0.93, 0.94]
    result = claim.paired_difference(shared, fedavg)
    half = 2.776445 * math.sqrt(0.001 / 4) / math.sqrt(5)  # 0.0196324
    assert result["n"] == 5
    assert result["differences"] == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05])
    assert result["mean"] == pytest.approx(0.03)
    assert result["std"] == pytest.approx(0.0158114, abs=1e-7)
    assert result["low"] == pytest.approx(0.03 - half, abs=1e-7)
    assert result["high"] == pytest.approx(0.03 + half, abs=1e-7)
    assert claim.verdict(result) == claim.AT_LEAST


def test_paired_difference_drops_pairs_with_a_missing_side():
    result = claim.paired_difference([0.9, math.nan, 0.8], [0.85, 0.9, math.nan])
    assert result["n"] == 1 and result["mean"] == pytest.approx(0.05)
    assert result["std"] is None and result["low"] is None and result["high"] is None
    with pytest.raises(ValueError):
        claim.paired_difference([0.9], [0.9, 0.8])


@pytest.mark.parametrize("shared, fedavg, expected", [
    ([0.92, 0.93, 0.94], [0.90, 0.90, 0.90], claim.AT_LEAST),  # differences .02 .03 .04
    ([0.90, 0.90, 0.90], [0.92, 0.93, 0.94], claim.BEHIND),  # differences -.02 -.03 -.04
    ([0.91, 0.89, 0.90], [0.90, 0.90, 0.90], claim.ON_A_PAR),  # differences .01 -.01 0
    ([0.91], [0.90], claim.ONE_SEED),
    ([math.nan, 0.9], [0.9, math.nan], claim.NO_DATA),
])
def test_each_verdict_branch(shared, fedavg, expected):
    result = claim.paired_difference(shared, fedavg)
    # Three seeds: std 0.01 in each case, half width t(0.975, 2) * 0.01 / sqrt(3) = 4.302653 * 0.01 / 1.732 = 0.024841.
    half = 4.302653 * 0.01 / math.sqrt(3)
    if expected == claim.AT_LEAST:
        assert result["low"] == pytest.approx(0.03 - half, abs=1e-7)  # 0.00516 >= 0
    if expected == claim.BEHIND:
        assert result["high"] == pytest.approx(-0.03 + half, abs=1e-7)  # -0.00516 < 0
    if expected == claim.ON_A_PAR:
        assert (result["low"], result["high"]) == (pytest.approx(-half, abs=1e-7), pytest.approx(half, abs=1e-7))
    assert claim.verdict(result) == expected


def test_verdict_boundaries():
    # The rule: low >= 0 -> at least as accurate; high < 0 -> behind; else on a par (high == 0 included).
    assert claim.verdict({"n": 3, "low": 0.0, "high": 0.1}) == claim.AT_LEAST
    assert claim.verdict({"n": 3, "low": -0.1, "high": 0.0}) == claim.ON_A_PAR
    assert claim.verdict({"n": 3, "low": -0.1, "high": -1e-12}) == claim.BEHIND
    # All seeds agree exactly: zero width, the sign decides.
    assert claim.verdict(claim.paired_difference([0.9, 0.9], [0.9, 0.9])) == claim.AT_LEAST
    assert claim.verdict(claim.paired_difference([0.8, 0.8], [0.9, 0.9])) == claim.BEHIND


def _row(name, shared, fedavg, macs=100, params=10):
    return {"name": name, "arch": {"d": [0], "e": 0.5}, "macs": macs, "params": params,
            "shared_test_accuracy": shared, "fedavg_test_accuracy": fedavg}


def test_summarize_pairs_seeds_by_arch_name():
    per_seed = {0: [_row("small", 0.80, 0.78), _row("big", 0.90, math.nan)],
                1: [_row("big", 0.92, math.nan), _row("small", 0.84, 0.80)]}
    [small, big] = claim.summarize(per_seed)
    assert small["name"] == "small" and small["seeds"] == [0, 1]
    assert small["shared_test_accuracy"] == [0.80, 0.84]
    assert small["shared"]["mean"] == pytest.approx(0.82)
    assert small["shared"]["std"] == pytest.approx(math.sqrt(0.0008))  # (0.02^2 * 2) / 1
    assert small["fedavg"]["mean"] == pytest.approx(0.79)
    # Differences 0.02, 0.04: mean 0.03, std sqrt(0.0002), t(0.975, 1) 12.7062.
    half = 12.706205 * math.sqrt(0.0002) / math.sqrt(2)
    assert small["difference"]["low"] == pytest.approx(0.03 - half, abs=1e-6)
    assert small["verdict"] == claim.ON_A_PAR
    assert big["difference"]["n"] == 0 and big["verdict"] == claim.NO_DATA


def test_summarize_rejects_seeds_that_are_not_one_setup():
    with pytest.raises(ValueError, match="seed 1 has no arch 'big'"):
        claim.summarize({0: [_row("big", 0.9, 0.9)], 1: [_row("small", 0.9, 0.9)]})
    with pytest.raises(ValueError, match="arch 'big': seed 1"):
        claim.summarize({0: [_row("big", 0.9, 0.9)], 1: [_row("big", 0.9, 0.9, macs=200)]})


def test_cost_over_seeds_by_hand():
    def cost(shared_macs, fedavg_macs, shared_bytes, fedavg_bytes):
        return {"weight_shared": {"total_macs": shared_macs, "total_bytes_per_direction": shared_bytes},
                "fedavg": {"total_macs": fedavg_macs, "total_bytes_per_direction": fedavg_bytes},
                "fedavg_runs": 4}
    result = claim.cost_over_seeds({0: cost(10, 40, 100, 400), 1: cost(30, 60, 100, 300)})
    assert result["weight_shared"] == {"total_macs": 40, "total_bytes_per_direction": 200}
    assert result["fedavg"] == {"total_macs": 100, "total_bytes_per_direction": 700}
    assert result["ratios"] == {"total_macs": pytest.approx(2.5), "total_bytes_per_direction": pytest.approx(3.5)}
    assert result["per_seed_ratios"]["total_macs"] == [pytest.approx(4.0), pytest.approx(2.0)]


# ------------------------------------------------------------------------- complete or not


def _load_script():
    import importlib.util
    spec = importlib.util.spec_from_file_location("claim_script", os.path.join(ROOT, "benchmarks", "claim.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _workdir(path, seed=0, rounds=4, last=4, files=("cost.json", "report.md"), pool=""):
    path.mkdir()
    fl = {"rounds": rounds, "heuristic": "static" if pool else "sandwich", "pool": pool}
    (path / "config.json").write_text(json.dumps({"seed": seed, "fl": fl}))
    if last is not None:
        (path / "metrics.jsonl").write_text("".join(json.dumps({"round": r}) + "\n" for r in range(2, last + 1, 2)))
    for name in files:
        (path / name).write_text("{}")
    return str(path)


def test_completion_of_a_workdir(tmp_path):
    script = _load_script()
    fedavg_pool = json.dumps(["largest"])
    assert script.completion(str(tmp_path / "none"), 0, False, None) == (False, "not started")
    done = _workdir(tmp_path / "done")
    assert script.completion(done, 0, False, None)[0]
    assert script.completion(done, 0, False, "4")[0]
    assert not script.completion(done, 0, False, "6")[0]  # asked for more rounds: resume to them
    assert script.completion(_workdir(tmp_path / "fedavg", pool=fedavg_pool), 0, True, None)[0]
    assert not script.completion(_workdir(tmp_path / "short", last=2), 0, False, None)[0]
    assert not script.completion(_workdir(tmp_path / "no_metrics", last=None), 0, False, None)[0]
    stopped_early = _workdir(tmp_path / "stopped_before_first_evaluation", last=None)
    (tmp_path / "stopped_before_first_evaluation" / "metrics.jsonl").write_text("\n")  # as train.py leaves it
    assert script.completion(stopped_early, 0, False, None) == (False, "not evaluated yet (0 of 4 rounds)")
    complete, why = script.completion(_workdir(tmp_path / "no_report", files=("cost.json",)), 0, False, None)
    assert not complete and "report.md" in why
    with pytest.raises(ValueError, match="seed 1"):
        script.completion(_workdir(tmp_path / "seed1", seed=1), 0, False, None)
    with pytest.raises(ValueError, match="not a FedAvg"):
        script.completion(done, 0, True, None)


def test_config_argument_of_each_run():
    script = _load_script()
    assert script.split_config("configs/digits.py") == ("configs/digits.py", [])
    assert script.split_config("configs/digits.py:smoke") == ("configs/digits.py", ["smoke"])
    assert script.config_arg("c.py", [], False, "") == "c.py"
    assert script.config_arg("c.py", ["smoke"], True, "small") == "c.py:smoke,fedavg=small"
    assert script.config_arg("c.py", [], True, "") == "c.py:smoke"
    with pytest.raises(ValueError, match="ending in .py"):
        script.split_config("configs/digits")


# ------------------------------------------------------------------------------- end to end


ARCHS = ["largest"]  # one FedAvg arch per seed keeps the test to 4 launches
SEEDS = [0, 1]
TRACKED = ["smallest", "small", "medium", "largest"]


def _claim_command(out):
    # The :smoke variant with one stage of two blocks: the smallest space that still has distinct tracked archs.
    return [sys.executable, "benchmarks/claim.py", "--config=configs/digits.py", "--smoke",
            f"--seeds={','.join(map(str, SEEDS))}", f"--archs={','.join(ARCHS)}", f"--out={out}",
            "--config.space.stage_widths=(32,)", "--config.space.stage_strides=(1,)"]


def _environment():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device, as a user's plain run
    return env


@pytest.fixture(scope="module")
def claim_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("claim")
    result = subprocess.run(_claim_command(out), cwd=ROOT, env=_environment(), capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out, result.stdout


def _metrics(workdir):
    with open(workdir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def _best(records, names):
    """The record with the best mean validation accuracy over ``names``, the first on ties (by hand)."""
    best, best_score = None, -math.inf
    for record in records:
        score = sum(record[f"{n}/val_accuracy"] for n in names) / len(names)
        if score > best_score:
            best, best_score = record, score
    return best


def test_claim_json_holds_each_runs_own_numbers(claim_run):
    out, _ = claim_run
    result = json.load(open(out / "claim.json"))
    assert result["seeds"] == SEEDS and result["archs"] == ARCHS
    for seed in SEEDS:
        seed_dir = out / f"seed_{seed}"
        shared_best = _best(_metrics(seed_dir / "superfed"), TRACKED)
        rows = {r["name"]: r for r in result["per_seed"][str(seed)]["rows"]}
        assert list(rows) == TRACKED
        for name in TRACKED:
            assert rows[name]["shared_test_accuracy"] == shared_best[f"{name}/test_accuracy"]
            assert rows[name]["shared_round"] == shared_best["round"]
        for name in ARCHS:
            config = json.load(open(seed_dir / f"fedavg_{name}" / "config.json"))
            assert config["seed"] == seed
            fedavg_best = _best(_metrics(seed_dir / f"fedavg_{name}"), [name])
            assert rows[name]["fedavg_test_accuracy"] == fedavg_best[f"{name}/test_accuracy"]
        for name in set(TRACKED) - set(ARCHS):
            assert rows[name]["fedavg_test_accuracy"] is None  # NaN written as null
        assert (seed_dir / "report.md").is_file() and (seed_dir / "pareto.png").is_file()
        walls = result["per_seed"][str(seed)]["wall_seconds"]
        assert set(walls) == {"superfed", *(f"fedavg_{a}" for a in ARCHS)} and all(w > 0 for w in walls.values())
    # The all-seed combined report: mean curves with a min-max band over the seeds.
    assert result["report"] == "report.md"
    svg = open(out / "curves.svg").read()
    assert 'id="curve-val-largest-weight-shared-band"' in svg and 'id="curve-val-largest-fedavg-band"' in svg
    assert "2 seeds" in open(out / "report.md").read()


def test_claim_statistics_equal_a_hand_computation_on_the_json(claim_run):
    out, _ = claim_run
    result = json.load(open(out / "claim.json"))
    t = 12.706205  # t(0.975, 1): two seeds
    for row in result["summary"]:
        shared = [result["per_seed"][str(s)]["rows"][TRACKED.index(row["name"])]["shared_test_accuracy"]
                  for s in SEEDS]
        assert row["shared_test_accuracy"] == shared
        assert row["shared"]["mean"] == pytest.approx(statistics.mean(shared), abs=1e-12)
        assert row["shared"]["std"] == pytest.approx(statistics.stdev(shared), abs=1e-12)
        if row["name"] not in ARCHS:
            assert row["verdict"] == claim.NO_DATA
            continue
        fedavg = [result["per_seed"][str(s)]["rows"][TRACKED.index(row["name"])]["fedavg_test_accuracy"]
                  for s in SEEDS]
        differences = [a - b for a, b in zip(shared, fedavg)]
        mean, std = statistics.mean(differences), statistics.stdev(differences)
        assert row["fedavg"]["mean"] == pytest.approx(statistics.mean(fedavg), abs=1e-12)
        assert row["difference"]["mean"] == pytest.approx(mean, abs=1e-12)
        assert row["difference"]["std"] == pytest.approx(std, abs=1e-12)
        assert row["difference"]["low"] == pytest.approx(mean - t * std / math.sqrt(2), abs=1e-6)
        assert row["difference"]["high"] == pytest.approx(mean + t * std / math.sqrt(2), abs=1e-6)
        low, high = row["difference"]["low"], row["difference"]["high"]
        expected = claim.AT_LEAST if low >= 0 else claim.BEHIND if high < 0 else claim.ON_A_PAR
        assert row["verdict"] == expected
        assert f"| {row['name']} |" in open(out / "claim.md").read()
    # Cost: the runs' own cost.json totals, summed over seeds.
    for field in ("total_macs", "total_bytes_per_direction"):
        shared = sum(json.load(open(out / f"seed_{s}" / "superfed" / "cost.json"))["superfed"][field] for s in SEEDS)
        fedavg = sum(json.load(open(out / f"seed_{s}" / f"fedavg_{a}" / "cost.json"))["superfed"][field]
                     for s in SEEDS for a in ARCHS)
        assert result["cost"]["ratios"][field] == pytest.approx(fedavg / shared)


def test_second_invocation_skips_the_complete_runs(claim_run):
    out, _ = claim_run
    workdirs = [out / f"seed_{s}" / n for s in SEEDS for n in ["superfed"] + [f"fedavg_{a}" for a in ARCHS]]
    stamps = {w: os.path.getmtime(w / "metrics.jsonl") for w in workdirs}
    before = json.load(open(out / "claim.json"))
    result = subprocess.run(_claim_command(out), cwd=ROOT, env=_environment(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    skips = [line for line in result.stdout.splitlines() if line.startswith("[seed") and "] skipped, " in line]
    assert len(skips) == len(workdirs)
    assert "launch.py" not in result.stdout  # no run was started
    assert {w: os.path.getmtime(w / "metrics.jsonl") for w in workdirs} == stamps
    after = json.load(open(out / "claim.json"))
    assert after["summary"] == before["summary"]
    for seed in SEEDS:  # the first invocation's wall times are kept
        assert after["per_seed"][str(seed)]["wall_seconds"] == before["per_seed"][str(seed)]["wall_seconds"]
        assert sorted(after["per_seed"][str(seed)]["skipped"]) == sorted(
            ["superfed"] + [f"fedavg_{a}" for a in ARCHS])


def _table_row(text, name):
    """The cells of the Markdown table row of ``name``."""
    [line] = [line for line in text.splitlines() if line.startswith(f"| {name} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_report_cli_on_one_seeds_runs_equals_claims_report_and_the_metrics(claim_run, tmp_path):
    """The combined report of seed 0's runs, from the command line, against metrics.jsonl and cost.json."""
    out, _ = claim_run
    shared_dir, fedavg_dir = out / "seed_0" / "superfed", out / "seed_0" / "fedavg_largest"
    cli = subprocess.run([sys.executable, "-m", "superfed_jax.reports.cli", str(shared_dir), str(fedavg_dir),
                          f"--out={tmp_path / 'cli'}"], cwd=ROOT, env=_environment(), capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr[-3000:]
    text = open(tmp_path / "cli" / "report.md").read()
    assert text == open(out / "seed_0" / "report.md").read()
    # Independent reference: best rounds and accuracies straight from metrics.jsonl.
    shared_best = _best(_metrics(shared_dir), TRACKED)
    fedavg_best = _best(_metrics(fedavg_dir), ["largest"])
    row = _table_row(text, "largest")
    assert row[4] == f"{100 * shared_best['largest/test_accuracy']:.2f}"
    assert row[5] == f"{100 * fedavg_best['largest/test_accuracy']:.2f}"
    assert _table_row(text, "smallest")[5] == "n/a"
    costs = [json.load(open(d / "cost.json"))["superfed"] for d in (shared_dir, fedavg_dir)]
    assert f"| {costs[1]['total_macs'] / costs[0]['total_macs']:.2f}x |" in text
    # The weight-shared run's own report, as train.py writes it.
    single = run_report.write_run_report(str(shared_dir), str(tmp_path / "single"))
    assert single["best_round"] == shared_best["round"]
    assert [r["name"] for r in single["rows"]] == TRACKED


# ------------------------------------------------------------------ checked before training anything


def test_an_unknown_arch_or_an_out_file_stops_claim_before_anything_trains(tmp_path):
    # Before: --archs=huge trained the weight-shared run first (8 minutes for the digits config) and only
    # then failed; --out=<a file> was a FileExistsError traceback.
    out_file = tmp_path / "a_file"
    out_file.write_text("mine")
    commands = {"file": ["--archs=largest", f"--out={out_file}"],
                "under a file": ["--archs=largest", f"--out={out_file}/claim"],
                "arch": ["--archs=largest,huge", f"--out={tmp_path / 'claim'}"]}
    processes = {case: subprocess.Popen(
        [sys.executable, "benchmarks/claim.py", "--config=configs/digits.py", "--smoke", "--seeds=0", *args],
        cwd=ROOT, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for case, args in commands.items()}
    for case, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 2, (case, stdout, stderr)
        assert stderr.startswith("error: ") and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
        assert "launch.py" not in stdout, (case, stdout)  # no run was started
    assert "run fedavg_huge" in stderr and "unknown arch name 'huge'" in stderr and "nothing was trained" in stderr
    assert out_file.read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["a_file"]


# Loaded by every Python started with this file's folder on PYTHONPATH (claim.py and the launch.py it
# starts): SIGKILL just before orbax commits checkpoint 1 (renames its temporary folder to checkpoints/1).
KILL_AT_FIRST_COMMIT = """
import os, signal
from orbax.checkpoint._src.path import atomicity

finalize = atomicity.AtomicRenameTemporaryPath.finalize

async def killed_before_commit(self, *args, **kwargs):
    if self._final_path.name == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    return await finalize(self, *args, **kwargs)

atomicity.AtomicRenameTemporaryPath.finalize = killed_before_commit
"""


def test_a_claim_killed_while_a_run_writes_its_first_checkpoint_resumes_on_rerun(tmp_path):
    # Before: every rerun exited 1, launch.py refusing the run's workdir ("holds results of an earlier run
    # (metrics.jsonl) but no checkpoint to resume from"), although claim.py resumes incomplete runs.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_AT_FIRST_COMMIT)
    out = tmp_path / "claim"
    command = [sys.executable, "benchmarks/claim.py", "--config=configs/digits.py", "--smoke", "--seeds=0",
               "--archs=largest", f"--out={out}"]
    killed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env=dict(_environment(), PYTHONPATH=f"{hook}{os.pathsep}{ROOT}"))
    assert killed.returncode == 1 and "failed with exit status -9" in killed.stderr, killed.stderr[-3000:]
    run = out / "seed_0" / "superfed"
    assert [r["round"] for r in _metrics(run)] == [1]  # its first record, then killed mid-commit
    assert [name for name in os.listdir(run / "checkpoints") if name.isdigit()] == []
    rerun = subprocess.run(command, cwd=ROOT, env=_environment(), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    assert "starting over: " in rerun.stderr and "Traceback" not in rerun.stderr
    assert [r["round"] for r in _metrics(run)] == [1, 2]
    assert (out / "claim.json").is_file()
