"""Chunks of similar clients with their own step counts, and aggregation that fits the layout.

A round orders its sampled clients by local steps and arch MACs before cutting them into chunks
(`round.chunk_order`); each chunk runs only its own largest step count (client.py); on several devices the
aggregation reduces the client axis at once (`aggregation.masked_sums(..., client_sum="reduce")`). None of
this may change what a round computes: the tests compare chunked rounds on skewed (Dirichlet) partitions,
in the sorted order and in a random one, in both client layouts, with every client trained alone by the
single-client update and a NumPy masked mean; and they count the compiled round's collectives.
"""
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import tiny_setup as T
from superfed_jax.data import partition
from superfed_jax.federated import client
from superfed_jax.federated import objective
from superfed_jax.federated import round as fr
from superfed_jax.federated import sharding
from superfed_jax.supernet.ofa_resnet import cost
from superfed_jax.supernet.ofa_resnet import space as space_lib

K, P, CHUNK = 8, 4, 2
EPOCHS, BATCH, LR, CLIP = 2, 8, 0.1, 1.0
MAX_SIZE = T.NUM_EXAMPLES  # one row length for every partition, so one compiled round serves them all
DATA_CONFIG = ml_collections.ConfigDict(dict(crop_padding=1, flip=True, cutout_size=0))
IMAGES, LABELS = T.make_data()
LOSS_FN = objective.make_loss_fn(T.FAMILY, T.MEAN, T.STD, DATA_CONFIG)
OPTIMIZER = client.make_optimizer(LR, CLIP)
SCHEDULE = dict(epochs=EPOCHS, batch_size=BATCH, max_size=MAX_SIZE)
single_client = jax.jit(client.make_client_update(LOSS_FN, OPTIMIZER, **SCHEDULE))
SETTINGS = fr.RoundSettings(num_clients=K, clients_per_round=P, chunk_size=CHUNK, heuristic="random",
                            pool=None, count_random_extremes=True, beta_schedule="uniform", beta0=0.9,
                            beta_final=1.0 / P, decay_rounds=4, batch_size=BATCH)


def dirichlet_table(alpha: float, seed: int = 0):
    """A Dirichlet(alpha) label-skew partition of the tiny data into K clients, rows padded to MAX_SIZE."""
    parts = partition.make_partition(LABELS, K, "dirichlet", seed, alpha=alpha, min_size=1)
    table = np.zeros((K, MAX_SIZE), np.int32)
    for k, part in enumerate(parts):
        table[k, :len(part)] = part
    return table, np.array([len(p) for p in parts], np.int32)


def round_data(alpha: float, mesh):
    table, sizes = dirichlet_table(alpha)
    return jax.device_put(fr.FederatedData(IMAGES, LABELS, table, sizes), sharding.replicated(mesh))


def initial_state(mesh, seed=0):
    return jax.device_put(fr.init_state(T.as_jnp(T.init_params()), seed, K), sharding.replicated(mesh))


def reference_round(before, metrics, data):
    """Every sampled client trained alone (single-client update); NumPy masked mean with weights 1."""
    clients = np.asarray(metrics["clients"])
    keys = fr.client_train_keys(fr.round_key(before), jnp.asarray(clients))
    table, sizes = np.asarray(data.index_table), np.asarray(data.sizes)
    params, masks, losses = [], [], []
    for i, (c, depth, expand) in enumerate(zip(clients, metrics["archs"].depth, metrics["archs"].expand)):
        result = single_client(before.params, space_lib.Arch(depth=depth, expand=expand), table[c],
                               sizes[c], keys[i], IMAGES, LABELS)
        params.append(jax.device_get(result.params))
        masks.append(T.np_full_masks(depth, expand))
        losses.append(float(result.loss))
    return T.np_masked_mean(params, masks, np.ones(len(clients)), before.params), np.mean(losses)


def run(round_fn, state, data, rounds):
    records = []
    for _ in range(rounds):
        before = jax.device_get(state)
        state, metrics = round_fn(state, data)
        records.append((before, jax.device_get(metrics), jax.device_get(state)))
    return records, state


