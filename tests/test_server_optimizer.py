"""The server's step on the masked mean (superfed_jax/federated/server_optimizer.py, docs/algorithm.md 4.2).

References are NumPy transcriptions of the published rules (Reddi et al., ICLR 2021, with optax's
conventions written out: Adam's and Yogi's bias correction, eps outside the root, Adagrad's accumulator
starting at 0.1), run element by element with the per-element rule of overlapping masks: an element no
client covered keeps its value and its moments; the step count advances every round.
"""
import jax
import ml_collections
import numpy as np
import optax
import pytest

import tiny_setup as T
from superfed_jax import config as config_lib
from superfed_jax import validation
from superfed_jax.federated import client
from superfed_jax.federated import objective
from superfed_jax.federated import round as fr
from superfed_jax.federated import server_optimizer as so
from superfed_jax.federated import sharding

LR, B1, B2, EPS = 0.05, 0.9, 0.99, 1e-3


def server(name, **values):
    defaults = dict(optimizer=name, learning_rate=LR, momentum=0.0, b1=B1, b2=B2, eps=EPS)
    return ml_collections.ConfigDict({**defaults, **values})


# ----------------------------------------------------------------------------- NumPy references


def np_steps(name, params, means, covers, momentum=0.0):
    """The server rule over several rounds, element by element; returns the params after each round."""
    x = params.astype(np.float64)
    m = np.full_like(x, 1e-6 if name == "yogi" else 0.0)
    v = np.full_like(x, 1e-6 if name == "yogi" else (0.1 if name == "adagrad" else 0.0))
    out = []
    for t, (mean, cover) in enumerate(zip(means, covers), start=1):
        g = np.where(cover, x - mean, 0.0)  # the pseudo-gradient
        if name == "sgd":
            new_m = momentum * m + g
            step = -LR * new_m
            new_v = v
        elif name == "adam":
            new_m = B1 * m + (1 - B1) * g
            new_v = B2 * v + (1 - B2) * g * g
            step = -LR * (new_m / (1 - B1 ** t)) / (np.sqrt(new_v / (1 - B2 ** t)) + EPS)
        elif name == "yogi":
            new_m = B1 * m + (1 - B1) * g
            new_v = v - (1 - B2) * np.sign(v - g * g) * g * g
            step = -LR * (new_m / (1 - B1 ** t)) / (np.sqrt(new_v / (1 - B2 ** t)) + EPS)
        else:  # adagrad: eps inside the root, as optax's scale_by_rss
            new_m = m
            new_v = v + g * g
            step = -LR * g / np.sqrt(new_v + EPS)
        x = np.where(cover, x + step, x)
        m, v = np.where(cover, new_m, m), np.where(cover, new_v, v)
        out.append(x.copy())
    return out


def run_steps(optimizer, params, means, covers):
    state = so.init_state(optimizer, params)
    step = jax.jit(lambda p, s, mean, cover: so.server_step(optimizer, p, s, mean, cover))
    out = []
    for mean, cover in zip(means, covers):
        params, state = step(params, state, mean, cover)
        out.append(params)
    return out, state


def cases(rounds=5, seed=0):
    """A 2-leaf params tree, a mean per round, and coverage masks of the mask leaf shapes: leaf 'w' [3, 4]
    with a per-column mask [1, 4] whose last column nobody trains in rounds 2 to 4; leaf 'b' [4] fully
    covered except in round 3."""
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(3, 4)).astype(np.float32), "b": rng.normal(size=(4,)).astype(np.float32)}
    means, covers = [], []
    for r in range(rounds):
        w_cover = np.array([[True, True, True, not 1 <= r <= 3]])
        b_cover = np.full((4,), r != 2)
        mean = {k: (v + rng.normal(scale=0.3, size=v.shape)).astype(np.float32) for k, v in params.items()}
        means.append(mean)
        covers.append({"w": w_cover, "b": b_cover})
    return params, means, covers


@pytest.mark.parametrize("name,momentum", [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0), ("yogi", 0.0),
                                           ("adagrad", 0.0)])
