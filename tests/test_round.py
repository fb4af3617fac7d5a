"""Tests for superfed_jax.federated.round: one SuperFed round as one compiled program.

Each round configuration is compiled once per module (fixtures below) and its rounds are recorded on the
host; the tests then check the records against independent references: per-client training with the
single-client update plus a NumPy masked mean with hand-built masks, a NumPy simulation of the tracking
sandwich rule, the paper's beta formula, and runs that differ only in chunking, sharding or seed.
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
from superfed_jax.federated import schedules
from superfed_jax.federated import sharding
from superfed_jax.supernet.ofa_resnet import model as model_lib
from superfed_jax.supernet.ofa_resnet import space as space_lib

K = T.NUM_CLIENTS
EPOCHS, BATCH, LR, CLIP = 2, 8, 0.1, 1.0
BETA0, DECAY_ROUNDS = 0.9, 4
# Crop and flip on, so a client's result depends on its training key.
DATA_CONFIG = ml_collections.ConfigDict(dict(crop_padding=1, flip=True, cutout_size=0))

IMAGES, LABELS = T.make_data()
TABLE, SIZES = T.index_table()
CLIENT_UPDATE = client.make_client_update(
    objective.make_loss_fn(T.FAMILY, T.MEAN, T.STD, DATA_CONFIG), client.make_optimizer(LR, CLIP),
    epochs=EPOCHS, batch_size=BATCH, max_size=int(TABLE.shape[1]))
single_client = jax.jit(CLIENT_UPDATE)
SIDE_BY_SIDE = client.make_side_by_side_update(
    objective.make_loss_fn(T.FAMILY, T.MEAN, T.STD, DATA_CONFIG), client.make_optimizer(LR, CLIP),
    epochs=EPOCHS, batch_size=BATCH, max_size=int(TABLE.shape[1]))


def settings(clients_per_round, chunk_size, heuristic="tracking_sandwich", pool=None,
             beta_schedule="cosine", **extra):
    return fr.RoundSettings(num_clients=K, clients_per_round=clients_per_round, chunk_size=chunk_size,
                            heuristic=heuristic, pool=pool, count_random_extremes=True,
                            beta_schedule=beta_schedule, beta0=BETA0, beta_final=1.0 / clients_per_round,
                            decay_rounds=DECAY_ROUNDS, **extra)


class Runner:
    """A jitted, donating round function over `mesh`, with a count of how often it was traced."""

    def __init__(self, round_settings, mesh, train_clients=None):
        self.settings, self.mesh, self.traces = round_settings, mesh, 0
        train_clients = train_clients or client.vmap_clients(CLIENT_UPDATE)
        pure = fr.make_round_fn(T.FAMILY, round_settings, train_clients, mesh)

        def counted(state, data):
            self.traces += 1
            return pure(state, data)

        self.round_fn = jax.jit(counted, donate_argnums=0)
        replicated = sharding.replicated(mesh)
        self.data = jax.device_put(fr.FederatedData(IMAGES, LABELS, TABLE, SIZES), replicated)
        self.place = lambda tree: jax.device_put(tree, replicated)

    def initial_state(self, seed=0, round_num=0):
        state = fr.init_state(T.as_jnp(T.init_params()), seed, K)
        return state.replace(round=jnp.int32(round_num))

    def run(self, state, rounds):
        """Runs `rounds` rounds; returns [(state before, metrics, state after)] as host (NumPy) trees."""
        records = []
        state = self.place(state)
        for _ in range(rounds):
            before = jax.device_get(state)  # copied: the round consumes (donates) its input
            state, metrics = self.round_fn(state, self.data)
            records.append((before, jax.device_get(metrics), jax.device_get(state)))
        return records


def np_beta(t, clients_per_round):
    """The paper's cosine schedule, written from docs/algorithm.md 4.1."""
    beta_final = 1.0 / clients_per_round
    a = beta_final / BETA0
    progress = min(t, DECAY_ROUNDS) / DECAY_ROUNDS
    return BETA0 * ((1 - a) * (1 + np.cos(np.pi * progress)) / 2 + a)


def archs_of(metrics):
    return list(zip(np.asarray(metrics["archs"].depth), np.asarray(metrics["archs"].expand)))


