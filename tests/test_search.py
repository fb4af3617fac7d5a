"""The evolutionary subnet search (docs/algorithm.md 9) and latency measurement.

Pure parts (budgets, genes, Pareto front, the evolution with a synthetic fitness) are checked by hand on
the tiny space of tiny_setup.py; the whole search runs on a tiny trained digits run (trained_run.py):
every budget respected, better than a random sample of the same size, reproducible from the seed, and
the user errors of the command line.
"""
import json
import os
import shutil

import jax
import numpy as np
import pytest

import tiny_setup as T
import trained_run
from superfed_jax.posttrain import evolution as evolution_lib
from superfed_jax.posttrain import latency
from superfed_jax.posttrain import search
from superfed_jax.supernet import family as family_lib
from superfed_jax.supernet.ofa_resnet import cost
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet.family import OFAResNet

FAMILY = OFAResNet(T.SPACE, T.CONV_IMPL)  # the tiny space as the family the posttrain code takes

SMALL_EVOLUTION = evolution_lib.EvolutionSettings(population=12, generations=4)
OPTIONS = search.SearchOptions(evolution=SMALL_EVOLUTION, arch_batch=trained_run.ARCH_BATCH)


# ------------------------------------------------------------------------------------------------ budgets


def test_parse_budget_reads_one_or_several_limits():
    assert search.parse_budget("macs=0.8e9") == ("macs=0.8e9", (("macs", 8e8),))
    budget = search.parse_budget("params=2e6, latency_ms=1.5")
    assert budget.limits == (("params", 2e6), ("latency_ms", 1.5)) and budget.metric == "params"