def test_each_optimizer_matches_numpy_with_uncovered_elements(name, momentum):
    params, means, covers = cases()
    got, _ = run_steps(so.make_server_optimizer(server(name, momentum=momentum)), params, means, covers)
    for key in params:
        want = np_steps(name, params[key], [m[key] for m in means],
                        [np.broadcast_to(c[key], params[key].shape) for c in covers], momentum)
        for r in range(len(means)):
            np.testing.assert_allclose(np.asarray(got[r][key]), want[r], rtol=2e-5, atol=2e-6,
                                       err_msg=f"{name} leaf {key} round {r + 1}")


def test_moments_of_an_uncovered_block_do_not_decay():
    """A block nobody trains for rounds 2-4 keeps its value and Adam's moments exactly, bit for bit."""
    params, means, covers = cases()
    optimizer = so.make_server_optimizer(server("adam"))
    state = so.init_state(optimizer, params)
    step = jax.jit(lambda p, s, mean, cover: so.server_step(optimizer, p, s, mean, cover))
    params, state = step(params, state, means[0], covers[0])
    frozen = (np.asarray(params["w"][:, 3]), np.asarray(state[0].mu["w"][:, 3]),
              np.asarray(state[0].nu["w"][:, 3]))
    assert np.all(frozen[1] != 0) and np.all(frozen[2] != 0)  # round 1 covered it: moments are set
    for r in range(1, 4):  # uncovered
        params, state = step(params, state, means[r], covers[r])
        assert np.array_equal(np.asarray(params["w"][:, 3]), frozen[0])
        assert np.array_equal(np.asarray(state[0].mu["w"][:, 3]), frozen[1])
        assert np.array_equal(np.asarray(state[0].nu["w"][:, 3]), frozen[2])
        assert not np.array_equal(np.asarray(params["w"][:, 0]), frozen[0])  # covered columns move
    assert int(state[0].count) == 4  # the step count is per round, not per element
    params, state = step(params, state, means[4], covers[4])
    assert not np.array_equal(np.asarray(state[0].mu["w"][:, 3]), frozen[1])  # covered again


def test_sgd_at_learning_rate_1_is_the_mean_and_none_has_no_state():
    params, means, covers = cases(rounds=1)
    got, _ = run_steps(so.make_server_optimizer(server("sgd", learning_rate=1.0)), params, means, covers)
    for key in params:
        want = np.where(np.broadcast_to(covers[0][key], params[key].shape), means[0][key], params[key])
        np.testing.assert_allclose(np.asarray(got[0][key]), want, rtol=1e-6, atol=1e-6)
    assert so.make_server_optimizer(server("none")) is None
    assert jax.tree.leaves(so.init_state(None, params)) == []


# ------------------------------------------------------------------- a user's own rule, and bad values


def signed_step(server_config):
    """A user's own server rule (selected below by its import path): a fixed-size step toward the mean."""
    return optax.chain(optax.scale_by_sign(), optax.scale(-server_config.learning_rate))


def not_a_transformation(server_config):
    return "sgd"


def test_a_users_own_rule_is_loaded_by_path_and_exact_for_masks():
    params, means, covers = cases(rounds=2)
    optimizer = so.make_server_optimizer(server("test_server_optimizer:signed_step"))
    got, _ = run_steps(optimizer, params, means, covers)
    x = params["w"]
    for r in range(2):
        cover = np.broadcast_to(covers[r]["w"], x.shape)
        x = np.where(cover, x - LR * np.sign(x - means[r]["w"]), x)
        np.testing.assert_allclose(np.asarray(got[r]["w"]), x, rtol=1e-6)


@pytest.mark.parametrize("override,message", [
    ({"server.learning_rate": -0.1}, "server.learning_rate=-0.1: must be a number > 0"),
    ({"server.b1": 1.0}, r"server.b1=1.0: must be a number in \[0, 1\)"),
    ({"server.b2": 1.5}, r"server.b2=1.5: must be a number in \[0, 1\)"),
    ({"server.momentum": 1.0}, r"server.momentum=1.0: must be a number in \[0, 1\)"),
    ({"server.eps": 0.0}, "server.eps=0.0: must be a number > 0"),
    ({"server.optimizer": "adamw"}, "server.optimizer='adamw': not a registered name; allowed are "
                                    r"\['none', 'sgd', 'adam', 'yogi', 'adagrad'\]"),
    ({"server.optimizer": "nowhere_module:fn"}, "server.optimizer='nowhere_module:fn': cannot import"),
    ({"server.optimizer": "test_server_optimizer:not_a_transformation"},
     "the function returned str, not an optax.GradientTransformation"),
])
def test_bad_server_values_are_one_clear_error_before_anything_compiles(override, message):
    config = config_lib.base_config()
    for name, value in override.items():
        section, key = name.split(".")
        config[section][key] = value
    with pytest.raises(ValueError, match=message):
        validation.check_config(config, check_files=False)