def tracking_roles(clients, n_max, n_min):
    """NumPy tracking sandwich (docs/algorithm.md 3): positions of the largest and the smallest arch."""
    clients = [int(c) for c in clients]
    max_client = min(clients, key=lambda c: (n_max[c], c))
    min_client = min((c for c in clients if c != max_client), key=lambda c: (n_min[c], c))
    return clients.index(max_client), clients.index(min_client)


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def main():
    """Tracking sandwich, cosine beta, P = 4 in one chunk, over all 8 devices; 3 rounds from seed 0."""
    runner = Runner(settings(4, 4), sharding.make_mesh())
    records = runner.run(runner.initial_state(seed=0), 3)
    return runner, records, runner.traces


@pytest.fixture(scope="module")
def wide_sharded():
    runner = Runner(settings(8, 8), sharding.make_mesh())
    return runner.run(runner.initial_state(seed=0), 2)


@pytest.fixture(scope="module")
def wide_one_device():
    runner = Runner(settings(8, 8), sharding.make_mesh(jax.devices()[:1]))
    return runner.run(runner.initial_state(seed=0), 2)


# -------------------------------------------------------------------------------------- compile / state


def test_round_compiles_once(main):
    runner, records, traces_after_three_rounds = main
    assert len(records) == 3
    assert traces_after_three_rounds == 1
    # Later runs of the same shapes (other seeds, a resumed round) do not retrace either.
    runner.run(runner.initial_state(seed=5, round_num=2), 1)
    assert runner.traces == 1
    if hasattr(runner.round_fn, "_cache_size"):  # private jax API: also no recompile (e.g. shardings)
        assert runner.round_fn._cache_size() == 1


def test_round_copies_nothing_between_host_and_device(main):
    """With state and data on device, a compiled round runs under a transfer guard that forbids copies."""
    runner, _, _ = main
    state = runner.place(runner.initial_state(seed=3))
    runner.round_fn(state, runner.data)  # compiled already; this call only warms the cache for seed 3
    state = runner.place(runner.initial_state(seed=4))
    with jax.transfer_guard("disallow"):
        new_state, metrics = runner.round_fn(state, runner.data)
        jax.block_until_ready((new_state, metrics))
    assert int(new_state.round) == 1


def test_round_counter_and_rng(main):
    _, records, _ = main
    for t, (before, _, after) in enumerate(records):
        assert int(before.round) == t and int(after.round) == t + 1
        np.testing.assert_array_equal(after.rng, before.rng)  # the root key is never advanced


def test_client_train_keys_derivation():
    """Documented: keys depend only on (seed, round, client id): fold_in(root, round), stream 2, id."""
    state = fr.init_state(T.init_params(), 3, K).replace(round=jnp.int32(4))
    clients = jnp.array([5, 0, 7], jnp.int32)
    got = fr.client_train_keys(fr.round_key(state), clients)
    root = jax.random.key(3)
    for i, c in enumerate([5, 0, 7]):
        want = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, 4), 2), c)
        np.testing.assert_array_equal(jax.random.key_data(got[i]), jax.random.key_data(want))
    # Position-independent: a permuted client list gives the permuted keys.
    perm = fr.client_train_keys(fr.round_key(state), clients[::-1])
    np.testing.assert_array_equal(jax.random.key_data(perm), jax.random.key_data(got)[::-1])


# ------------------------------------------------------------------------------------ round == reference


def reference_round(before, metrics, round_settings, beta_t, is_maxnet):
    """Trains every sampled client alone with the single-client update; NumPy masked mean."""
    clients = np.asarray(metrics["clients"])
    keys = fr.client_train_keys(fr.round_key(before), jnp.asarray(clients))
    weights = np.asarray(schedules.client_weights(round_settings.beta_schedule, jnp.float32(beta_t),
                                                  jnp.asarray(is_maxnet)))
    params, masks, losses = [], [], []
    for i, (c, (depth, expand)) in enumerate(zip(clients, archs_of(metrics))):
        result = single_client(before.params, space_lib.Arch(depth=depth, expand=expand),
                               TABLE[c], SIZES[c], keys[i], IMAGES, LABELS)
        params.append(jax.device_get(result.params))
        masks.append(T.np_full_masks(depth, expand))
        losses.append(float(result.loss))
    return T.np_masked_mean(params, masks, weights, before.params), np.mean(losses), weights


