"""Tests for superfed_jax.supernet.ofa_resnet.model: supernet shapes, PyTorch init, topology against a NumPy reference, impls.

Shapes and the init rule are written out from docs/algorithm.md section 2 (Khare et al., arXiv 2301.10879);
the forward pass is checked against an independent float64 NumPy implementation of the block formula.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superfed_jax.supernet import conv
from superfed_jax.supernet.ofa_resnet import model as model_lib
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet.space import Arch, SearchSpace

PAPER = SearchSpace()
SMALL = SearchSpace(stem_width=8, stage_widths=(32, 48, 64, 96), divisor=1, input_size=8,
                    input_channels=1)


def arch(depth, expand):
    return Arch(depth=np.asarray(depth, np.int32), expand=np.asarray(expand, np.int32))


def shape_tree(space):
    shapes = jax.eval_shape(functools.partial(model_lib.init_params, space), jax.random.key(0))
    return jax.tree.map(lambda s: tuple(s.shape), shapes)


# ----------------------------------------------------------------------------- shapes
def test_paper_param_shapes():
    shapes = shape_tree(PAPER)
    expected = {"stem": {"kernel": (3, 3, 3, 64)}, "head": {"kernel": (2048, 10), "bias": (10,)}}
    widths, mids, cin = (256, 512, 1024, 2048), (64, 128, 256, 512), 64
    for s in range(4):
        for b in range(3):
            block_in = cin if b == 0 else widths[s]
            block = {"conv1": {"kernel": (3, 3, block_in, mids[s])},
                     "conv2": {"kernel": (3, 3, mids[s], widths[s])}}
            if b == 0:
                block["shortcut"] = {"kernel": (1, 1, cin, widths[s])}
            expected[f"stage{s}_block{b}"] = block
        cin = widths[s]
    assert shapes == expected
    # Spot checks written out literally from docs/algorithm.md.
    assert shapes["stage0_block0"]["conv1"]["kernel"] == (3, 3, 64, 64)
    assert shapes["stage0_block0"]["conv2"]["kernel"] == (3, 3, 64, 256)
    assert shapes["stage0_block0"]["shortcut"]["kernel"] == (1, 1, 64, 256)
    assert shapes["stage3_block1"]["conv1"]["kernel"] == (3, 3, 2048, 512)
    assert shapes["stage3_block2"]["conv1"]["kernel"] == (3, 3, 2048, 512)
    assert shapes["stage3_block0"]["conv1"]["kernel"] == (3, 3, 1024, 512)
    total = sum(int(np.prod(s)) for s in jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(x, tuple)))
    # The table's largest arch has 71,726,538 params with 2 * 18,304 frozen BN affine values
    # (64 stem + sum of mids 2,880 + block widths 11,520 + shortcut widths 3,840).
    assert total == 71_726_538 - 2 * (64 + 3 * (64 + 128 + 256 + 512) + 3 * 3840 + 3840)


def test_only_first_blocks_have_shortcuts():
    shapes = shape_tree(PAPER)
    for s in range(4):
        for b in range(3):
            keys = set(shapes[f"stage{s}_block{b}"])
            assert keys == ({"conv1", "conv2", "shortcut"} if b == 0 else {"conv1", "conv2"})


def test_paper_init_bounds():
    """PyTorch default init: U(+-1/sqrt(fan_in)) with fan_in of the max shape; std = bound / sqrt(3)."""
    params = jax.jit(functools.partial(model_lib.init_params, PAPER))(jax.random.key(0))
    leaves = jax.tree_util.tree_leaves_with_path(params)
    assert len(leaves) == 2 + 12 * 2 + 4 + 1
    first_values = set()
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path)
        value = np.asarray(leaf)
        if "head" in name:
            bound = 1 / np.sqrt(2048)  # kernel and bias both use the dense fan-in
        else:
            k, _, cin, _ = value.shape
            bound = 1 / np.sqrt(k * k * cin)
        assert np.abs(value).max() <= bound * (1 + 1e-6), name
        if value.size >= 10_000:
            assert np.abs(value).max() > 0.99 * bound, name
            np.testing.assert_allclose(value.std(), bound / np.sqrt(3), rtol=0.02, err_msg=name)
            assert abs(value.mean()) < 0.02 * bound, name
        first_values.add(float(value.reshape(-1)[0]))
    # Every tensor has its own random stream.
    assert len(first_values) == len(leaves)


def np_init(space, seed):
    """Supernet-shaped params drawn with NumPy (same law as the model's init; no compile needed)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(functools.partial(model_lib.init_params, space), jax.random.key(0))

    def draw(leaf):
        fan_in = leaf.shape[0] if len(leaf.shape) <= 2 else int(np.prod(leaf.shape[:3]))
        if len(leaf.shape) == 1:
            fan_in = space.stage_widths[-1]
        bound = 1 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, leaf.shape).astype(np.float32)

    return jax.tree.map(draw, shapes)


