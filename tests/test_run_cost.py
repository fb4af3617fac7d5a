"""Tests for superfed_jax.federated.assignment and superfed_jax.reports.run_cost: the cost of a run (docs/algorithm.md section 8).

Three kinds of check: a hand computation of every cost figure on a tiny space and a hand-written
assignment sequence; the dry-run sequence against the clients and archs compiled rounds assign; and
the paper's claim (Khare et al., arXiv 2301.10879) that SuperFed on CIFAR-10 costs about 9.4x less
compute and 10.4x less communication than 9 independently trained FedAvg runs.
"""
import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tiny_setup as T
from superfed_jax import config as config_lib
from superfed_jax.federated import assignment as dry_run
from superfed_jax.federated import client
from superfed_jax.federated import heuristics
from superfed_jax.federated import round as fr
from superfed_jax.federated import sharding
from superfed_jax.reports import run_cost as rc
from superfed_jax.run import build as build_lib
from superfed_jax.supernet import archs as archs_lib
from superfed_jax.supernet import family as family_lib
from superfed_jax.supernet.ofa_resnet import cost
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet.family import OFAResNet

REPO = pathlib.Path(__file__).resolve().parents[1]
SPACE = T.SPACE
FAMILY = T.FAMILY
K = T.NUM_CLIENTS


def tiny_settings(clients_per_round=4, heuristic="tracking_sandwich", pool=None):
    return fr.RoundSettings(num_clients=K, clients_per_round=clients_per_round,
                            chunk_size=clients_per_round, heuristic=heuristic, pool=pool,
                            count_random_extremes=True, beta_schedule="cosine", beta0=0.9,
                            beta_final=1.0 / clients_per_round, decay_rounds=4)


def load_config(name: str, arg: str = ""):
    spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


# ---------------------------------------------------------------------------------- hand computation

# Round 0: client 2 trains A, client 5 trains B; round 1: client 5 trains C, client 0 trains the largest.
A = T.arch([0, 0], [0, 3, 1, 2])  # expand of skipped blocks (positions 1 and 3) must not count
B = T.arch([1, 0], [2, 0, 1, 3])
C = T.arch([0, 1], [3, 3, 0, 1])
D = space_lib.largest(SPACE)
HAND_SEQUENCE = {
    "clients": np.array([[2, 5], [5, 0]], np.int32),
    "archs": family_lib.stack([family_lib.stack([A, B]), family_lib.stack([C, D])]),  # [R, P] archs
}
EXAMPLES = np.array([30, 11, 12, 13, 14, 7, 16, 17])  # only clients 0, 2 and 5 are sampled
EPOCHS = 3


def test_run_cost_by_hand():
    m = {name: cost.macs(SPACE, a) for name, a in zip("ABCD", (A, B, C, D))}
    p = {name: cost.params(SPACE, a) for name, a in zip("ABCD", (A, B, C, D))}
    assert len(set(m.values())) == 4  # four distinct costs, so a mixed-up arch would show
    run = rc.run_cost(FAMILY, HAND_SEQUENCE, examples_per_client=EXAMPLES, epochs=EPOCHS,
                      bytes_per_param=2)
    assert run["rounds"] == 2 and run["clients_per_round"] == 2
    np.testing.assert_array_equal(run["round_macs"], [m["A"] + m["B"], m["C"] + m["D"]])
    assert run["total_macs"] == m["A"] + m["B"] + m["C"] + m["D"]
    assert run["mean_client_macs"] == pytest.approx(run["total_macs"] / 4)
    np.testing.assert_array_equal(run["round_bytes"], [2 * (p["A"] + p["B"]), 2 * (p["C"] + p["D"])])
    assert run["total_bytes"] == 2 * (p["A"] + p["B"] + p["C"] + p["D"])
    # Examples actually trained: n_2 = 12, n_5 = 7 (twice), n_0 = 30, each times 3 epochs.
    round_example_macs = [3 * (12 * m["A"] + 7 * m["B"]), 3 * (7 * m["C"] + 30 * m["D"])]
    np.testing.assert_array_equal(run["round_example_macs"], round_example_macs)
    assert run["total_example_macs"] == sum(round_example_macs)
    assert run["total_training_macs"] == 3 * sum(round_example_macs)  # forward + backward