@pytest.mark.parametrize("t", [0, 2])
def test_round_equals_reference(main, t):
    runner, records, _ = main
    before, metrics, after = records[t]
    clients = np.asarray(metrics["clients"])
    max_pos, _ = tracking_roles(clients, before.tracking.n_max, before.tracking.n_min)
    is_maxnet = np.arange(len(clients)) == max_pos
    beta_t = np_beta(t, 4)
    expected, expected_loss, weights = reference_round(before, metrics, runner.settings, beta_t,
                                                       is_maxnet)
    # The weights are the paper's: beta for the MaxNet, (1 - beta) / (P - 1) for the others.
    np.testing.assert_allclose(weights, np.where(is_maxnet, beta_t, (1 - beta_t) / 3), rtol=1e-6)
    T.assert_trees_close(after.params, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["train_loss"], expected_loss, rtol=1e-5)
    assert T.max_abs_diff(after.params, before.params) > 1e-3  # the round did something


def test_reference_is_sensitive_to_weights(main):
    """Guard: uniform weights (no beta) would give a measurably different aggregate."""
    runner, records, _ = main
    before, metrics, after = records[0]
    expected, _, _ = reference_round(before, metrics, runner.settings._replace(beta_schedule="uniform"),
                                     0.0, np.zeros(4, bool))
    assert T.max_abs_diff(after.params, expected) > 1e-4


# ------------------------------------------------------------------------------ heuristics in the round


def test_tracking_sandwich_inside_round(main):
    _, records, _ = main
    n_max, n_min = np.zeros(K, np.int64), np.zeros(K, np.int64)  # simulated independently
    for before, metrics, after in records:
        clients = np.asarray(metrics["clients"])
        assert len(set(clients.tolist())) == 4 and clients.min() >= 0 and clients.max() < K
        np.testing.assert_array_equal(before.tracking.n_max, n_max)
        np.testing.assert_array_equal(before.tracking.n_min, n_min)
        archs = archs_of(metrics)
        max_pos, min_pos = tracking_roles(clients, n_max, n_min)
        assert T.np_is_largest(*archs[max_pos])
        assert T.np_is_smallest(*archs[min_pos])
        largest = [T.np_is_largest(*a) for a in archs]
        smallest = [T.np_is_smallest(*a) and not l for a, l in zip(archs, largest)]
        assert sum(largest) >= 1 and sum(smallest) >= 1
        # Counters: +1 for every client that trained the largest (smallest) subnet, random draws too.
        for c, is_l, is_s in zip(clients, largest, smallest):
            n_max[c] += is_l
            n_min[c] += is_s
        np.testing.assert_array_equal(after.tracking.n_max, n_max)
        np.testing.assert_array_equal(after.tracking.n_min, n_min)
        assert after.tracking.n_max.sum() >= before.tracking.n_max.sum() + 1


def test_static_one_arch_pool_is_fedavg():
    """Static heuristic, one-arch pool, uniform weights: plain FedAvg of that arch."""
    runner = Runner(settings(4, 4, heuristic="static", pool=space_lib.stack([T.MEDIUM]),
                             beta_schedule="uniform"), sharding.make_mesh())
    [(before, metrics, after)] = runner.run(runner.initial_state(seed=1), 1)
    for depth, expand in archs_of(metrics):
        np.testing.assert_array_equal(depth, T.MEDIUM.depth)
        np.testing.assert_array_equal(expand, T.MEDIUM.expand)
    clients = np.asarray(metrics["clients"])
    keys = fr.client_train_keys(fr.round_key(before), jnp.asarray(clients))
    trained = [jax.device_get(single_client(before.params, T.MEDIUM, TABLE[c], SIZES[c], keys[i],
                                            IMAGES, LABELS).params) for i, c in enumerate(clients)]
    mask = T.np_full_masks(T.MEDIUM.depth, T.MEDIUM.expand)
    for path_and_new, prev, m, *thetas in zip(jax.tree_util.tree_flatten_with_path(after.params)[0],
                                             jax.tree.leaves(before.params), jax.tree.leaves(mask),
                                             *[jax.tree.leaves(p) for p in trained]):
        path, new = path_and_new
        mean = np.mean(np.stack(thetas), axis=0)
        np.testing.assert_allclose(new[m == 1], mean[m == 1], rtol=1e-5, atol=1e-6,
                                   err_msg=jax.tree_util.keystr(path))
        np.testing.assert_array_equal(new[m == 0], prev[m == 0])  # untrained: exactly kept
    assert np.sum(mask["stage1_block1"]["conv1"]["kernel"]) == 0  # the test covers a skipped block