@pytest.mark.parametrize("text, message", [
    ("flops=1e9", "unknown budget key 'flops' in 'flops=1e9'; allowed keys: macs, params, latency_ms"),
    ("macs", "write KEY=VALUE"),
    ("macs=big", "'big' is not a number"),
    ("params=-3", "must be a positive number"),
    ("macs=1e9,macs=2e9", "names 'macs' twice"),
])
def test_parse_budget_rejects_bad_text(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        search.parse_budget(text)


def test_unreachable_budget_names_the_smallest_possible_value():
    smallest = space_lib.smallest(T.SPACE)
    least = {"macs": cost.macs(T.SPACE, smallest), "params": cost.params(T.SPACE, smallest),
             "arch": "{...}"}
    search.check_reachable(search.parse_budget(f"macs={least['macs']}"), least)  # exactly reachable
    with pytest.raises(ValueError, match=f"no arch in the space has params <= 10; the smallest arch "
                                         rf"\{{...}} has params={least['params']}, the least possible"):
        search.check_reachable(search.parse_budget("macs=1e9,params=10"), least)


# ----------------------------------------------------------------------------------- genes and evolution


def test_genes_round_trip_and_canonical_form():
    genes = family_lib.to_genes(FAMILY, T.MEDIUM)
    assert genes.tolist() == [1, 0, 2, 0, 1, 3]
    arch = family_lib.from_genes(FAMILY, genes)
    assert arch.depth.tolist() == [1, 0] and arch.expand.tolist() == [2, 0, 1, 3]
    # Stage 1 keeps one block: the expand index of its skipped block is irrelevant.
    assert evolution_lib.canonical_genes(FAMILY, genes).tolist() == [1, 0, 2, 0, 1, 0]


def test_mutation_and_crossover_draw_genes_inside_the_space():
    rng = np.random.default_rng(0)
    parents = evolution_lib.random_genes(FAMILY, rng, 200)
    bounds = family_lib.gene_bounds(FAMILY)
    assert bounds.tolist() == [2, 2, 4, 4, 4, 4]  # depths, then expand indices
    assert np.all(parents >= 0) and np.all(parents < bounds)
    np.testing.assert_array_equal(evolution_lib.mutate(FAMILY, rng, parents, 0.0), parents)
    mutated = evolution_lib.mutate(FAMILY, rng, parents, 1.0)
    assert np.all(mutated < bounds) and not np.array_equal(mutated, parents)
    other = evolution_lib.random_genes(FAMILY, rng, 200)
    children = evolution_lib.crossover(rng, parents, other)
    assert np.all((children == parents) | (children == other))
    differ = parents != other
    assert 0.4 < np.mean(children[differ] == parents[differ]) < 0.6


def test_pareto_front_by_hand():
    metric = np.array([5.0, 1.0, 3.0, 3.0, 4.0, 2.0])
    accuracy = np.array([0.9, 0.5, 0.7, 0.8, 0.8, 0.5])
    # 1 (1, .5) -> 5 (2, .5) is dominated by 1 -> 3 (3, .8) beats 2 (3, .7) -> 4 (4, .8) dominated -> 0.
    assert evolution_lib.pareto_front(metric, accuracy).tolist() == [1, 3, 0]


def test_population_sizes_follow_the_ratios():
    settings = evolution_lib.EvolutionSettings()
    assert (settings.num_parents, settings.num_mutants) == (25, 20)  # and 55 crossovers
    with pytest.raises(ValueError, match="exceed the whole population"):
        evolution_lib.check_evolution(settings._replace(parent_ratio=0.5, mutation_ratio=0.6))
    with pytest.raises(ValueError, match="keeps no parent"):
        evolution_lib.check_evolution(settings._replace(population=3, parent_ratio=0.1))


@pytest.mark.parametrize("ratios", [(0.25, 0.0), (0.5, 0.5), (1.0, 0.0)])
def test_a_population_part_may_be_empty(ratios):
    settings = evolution_lib.EvolutionSettings(population=4, generations=2, parent_ratio=ratios[0],
                                               mutation_ratio=ratios[1])
    evolution = evolution_lib.evolve(FAMILY, settings, np.random.default_rng(0),
                                     lambda g: np.ones(len(g), bool), lambda g: g.sum(-1).astype(float))
    assert len(evolution.best_per_generation) == 3


def _synthetic_search(budget_text, seed, populations=None):
    """Evolution on the tiny space with fitness = a fixed hash-like score; records every population."""
    metric_fns = search.make_metric_fns(FAMILY, latency_fn=lambda a: cost.macs_batch(
        T.SPACE, a.depth, a.expand) / 1e3)  # a deterministic stand-in for measured latency
    feasible_fn = search.make_feasible_fn(search.parse_budget(budget_text), metric_fns)
    weights = np.random.default_rng(99).random(6)

    def fitness_fn(genes):
        if populations is not None:
            populations.append(genes.copy())
        return np.sin(evolution_lib.canonical_genes(FAMILY, genes) @ weights * 7.0)

    settings = evolution_lib.EvolutionSettings(population=10, generations=6)
    evolution = evolution_lib.evolve(FAMILY, settings, np.random.default_rng(seed), feasible_fn,
                                     fitness_fn)
    return evolution, metric_fns


@pytest.mark.parametrize("budget_text", ["macs=20000", "params=2500", "latency_ms=30,params=5000"])
def test_no_population_ever_holds_an_arch_over_budget(budget_text):
    populations = []
    evolution, metric_fns = _synthetic_search(budget_text, 0, populations)
    assert len(populations) == 7 and all(len(p) == 10 for p in populations)
    for population in populations:
        for key, limit in search.parse_budget(budget_text).limits:
            assert np.all(metric_fns[key](population) <= limit), (key, limit)


def test_evolution_is_a_function_of_its_seed():
    first, _ = _synthetic_search("macs=20000", 3)
    again, _ = _synthetic_search("macs=20000", 3)
    np.testing.assert_array_equal(first.genes, again.genes)
    assert first.best_per_generation == again.best_per_generation
    assert all(b >= a for a, b in zip(first.best_per_generation, first.best_per_generation[1:]))


def test_fill_feasible_falls_back_when_proposals_never_pass():
    fallback = np.zeros((3, 2), np.int32)
    out = evolution_lib.fill_feasible(lambda n: np.ones((n, 2), np.int32), lambda n: fallback[:n],
                                      lambda g: np.zeros(len(g), bool), 3, max_tries=5)
    np.testing.assert_array_equal(out, fallback)


# ---------------------------------------------------------------------------------------------- latency


def test_median_ms_excludes_warmup_calls():
    calls = []
    value = latency.median_ms(lambda: calls.append(1) or np.zeros(()), (), warmup=2, repeats=5)
    assert len(calls) == 7 and value >= 0.0


def test_latency_is_measured_once_per_arch_and_cached_on_disk(tmp_path, monkeypatch):
    path = str(tmp_path / "latency_cache.json")
    settings = latency.LatencySettings(batch_size=2, warmup=1, repeats=3, conv_impl="im2col")
    archs = space_lib.stack([T.MEDIUM, space_lib.smallest(T.SPACE), T.MEDIUM])
    values = latency.make_latency_fn(FAMILY, T.init_params(), settings, path)(archs)
    assert values.shape == (3,) and values[0] == values[2] and np.all(values > 0)
    cache = json.load(open(path))
    (machine, entries), = cache.items()
    assert "batch=2" in machine and len(entries) == 2

    def never(*args, **kwargs):
        raise AssertionError("a cached arch was measured again")

    monkeypatch.setattr(latency, "measure_ms", never)
    again = latency.make_latency_fn(FAMILY, T.init_params(), settings, path)(archs)
    np.testing.assert_array_equal(again, values)
    # Any leading axes: the result has them.
    grid = jax.tree.map(lambda leaf: leaf.reshape((1, 3) + leaf.shape[1:]), archs)
    np.testing.assert_array_equal(latency.make_latency_fn(FAMILY, T.init_params(), settings, path)(grid),
                                  values[None])


# ------------------------------------------------------------------------------------ on a trained run


def _within(entry, limits):
    return all(entry[key] <= limit for key, limit in limits.items())


def test_search_respects_every_budget_and_beats_a_random_sample():
    loaded = trained_run.loaded()
    largest = loaded.family.largest()
    top_macs, top_params = loaded.family.macs(largest), loaded.family.params(largest)
    budgets = [f"macs={0.5 * top_macs:.0f}", f"params={0.4 * top_params:.0f}",
               f"macs={0.8 * top_macs:.0f},params={0.6 * top_params:.0f}"]
    report = search.search_loaded(loaded, [search.parse_budget(b) for b in budgets], OPTIONS)
    for result, budget in zip(report["results"], budgets):
        assert result["budget"] == budget
        assert _within(result["best"], result["limits"])
        assert all(_within(entry, result["limits"]) for entry in result["front"])
        assert result["best"] == {**result["front"][-1], "test_accuracy": result["best"]["test_accuracy"]}
        # Every candidate is recorded; the front is exactly the non-dominated set of them (checked pairwise).
        evaluated = result["evaluated"]
        assert all(len(column) == result["archs_evaluated"] for column in evaluated.values())
        metric = result["front_metric"]
        points = list(zip(evaluated[metric], evaluated["val_accuracy"]))
        beaten = {p for p in points for q in points if q[0] <= p[0] and q[1] >= p[1] and q != p}
        assert sorted({p for p in points if p not in beaten}) == sorted(
            (e[metric], e["val_accuracy"]) for e in result["front"])
        # The same number of uniformly random archs within the budget, evaluated the same way.
        budget_fns = search.make_metric_fns(loaded.family)
        feasible_fn = search.make_feasible_fn(search.parse_budget(budget), budget_fns)
        rng = np.random.default_rng(12345)
        sample = evolution_lib.fill_feasible(
            lambda n: evolution_lib.random_genes(loaded.family, rng, n), None, feasible_fn,
            result["archs_evaluated"], max_tries=1000)
        assert result["best"]["val_accuracy"] >= trained_run.val_accuracy_fn()(sample).max()
    # The search accuracy is the supernet's accuracy of that subnet on the validation split.
    assert 0.0 < report["results"][0]["best"]["val_accuracy"] <= 1.0
    assert report["val_examples"] == len(loaded.run.dataset.y_val)


def test_same_seed_gives_the_same_search_json():
    loaded = trained_run.loaded()
    budgets = [search.parse_budget("macs=300000"), search.parse_budget("params=15000")]
    options = OPTIONS._replace(evolution=evolution_lib.EvolutionSettings(population=8, generations=3),
                               seed=7)
    first = search.search_loaded(loaded, budgets, options)
    again = search.search_loaded(loaded, budgets, options)
    # It names the checkpoint it searched, by round and by the digest of its state (its host JSON's).
    host = json.load(open(f"{trained_run.workdir()}/checkpoints/{loaded.round}/host/metadata"))
    assert (first["checkpoint_round"], first["checkpoint_digest"]) == (host["round"], host["digest"])
    assert json.dumps(first) == json.dumps(again)
    # A budget's search does not depend on the other budgets of the call.
    alone = search.search_loaded(loaded, budgets[1:], options)
    assert alone["results"][0] == first["results"][1]


def test_latency_budget_search_uses_the_cached_dense_measurement(tmp_path, monkeypatch):
    loaded = trained_run.loaded()
    measured = []

    def fake_measure_ms(family, params, arch, settings, device=None):
        # Dense params of exactly this arch, and the run's convolution; latency = a function of the arch.
        assert settings.conv_impl == loaded.config["model"]["conv_impl"]
        measured.append(latency.arch_key(family, arch))
        return family.macs(arch) / 1e5

    monkeypatch.setattr(latency, "measure_ms", fake_measure_ms)
    cache = str(tmp_path / "cache.json")
    limit = 0.6 * loaded.family.macs(loaded.family.largest()) / 1e5
    options = OPTIONS._replace(latency_cache=cache)
    report = search.search_loaded(loaded, [search.parse_budget(f"latency_ms={limit}")], options)
    result = report["results"][0]
    assert result["front_metric"] == "latency_ms" and 0 < result["best"]["latency_ms"] <= limit
    assert all(entry["latency_ms"] <= limit for entry in result["front"])
    assert len(measured) == len(set(measured))  # never measured twice
    (entries,) = json.load(open(cache)).values()
    assert json.dumps(result["best"]["arch"], sort_keys=True) in entries


def test_budget_below_the_smallest_arch_is_refused():
    loaded = trained_run.loaded()
    least = loaded.family.macs(loaded.family.smallest())
    with pytest.raises(ValueError, match=f"no arch in the space has macs <= 1000; the smallest arch .* "
                                         f"has macs={least}, the least possible"):
        search.search_loaded(loaded, [search.parse_budget("macs=1000")], OPTIONS)


def test_run_directory_without_checkpoint_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a run directory: it has no config.json"):
        search.search_run(str(tmp_path), ["macs=1e9"])
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="has no checkpoint .* train the run first"):
        search.search_run(str(tmp_path), ["macs=1e9"])