def test_baseline_and_ratio_by_hand():
    baseline_archs = [B, D]
    m = {name: cost.macs(SPACE, a) for name, a in zip("ABCD", (A, B, C, D))}
    p = {name: cost.params(SPACE, a) for name, a in zip("ABCD", (A, B, C, D))}
    baseline = rc.independent_fedavg_cost(FAMILY, baseline_archs, 2, 2, clients=HAND_SEQUENCE["clients"],
                                          examples_per_client=EXAMPLES, epochs=EPOCHS)
    assert baseline["total_macs"] == 2 * 2 * (m["B"] + m["D"])
    assert baseline["total_bytes"] == 4 * 2 * 2 * (p["B"] + p["D"])
    # Each FedAvg run trains the same sampled clients: 3 epochs * (12 + 7 + 7 + 30) examples.
    assert baseline["total_example_macs"] == 3 * 56 * (m["B"] + m["D"])
    run = rc.run_cost(FAMILY, HAND_SEQUENCE, examples_per_client=EXAMPLES, epochs=EPOCHS)
    ratios = rc.compare(run, baseline)
    superfed_macs = m["A"] + m["B"] + m["C"] + m["D"]
    assert ratios["compute_ratio"] == pytest.approx(4 * (m["B"] + m["D"]) / superfed_macs, rel=1e-12)
    assert ratios["comm_ratio"] == pytest.approx(
        4 * (p["B"] + p["D"]) / (p["A"] + p["B"] + p["C"] + p["D"]), rel=1e-12)
    example_superfed = 3 * (12 * m["A"] + 7 * m["B"] + 7 * m["C"] + 30 * m["D"])
    assert ratios["example_compute_ratio"] == pytest.approx(
        3 * 56 * (m["B"] + m["D"]) / example_superfed, rel=1e-12)


def test_bn_affine_params_convention():
    run = rc.run_cost(FAMILY, HAND_SEQUENCE, bn_affine=True)  # the OFA-ResNet's own convention
    archs = (A, B, C, D)
    assert run["total_bytes"] == 4 * sum(cost.params(SPACE, a, bn_affine=True) for a in archs)
    assert run["total_bytes"] > 4 * sum(cost.params(SPACE, a) for a in archs)


def test_cost_report_is_json_and_consistent():
    report = rc.cost_report(FAMILY, HAND_SEQUENCE, [B, D], examples_per_client=EXAMPLES, epochs=EPOCHS)
    again = json.loads(json.dumps(report))  # plain Python values only
    assert again == report
    run = rc.run_cost(FAMILY, HAND_SEQUENCE)
    assert report["superfed"]["total_macs"] == run["total_macs"]
    assert report["per_round"]["macs"] == run["round_macs"].tolist()
    assert [row["macs"] for row in report["baseline"]["archs"]] == [cost.macs(SPACE, B),
                                                                    cost.macs(SPACE, D)]
    assert report["ratios"]["compute_ratio"] == pytest.approx(
        report["baseline"]["total_macs"] / report["superfed"]["total_macs"])
    assert set(report["conventions"]) >= {"macs", "params", "bytes", "example_macs"}


def test_examples_need_epochs_and_clients():
    with pytest.raises(ValueError, match="epochs"):
        rc.run_cost(FAMILY, HAND_SEQUENCE, examples_per_client=EXAMPLES)
    with pytest.raises(ValueError, match="clients"):
        rc.independent_fedavg_cost(FAMILY, [B], 2, 2, examples_per_client=EXAMPLES, epochs=1)


def test_default_baseline_archs():
    paper = rc.default_baseline_archs(OFAResNet(space_lib.SearchSpace()))
    assert len(paper) == 9
    # docs/algorithm.md 8: the 9 archs sum to 15.776 GMACs.
    assert sum(cost.macs(space_lib.SearchSpace(), a) for a in paper) / 1e9 == pytest.approx(15.776,
                                                                                            abs=1e-3)
    assert len(rc.default_baseline_archs(OFAResNet(space_lib.SearchSpace(num_classes=100)))) == 9
    tiny = rc.default_baseline_archs(FAMILY)
    assert [space_lib.arch_to_dict(SPACE, a) for a in tiny] == [
        space_lib.arch_to_dict(SPACE, a) for a in space_lib.default_tracked(SPACE).values()]


# ------------------------------------------------------------------------------- dry run == real rounds


def untrained_clients(params, archs, indices, sizes, keys, images, labels):
    """Stand-in for the clients' local training: every client returns the params it got, loss 0."""
    count = sizes.shape[0]
    return client.ClientResult(jax.tree.map(lambda p: jnp.broadcast_to(p, (count,) + p.shape), params),
                               jnp.zeros(count, jnp.float32))