# ----------------------------------------------------------------------------- NumPy reference
def np_conv(x, kernel, stride):
    """float64 convolution, symmetric (k-1)//2 padding (conv2d itself is checked in test_conv.py)."""
    k = kernel.shape[0]
    pad = (k - 1) // 2
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out_h = (x.shape[1] - k) // stride + 1
    out_w = (x.shape[2] - k) // stride + 1
    out = 0.0
    for i in range(k):
        for j in range(k):
            out = out + x[:, i:i + stride * (out_h - 1) + 1:stride,
                          j:j + stride * (out_w - 1) + 1:stride] @ kernel[i, j]
    return out


def np_avg_pool_ceil(x, stride):
    """PyTorch AvgPool2d(stride, stride, padding=0, ceil_mode=True), as in the reference (OFA) code:
    windows overhanging the border average only their in-bounds pixels."""
    n, h, w, c = x.shape
    out_h, out_w = -(-h // stride), -(-w // stride)
    out = np.zeros((n, out_h, out_w, c))
    for i in range(out_h):
        for j in range(out_w):
            out[:, i, j] = x[:, i * stride:(i + 1) * stride, j * stride:(j + 1) * stride].mean(axis=(1, 2))
    return out


def np_forward(space, params, images, depth, mids):
    """The dense subnet of docs/algorithm.md 2 in float64, slicing the supernet params by hand."""
    relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), params)
    x = relu(np_conv(np.asarray(images, np.float64), p["stem"]["kernel"], 1))
    for s, (width, stride) in enumerate(zip(space.stage_widths, space.stage_strides)):
        for b in range(depth[s] + 1):
            block = p[f"stage{s}_block{b}"]
            mid = mids[s * space.blocks_per_stage + b]
            st = stride if b == 0 else 1
            hidden = relu(np_conv(x, block["conv1"]["kernel"][..., :mid], st))
            branch = relu(np_conv(hidden, block["conv2"]["kernel"][:, :, :mid, :], 1))
            if b == 0:
                shortcut = np_conv(np_avg_pool_ceil(x, st), block["shortcut"]["kernel"], 1)
            else:
                shortcut = x
            x = relu(branch + shortcut)
    return x.mean(axis=(1, 2)) @ p["head"]["kernel"] + p["head"]["bias"]


@functools.lru_cache(maxsize=None)
def setup(space):
    params = np_init(space, 1)
    images = np.random.default_rng(2).standard_normal(
        (3, space.input_size, space.input_size, space.input_channels)).astype(np.float32)
    return params, images


@functools.lru_cache(maxsize=None)
def apply_fn(space, impl):
    net = model_lib.Supernet(space, impl)
    return jax.jit(lambda params, images, a: net.apply({"params": params}, images, a))


REFERENCE_ARCHS = [
    ([0, 0, 0, 0], [0] * 12),
    ([2, 2, 2, 2], [4] * 12),
    ([1, 0, 2, 1], [3, 1, 4, 0, 2, 2, 1, 4, 0, 3, 2, 1]),
]


