"""Tests for superfed_jax.federated.client: one client's local training (docs/algorithm.md section 5).

The reference here is a slow Python loop over batches with hand-written normalisation, cross-entropy,
global-norm clipping and SGD, so the scan/padding/masking machinery of `client.py` is checked against
something that shares none of it (only the model's forward pass and `epoch_order`, whose own laws are
tested separately below).
"""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import tiny_setup as T
from superfed_jax.federated import client
from superfed_jax.federated import objective
from superfed_jax.supernet.ofa_resnet import space as space_lib

BATCH = 8
EPOCHS = 2
LR = 0.1
PADDED = 53  # a padded row length used for every "with padding" run (one compile)
NO_AUG = ml_collections.ConfigDict(dict(crop_padding=0, flip=False, cutout_size=0))
LOSS_FN = objective.make_loss_fn(T.FAMILY, T.MEAN, T.STD, NO_AUG)  # no augmentation: ignores its key

IMAGES, LABELS = T.make_data()
PARTS = T.make_parts()
FULL_CLIENT = 5  # 16 examples: two full batches of 8
PARTIAL_CLIENT = 4  # 13 examples: a batch of 8 and a partial one of 5
assert len(PARTS[FULL_CLIENT]) == 16 and len(PARTS[PARTIAL_CLIENT]) == 13


@functools.partial(jax.jit, static_argnames=("max_size",))
def run_client(params, arch, indices, size, key, images, labels, lr, clip, *, max_size):
    """The library's client update; lr and clip are traced so one compile serves every value."""
    update = client.make_client_update(LOSS_FN, client.make_optimizer(lr, clip), epochs=EPOCHS,
                                       batch_size=BATCH, max_size=max_size)
    return update(params, arch, indices, size, key, images, labels)


def row(part, max_size, junk_seed=None):
    """A client's index row of length max_size: its indices, then zeros or random junk rows."""
    out = np.zeros(max_size, np.int32)
    if junk_seed is not None:
        out[:] = np.random.default_rng(junk_seed).integers(0, len(IMAGES), max_size)
    out[:len(part)] = part
    return out


def train_client(part, max_size, *, key=0, arch=T.MEDIUM, lr=LR, clip=1.0, junk_seed=None):
    return run_client(T.init_params(), arch, row(part, max_size, junk_seed), np.int32(len(part)),
                      jax.random.key(key), IMAGES, LABELS, np.float32(lr), np.float32(clip),
                      max_size=max_size)


# ------------------------------------------------------------------------------------------ epoch order

_order = jax.jit(client.epoch_order, static_argnums=(2, 3, 4))


def order(key, size, max_size, batch=BATCH):
    num_batches = client.steps_per_epoch(max_size, batch)
    out = np.asarray(_order(jax.random.key(key), np.int32(size), max_size, num_batches, batch))
    assert out.shape == (num_batches, batch)
    return out.reshape(-1)


@pytest.mark.parametrize("size,max_size", [(13, 13), (13, 24), (16, 16), (1, 20), (0, 10), (20, 20)])
def test_epoch_order_real_positions_first(size, max_size):
    flat = order(3, size, max_size)
    assert sorted(flat[:size].tolist()) == list(range(size))  # a permutation of the real positions
    assert np.all(flat[size:] >= size)  # then padding only
    # The padding part holds each padding position of the row once, then the out-of-row filler.
    assert sorted(flat[size:max_size].tolist()) == list(range(size, max_size))
    assert np.all(flat[max_size:] >= max_size)


def test_epoch_order_of_real_positions_ignores_padding():
    for key in range(4):
        base = order(key, 13, 13)[:13]
        for max_size in (14, 24, 50, 13 + 37):
            np.testing.assert_array_equal(order(key, 13, max_size)[:13], base)


def test_epoch_order_depends_on_key():
    orders = {tuple(order(key, 20, 24)[:20].tolist()) for key in range(6)}
    assert len(orders) == 6
    assert tuple(range(20)) not in orders  # actually shuffled