@pytest.fixture(scope="module")
def real_rounds():
    """Three compiled rounds of the real round function (tracking sandwich, P = 4 of 8, seed 7) on one
    device. The round draws its clients and archs and updates the tracking counters from the state's seed,
    round and counters alone, before its clients train, so the clients' training is a stand-in
    (`untrained_clients`): compiling real local training would cost most of this file's time and change
    none of what the dry run is compared with."""
    settings = tiny_settings()
    mesh = sharding.make_mesh(jax.devices()[:1])
    round_fn = jax.jit(fr.make_round_fn(FAMILY, settings, untrained_clients, mesh))
    images, labels = T.make_data()
    data = fr.FederatedData(images, labels, *T.index_table())
    state = fr.init_state(T.as_jnp(T.init_params()), 7, K)
    metrics = []
    for _ in range(3):
        state, m = round_fn(state, data)
        metrics.append(jax.device_get(m))
    return settings, metrics, jax.device_get(state.tracking)


def test_dry_run_equals_real_rounds(real_rounds):
    settings, metrics, _ = real_rounds
    sequence = dry_run.assignment_sequence(FAMILY, settings, seed=7, rounds=3)
    for t, m in enumerate(metrics):
        np.testing.assert_array_equal(sequence["clients"][t], m["clients"], err_msg=f"round {t}")
        np.testing.assert_array_equal(sequence["archs"].depth[t], m["archs"].depth, err_msg=f"round {t}")
        np.testing.assert_array_equal(sequence["archs"].expand[t], m["archs"].expand, err_msg=f"round {t}")
        # The MaxNet flag marks exactly one client, which trains the largest arch.
        maxnet = np.flatnonzero(sequence["is_maxnet"][t])
        assert maxnet.shape == (1,) and T.np_is_largest(m["archs"].depth[maxnet[0]],
                                                        m["archs"].expand[maxnet[0]])
    np.testing.assert_array_equal(sequence["round"], [0, 1, 2])
    # Guard: another seed gives another sequence, so the comparison above is not vacuous.
    other = dry_run.assignment_sequence(FAMILY, settings, seed=8, rounds=3)
    assert not np.array_equal(other["clients"], sequence["clients"])


def test_dry_run_resume_uses_tracking(real_rounds):
    """From a checkpoint's counters at round 3 == replaying from round 0; zero counters would differ."""
    settings, _, tracking = real_rounds
    full = dry_run.assignment_sequence(FAMILY, settings, seed=7, rounds=30)
    resumed = dry_run.assignment_sequence(FAMILY, settings, seed=7, rounds=27, start_round=3,
                                          tracking=tracking)
    replayed = dry_run.assignment_sequence(FAMILY, settings, seed=7, rounds=27, start_round=3)
    for name in ("clients", "archs", "is_maxnet", "round"):
        from_three = jax.tree.map(lambda x: x[3:], full[name])
        T.assert_equal(resumed[name], from_three, err_msg=name)
        T.assert_equal(replayed[name], from_three, err_msg=name)
    fresh = dry_run.assignment_sequence(FAMILY, settings, seed=7, rounds=27, start_round=3,
                                        tracking=heuristics.init_tracking(K))
    assert not np.array_equal(fresh["is_maxnet"], full["is_maxnet"][3:])


def test_smallest_clients_reaches_the_round_assignment():
    """fl.smallest_clients goes from the config through RoundSettings into `assign_round` (the function the
    compiled round calls): every round of the replay has at least that many smallest subnets (random draws
    of this tiny space may add more) and one largest; with the default some round has fewer."""
    config = load_config("digits")
    config.fl.smallest_clients = 3
    settings = build_lib.round_settings(config, config_lib.make_family(config))
    assert settings.smallest_clients == 3
    sequence = dry_run.assignment_sequence(FAMILY, tiny_settings()._replace(smallest_clients=3), seed=7,
                                           rounds=10)
    for t in range(10):
        depth, expand = sequence["archs"].depth[t], sequence["archs"].expand[t]
        smallest = [T.np_is_smallest(d, e) for d, e in zip(depth, expand)]
        largest = [T.np_is_largest(d, e) for d, e in zip(depth, expand)]
        assert sum(smallest) >= 3 and sum(largest) >= 1, t
    one = dry_run.assignment_sequence(FAMILY, tiny_settings(), seed=7, rounds=10)
    assert min(sum(T.np_is_smallest(d, e) for d, e in zip(one["archs"].depth[t], one["archs"].expand[t]))
               for t in range(10)) < 3