# -------------------------------------------------------------------------------- chunking and sharding


def test_chunking_does_not_change_the_round(main):
    _, records, _ = main
    runner = Runner(settings(4, 2), sharding.make_mesh())
    chunked = runner.run(runner.initial_state(seed=0), 2)
    for (_, m_chunked, s_chunked), (_, m_whole, s_whole) in zip(chunked, records):
        for name in ("clients", "archs", "beta", "clients_nonfinite"):
            T.assert_equal(m_chunked[name], m_whole[name], err_msg=name)
        np.testing.assert_allclose(m_chunked["train_loss"], m_whole["train_loss"], rtol=1e-5)
        T.assert_trees_close(s_chunked.params, s_whole.params, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(s_chunked.tracking.n_max, s_whole.tracking.n_max)
        np.testing.assert_array_equal(s_chunked.tracking.n_min, s_whole.tracking.n_min)


@pytest.mark.parametrize("chunk_size", [2, 4])
def test_side_by_side_layout_equals_vmap_layout(main, chunk_size):
    """Clients as independent subgraphs of one scan (the CPU layout) train exactly as the vmapped batch:
    in chunks of 2 (ordered by `chunk_order`, a client whose steps are done skipping the rest of its
    chunk's) and all 4 in one chunk. (A chunk of 1 runs the same code with nothing to skip.)"""
    _, vmapped, _ = main
    runner = Runner(settings(4, chunk_size), sharding.make_mesh(jax.devices()[:1]), SIDE_BY_SIDE)
    side_by_side = runner.run(runner.initial_state(seed=0), 2)
    for (_, m_vmap, after_vmap), (_, m_side, after_side) in zip(vmapped, side_by_side):
        np.testing.assert_array_equal(m_vmap["clients"], m_side["clients"])
        np.testing.assert_allclose(m_vmap["train_loss"], m_side["train_loss"], rtol=1e-5)
        T.assert_trees_close(after_side.params, after_vmap.params)


def test_sharded_equals_unsharded(wide_sharded, wide_one_device):
    for (_, m_sharded, s_sharded), (_, m_single, s_single) in zip(wide_sharded, wide_one_device):
        for name in ("clients", "archs", "beta"):
            T.assert_equal(m_sharded[name], m_single[name], err_msg=name)
        np.testing.assert_allclose(m_sharded["train_loss"], m_single["train_loss"], rtol=1e-5)
        T.assert_trees_close(s_sharded.params, s_single.params, rtol=1e-5, atol=1e-5)
    assert sorted(np.asarray(wide_sharded[0][1]["clients"]).tolist()) == list(range(K))


@pytest.mark.parametrize("conv_impl", ["im2col", "xla"])
def test_client_sharded_forward_matches_unsharded(conv_impl):
    """Per-client params (as inside the round's vmap) split over 2 devices: same logits as 1 device.

    Fails for "xla" on XLA:CPU: the SPMD partitioner miscompiles the vmapped (grouped) 1x1 shortcut
    convolution when its client axis is sharded (wrong values over 2-4 devices, an INVALID_ARGUMENT
    feature_group_count error over 8). A whole round with model.conv_impl='xla' on a multi-device mesh
    is then silently wrong; im2col is not affected.
    """
    model = model_lib.Supernet(T.SPACE, conv_impl)
    per_client = jax.tree.map(lambda p: np.stack([p * (1 + 0.1 * i) for i in range(4)]),
                              T.init_params())
    images = T.normalize(IMAGES[:20]).reshape(4, 5, 4, 4, 1)
    forward = jax.vmap(lambda p, x: model.apply({"params": p}, x, space_lib.largest(T.SPACE)))
    expected = jax.jit(forward)(per_client, images)
    mesh = sharding.make_mesh(jax.devices()[:2])
    sharded = jax.jit(lambda p, x: forward(*sharding.constrain_clients((p, x), mesh)))
    np.testing.assert_allclose(sharded(per_client, images), expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ determinism and replay


def test_same_seed_is_bit_identical_and_other_seed_differs(main):
    runner, records, _ = main
    again = runner.run(runner.initial_state(seed=0), 2)
    for (_, m_again, s_again), (_, m_first, s_first) in zip(again, records):
        assert T.trees_equal(s_again.params, s_first.params)
        np.testing.assert_array_equal(m_again["clients"], m_first["clients"])
    other = runner.run(runner.initial_state(seed=1), 2)
    assert T.max_abs_diff(other[-1][2].params, records[1][2].params) > 1e-4


def test_round_depends_only_on_seed_and_round(main):
    runner, records, _ = main
    # A state that says "round 2" samples round 2's clients, whatever came before.
    [(_, jumped, _)] = runner.run(runner.initial_state(seed=0, round_num=2), 1)
    np.testing.assert_array_equal(jumped["clients"], records[2][1]["clients"])
    # Resuming from a copy of the state after round 1 replays round 2 exactly.
    [(_, resumed, resumed_state)] = runner.run(T.as_jnp(records[1][2]), 1)
    for name in ("clients", "archs", "beta", "train_loss"):
        T.assert_equal(resumed[name], records[2][1][name], err_msg=name)
    assert T.trees_equal(resumed_state, records[2][2])
    # And different rounds do sample differently (over three rounds at least two distinct lists).
    assert len({tuple(np.asarray(r[1]["clients"]).tolist()) for r in records}) >= 2


# ------------------------------------------------------------------------------------------- metrics


def test_metrics(main):
    _, records, _ = main
    for t, (before, metrics, _) in enumerate(records):
        assert np.isfinite(metrics["train_loss"]) and 0 < metrics["train_loss"] < 5
        assert int(metrics["clients_nonfinite"]) == 0
        want = schedules.beta("cosine", jnp.int32(t), beta0=BETA0, beta_final=0.25,
                              decay_rounds=DECAY_ROUNDS)
        np.testing.assert_allclose(metrics["beta"], want, rtol=1e-6)
        np.testing.assert_allclose(metrics["beta"], np_beta(t, 4), rtol=1e-6)
        assert metrics["clients"].shape == (4,) and metrics["archs"].depth.shape == (4, 2)
        assert metrics["archs"].expand.shape == (4, 4)
    assert records[0][1]["beta"] == pytest.approx(BETA0)
    assert records[2][1]["beta"] < records[1][1]["beta"] < records[0][1]["beta"]


# ------------------------------------------------------------------- weighting by client data size


def test_aggregation_weights_are_beta_weights_times_sizes():
    beta_t, is_maxnet = jnp.float32(0.7), jnp.array([False, True, False])
    sizes, clients = jnp.asarray(SIZES), jnp.array([6, 1, 3], jnp.int32)
    beta_weights = schedules.client_weights("cosine", beta_t, is_maxnet)
    off = fr.aggregation_weights(settings(3, 3), beta_t, is_maxnet, sizes, clients)
    np.testing.assert_array_equal(off, beta_weights)  # exactly: the same computation as before the flag
    on = fr.aggregation_weights(settings(3, 3, weight_by_size=True), beta_t, is_maxnet, sizes, clients)
    np.testing.assert_allclose(on, [0.15 * 20, 0.7 * 5, 0.15 * 11], rtol=1e-6)  # by client id, not position


# Client 1 (5 examples) "diverges": its fake training returns NaN, so the round must give it weight 0.
DIVERGING_SIZE = 5
# Hand-picked overlapping archs: static assignment gives client c pool[c mod 4].
SIZE_POOL = [space_lib.largest(T.SPACE), T.MEDIUM, T.arch([0, 1], [0, 0, 3, 2]),
             T.arch([1, 1], [1, 3, 0, 1])]


def fake_client(params, key, size):
    """Stand-in for local training: the global params plus unit noise from the client's key, NaN for the
    client of DIVERGING_SIZE; loss = size. Makes every client's params known without training."""
    leaves, treedef = jax.tree.flatten(params)
    noisy = [p + jax.random.normal(k, p.shape, p.dtype)
             for p, k in zip(leaves, jax.random.split(key, len(leaves)))]
    noisy = [jnp.where(size == DIVERGING_SIZE, jnp.nan, x) for x in noisy]
    return client.ClientResult(treedef.unflatten(noisy), jnp.asarray(size, jnp.float32))


def fake_train_clients(params, archs, indices, sizes, keys, images, labels):
    return jax.vmap(lambda key, size: fake_client(params, key, size))(keys, sizes)


@pytest.fixture(scope="module")
def size_weighted():
    """P = 6 of the 8 clients of unequal sizes in 2 chunks (so the round reorders them), cosine beta,
    static hand-picked archs, weight_by_size on; the fake training above. 2 rounds from seed 0."""
    pool = space_lib.stack(SIZE_POOL)
    runner = Runner(settings(6, 3, heuristic="static", pool=pool, weight_by_size=True), sharding.make_mesh(),
                    fake_train_clients)
    return runner.run(runner.initial_state(seed=0), 2)


def np_size_weighted_round(before, metrics, t, by_size=True):
    """NumPy per-element weighted mean over the clients' hand-built masks, weights written from
    docs/algorithm.md 4.1: beta for the first client holding the largest arch, (1 - beta) / (P - 1) for the
    others, times the client's size; 0 for a non-finite client."""
    clients = np.asarray(metrics["clients"])
    archs = archs_of(metrics)
    largest = np.array([T.np_is_largest(*a) for a in archs])
    maxnet = np.arange(len(clients)) == np.argmax(largest)
    beta_t = np_beta(t, len(clients))
    weights = np.where(maxnet, beta_t, (1 - beta_t) / (len(clients) - 1)) if largest.any() else \
        np.full(len(clients), 1 / len(clients))
    if by_size:
        weights = weights * SIZES[clients]
    weights = np.where(SIZES[clients] == DIVERGING_SIZE, 0.0, weights)
    keys = fr.client_train_keys(fr.round_key(before), jnp.asarray(clients))
    params = [jax.device_get(fake_client(before.params, keys[i], SIZES[c]).params)
              for i, c in enumerate(clients)]
    params = [jax.tree.map(np.nan_to_num, p) for p in params]  # weight 0; keeps 0 * NaN out of the sums
    masks = [T.np_full_masks(*a) for a in archs]
    return T.np_masked_mean(params, masks, weights, before.params)


def test_size_weighted_round_equals_numpy_reference(size_weighted):
    nonfinite = 0
    for t, (before, metrics, after) in enumerate(size_weighted):
        clients = np.asarray(metrics["clients"])
        for (depth, expand), c in zip(archs_of(metrics), clients):  # the assignment the test relies on
            np.testing.assert_array_equal(depth, SIZE_POOL[c % 4].depth)
        assert len(set(SIZES[clients].tolist())) == 6  # unequal sizes
        nonfinite += int(metrics["clients_nonfinite"])
        assert int(metrics["clients_nonfinite"]) == int(np.sum(SIZES[clients] == DIVERGING_SIZE))
        T.assert_trees_close(after.params, np_size_weighted_round(before, metrics, t), rtol=1e-5, atol=1e-6)
        # Guard: the sizes matter (without them the aggregate is measurably different).
        assert T.max_abs_diff(after.params, np_size_weighted_round(before, metrics, t, by_size=False)) > 1e-2
    assert nonfinite >= 1  # the diverging client was sampled, and kept out of the aggregate
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(size_weighted[-1][2].params))


def test_weight_by_size_off_is_bit_identical_to_the_unweighted_round(main):
    """weight_by_size=False (the default) leaves the round exactly as it was: same params bit for bit.

    `main` is the round with the flag off: its settings are those of an explicit False (compiling them
    again would build the same program), and its records are the unweighted NumPy reference's
    (test_round_equals_reference); replayed here, bit for bit. That the switch is wired, i.e. that True
    changes the aggregate, and to what: test_size_weighted_round_equals_numpy_reference."""
    runner, records, _ = main
    assert runner.settings == settings(4, 4, weight_by_size=False) and not runner.settings.weight_by_size
    off = runner.run(runner.initial_state(seed=0), 3)
    for (_, m_off, s_off), (_, m_main, s_main) in zip(off, records):
        assert T.trees_equal(s_off, s_main)
        np.testing.assert_array_equal(m_off["train_loss"], m_main["train_loss"])