def _check_against_numpy(space, depth, expand):
    params, images = setup(space)
    a = arch(depth, expand)
    got = np.asarray(apply_fn(space, "xla")(params, images, a))
    mids = np.asarray(space_lib.block_mids(space, a)).tolist()
    expected = np_forward(space, params, images, depth, mids)
    assert got.shape == (3, space.num_classes)
    scale = np.abs(expected).max()
    assert scale > 1e-3
    np.testing.assert_allclose(got, expected, atol=1e-5 * max(scale, 1.0), rtol=1e-4)


@pytest.mark.parametrize("depth, expand", REFERENCE_ARCHS)
def test_supernet_matches_numpy_reference(depth, expand):
    _check_against_numpy(SMALL, depth, expand)


@pytest.mark.parametrize("size", [7, 6])
def test_odd_spatial_sizes_use_ceil_mode_shortcut_pooling(size):
    """A stride-2 stage on an odd input: the 3x3/s2 conv gives ceil(H/2) rows, and the reference code's
    AvgPool2d(ceil_mode=True) shortcut does too (7 -> 4 rows; 6 -> 3 -> 2 rows at stage 2). A floor-mode
    pool gives floor(H/2) rows: the add then fails or, worse, broadcasts a 1x1 shortcut silently.
    """
    space = SearchSpace(stem_width=8, stage_widths=(32, 48, 64, 96), divisor=1, input_size=size,
                        input_channels=1)
    _check_against_numpy(space, *REFERENCE_ARCHS[2])


def test_avg_pool_ceil_mode_hand_values():
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    got = np.asarray(model_lib.avg_pool(x, 2))[0, :, :, 0]
    np.testing.assert_allclose(got, [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8]])


def test_avg_pool_even_and_stride1():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    np.testing.assert_allclose(np.asarray(model_lib.avg_pool(x, 2))[0, :, :, 0],
                               [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(model_lib.avg_pool(x, 1), x)


# ----------------------------------------------------------------------------- conv impls
# Two stages (one stride-2 projection), 3 blocks each: im2col gradients compile slowly on XLA:CPU.
TINY = SearchSpace(stem_width=4, stage_widths=(16, 24), stage_strides=(1, 2), blocks_per_stage=3,
                   expand_choices=(0.25, 0.5, 0.75), divisor=1, input_size=8, input_channels=2,
                   num_classes=5)


def test_xla_and_im2col_supernets_agree():
    params, images = setup(TINY)
    labels = jnp.asarray([1, 4, 3])
    # Two archs in one vmapped call: one with a skipped block and narrow mids, the largest.
    archs = space_lib.stack([arch([1, 2], [0, 2, 1, 1, 0, 2]), space_lib.largest(TINY)])

    def loss(params, a, net):
        logits = net.apply({"params": params}, images, a)
        log_probs = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1)), logits

    out = {}
    for impl in conv.CONV_IMPLS:
        grad_fn = jax.value_and_grad(functools.partial(loss, net=model_lib.Supernet(TINY, impl)),
                                     has_aux=True)
        out[impl] = jax.jit(jax.vmap(grad_fn, in_axes=(None, 0)))(params, archs)
    (loss_x, logits_x), grads_x = out["xla"]
    (loss_c, logits_c), grads_c = out["im2col"]
    assert np.abs(np.asarray(logits_x)).max() > 1e-3
    np.testing.assert_allclose(logits_c, logits_x, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(loss_c, loss_x, rtol=1e-5)
    for (path, g_x), g_c in zip(jax.tree_util.tree_leaves_with_path(grads_x), jax.tree.leaves(grads_c)):
        scale = float(np.abs(np.asarray(g_x)).max())
        assert scale > 0, jax.tree_util.keystr(path)
        np.testing.assert_allclose(g_c, g_x, atol=1e-5 * scale, rtol=1e-4,
                                   err_msg=jax.tree_util.keystr(path))