def test_dry_run_static_pool_is_fedavg():
    pool = space_lib.stack([T.MEDIUM, A])
    sequence = dry_run.assignment_sequence(FAMILY, tiny_settings(heuristic="static", pool=pool),
                                           seed=0, rounds=5)
    index = sequence["clients"] % 2
    np.testing.assert_array_equal(sequence["archs"].depth, pool.depth[index])
    np.testing.assert_array_equal(sequence["archs"].expand, pool.expand[index])


def test_weight_by_size_changes_neither_the_dry_run_nor_the_cost_report():
    """fl.weight_by_size only reweights the aggregation: the same assignment sequence and cost."""
    results = []
    for weight_by_size in (False, True):
        config = load_config("digits", "smoke")
        config.fl.weight_by_size = weight_by_size
        family = config_lib.make_family(config)
        settings = build_lib.round_settings(config, family)
        assert settings.weight_by_size is weight_by_size
        sequence = dry_run.assignment_sequence(family, settings, config.seed, config.fl.rounds)
        results.append((sequence, rc.cost_report(family, sequence)))
    (off, off_report), (on, on_report) = results
    for name in off:
        for on_leaf, off_leaf in zip(jax.tree.leaves(on[name]), jax.tree.leaves(off[name])):
            np.testing.assert_array_equal(on_leaf, off_leaf, err_msg=name)
    assert on_report == off_report


# ------------------------------------------------------------------------------------ the paper claim


def paper_figures(seed: int) -> dict:
    config = load_config("cifar10")
    family = config_lib.make_family(config)
    settings = build_lib.round_settings(config, family)
    sequence = dry_run.assignment_sequence(family, settings, seed, config.fl.rounds)
    report = rc.cost_report(family, sequence)
    return {"seed": seed, "compute_ratio": report["ratios"]["compute_ratio"],
            "comm_ratio": report["ratios"]["comm_ratio"],
            "mean_client_gmacs": report["superfed"]["mean_client_gmacs"],
            "rounds": report["rounds"], "clients_per_round": report["clients_per_round"],
            "baseline_sum_gmacs": report["baseline"]["sum_gmacs"]}


@pytest.mark.parametrize("seed", [0, 50, 100])
def test_paper_cost_claim(seed):
    figures = paper_figures(seed)
    print(f"\nCIFAR-10 paper config, seed {seed}: compute ratio {figures['compute_ratio']:.4f}, "
          f"comm ratio {figures['comm_ratio']:.4f}, mean sampled client "
          f"{figures['mean_client_gmacs']:.4f} GMACs")
    assert (figures["rounds"], figures["clients_per_round"]) == (1500, 8)
    assert figures["baseline_sum_gmacs"] == pytest.approx(15.776, abs=1e-3)
    assert 9.30 <= figures["compute_ratio"] <= 9.45
    assert 1.65 <= figures["mean_client_gmacs"] <= 1.73
    assert 10.2 <= figures["comm_ratio"] <= 10.7


def test_dry_run_of_1500_rounds_is_one_compiled_scan():
    config = load_config("cifar10")
    family = config_lib.make_family(config)
    space = family.space
    settings = build_lib.round_settings(config, family)
    dry_run.assignment_sequence(family, settings, 0, 1500)
    before = dry_run._scan_rounds._cache_size()
    sequence = dry_run.assignment_sequence(family, settings, 123, 1500)  # another seed: no recompile
    assert dry_run._scan_rounds._cache_size() == before
    archs = sequence["archs"]
    assert archs.depth.shape == (1500, 8, 4) and archs.expand.shape == (1500, 8, 12)
    assert np.all(sequence["is_maxnet"].sum(axis=1) == 1)
    # Tracking sandwich: every round trains the largest and the smallest subnet.
    macs = cost.macs_batch(space, archs.depth, archs.expand)
    largest, smallest = (cost.macs(space, space_lib.largest(space)),
                         cost.macs(space, space_lib.smallest(space)))
    assert np.all(macs.max(axis=1) == largest) and np.all(macs.min(axis=1) == smallest)


# ------------------------------------------------------------------------------- the printed summary


