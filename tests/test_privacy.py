"""Tests of `superfed_jax.federated.privacy`: the epsilon a run with user-level DP reports.

Checked against numbers and formulas published elsewhere (each test cites where), and against what any
accountant must satisfy (monotone in rounds, clients per round and noise). Pure Python, a few seconds.
"""
import math
import sys

import ml_collections
import pytest

from superfed_jax import config as config_lib
from superfed_jax.federated import privacy

dp_accounting = pytest.importorskip("dp_accounting")


def _gaussian_delta(epsilon: float, mu: float) -> float:
    """The exact delta(epsilon) of the Gaussian mechanism with sensitivity / std = mu: Balle and Wang,
    "Improving the Gaussian Mechanism for Differential Privacy", ICML 2018, Theorem 8 (v2):
    Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)."""
    phi = lambda x: 0.5 * math.erfc(-x / math.sqrt(2))  # noqa: E731
    return phi(-epsilon / mu + mu / 2) - math.exp(epsilon) * phi(-epsilon / mu - mu / 2)


# --------------------------------------------------------------------------------- published values


def test_every_client_every_round_matches_dp_accountings_published_gaussian():
    # dp_accounting's own test `test_compute_epsilon_delta_gaussian` (google/differential-privacy,
    # python/dp_accounting/dp_accounting/rdp/rdp_privacy_accountant_test.py) publishes that a Gaussian
    # with std / sensitivity 4.530877117 is exactly (1, 1e-6)-DP by its RDP conversion. Replacing one
    # client moves a sum of vectors of norm <= S by up to 2S, so our z = std / S is twice that multiplier.
    # P == K: nothing is subsampled. The default orders are a grid, so epsilon is 1 up to the grid.
    assert privacy.epsilon(2 * 4.530877117, 10, 10, 1, 1e-6) == pytest.approx(1.0, abs=1e-3)
    # Without the factor 2 (z read as std / sensitivity), the same run would claim a much smaller epsilon.
    assert privacy.epsilon(4.530877117, 10, 10, 1, 1e-6) > 2.0


def test_unsampled_gaussian_is_never_below_the_exact_gaussian_bound():
    # The RDP bound is an upper bound on the optimal one: at the reported epsilon, the exact delta of the
    # Gaussian mechanism (Balle and Wang 2018, Theorem 8, as dp_accounting's `test_delta_bounds_gaussian`
    # uses it) must not exceed the configured delta. Sensitivity / std = 2S / (z S) = 2 / z.
    for z in (1.0, 3.0, 10.0):
        eps = privacy.epsilon(z, 5, 5, 1, 1e-5)
        assert _gaussian_delta(eps, 2 / z) <= 1e-5
        # ... and not far above it: at epsilon 20% lower the exact delta exceeds the target.
        assert _gaussian_delta(0.8 * eps, 2 / z) > 1e-5


def test_subsampled_round_matches_theorem_27_at_order_2():
    # Wang, Balle and Kasiviswanathan, "Subsampled Renyi Differential Privacy and Analytical Moments
    # Accountant", AISTATS 2019 (arXiv 1808.00087), Theorem 27, at alpha = 2 for a base mechanism with
    # eps(2) = 2 / (2 sigma^2) and eps(inf) = inf (the Gaussian):
    #   eps'(2) <= log(1 + q^2 * min(4 (e^{eps(2)} - 1), 2 e^{eps(2)})),   q = P / K.
    # Computed here by hand for sigma = z / 2 (the replace-one sensitivity 2S), then converted with the
    # accountant's own RDP -> (eps, delta) conversion at that single order.
    z, num_clients, per_round, rounds, delta = 1.6, 50, 5, 30, 1e-5
    q, sigma = per_round / num_clients, z / 2
    eps2 = 2 / (2 * sigma ** 2)
    rdp2 = math.log1p(q ** 2 * min(4 * math.expm1(eps2), 2 * math.exp(eps2)))
    expected, _ = dp_accounting.rdp.rdp_privacy_accountant.compute_epsilon([2.0], [rounds * rdp2], delta)
    accountant = dp_accounting.rdp.RdpAccountant([2.0], dp_accounting.NeighboringRelation.REPLACE_ONE)
    accountant.compose(privacy.dp_event(z, num_clients, per_round, rounds))
    assert accountant.get_epsilon(delta) == pytest.approx(expected, rel=1e-9)


