"""A client whose training explodes is left out of the aggregation and counted; the supernet stays finite.

The fault is real: the exploding client trains with learning rate 1e30 (an injected test hook around the
library's client update), so its params and loss overflow. The reference for the surviving clients is
their own single-client updates combined by the NumPy masked mean of tiny_setup.
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import tiny_setup as T
from superfed_jax.federated import client
from superfed_jax.federated import objective
from superfed_jax.federated import round as fr
from superfed_jax.federated import sharding

K = T.NUM_CLIENTS
EPOCHS, BATCH, LR, CLIP = 1, 8, 0.1, 1.0
DATA_CONFIG = ml_collections.ConfigDict(dict(crop_padding=0, flip=False, cutout_size=0))
IMAGES, LABELS = T.make_data()
TABLE, SIZES = T.index_table()
BAD = 5  # the exploding client's id; CLIENT_SIZES are distinct, so its size identifies it


def client_update(learning_rate):
    return client.make_client_update(
        objective.make_loss_fn(T.FAMILY, T.MEAN, T.STD, DATA_CONFIG), client.make_optimizer(learning_rate, CLIP),
        epochs=EPOCHS, batch_size=BATCH, max_size=int(TABLE.shape[1]))


def exploding_clients(bad_sizes, bad_learning_rate):
    """Trains clients normally, except those whose size is in `bad_sizes`, which use `bad_learning_rate`.

    Both may be traced values, so one compiled round serves every fault pattern (see `faulty_round`).
    """
    normal = client.vmap_clients(client_update(LR))
    exploding = client.vmap_clients(client_update(bad_learning_rate))

    def train_clients(params, archs, indices, sizes, keys, images, labels):
        good = normal(params, archs, indices, sizes, keys, images, labels)
        bad = exploding(params, archs, indices, sizes, keys, images, labels)
        is_bad = jnp.isin(sizes, bad_sizes)
        pick = lambda g, b: jnp.where(is_bad.reshape((-1,) + (1,) * (g.ndim - 1)), b, g)
        return jax.tree.map(pick, good, bad)

    return train_clients


SETTINGS = fr.RoundSettings(num_clients=K, clients_per_round=K, chunk_size=K, heuristic="random", pool=None,
                            count_random_extremes=True, beta_schedule="uniform", beta0=0.5, beta_final=0.5,
                            decay_rounds=1)


@jax.jit
def faulty_round(state, data, bad_sizes, bad_learning_rate):
    """One round whose clients of the sizes `bad_sizes` [K] (-1: no client) train with `bad_learning_rate`.

    The faults are arguments, not constants, so the tests' fault patterns share one compile of the round.
    """
    mesh = sharding.make_mesh(jax.devices()[:1])
    return fr.make_round_fn(T.FAMILY, SETTINGS, exploding_clients(bad_sizes, bad_learning_rate), mesh)(state, data)


def run_round(bad_sizes, bad_learning_rate):
    """One round with all K clients sampled, uniform weights; (state before, metrics, state after)."""
    padded = np.full(K, -1, np.int32)  # a fixed shape keeps the compile shared; no client has size -1
    padded[:len(bad_sizes)] = bad_sizes
    data = fr.FederatedData(IMAGES, LABELS, TABLE, SIZES)
    state = fr.init_state(T.as_jnp(T.init_params()), 0, K)
    before = jax.device_get(state)
    after, metrics = faulty_round(state, data, padded, np.float32(bad_learning_rate))
    return before, jax.device_get(metrics), jax.device_get(after)


@pytest.fixture(scope="module")
def one_bad():
    return run_round([T.CLIENT_SIZES[BAD]], 1e30)  # overflows within its two local steps


def test_exploding_client_is_counted_and_the_supernet_stays_finite(one_bad):
    _, metrics, after = one_bad
    assert int(metrics["clients_nonfinite"]) == 1
    assert np.isfinite(metrics["train_loss"])
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(after.params))


def test_exploding_client_gets_weight_zero(one_bad):
    """The aggregate equals the masked mean of the other clients' normal updates (NumPy reference)."""
    before, metrics, after = one_bad
    update = jax.jit(client_update(LR))
    keys = fr.client_train_keys(fr.round_key(T.as_jnp(before)), jnp.asarray(metrics["clients"]))
    client_params, client_masks, weights = [], [], []
    for i, c in enumerate(np.asarray(metrics["clients"])):
        arch = T.arch(metrics["archs"].depth[i], metrics["archs"].expand[i])
        result = update(T.as_jnp(before.params), arch, TABLE[c], SIZES[c], keys[i], IMAGES, LABELS)
        client_params.append(jax.device_get(result.params))
        client_masks.append(T.np_full_masks(arch.depth, arch.expand))
        weights.append(0.0 if c == BAD else 1.0)
    assert BAD in np.asarray(metrics["clients"])
    expected = T.np_masked_mean(client_params, client_masks, weights, before.params)
    T.assert_trees_close(after.params, expected, rtol=1e-4, atol=1e-5)


def test_every_client_exploding_keeps_the_previous_supernet():
    # lr = inf: every client's first step already makes its params non-finite (one-step clients too).
    before, metrics, after = run_round(list(T.CLIENT_SIZES), float("inf"))
    assert faulty_round._cache_size() == 1  # the round compiled once for both fault patterns
    assert int(metrics["clients_nonfinite"]) == K
    assert T.trees_equal(after.params, before.params)
    assert int(after.round) == 1  # the round still counts