# ------------------------------------------------------------------------------------ padding invariance


SHORT = 16  # a short row: exactly the full client's size (2 steps an epoch instead of 7)


@pytest.mark.parametrize("which", [FULL_CLIENT, PARTIAL_CLIENT])
def test_padding_changes_nothing(which):
    """Row length 16 (no padding for the full client, 3 for the partial one) vs 53, same key."""
    part = PARTS[which]
    short = train_client(part, SHORT)
    for junk_seed in (None, 7):  # zero padding and rows pointing at other clients' examples
        padded = train_client(part, PADDED, junk_seed=junk_seed)
        T.assert_trees_close(padded.params, short.params, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(padded.loss, short.loss, rtol=1e-6, atol=1e-7)
    assert not T.trees_equal(short.params, T.init_params())  # it trained


def test_padding_test_is_sensitive_to_the_data():
    """Guard for the test above: a different client (or key) does give different params."""
    part = PARTS[PARTIAL_CLIENT]
    base = train_client(part, PADDED)
    other_key = train_client(part, PADDED, key=1)
    other_data = train_client(PARTS[FULL_CLIENT][:13], PADDED)
    assert T.max_abs_diff(base.params, other_key.params) > 1e-4
    assert T.max_abs_diff(base.params, other_data.params) > 1e-4


# ------------------------------------------------------------------------------- Python reference loop


def np_cross_entropy(logits, labels):
    logits = logits - jnp.max(logits, axis=-1, keepdims=True)
    log_probs = logits - jnp.log(jnp.sum(jnp.exp(logits), axis=-1, keepdims=True))
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


@jax.jit
def _ref_loss_and_grads(params, arch, images, labels):
    def loss(p):
        return np_cross_entropy(T.MODEL.apply({"params": p}, images, arch), labels)
    return jax.value_and_grad(loss)(params)


def reference_client(part, key, *, arch=T.MEDIUM, lr=LR, clip=1.0, max_size=PADDED):
    """Independent re-implementation of the client schedule: returns (params, mean loss)."""
    params = jax.tree.map(np.asarray, T.init_params())
    size = len(part)
    num_batches = client.steps_per_epoch(max_size, BATCH)
    loss_sum, count, clipped_steps = 0.0, 0, 0
    for epoch in range(EPOCHS):
        epoch_key = jax.random.fold_in(jax.random.key(key), epoch)
        positions = np.asarray(client.epoch_order(jax.random.fold_in(epoch_key, 0), np.int32(size),
                                                  max_size, num_batches, BATCH)).reshape(-1)[:size]
        for start in range(0, size, BATCH):  # the last partial batch is used
            rows = np.asarray(part)[positions[start:start + BATCH]]
            loss, grads = _ref_loss_and_grads(params, arch, T.normalize(IMAGES[rows]), LABELS[rows])
            grads = jax.tree.map(lambda g: np.asarray(g, np.float64), grads)
            norm = np.sqrt(sum(np.sum(g ** 2) for g in jax.tree.leaves(grads)))
            scale = min(1.0, clip / norm)
            clipped_steps += scale < 1.0
            params = jax.tree.map(lambda p, g: (p - lr * scale * g).astype(np.float32), params, grads)
            loss_sum += float(loss) * len(rows)
            count += len(rows)
    return params, loss_sum / count, clipped_steps


@pytest.mark.parametrize("which", [PARTIAL_CLIENT, FULL_CLIENT])
def test_client_matches_python_reference(which):
    part = PARTS[which]
    expected, expected_loss, _ = reference_client(part, key=11)
    result = train_client(part, PADDED, key=11)
    T.assert_trees_close(result.params, expected, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(result.loss, expected_loss, rtol=1e-5)
    # Weights outside the arch's mask get no gradient: bit-identical to the initial values.
    masks = T.np_full_masks(T.MEDIUM.depth, T.MEDIUM.expand)
    for got, init, mask in zip(jax.tree.leaves(result.params), jax.tree.leaves(T.init_params()),
                               jax.tree.leaves(masks)):
        np.testing.assert_array_equal(np.asarray(got)[mask == 0], init[mask == 0])


def test_client_reference_with_the_largest_arch():
    largest = space_lib.largest(T.SPACE)
    part = PARTS[PARTIAL_CLIENT]
    expected, expected_loss, _ = reference_client(part, key=5, arch=largest)
    result = train_client(part, PADDED, key=5, arch=largest)
    T.assert_trees_close(result.params, expected, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(result.loss, expected_loss, rtol=1e-5)


def test_clipping_matters_and_matches_reference():
    part = PARTS[PARTIAL_CLIENT]
    tiny_clip = 1e-2
    clipped = train_client(part, PADDED, key=2, clip=tiny_clip)
    unclipped = train_client(part, PADDED, key=2, clip=1e9)
    assert T.max_abs_diff(clipped.params, unclipped.params) > 1e-3
    expected, expected_loss, clipped_steps = reference_client(part, key=2, clip=tiny_clip)
    assert clipped_steps == EPOCHS * 2  # every step of the reference was clipped
    T.assert_trees_close(clipped.params, expected, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(clipped.loss, expected_loss, rtol=1e-5)
    expected, expected_loss, clipped_steps = reference_client(part, key=2, clip=1e9)
    assert clipped_steps == 0
    T.assert_trees_close(unclipped.params, expected, rtol=2e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------- train step


def test_train_step_with_only_padding_changes_nothing():
    # Momentum gives the optimizer a non-trivial state, so "state untouched" can fail.
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(LR, momentum=0.9))
    step = jax.jit(client.make_train_step(LOSS_FN, optimizer))
    params = T.as_jnp(T.init_params())
    rows = PARTS[6][:BATCH]
    key = jax.random.key(0)
    params, opt_state, loss = step(params, optimizer.init(params), T.MEDIUM, IMAGES[rows], LABELS[rows],
                                   np.ones(BATCH, np.float32), key)
    assert np.isfinite(loss) and loss > 0
    before = jax.device_get((params, opt_state))
    # A second real step moves both params and momentum (so the check below can fail) ...
    moved = jax.device_get(step(params, opt_state, T.MEDIUM, IMAGES[rows], LABELS[rows],
                                np.ones(BATCH, np.float32), key)[:2])
    assert not T.trees_equal(moved[0], before[0]) and not T.trees_equal(moved[1], before[1])
    # ... while an all-padding batch (junk rows, weights 0) leaves both bit-identical.
    junk = np.arange(BATCH) * 7 % len(IMAGES)
    after = jax.device_get(step(params, opt_state, T.MEDIUM, IMAGES[junk], LABELS[junk],
                                np.zeros(BATCH, np.float32), key)[:2])
    assert jax.tree.structure(after) == jax.tree.structure(before)
    assert T.trees_equal(after, before)


# ------------------------------------------------------------------------------- a client's own steps


# Jitted once for every size below (the size is traced): one compile each, not one per test.
_SCHEDULE_ARGS = ("epochs", "max_size", "batch_size")
_schedule = jax.jit(client.client_schedule, static_argnames=_SCHEDULE_ARGS)
_real_step = jax.jit(client.real_step, static_argnames=_SCHEDULE_ARGS)


@pytest.mark.parametrize("size", [0, 5, 13, 16])
def test_real_steps_cover_each_epoch_once_then_only_padding(size):
    """Step i of a client is batch i % b of epoch i // b (b = its real batches per epoch): every real
    position once per epoch within `client_steps` steps, with the schedule's keys; after that, padding."""
    max_size, key = 24, jax.random.key(9)
    schedule = dict(epochs=EPOCHS, max_size=max_size, batch_size=BATCH)
    own = client.client_steps(size, epochs=EPOCHS, batch_size=BATCH)
    assert own == EPOCHS * -(-size // BATCH)
    orders, keys = _schedule(key, np.int32(size), **schedule)
    steps = [_real_step(orders, keys, np.int32(size), np.int32(i), **schedule)
             for i in range(EPOCHS * client.steps_per_epoch(max_size, BATCH) + 2)]
    batches = max(-(-size // BATCH), 1)
    for i, (positions, step_key) in enumerate(steps):
        positions = np.asarray(positions)
        if i >= own:
            assert np.all(positions >= size)  # past its own count a client sees padding only
            continue
        epoch, batch = divmod(i, batches)
        want_key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, epoch), 1), batch)
        np.testing.assert_array_equal(jax.random.key_data(step_key), jax.random.key_data(want_key))
    for epoch in range(EPOCHS):
        seen = np.concatenate([np.asarray(p) for p, _ in steps[epoch * batches:(epoch + 1) * batches]])
        if size:
            assert sorted(seen[seen < size].tolist()) == list(range(size))


@pytest.mark.parametrize("unroll, max_size", [(3, PADDED), (0, SHORT)])
def test_unrolled_step_loops_train_the_same(unroll, max_size):
    """k steps per loop iteration (past the client's count: padding no-ops), or the whole padded schedule
    unrolled (0; a short row keeps that compile small), train exactly as one step per iteration."""
    part = PARTS[PARTIAL_CLIENT]  # 2 steps an epoch: 4 in all, not a multiple of 3

    @jax.jit
    def run(params, indices, size, key, images, labels):
        update = client.make_client_update(LOSS_FN, client.make_optimizer(LR, 1.0), epochs=EPOCHS,
                                           batch_size=BATCH, max_size=max_size, unroll=unroll)
        return update(params, T.MEDIUM, indices, size, key, images, labels)

    got = run(T.init_params(), row(part, max_size), np.int32(len(part)), jax.random.key(4), IMAGES, LABELS)
    want = train_client(part, PADDED, key=4)
    T.assert_trees_close(got.params, want.params, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got.loss, want.loss, rtol=1e-6)


def test_side_by_side_clients_skip_their_padding_steps():
    """Side by side, a client that has run its own steps computes nothing more. Seen through a loss that is
    NaN on a batch without real examples: a padding step computed (and kept as a no-op, as before) would
    carry it into the client's loss. The vmapped layout discards a finished client's steps instead."""
    def nan_on_padding(params, arch, images, labels, weights, key):
        loss = LOSS_FN(params, arch, images, labels, weights, key)
        return jnp.where(jnp.sum(weights) > 0, loss, jnp.nan)

    small, big = PARTS[PARTIAL_CLIENT], np.concatenate([PARTS[FULL_CLIENT], PARTS[PARTIAL_CLIENT]])  # 2 vs 4 steps
    indices = np.stack([row(small, PADDED), row(big, PADDED)])
    sizes = np.array([len(small), len(big)], np.int32)
    keys = jax.random.split(jax.random.key(3), 2)
    archs = space_lib.stack([T.MEDIUM, T.MEDIUM])
    schedule = dict(epochs=EPOCHS, batch_size=BATCH, max_size=PADDED)
    optimizer = client.make_optimizer(LR, 1.0)
    side = jax.jit(client.make_side_by_side_update(nan_on_padding, optimizer, **schedule))
    vmapped = jax.jit(client.vmap_clients(client.make_client_update(nan_on_padding, optimizer, **schedule)))
    args = (T.as_jnp(T.init_params()), archs, indices, sizes, keys, IMAGES, LABELS)
    side_loss = np.asarray(side(*args).loss)
    assert np.all(np.isfinite(side_loss))
    np.testing.assert_allclose(side_loss, np.asarray(vmapped(*args).loss), rtol=1e-5)