def test_installed_accountant_reproduces_tensorflow_privacys_published_example():
    # The accountant every number here comes from must reproduce published values: TensorFlow Privacy's
    # `compute_dp_sgd_privacy_test.py` (tensorflow/privacy, tensorflow_privacy/privacy/analysis) expects
    # eps = 0.7242234026109595 at order 19 for DP-SGD on n = 60000 examples, batch 150, noise 1.3, 15
    # epochs, delta 1e-5 (Poisson sampling, add-or-remove, its orders), computed with dp_accounting.
    orders = [1.25, 1.5, 1.75, 2., 2.25, 2.5, 3., 3.5, 4., 4.5] + list(range(5, 64)) + [128, 256, 512]
    accountant = dp_accounting.rdp.RdpAccountant(orders)
    event = dp_accounting.PoissonSampledDpEvent(150 / 60000, dp_accounting.GaussianDpEvent(1.3))
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, math.ceil(15 * 60000 / 150)))
    eps, order = accountant.get_epsilon_and_optimal_order(1e-5)
    assert eps == pytest.approx(0.7242234026109595, rel=1e-9)
    assert order == 19


# ---------------------------------------------------------------------------- the library's convention


def test_dp_accounting_0_6_reads_the_multiplier_as_std_over_sensitivity():
    # google/differential-privacy issue #378: under REPLACE_ONE, 0.6.0 uses GaussianDpEvent's multiplier
    # as std / L2-sensitivity, so `privacy` passes z / 2. If a release applies the factor 2 itself
    # (pull request #464), the probe says 2.0 and z is passed unchanged; this test then needs updating.
    assert privacy._library_sensitivity_factor() == 1.0
    assert privacy._multiplier_for_library(3.0) == 1.5


def test_a_library_that_doubles_itself_gets_z_unchanged(monkeypatch):
    # A fake probe: REPLACE_ONE epsilon equals add-or-remove's at half the multiplier.
    def fake(relation, event):
        multiplier = getattr(event, "noise_multiplier", None) or event.event.noise_multiplier
        return 1 / (multiplier / 2) ** 2 if relation == "REPLACE_ONE" else 1 / multiplier ** 2
    monkeypatch.setattr(privacy, "_probe_epsilon", fake)
    privacy._library_sensitivity_factor.cache_clear()
    try:
        assert privacy._multiplier_for_library(3.0) == 3.0
    finally:
        privacy._library_sensitivity_factor.cache_clear()


def test_an_unknown_convention_is_an_error(monkeypatch):
    monkeypatch.setattr(privacy, "_probe_epsilon", lambda relation, event: 1.0 if relation == "REPLACE_ONE"
                        else 7.0)
    privacy._library_sensitivity_factor.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="dp-accounting"):
            privacy._library_sensitivity_factor()
    finally:
        privacy._library_sensitivity_factor.cache_clear()


# ------------------------------------------------------------------------------------------ properties


def test_more_rounds_more_clients_per_round_less_noise_larger_epsilon():
    base = privacy.epsilon(1.0, 100, 10, 50, 1e-5)
    assert privacy.epsilon(1.0, 100, 10, 100, 1e-5) > base  # more rounds
    assert privacy.epsilon(1.0, 100, 20, 50, 1e-5) > base  # more clients per round (larger q)
    assert privacy.epsilon(0.8, 100, 10, 50, 1e-5) > base  # less noise
    assert privacy.epsilon(1.0, 200, 10, 50, 1e-5) < base  # a larger population, same P
    assert privacy.epsilon(1.0, 100, 10, 50, 1e-3) < base  # a larger delta


