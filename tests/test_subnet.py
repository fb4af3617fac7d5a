"""The key equivalence of SuperFed (docs/algorithm.md 2.2): the masked supernet *is* the sliced dense subnet.

For many archs, one jitted supernet program (arch as arrays) must give the forward pass and the gradients
of `subnet.DenseSubnet` applied to `subnet.extract`-ed params, and exactly zero gradient on every masked
parameter. Also: extract/embed round trips, vmap over archs, one trace for many archs.
"""
import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superfed_jax.supernet.ofa_resnet import masks as masks_lib
from superfed_jax.supernet.ofa_resnet import model as model_lib
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet import subnet as subnet_lib
from superfed_jax.supernet.ofa_resnet.space import Arch, SearchSpace

SMALL = SearchSpace(stem_width=8, stage_widths=(32, 48, 64, 96), divisor=1, input_size=8,
                    input_channels=1)
NUM_LABELS = SMALL.num_classes


def np_init(space, seed):
    """Supernet-shaped params, PyTorch-style uniform, drawn with NumPy (no init compile needed)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(functools.partial(model_lib.init_params, space), jax.random.key(0))

    def draw(leaf):
        fan_in = space.stage_widths[-1] if len(leaf.shape) <= 2 else int(np.prod(leaf.shape[:3]))
        bound = 1 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, leaf.shape).astype(np.float32)

    return jax.tree.map(draw, shapes)


PARAMS = jax.tree.map(jnp.asarray, np_init(SMALL, 0))
IMAGES = np.random.default_rng(1).standard_normal((4, 8, 8, 1)).astype(np.float32)
LABELS = np.random.default_rng(2).integers(0, NUM_LABELS, 4).astype(np.int32)
NET = model_lib.Supernet(SMALL)
TRACES = collections.Counter()


def _apply(params, images, a):
    TRACES["apply"] += 1  # runs once per trace, not per call
    return NET.apply({"params": params}, images, a)


APPLY = jax.jit(_apply)


def cross_entropy(logits, labels):
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


@jax.jit
def supernet_grads(params, images, labels, a):
    return jax.value_and_grad(lambda p: cross_entropy(NET.apply({"params": p}, images, a), labels))(params)


def dense_apply(a, dense_params, images):
    net = subnet_lib.DenseSubnet(SMALL, subnet_lib.subnet_shape(SMALL, a))
    return net.apply({"params": dense_params}, images)


def dense_grads(a, dense_params, images, labels):
    # Eager on purpose: every arch has its own shapes, and op-by-op dispatch reuses the per-shape
    # kernels across archs, where a jit per arch would compile a whole program each time.
    return jax.value_and_grad(lambda p: cross_entropy(dense_apply(a, p, images), labels))(dense_params)


def arch_list(space, key, n):
    archs = space_lib.sample(space, key, (n,))
    return [jax.tree.map(lambda x: np.asarray(x[i]), archs) for i in range(n)]


def full_masks(space, a, params):
    return jax.tree.map(lambda m, p: np.broadcast_to(np.asarray(m), p.shape),
                        masks_lib.arch_masks(space, a), params)


def assert_trees_close(got, expected, rel=1e-5):
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for (path, g), e in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(expected)):
        g, e = np.asarray(g), np.asarray(e)
        assert g.shape == e.shape, jax.tree_util.keystr(path)
        scale = max(float(np.abs(e).max()), 1e-30)
        np.testing.assert_allclose(g, e, rtol=0, atol=rel * scale, err_msg=jax.tree_util.keystr(path))


# ----------------------------------------------------------------------------- forward
def test_masked_forward_equals_dense_subnet():
    archs = arch_list(SMALL, jax.random.key(0), 50)
    archs += [space_lib.smallest(SMALL), space_lib.largest(SMALL)]
    spread = []
    for a in archs:
        masked = np.asarray(APPLY(PARAMS, IMAGES, a))
        dense = np.asarray(dense_apply(a, subnet_lib.extract(SMALL, PARAMS, a), IMAGES))
        assert masked.shape == dense.shape == (4, NUM_LABELS)
        scale = max(float(np.abs(dense).max()), 1.0)
        np.testing.assert_allclose(masked, dense, rtol=0, atol=1e-5 * scale,
                                   err_msg=str(space_lib.arch_to_dict(SMALL, a)))
        spread.append(dense)
    # The archs really are different functions (the test would be vacuous otherwise).
    spread = np.stack(spread)
    assert np.abs(spread - spread.mean(axis=0)).max() > 1e-3
    assert TRACES["apply"] == 1


def test_supernet_apply_traces_once_for_many_archs():
    before = TRACES["apply"]
    for a in arch_list(SMALL, jax.random.key(21), 10):
        APPLY(PARAMS, IMAGES, a)
    # Also a jax-array arch (not NumPy) and the fixed archs: the same abstract signature.
    APPLY(PARAMS, IMAGES, space_lib.sample(SMALL, jax.random.key(22)))
    APPLY(PARAMS, IMAGES, space_lib.smallest(SMALL))
    assert before <= 1 and TRACES["apply"] == 1


def test_vmap_over_archs_equals_per_arch_calls():
    archs = space_lib.sample(SMALL, jax.random.key(5), (6,))
    apply = lambda params, images, a: NET.apply({"params": params}, images, a)  # noqa: E731 (not counted)
    batched = jax.jit(jax.vmap(apply, in_axes=(None, None, 0)))(PARAMS, IMAGES, archs)
    assert batched.shape == (6, 4, NUM_LABELS)
    for i in range(6):
        single = APPLY(PARAMS, IMAGES, jax.tree.map(lambda x: x[i], archs))
        np.testing.assert_allclose(batched[i], single, rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(batched[0] - batched[1])).max() > 1e-4


# ----------------------------------------------------------------------------- gradients
def test_masked_gradients_equal_dense_gradients_and_vanish_elsewhere():
    # Random depths, expand indices from {0, 2, 4}: each new conv shape costs eager compiles in the dense
    # subnet, so fewer distinct widths keep this test fast; the forward test covers all 5 widths.
    rng = np.random.default_rng(3)
    archs = [Arch(depth=rng.integers(0, 3, 4).astype(np.int32),
                  expand=rng.choice([0, 2, 4], 12).astype(np.int32)) for _ in range(8)]
    archs += [space_lib.smallest(SMALL), space_lib.largest(SMALL)]
    assert len({str(space_lib.arch_to_dict(SMALL, a)) for a in archs}) == 10
    assert any(not np.asarray(space_lib.block_active(SMALL, a)).all() for a in archs)
    zeros = jax.tree.map(jnp.zeros_like, PARAMS)
    for a in archs:
        loss, grads = supernet_grads(PARAMS, IMAGES, LABELS, a)
        dense_loss, d_grads = dense_grads(a, subnet_lib.extract(SMALL, PARAMS, a), IMAGES, LABELS)
        label = str(space_lib.arch_to_dict(SMALL, a))
        np.testing.assert_allclose(loss, dense_loss, rtol=1e-5, err_msg=label)
        # Exactly zero outside the subnet (mask broadcast to full shapes).
        for (path, g), m in zip(jax.tree_util.tree_leaves_with_path(grads),
                                jax.tree.leaves(full_masks(SMALL, a, PARAMS))):
            outside = np.asarray(g)[m == 0]
            assert np.all(outside == 0.0), f"{label} {jax.tree_util.keystr(path)}: {np.abs(outside).max()}"
        # Equal to the dense gradients at the subnet positions.
        embedded = subnet_lib.embed(SMALL, d_grads, a, zeros)
        assert_trees_close(grads, embedded)
        # Hence the global norm (used for clipping) is the dense subnet's.
        norm = np.sqrt(sum(float(np.sum(np.square(g))) for g in jax.tree.leaves(grads)))
        dense_norm = np.sqrt(sum(float(np.sum(np.square(g))) for g in jax.tree.leaves(d_grads)))
        np.testing.assert_allclose(norm, dense_norm, rtol=1e-5)
        assert dense_norm > 0
        # Every used conv1 filter of the first block gets a signal (the check above is not vacuous).
        mid = int(space_lib.block_mids(SMALL, a)[0])
        assert np.all(np.abs(np.asarray(grads["stage0_block0"]["conv1"]["kernel"])[..., :mid]).sum(
            axis=(0, 1, 2)) > 0)


def test_masked_gradients_vanish_outside_many_archs():
    """The exact-zero half of the check above over all 5 widths (supernet only, so cheap)."""
    for a in arch_list(SMALL, jax.random.key(13), 20):
        _, grads = supernet_grads(PARAMS, IMAGES, LABELS, a)
        masks = full_masks(SMALL, a, PARAMS)
        for g, m in zip(jax.tree.leaves(grads), jax.tree.leaves(masks)):
            assert np.all(np.asarray(g)[m == 0] == 0.0)
            if (m == 1).any():  # used weights do learn (the zero check is not vacuous)
                assert np.abs(np.asarray(g)[m == 1]).max() > 0


# ----------------------------------------------------------------------------- extract / embed
def test_extract_shapes_match_dense_subnet_init():
    for a in arch_list(SMALL, jax.random.key(4), 5) + [space_lib.smallest(SMALL)]:
        net = subnet_lib.DenseSubnet(SMALL, subnet_lib.subnet_shape(SMALL, a))
        shapes = jax.eval_shape(net.init, jax.random.key(0), IMAGES)["params"]
        extracted = subnet_lib.extract(SMALL, PARAMS, a)
        assert jax.tree.structure(extracted) == jax.tree.structure(shapes)
        for e, s in zip(jax.tree.leaves(extracted), jax.tree.leaves(shapes)):
            assert tuple(e.shape) == tuple(s.shape)


def test_extract_hand_values():
    a = Arch(depth=np.asarray([0, 1, 0, 0], np.int32), expand=np.asarray([1, 0, 0, 2, 3, 4, 0, 0, 0, 4, 0, 0],
                                                                          np.int32))
    dense = subnet_lib.extract(SMALL, PARAMS, a)
    assert set(dense) == {"stem", "head", "stage0_block0", "stage1_block0", "stage1_block1",
                          "stage2_block0", "stage3_block0"}
    np.testing.assert_array_equal(dense["stage0_block0"]["conv1"]["kernel"],
                                  PARAMS["stage0_block0"]["conv1"]["kernel"][:, :, :, :5])
    np.testing.assert_array_equal(dense["stage0_block0"]["conv2"]["kernel"],
                                  PARAMS["stage0_block0"]["conv2"]["kernel"][:, :, :5, :])
    np.testing.assert_array_equal(dense["stage1_block1"]["conv1"]["kernel"],
                                  PARAMS["stage1_block1"]["conv1"]["kernel"][..., :11])
    np.testing.assert_array_equal(dense["stage3_block0"]["conv2"]["kernel"],
                                  PARAMS["stage3_block0"]["conv2"]["kernel"])
    np.testing.assert_array_equal(dense["stage2_block0"]["shortcut"]["kernel"],
                                  PARAMS["stage2_block0"]["shortcut"]["kernel"])
    np.testing.assert_array_equal(dense["head"]["bias"], PARAMS["head"]["bias"])


def test_extract_then_embed_is_identity():
    for a in arch_list(SMALL, jax.random.key(6), 5) + [space_lib.smallest(SMALL), space_lib.largest(SMALL)]:
        back = subnet_lib.embed(SMALL, subnet_lib.extract(SMALL, PARAMS, a), a, PARAMS)
        assert jax.tree.structure(back) == jax.tree.structure(PARAMS)
        for b, p in zip(jax.tree.leaves(back), jax.tree.leaves(PARAMS)):
            np.testing.assert_array_equal(b, p)


def test_embed_changes_exactly_the_subnet_positions():
    snapshot = jax.tree.map(lambda x: np.array(x, copy=True), PARAMS)
    delta = 1e-3  # nonzero at every float32 weight of this size, small enough to keep logits finite
    for a in arch_list(SMALL, jax.random.key(8), 5) + [space_lib.smallest(SMALL)]:
        dense = jax.tree.map(lambda x: x + delta, subnet_lib.extract(SMALL, PARAMS, a))
        merged = subnet_lib.embed(SMALL, dense, a, PARAMS)
        for (path, new), old, m in zip(jax.tree_util.tree_leaves_with_path(merged), jax.tree.leaves(PARAMS),
                                       jax.tree.leaves(full_masks(SMALL, a, PARAMS))):
            new, old = np.asarray(new), np.asarray(old)
            np.testing.assert_array_equal(new != old, m == 1, err_msg=jax.tree_util.keystr(path))
            np.testing.assert_allclose(new[m == 1], old[m == 1] + delta, rtol=0, atol=1e-7)
        # The masked supernet with the merged params computes the modified dense subnet.
        expected = np.asarray(dense_apply(a, dense, IMAGES))
        np.testing.assert_allclose(APPLY(merged, IMAGES, a), expected, rtol=0,
                                   atol=1e-5 * max(float(np.abs(expected).max()), 1.0))
    # The supernet params passed in were not modified in place.
    for p, s in zip(jax.tree.leaves(PARAMS), jax.tree.leaves(snapshot)):
        np.testing.assert_array_equal(p, s)


def test_dense_subnet_of_concrete_arch_inside_jit():
    """Evaluating an extracted subnet under jit (arch a concrete NumPy constant) is a natural use."""
    a = Arch(depth=np.asarray([1, 0, 2, 1], np.int32), expand=np.asarray([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1],
                                                                          np.int32))
    net = subnet_lib.DenseSubnet(SMALL, subnet_lib.subnet_shape(SMALL, a))

    @jax.jit
    def evaluate(params, images):
        return net.apply({"params": subnet_lib.extract(SMALL, params, a)}, images)

    np.testing.assert_allclose(evaluate(PARAMS, IMAGES), APPLY(PARAMS, IMAGES, a), rtol=1e-5, atol=1e-6)


def test_embed_accepts_numpy_params():
    """Params restored from a checkpoint or built with NumPy are valid pytrees for embed too."""
    a = space_lib.sample(SMALL, jax.random.key(9))
    numpy_params = jax.tree.map(np.asarray, PARAMS)
    merged = subnet_lib.embed(SMALL, subnet_lib.extract(SMALL, numpy_params, a), a, numpy_params)
    for b, p in zip(jax.tree.leaves(merged), jax.tree.leaves(numpy_params)):
        np.testing.assert_array_equal(b, p)


@pytest.mark.parametrize("depth, expand", [
    ([0, 1, 0], [0] * 12),
    ([0, 3, 0, 0], [0] * 12),
    ([0, 1, 0, 0], [0] * 11 + [5]),
])
def test_subnet_shape_rejects_invalid_archs(depth, expand):
    with pytest.raises(ValueError):
        subnet_lib.subnet_shape(SMALL, Arch(depth=np.asarray(depth, np.int32),
                                            expand=np.asarray(expand, np.int32)))


def test_subnet_shape_hand_case():
    a = Arch(depth=np.asarray([0, 1, 2, 0], np.int32), expand=np.asarray([4] * 12, np.int32))
    shape = subnet_lib.subnet_shape(SMALL, a)
    assert shape.depth == (0, 1, 2, 0)
    assert shape.mids == (8, 8, 8, 12, 12, 12, 16, 16, 16, 24, 24, 24)
    assert list(shape.kept_blocks(SMALL)) == [(0, 0, 0), (1, 0, 3), (1, 1, 4), (2, 0, 6), (2, 1, 7),
                                              (2, 2, 8), (3, 0, 9)]
    hash(shape)  # static argument of jitted functions