def assert_matches_reference(records, data):
    for before, metrics, after in records:
        expected, expected_loss = reference_round(before, metrics, data)
        T.assert_trees_close(after.params, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(metrics["train_loss"], expected_loss, rtol=1e-5)
        assert T.max_abs_diff(after.params, before.params) > 1e-3  # the round trained something


# ----------------------------------------------------------------------------------------- chunk order


def test_dirichlet_partitions_are_skewed_as_intended():
    """Guard: alpha 0.1 gives clients of very different step counts, alpha 100 nearly equal ones."""
    skewed, even = dirichlet_table(0.1)[1], dirichlet_table(100.0)[1]
    assert -(-skewed.max() // BATCH) >= 4 * -(-skewed.min() // BATCH)
    assert even.max() <= 2 * even.min()
    assert max(skewed.max(), even.max()) * 3 <= MAX_SIZE  # rows are mostly padding


def test_chunk_order_sorts_by_steps_then_macs_then_position():
    rng = np.random.default_rng(0)
    archs = space_lib.sample(T.SPACE, jax.random.key(3), (12,))
    sizes = rng.integers(1, 40, 12).astype(np.int32)
    sizes[:4] = [9, 16, 12, 3]  # 9, 16 and 12 all take 2 steps of 8: ties broken by MACs
    got = np.asarray(jax.jit(fr.chunk_order, static_argnums=(0, 3))(T.FAMILY, archs, sizes, BATCH))
    macs = cost.macs_batch(T.SPACE, np.asarray(archs.depth), np.asarray(archs.expand))
    want = sorted(range(12), key=lambda i: (-(-int(sizes[i]) // BATCH), int(macs[i]), i))
    assert got.tolist() == want


# ------------------------------------------------------------------------- results do not change (vmap)


@pytest.fixture(scope="module")
def sharded():
    """The chunked round on all 8 devices (vmap, client_sum from the mesh = reduce), traced once."""
    mesh = sharding.make_mesh()
    pure = fr.make_round_fn(T.FAMILY, SETTINGS, client.vmap_clients(
        client.make_client_update(LOSS_FN, OPTIMIZER, **SCHEDULE)), mesh)
    traces = []

    def counted(state, data):
        traces.append(1)
        return pure(state, data)

    round_fn = jax.jit(counted, donate_argnums=0)
    records = {}
    for alpha in (0.1, 100.0):  # same shapes: one compile for both partitions
        records[alpha], _ = run(round_fn, initial_state(mesh), round_data(alpha, mesh), 2)
    return mesh, pure, round_fn, records, traces


@pytest.mark.parametrize("alpha", [0.1, 100.0])
def test_sorted_chunks_with_own_steps_equal_clients_trained_alone(sharded, alpha):
    mesh, _, _, records, _ = sharded
    assert_matches_reference(records[alpha], round_data(alpha, mesh))


def test_chunked_round_compiles_once_and_copies_nothing(sharded):
    mesh, _, round_fn, _, traces = sharded
    assert len(traces) == 1  # two partitions, four rounds
    data = round_data(0.1, mesh)
    state = initial_state(mesh, seed=7)
    with jax.transfer_guard("disallow"):
        new_state, metrics = round_fn(state, data)
        jax.block_until_ready((new_state, metrics))
    assert len(traces) == 1 and int(new_state.round) == 1


def _all_reduce_shapes(hlo: str) -> list:
    """Output shapes (e.g. 'f32[3,3,4,8]') of every all-reduce of a compiled HLO text, one list each."""
    found = []
    for line in hlo.splitlines():
        match = re.search(r"=\s*(.*?)\s*all-reduce(?:-start)?\(", line)
        if match:
            found.append(re.findall(r"[a-z]+\d*\[[\d,]*\]", match.group(1)))
    return found


def test_sharded_aggregation_is_one_all_reduce_per_leaf_without_permutes(sharded):
    """The 8-device round's HLO: no collective-permute, and the parameter-shaped sums reach every device
    in at most one all-reduce per leaf (XLA may fuse several leaves into one)."""
    mesh, _, round_fn, _, _ = sharded
    # The program the fixture's round ran (lowering it again for the same arguments reuses its trace and
    # its compiled executable: nothing is compiled twice).
    hlo = round_fn.lower(initial_state(mesh), round_data(0.1, mesh)).compile().as_text()
    assert "collective-permute" not in hlo
    param_shapes = {f"f32[{','.join(map(str, p.shape))}]" for p in jax.tree.leaves(T.init_params())}
    carrying_params = [s for s in _all_reduce_shapes(hlo) if param_shapes & set(s)]
    assert carrying_params, "the aggregation's sums must be all-reduced"
    assert param_shapes <= {shape for s in carrying_params for shape in s}
    assert len(carrying_params) <= len(jax.tree.leaves(T.init_params()))


# ------------------------------------------------------------------ any order, side-by-side layout


def test_any_chunk_order_side_by_side_gives_the_same_round(sharded, monkeypatch):
    """Chunks cut from a random order instead of the sorted one, clients side by side on one device (the
    slice-adding aggregation): still every client trained alone, and the same params as sorted, sharded."""
    permutation = np.random.default_rng(1).permutation(P).astype(np.int32)
    monkeypatch.setattr(fr, "chunk_order", lambda *args: jnp.asarray(permutation))
    mesh = sharding.make_mesh(jax.devices()[:1])
    round_fn = jax.jit(fr.make_round_fn(T.FAMILY, SETTINGS, client.make_side_by_side_update(
        LOSS_FN, OPTIMIZER, **SCHEDULE), mesh), donate_argnums=0)
    data = round_data(0.1, mesh)
    [(before, metrics, after)], _ = run(round_fn, initial_state(mesh), data, 1)
    assert_matches_reference([(before, metrics, after)], data)
    _, sorted_metrics, sorted_after = sharded[3][0.1][0]
    np.testing.assert_array_equal(metrics["clients"], sorted_metrics["clients"])
    T.assert_trees_close(after.params, sorted_after.params, rtol=1e-5, atol=1e-6)
