"""Tests for superfed_jax.federated.sampling (clients of a round, uniformly without replacement)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superfed_jax.federated.sampling import sample_clients


def test_distinct_ids_in_range():
    for seed in range(20):
        ids = np.asarray(sample_clients(jax.random.key(seed), 20, 8))
        assert ids.dtype == np.int32 and ids.shape == (8,)
        assert len(set(ids.tolist())) == 8
        assert ids.min() >= 0 and ids.max() < 20


def test_all_clients_when_p_equals_k():
    ids = np.asarray(sample_clients(jax.random.key(3), 5, 5))
    assert sorted(ids.tolist()) == [0, 1, 2, 3, 4]


def test_deterministic_per_key_and_varies_across_keys():
    key = jax.random.fold_in(jax.random.key(0), 17)
    a = np.asarray(sample_clients(key, 20, 8))
    b = np.asarray(sample_clients(key, 20, 8))
    np.testing.assert_array_equal(a, b)
    others = [np.asarray(sample_clients(jax.random.fold_in(jax.random.key(0), r), 20, 8))
              for r in range(5)]
    assert any(not np.array_equal(a, o) for o in others)


def test_uniform_marginals():
    num_keys, k, p = 4000, 20, 8
    keys = jax.random.split(jax.random.key(1), num_keys)
    ids = np.asarray(jax.vmap(lambda key: sample_clients(key, k, p))(keys))
    # Every client takes part with probability P/K = 0.4: 1600 +- 31 (one sd) per client.
    counts = np.bincount(ids.ravel(), minlength=k)
    assert np.abs(counts - num_keys * p / k).max() < 5 * np.sqrt(num_keys * 0.4 * 0.6)
    # The first position is uniform over the K clients too (the sandwich heuristic is positional).
    first = np.bincount(ids[:, 0], minlength=k)
    assert np.abs(first - num_keys / k).max() < 5 * np.sqrt(num_keys / k)


def test_jit_with_traced_key():
    traces = []

    @jax.jit
    def sample_round(seed_key, round_num):
        traces.append(1)
        return sample_clients(jax.random.fold_in(seed_key, round_num), 20, 8)

    seed_key = jax.random.key(0)
    for r in range(5):
        jitted = np.asarray(sample_round(seed_key, jnp.int32(r)))
        eager = np.asarray(sample_clients(jax.random.fold_in(seed_key, r), 20, 8))
        np.testing.assert_array_equal(jitted, eager)
    assert len(traces) == 1


@pytest.mark.parametrize("p", [0, 21])
def test_bad_clients_per_round(p):
    with pytest.raises(ValueError, match="fl.clients_per_round"):
        sample_clients(jax.random.key(0), 20, p)
