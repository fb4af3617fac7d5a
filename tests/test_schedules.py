"""Tests for superfed_jax.federated.schedules (the MaxNet beta schedule, docs/algorithm.md 4.1)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from superfed_jax.federated.schedules import SCHEDULES, beta, client_weights

HP = dict(beta0=0.9, beta_final=0.125, decay_rounds=1200)  # beta_final = 1/P with P = 8


@pytest.mark.parametrize("schedule, expected", [
    # cosine: 0.125 + 0.775 * (1 + cos(pi * p)) / 2 at p = 0, 1/4, 1/2, 1, past T.
    ("cosine", {0: 0.9, 300: 0.125 + 0.775 * (1 + np.sqrt(0.5)) / 2, 600: 0.5125,
                1200: 0.125, 1500: 0.125}),
    # linear: 0.9 - 0.775 * p.
    ("linear", {0: 0.9, 300: 0.70625, 600: 0.5125, 1200: 0.125, 1500: 0.125}),
    ("constant", {0: 0.9, 600: 0.9, 1200: 0.9, 1500: 0.9}),
    ("uniform", {0: 0.125, 600: 0.125, 1500: 0.125}),
])
def test_beta_values(schedule, expected):
    for t, value in expected.items():
        got = beta(schedule, jnp.int32(t), **HP)
        assert got.dtype == jnp.float32 and got.shape == ()
        np.testing.assert_allclose(float(got), value, rtol=1e-6, err_msg=f"{schedule} t={t}")


def test_cosine_matches_paper_formula():
    beta0, beta_t, total = 0.9, 0.125, 1200
    a = beta_t / beta0
    for t in [0, 1, 77, 599, 1000, 1199, 1200, 4000]:
        p = min(t, total) / total
        paper = beta0 * ((1 - a) * (1 + np.cos(np.pi * p)) / 2 + a)
        np.testing.assert_allclose(float(beta("cosine", t, **HP)), paper, rtol=1e-6)


def test_cosine_and_linear_decrease_monotonically():
    rounds = jnp.arange(0, 1600, dtype=jnp.int32)
    for schedule in ("cosine", "linear"):
        values = np.asarray(jax.vmap(lambda t: beta(schedule, t, **HP))(rounds))
        assert np.all(np.diff(values) <= 1e-7)


def test_zero_decay_rounds_is_final_from_start():
    for schedule in ("cosine", "linear"):
        got = beta(schedule, 0, beta0=0.9, beta_final=0.2, decay_rounds=0)
        np.testing.assert_allclose(float(got), 0.2, rtol=1e-6)


def test_beta0_zero_has_no_nan():
    got = beta("cosine", 3, beta0=0.0, beta_final=0.0, decay_rounds=10)
    assert float(got) == 0.0


def test_one_trace_for_many_rounds():
    traces = []

    @jax.jit
    def round_beta(t):
        traces.append(1)
        return beta("cosine", t, **HP)

    values = [float(round_beta(jnp.int32(t))) for t in (0, 5, 600, 1200, 2000)]
    assert len(traces) == 1
    np.testing.assert_allclose(values[2], 0.5125, rtol=1e-6)


def test_weights_maxnet_gets_beta():
    is_maxnet = jnp.array([False, False, True, False])
    w = np.asarray(client_weights("cosine", jnp.float32(0.7), is_maxnet))
    np.testing.assert_allclose(w, [0.1, 0.1, 0.7, 0.1], rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(p=st.integers(2, 12), position=st.integers(0, 11), beta_t=st.floats(0.0, 1.0),
       schedule=st.sampled_from(["linear", "cosine", "constant"]))
def test_weights_sum_to_one(p, position, beta_t, schedule):
    is_maxnet = np.arange(p) == position % p
    w = np.asarray(client_weights(schedule, beta_t, is_maxnet))
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(w[position % p], beta_t, rtol=1e-6, atol=1e-7)
    assert np.all(w >= 0)


def test_uniform_schedule_all_ones():
    w = np.asarray(client_weights("uniform", 0.9, jnp.array([True, False, False])))
    np.testing.assert_array_equal(w, [1.0, 1.0, 1.0])


def test_no_maxnet_gives_uniform():
    w = np.asarray(client_weights("cosine", 0.9, jnp.zeros(4, bool)))
    np.testing.assert_allclose(w, [0.25] * 4)


def test_several_maxnets_only_first_counts():
    w = np.asarray(client_weights("linear", 0.6, jnp.array([False, True, False, True, False])))
    np.testing.assert_allclose(w, [0.1, 0.6, 0.1, 0.1, 0.1], rtol=1e-6)


@pytest.mark.parametrize("flag", [True, False])
def test_single_client_weight_one(flag):
    w = np.asarray(client_weights("cosine", 0.9, jnp.array([flag])))
    np.testing.assert_array_equal(w, [1.0])


def test_weights_jit_traced_beta_and_flags():
    fn = jax.jit(lambda b, m: client_weights("cosine", b, m))
    w = np.asarray(fn(jnp.float32(0.5), jnp.array([False, True, False])))
    np.testing.assert_allclose(w, [0.25, 0.5, 0.25])


def test_unknown_schedule_names_field():
    with pytest.raises(ValueError, match=r"fl.beta_schedule='exp'.*cosine"):
        beta("exp", 0, **HP)
    with pytest.raises(ValueError, match="fl.beta_schedule"):
        client_weights("exp", 0.5, jnp.array([True, False]))


def test_schedule_names():
    assert SCHEDULES == ("uniform", "linear", "cosine", "constant")