def test_summary_of_a_fedavg_baseline_run_has_no_ratio_against_itself():
    # The cost of the real `configs/digits.py:smoke,fedavg=smallest` run, replayed without data.
    config = load_config("digits", "smoke,fedavg=smallest")
    family = config_lib.make_family(config)
    sequence = dry_run.assignment_sequence(family, build_lib.round_settings(config, family), config.seed,
                                           config.fl.rounds)
    baseline = archs_lib.parse_archs(family, config.cost.baseline, "cost.baseline")
    report = rc.cost_report(family, sequence, baseline)
    assert report["ratios"]["compute_ratio"] == 1.0  # what the summary used to print as "1.00x"
    assert rc.trains_only_its_baseline(report)
    summary = rc.cost_summary(report)
    assert summary.startswith("cost: ") and "costs 1.00x" not in summary and "1 archs" not in summary
    assert "FedAvg baseline" in summary and "superfed-report" in summary


def test_summary_of_a_weight_shared_run_gives_its_ratios():
    report = rc.cost_report(FAMILY, HAND_SEQUENCE, [B, D])
    assert not rc.trains_only_its_baseline(report)
    assert rc.cost_summary(report).splitlines()[1] == (
        f"independent FedAvg of 2 archs costs {report['ratios']['compute_ratio']:.2f}x the compute and "
        f"{report['ratios']['comm_ratio']:.2f}x the communication")
    # One baseline arch that the run did not train alone (A, B, C and D were trained): still a ratio.
    one = rc.cost_report(FAMILY, HAND_SEQUENCE, [B])
    assert not rc.trains_only_its_baseline(one)
    assert "independent FedAvg of 1 arch costs" in rc.cost_summary(one)


# ------------------------------------------------------------------- a family without the report hooks


class _PlainFamily(OFAResNet):
    """The OFA-ResNet with the `Family` defaults of the report hooks: no counting conventions of its own,
    no published baseline, what any new family has."""

    cost_batch = family_lib.Family.cost_batch
    cost_conventions = family_lib.Family.cost_conventions
    paper_baseline = family_lib.Family.paper_baseline


def test_a_family_without_the_report_hooks_gets_its_own_costs_and_tracked_baseline():
    paper = _PlainFamily(space_lib.SearchSpace())
    assert paper.paper_baseline() is None  # the OFA-ResNet's own would be the paper's 9 archs
    assert [paper.arch_to_json(a) for a in rc.default_baseline_archs(paper)] == [
        paper.arch_to_json(a) for a in paper.default_tracked().values()]
    plain = _PlainFamily(SPACE, T.CONV_IMPL)
    report = rc.cost_report(plain, HAND_SEQUENCE, examples_per_client=EXAMPLES, epochs=EPOCHS)
    # The same figures as the OFA-ResNet's default conventions: `macs_batch` and `params_batch`.
    same = rc.cost_report(FAMILY, HAND_SEQUENCE, list(FAMILY.default_tracked().values()),
                          examples_per_client=EXAMPLES, epochs=EPOCHS)
    assert {k: v for k, v in report.items() if k != "conventions"} == {
        k: v for k, v in same.items() if k != "conventions"}
    assert report["conventions"]["macs"].startswith("forward multiply-accumulates of one image")
    assert list(report["conventions"]) == list(same["conventions"])
    with pytest.raises(ValueError, match=r"has no cost conventions \['bn_affine'\]"):
        rc.run_cost(plain, HAND_SEQUENCE, bn_affine=True)


def test_cost_conventions_text_is_the_papers_for_the_ofa_resnet():
    """cost.json's conventions, word for word as before the family interface."""
    text = rc.conventions(FAMILY, 4, 3)
    assert text["macs"] == ("forward multiply-accumulates of one image; conv = Cin*k*k*Cout*Hout*Wout "
                            "(padding taps counted, the paper's convention), dense = in*out; ReLU, pooling, "
                            "adds free")
    assert text["params"] == "the subnet's parameters as this model has them (no BN affine pairs)"
    assert text["compute"] == ("sum over rounds and sampled clients of per-image forward MACs of the "
                               "client's arch")
    assert list(text) == ["macs", "params", "bytes", "compute", "baseline", "example_macs"]
    paper = rc.conventions(FAMILY, 4, 3, count_padding=False, bn_affine=True)
    assert "(only taps on real input)" in paper["macs"]
    assert paper["params"] == ("the subnet's parameters including the reference code's frozen BN affine "
                               "pairs (the paper's table)")
