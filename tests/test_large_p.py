"""Many clients per round: P = 128 of K = 160 clients on the 8 fake CPU devices of conftest.py.

Memory grows with the chunk size, not with P (superfed_jax/run/memory.py), so a large P runs as a scan over
small chunks, each split over the devices. The round must run, stay finite and give the same result
whatever the chunking: results depend only on (seed, round, client id).
"""
import jax
import ml_collections
import numpy as np
import pytest

import tiny_setup as T
from superfed_jax.federated import client
from superfed_jax.federated import objective
from superfed_jax.federated import round as fr
from superfed_jax.federated import sharding

NUM_CLIENTS, PER_ROUND = 160, 128
BATCH, EPOCHS, MAX_SIZE = 4, 1, 10
DATA_CONFIG = ml_collections.ConfigDict(dict(crop_padding=1, flip=True, cutout_size=0))


def client_table(seed: int = 0):
    """Overlapping random subsets of the 100 tiny examples: sizes 1..MAX_SIZE, most with a partial batch."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, MAX_SIZE + 1, NUM_CLIENTS).astype(np.int32)
    table = np.zeros((NUM_CLIENTS, MAX_SIZE), np.int32)
    for c, size in enumerate(sizes):
        table[c, :size] = rng.choice(T.NUM_EXAMPLES, size, replace=False)
    return table, sizes


def run_rounds(chunk_size: int, rounds: int = 2):
    """`rounds` rounds from seed 0 with P = 128 in chunks of `chunk_size` over all 8 devices (host copies)."""
    images, labels = T.make_data()
    table, sizes = client_table()
    update = client.make_client_update(objective.make_loss_fn(T.FAMILY, T.MEAN, T.STD, DATA_CONFIG),
                                       client.make_optimizer(0.1, 1.0), epochs=EPOCHS,
                                       batch_size=BATCH, max_size=MAX_SIZE)
    settings = fr.RoundSettings(num_clients=NUM_CLIENTS, clients_per_round=PER_ROUND,
                                chunk_size=chunk_size, heuristic="tracking_sandwich", pool=None,
                                count_random_extremes=True, beta_schedule="cosine", beta0=0.9,
                                beta_final=1.0 / PER_ROUND, decay_rounds=4)
    mesh = sharding.make_mesh()
    round_fn = jax.jit(fr.make_round_fn(T.FAMILY, settings, client.vmap_clients(update), mesh),
                       donate_argnums=0)
    replicated = sharding.replicated(mesh)
    data = jax.device_put(fr.FederatedData(images, labels, table, sizes), replicated)
    state = jax.device_put(fr.init_state(T.as_jnp(T.init_params()), 0, NUM_CLIENTS), replicated)
    records = []
    for _ in range(rounds):
        state, metrics = round_fn(state, data)
        records.append((jax.device_get(metrics), jax.device_get(state)))
    return records


@pytest.fixture(scope="module")
def chunks_of_16():
    """Two clients per device at a time, 8 sequential chunks."""
    return run_rounds(16)


@pytest.fixture(scope="module")
def chunks_of_64():
    """Eight clients per device at a time, 2 sequential chunks."""
    return run_rounds(64)


def test_large_round_runs_and_stays_finite(chunks_of_16):
    assert len(jax.devices()) == 8
    initial = T.init_params()
    for t, (metrics, state) in enumerate(chunks_of_16):
        assert int(state.round) == t + 1
        clients = np.asarray(metrics["clients"])
        assert clients.shape == (PER_ROUND,) and len(set(clients.tolist())) == PER_ROUND
        assert int(metrics["clients_nonfinite"]) == 0
        assert np.isfinite(metrics["train_loss"]) and 0 < metrics["train_loss"] < 5
        assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state.params))
    assert T.max_abs_diff(chunks_of_16[-1][1].params, initial) > 1e-4  # the rounds trained something
    # Tracking sandwich: exactly one MaxNet assignment per round is counted at least.
    assert int(chunks_of_16[-1][1].tracking.n_max.sum()) >= 2


def test_large_round_does_not_depend_on_chunking(chunks_of_16, chunks_of_64):
    for (m_small, s_small), (m_large, s_large) in zip(chunks_of_16, chunks_of_64):
        for name in ("clients", "archs", "beta", "clients_nonfinite"):
            T.assert_equal(m_small[name], m_large[name], err_msg=name)
        np.testing.assert_allclose(m_small["train_loss"], m_large["train_loss"], rtol=1e-5)
        # Only the summation order of the aggregation differs: float32 rounding.
        T.assert_trees_close(s_small.params, s_large.params, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(s_small.tracking.n_max, s_large.tracking.n_max)
        np.testing.assert_array_equal(s_small.tracking.n_min, s_large.tracking.n_min)