def test_command_line_error_exits_2_with_a_message(tmp_path):
    result = trained_run.run_module("-m", "superfed_jax.posttrain.search", f"--workdir={tmp_path}",
                                    "--budget", "flops=1e9", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: unknown budget key 'flops' in 'flops=1e9'; allowed keys: macs, params, latency_ms")


def test_an_edited_config_json_is_named_not_called_damaged_checkpoints(tmp_path):
    # Before: about 10 asyncio tracebacks, then "no checkpoint ... could be restored ... their files are
    # damaged", although the checkpoints were intact and config.json had been edited.
    run = tmp_path / "run"
    shutil.copytree(os.path.join(os.path.dirname(__file__), "fixtures", "run_v0_1_0"), run)
    config = json.loads((run / "config.json").read_text())
    config["space"]["stem_width"] = 8  # the checkpoints hold a stem of 4 channels
    (run / "config.json").write_text(json.dumps(config))
    result = trained_run.run_module("-c", "from superfed_jax.posttrain.search import console; console()",
                                    f"--workdir={run}", "--budget=macs=1e9")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.startswith(f"error: {run / 'config.json'} differs from the config the run was "
                                    "trained with") and "Traceback" not in result.stderr, result.stderr
    assert "space.stem_width: 4 -> 8" in result.stderr and "checkpoints are intact" in result.stderr
    assert result.stderr.count("\n") == 1 and not (run / "checkpoints_damaged").exists()


def test_a_run_with_only_an_unfinished_checkpoint_is_one_message_and_left_alone(tmp_path):
    # Before: orbax's background cleanup of temporary folders, which nothing waited for, printed "cannot
    # schedule new futures after shutdown" with its traceback as the command ended (and a search deleted
    # the temporary folder of a save that a run training there was still writing).
    run = tmp_path / "run"
    shutil.copytree(os.path.join(os.path.dirname(__file__), "fixtures", "run_v0_1_0"), run)
    unfinished = run / "checkpoints" / "2.orbax-checkpoint-tmp-1234"
    os.rename(run / "checkpoints" / "2", unfinished)
    result = trained_run.run_module("-c", "from superfed_jax.posttrain.search import console; console()",
                                    f"--workdir={run}", "--budget=macs=1e9")
    assert (result.returncode, result.stderr) == (2, f"error: {run} has no finished checkpoint; train the run "
                                                     "first\n")
    assert unfinished.is_dir()