# ------------------------------------------------------------------------------ inside the round

K = T.NUM_CLIENTS
DATA_CONFIG = ml_collections.ConfigDict(dict(crop_padding=0, flip=False, cutout_size=0))
TABLE, SIZES = T.index_table()
IMAGES, LABELS = T.make_data()


def one_round(server_opt, state=None):
    settings = fr.RoundSettings(num_clients=K, clients_per_round=4, chunk_size=4,
                                heuristic="tracking_sandwich", pool=None, count_random_extremes=True,
                                beta_schedule="cosine", beta0=0.9, beta_final=0.25, decay_rounds=4)
    update = client.make_client_update(objective.make_loss_fn(T.FAMILY, T.MEAN, T.STD, DATA_CONFIG),
                                       client.make_optimizer(0.1, 1.0), epochs=1, batch_size=8,
                                       max_size=int(TABLE.shape[1]))
    mesh = sharding.make_mesh(jax.devices()[:1])
    round_fn = jax.jit(fr.make_round_fn(T.FAMILY, settings, client.vmap_clients(update), mesh,
                                        server_opt=server_opt))
    if state is None:
        state = fr.init_state(T.as_jnp(T.init_params()), 0, K, server_opt)
    return round_fn(state, fr.FederatedData(IMAGES, LABELS, TABLE, SIZES))


def test_round_with_adam_steps_from_the_rounds_masked_mean():
    """Round 1 with FedAdam equals NumPy Adam applied to the plain round's result (the clients train the
    same either way), covered elements being those of the union of the round's subnets."""
    plain, metrics = one_round(None)
    optimizer = so.make_server_optimizer(server("adam"))
    adam, _ = one_round(optimizer)
    params0 = T.init_params()
    masks = [T.FAMILY.masks(jax.tree.map(lambda a: a[i], metrics["archs"])) for i in range(4)]
    covered = jax.tree.map(lambda *ms: np.any(np.stack([np.asarray(m) for m in ms]), axis=0), *masks)
    flat_plain = jax.tree_util.tree_flatten_with_path(plain.params)[0]
    for (path, mean), p0, got, cover in zip(flat_plain, jax.tree.leaves(params0), jax.tree.leaves(adam.params),
                                            jax.tree.leaves(covered)):
        cover = np.broadcast_to(cover, np.shape(p0))
        want = np_steps("adam", np.asarray(p0), [np.asarray(mean)], [cover])[0]
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-6,
                                   err_msg=jax.tree_util.keystr(path))
        assert np.array_equal(np.asarray(got)[~cover], np.asarray(p0)[~cover])  # uncovered: exact
    assert int(adam.server_opt[0].count) == 1


def test_the_memory_estimate_counts_the_server_state():
    from superfed_jax.run import memory
    slots = {name: so.state_slots(server(name)) for name in so.SERVER_OPTIMIZERS}
    assert slots == {"none": 0, "sgd": 0, "adam": 2, "yogi": 2, "adagrad": 1}
    assert so.state_slots(server("sgd", momentum=0.9)) == 1
    assert so.state_slots({}) == 0  # a config saved before the server section: the mean
    plain = memory.estimate_round_memory(T.FAMILY, batch_size=8, chunk_size=4)
    adam = memory.estimate_round_memory(T.FAMILY, batch_size=8, chunk_size=4, server_slots=2)
    assert adam["total_bytes"] - plain["total_bytes"] == 2 * plain["params_bytes"]
    assert adam["fixed"]["server_optimizer_state"] == 2 * plain["params_bytes"]
