"""User-level DP inside the round (superfed_jax/federated/private_aggregation.py, docs/algorithm.md 4.3).

The references: NumPy clipping of hand-built updates; a whole round against each sampled client trained
alone plus a NumPy DP-FedAvg for overlapping masks (clip each update over its subnet, weights scaled to a
largest of 1, weighted sum over the element's clients divided by their weight count); the noise's spread
measured against its configured std.
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import tiny_setup as T
from superfed_jax.federated import client
from superfed_jax.federated import objective
from superfed_jax.federated import private_aggregation as pa
from superfed_jax.federated import round as fr
from superfed_jax.federated import schedules
from superfed_jax.federated import sharding
from superfed_jax.supernet.ofa_resnet import space as space_lib

K, P = T.NUM_CLIENTS, 4
CLIP = 0.05  # small enough that most clients' updates are scaled down
DATA_CONFIG = ml_collections.ConfigDict(dict(crop_padding=0, flip=False, cutout_size=0))
TABLE, SIZES = T.index_table()
IMAGES, LABELS = T.make_data()
UPDATE = client.make_client_update(objective.make_loss_fn(T.FAMILY, T.MEAN, T.STD, DATA_CONFIG),
                                   client.make_optimizer(0.1, 1.0), epochs=1, batch_size=8,
                                   max_size=int(TABLE.shape[1]))


def test_clipping_bounds_each_clients_update_over_its_subnet():
    rng = np.random.default_rng(0)
    server = {"a": rng.normal(size=(5, 3)).astype(np.float32), "b": rng.normal(size=(3,)).astype(np.float32)}
    # 3 clients: a large update, a small one (left as it is), a non-finite one (zeroed).
    scales = [10.0, 1e-3, 1.0]
    client_params = {k: np.stack([v + s * rng.normal(size=v.shape).astype(np.float32) for s in scales])
                     for k, v in server.items()}
    client_params["b"][2, 0] = np.nan
    masks = {"a": np.array([[[1, 1, 0]], [[1, 0, 0]], [[1, 1, 1]]], np.float32),  # per column
             "b": np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1]], np.float32)}
    updates, clipped = jax.jit(lambda p, s, m: pa.clip_updates(p, s, m, 1.0))(client_params, server, masks)
    for c in range(3):
        raw = {k: (client_params[k][c] - server[k]) * np.broadcast_to(masks[k][c], server[k].shape)
               for k in server}
        norm = np.sqrt(sum(np.sum(np.square(r, dtype=np.float64)) for r in raw.values()))
        got_norm = np.sqrt(sum(np.sum(np.square(np.asarray(updates[k][c]), dtype=np.float64)) for k in server))
        for k in server:
            outside = np.broadcast_to(masks[k][c], server[k].shape) == 0
            assert np.all(np.asarray(updates[k][c])[outside] == 0)  # nothing outside the subnet
            if c == 2:
                assert np.all(np.asarray(updates[k][c]) == 0)  # non-finite: no contribution at all
            else:
                want = raw[k] * min(1.0, 1.0 / norm)
                np.testing.assert_allclose(np.asarray(updates[k][c]), want, rtol=1e-5, atol=1e-7)
        assert got_norm <= 1.0 + 1e-6
        assert bool(clipped[c]) == (c == 0)


def test_dp_weights_scale_the_largest_to_one():
    np.testing.assert_allclose(np.asarray(pa.dp_weights(jnp.array([0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3]))),
                               [1.0, 1 / 27, 1 / 27, 1 / 27], rtol=1e-6)
    assert np.all(np.asarray(pa.dp_weights(jnp.zeros(3))) == 0)


def dp_round(noise_multiplier, seed=0):
    settings = fr.RoundSettings(num_clients=K, clients_per_round=P, chunk_size=2,
                                heuristic="tracking_sandwich", pool=None, count_random_extremes=True,
                                beta_schedule="cosine", beta0=0.9, beta_final=1 / P, decay_rounds=4,
                                dp_clip_norm=CLIP, dp_noise_multiplier=noise_multiplier)
    mesh = sharding.make_mesh(jax.devices()[:1])
    round_fn = jax.jit(fr.make_round_fn(T.FAMILY, settings, client.vmap_clients(UPDATE), mesh))
    state = fr.init_state(T.as_jnp(T.init_params()), seed, K)
    new_state, metrics = round_fn(state, fr.FederatedData(IMAGES, LABELS, TABLE, SIZES))
    return state, jax.device_get(new_state), jax.device_get(metrics)


@pytest.fixture(scope="module")
def noiseless():
    return dp_round(0.0)


def test_a_noiseless_dp_round_equals_numpy_dp_fedavg_for_overlapping_masks(noiseless):
    state, after, metrics = noiseless
    clients = np.asarray(metrics["clients"])
    keys = fr.client_train_keys(fr.round_key(state), jnp.asarray(clients))
    depths, expands = np.asarray(metrics["archs"].depth), np.asarray(metrics["archs"].expand)
    is_maxnet = np.array([T.np_is_largest(d, e) for d, e in zip(depths, expands)])
    assert is_maxnet.sum() == 1  # the tracking sandwich gives one client the largest arch
    weights = np.asarray(schedules.client_weights("cosine", jnp.float32(0.9), jnp.asarray(is_maxnet)))
    weights = weights / weights.max()
    server = T.init_params()
    updates, masks, norms = [], [], []
    for i, c in enumerate(clients):
        trained = jax.device_get(jax.jit(UPDATE)(state.params, space_lib.Arch(depth=depths[i], expand=expands[i]),
                                                 TABLE[c], SIZES[c], keys[i], IMAGES, LABELS).params)
        mask = T.np_full_masks(depths[i], expands[i])
        update = jax.tree.map(lambda t, s, m: (t.astype(np.float64) - s) * m, trained, server, mask)
        norm = np.sqrt(sum(np.sum(u ** 2) for u in jax.tree.leaves(update)))
        updates.append(jax.tree.map(lambda u: u * min(1.0, CLIP / norm), update))
        masks.append(mask)
        norms.append(norm)

    def leaf(s, *pairs):
        ups, ms = pairs[:P], pairs[P:]
        num = sum(w * m * u for w, m, u in zip(weights, ms, ups))
        den = sum(w * m for w, m in zip(weights, ms))
        return np.where(den > 0, s + num / np.where(den > 0, den, 1.0), s)

    expected = jax.tree.map(leaf, server, *updates, *masks)
    T.assert_trees_close(after.params, expected, rtol=1e-5, atol=1e-7)
    assert int(metrics["dp_clipped"]) == sum(n > CLIP for n in norms)
    assert 0 < int(metrics["dp_clipped"]) < P  # both kinds of client occur in this round


def test_noise_has_the_configured_spread_and_only_where_covered(noiseless):
    """Noise z * S on each element's weighted sum: (noisy - noiseless) * weight count ~ N(0, (z S)^2)."""
    z = 2.0
    state, plain, metrics = noiseless
    _, noisy, _ = dp_round(z)
    depths, expands = np.asarray(metrics["archs"].depth), np.asarray(metrics["archs"].expand)
    is_maxnet = np.array([T.np_is_largest(d, e) for d, e in zip(depths, expands)])
    weights = np.asarray(schedules.client_weights("cosine", jnp.float32(0.9), jnp.asarray(is_maxnet)))
    weights = weights / weights.max()
    masks = [T.np_full_masks(d, e) for d, e in zip(depths, expands)]
    counts = jax.tree.map(lambda *ms: sum(w * m for w, m in zip(weights, ms)), *masks)
    scaled, uncovered_equal = [], []
    for a, b, den in zip(jax.tree.leaves(noisy.params), jax.tree.leaves(plain.params), jax.tree.leaves(counts)):
        diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
        scaled.append((diff * den)[den > 0])
        uncovered_equal.append(np.array_equal(np.asarray(a)[den == 0], np.asarray(b)[den == 0]))
    scaled = np.concatenate(scaled)
    assert scaled.size > 2000
    assert abs(np.std(scaled) / (z * CLIP) - 1) < 0.1  # thousands of draws: within 10%
    assert abs(np.mean(scaled)) < 0.1 * z * CLIP
    assert all(uncovered_equal)  # an element nobody covered keeps its value, noise or not
    _, again, _ = dp_round(z)  # the noise is drawn from (seed, round): a resumed run replays it
    T.assert_equal(again.params, noisy.params)