def test_every_client_every_round_is_the_gaussian_alone():
    # P == K: no amplification by sampling, so K does not matter, and T rounds of noise z compose (in
    # RDP, exactly) into one Gaussian of noise z / sqrt(T).
    eps = privacy.epsilon(4.0, 10, 10, 9, 1e-5)
    assert privacy.epsilon(4.0, 1000, 1000, 9, 1e-5) == pytest.approx(eps, rel=1e-12)
    assert privacy.epsilon(4.0 / 3, 10, 10, 1, 1e-5) == pytest.approx(eps, rel=1e-9)


def test_sampling_never_reports_more_than_no_sampling():
    # Wang et al.'s Theorem 27 is loose when P is close to K: for 9 of 10 clients its bound exceeds the
    # unsampled Gaussian's, which is valid too (sampling cannot weaken privacy), so that one is reported.
    unsampled = privacy.epsilon(4.0, 10, 10, 9, 1e-5)
    accountant = dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    accountant.compose(privacy.dp_event(4.0, 10, 9, 9))
    assert accountant.get_epsilon(1e-5) > unsampled
    assert privacy.epsilon(4.0, 10, 9, 9, 1e-5) == unsampled
    assert privacy.epsilon(4.0, 10, 2, 9, 1e-5) < unsampled  # few of many: amplification pays


def test_zero_noise_is_infinite_and_no_round_is_zero():
    assert privacy.epsilon(0.0, 100, 10, 5, 1e-5) == math.inf
    assert privacy.epsilon(0.0, 10, 10, 5, 1e-5) == math.inf
    assert privacy.epsilon(1.0, 100, 10, 0, 1e-5) == 0.0


@pytest.mark.parametrize("args,match", [
    ((-1.0, 10, 5, 3, 1e-5), "noise_multiplier"), ((float("nan"), 10, 5, 3, 1e-5), "noise_multiplier"),
    ((1.0, 10, 11, 3, 1e-5), "clients_per_round"), ((1.0, 10, 0, 3, 1e-5), "clients_per_round"),
    ((1.0, 10, 5, -1, 1e-5), "rounds"), ((1.0, 10, 5, 3, 0.0), "delta"), ((1.0, 10, 5, 3, 1.0), "delta"),
])
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        privacy.epsilon(*args)


def test_schedule_is_epsilon_per_round_and_never_decreases():
    rounds = [1, 5, 20, 100]
    schedule = privacy.epsilon_schedule(1.2, 64, 8, rounds, 1e-5)
    assert schedule == [privacy.epsilon(1.2, 64, 8, r, 1e-5) for r in rounds]
    assert schedule == sorted(schedule) and len(set(schedule)) == len(rounds)


def test_missing_dp_accounting_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dp_accounting", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"superfed_jax\[dp\]"):
        privacy.epsilon(1.0, 97, 7, 3, 1e-5)  # arguments no other test caches


# -------------------------------------------------------------------------------- evaluation records


def _config(noise: float, clip: float = 1.0) -> ml_collections.ConfigDict:
    config = config_lib.base_config()
    config.fl.num_clients, config.fl.clients_per_round = 20, 4
    config.dp.clip_norm, config.dp.noise_multiplier, config.dp.delta = clip, noise, 1e-6
    return config


def test_record_fields_when_noised():
    fields = privacy.record_fields(_config(1.5), 12)
    assert fields == {"dp_epsilon": privacy.epsilon(1.5, 20, 4, 12, 1e-6), "dp_delta": 1e-6}
    # The same from config.json's plain dicts: a report or a resumed run reads the same numbers.
    assert privacy.record_fields(_config(1.5).to_dict(), 12) == fields


def test_record_fields_empty_without_noise():
    assert privacy.record_fields(_config(0.0), 12) == {}
    assert privacy.record_fields(_config(0.0, clip=0.0), 12) == {}
    old = _config(1.0).to_dict()
    del old["dp"]  # a config saved before the dp section existed
    assert privacy.record_fields(old, 12) == {}
    assert not privacy.is_private(old)
