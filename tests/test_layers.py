"""Tests for superfed_jax.supernet.ofa_resnet.layers: the one description of the supernet's layers.

The description is checked against independent references: the parameter shapes Flax gives the supernet
and the dense subnets (`jax.eval_shape` of their init, nothing computed), a hand list of layers for one
small space, per-layer MACs from a separate walk of the topology (and from XLA counting the taps that land
on real input), and hand-computed totals.
"""
import dataclasses
import functools
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superfed_jax import config as config_lib
from superfed_jax.supernet.ofa_resnet import cost
from superfed_jax.supernet.ofa_resnet import layers
from superfed_jax.supernet.ofa_resnet import model as model_lib
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet import subnet
from superfed_jax.supernet.ofa_resnet.layers import CONV, LINEAR, Layer

REPO = pathlib.Path(__file__).resolve().parent.parent
PAPER = space_lib.SearchSpace()
# Two stages of two blocks; the second stage's stride 2 on an odd input size exercises ceil-mode pooling.
TINY = space_lib.SearchSpace(stem_width=2, stage_widths=(8, 12), stage_strides=(1, 2), blocks_per_stage=2,
                             expand_choices=(0.5, 1.0), divisor=1, input_size=5, input_channels=1,
                             num_classes=3)


def digits_space():
    spec = importlib.util.spec_from_file_location("digits_config", REPO / "configs" / "digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return config_lib.make_family(module.get_config()).space


def concrete_archs(space, count, seed):
    archs = jax.tree.map(np.asarray, space_lib.sample(space, jax.random.key(seed), (count,)))
    sampled = [jax.tree.map(lambda x, i=i: x[i], archs) for i in range(count)]
    return sampled + [space_lib.smallest(space), space_lib.largest(space)]


def param_shapes_by_path(tree) -> dict:
    """{(module, ..., param name): shape} of a params pytree of arrays or ShapeDtypeStructs."""
    return {tuple(key.key for key in path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def described_shapes(layer_list, widths_of=None) -> dict:
    """{(module, ..., param name): shape} of the described layers, at full width or at `widths_of(layer)`."""
    shapes = {}
    for layer in layer_list:
        if widths_of is not None:
            cin, cout = widths_of(layer)
            layer = dataclasses.replace(layer, in_channels=cin, out_channels=cout)
        for name, shape in layer.param_shapes.items():
            shapes[layer.path + (name,)] = shape
    return shapes


# ----------------------------------------------------------------------------- against the Flax model
@pytest.mark.parametrize("space_fn", [lambda: PAPER, digits_space, lambda: TINY],
                         ids=["paper", "digits", "tiny"])
def test_paths_and_full_shapes_equal_the_supernet_params(space_fn):
    space = space_fn()
    initialised = jax.eval_shape(functools.partial(model_lib.init_params, space), jax.random.key(0))
    assert described_shapes(layers.supernet_layers(space)) == param_shapes_by_path(initialised)


@pytest.mark.parametrize("space_fn", [digits_space, lambda: TINY], ids=["digits", "tiny"])
def test_kept_layers_at_arch_widths_equal_the_dense_subnet_params(space_fn):
    space = space_fn()
    images = jax.ShapeDtypeStruct((1, space.input_size, space.input_size, space.input_channels), jnp.float32)
    for arch in concrete_archs(space, 6, seed=1):
        shape = subnet.subnet_shape(space, arch)
        net = subnet.DenseSubnet(space, shape)
        dense = jax.eval_shape(lambda x, net=net: net.init(jax.random.key(0), x)["params"], images)
        kept = layers.kept_layers(space, shape.depth)
        expected = described_shapes(kept, lambda layer, mids=shape.mids: layer.widths(mids))
        assert expected == param_shapes_by_path(dense)


# ----------------------------------------------------------------------------- by hand
def test_tiny_space_layers_by_hand():
    # mid_table: stage 0 (width 8) -> [4, 8], stage 1 (width 12) -> [6, 12]; sizes 5 -> 5 -> 3 (ceil 5 / 2).
    block = lambda s, b: dict(stage=s, block=b, block_index=2 * s + b, skippable=b > 0)  # noqa: E731
    expected = (
        Layer(("stem",), CONV, 3, 1, 1, 2, 5),
        Layer(("stage0_block0", "conv1"), CONV, 3, 1, 2, 8, 5, elastic_out=True, **block(0, 0)),
        Layer(("stage0_block0", "conv2"), CONV, 3, 1, 8, 8, 5, elastic_in=True, **block(0, 0)),
        Layer(("stage0_block0", "shortcut"), CONV, 1, 1, 2, 8, 5, pool_stride=1, **block(0, 0)),
        Layer(("stage0_block1", "conv1"), CONV, 3, 1, 8, 8, 5, elastic_out=True, **block(0, 1)),
        Layer(("stage0_block1", "conv2"), CONV, 3, 1, 8, 8, 5, elastic_in=True, **block(0, 1)),
        Layer(("stage1_block0", "conv1"), CONV, 3, 2, 8, 12, 5, elastic_out=True, **block(1, 0)),
        Layer(("stage1_block0", "conv2"), CONV, 3, 1, 12, 12, 3, elastic_in=True, **block(1, 0)),
        Layer(("stage1_block0", "shortcut"), CONV, 1, 1, 8, 12, 3, pool_stride=2, **block(1, 0)),
        Layer(("stage1_block1", "conv1"), CONV, 3, 1, 12, 12, 3, elastic_out=True, **block(1, 1)),
        Layer(("stage1_block1", "conv2"), CONV, 3, 1, 12, 12, 3, elastic_in=True, **block(1, 1)),
        Layer(("head",), LINEAR, 1, 1, 12, 3, 1),
    )
    assert layers.supernet_layers(TINY) == expected
    assert [layer.output_size for layer in expected] == [5, 5, 5, 5, 5, 5, 3, 3, 3, 3, 3, 1]


def test_tiny_space_costs_by_hand():
    # depth [1, 0]: stage 0 keeps both blocks, stage 1 only its first; expand indices give mids 4, 8, 12.
    arch = space_lib.Arch(depth=np.array([1, 0], np.int32), expand=np.array([0, 1, 1, 0], np.int32))
    shape = subnet.subnet_shape(TINY, arch)
    kept = layers.kept_layers(TINY, shape.depth)
    assert [layer.path for layer in kept] == [layer.path for layer in layers.supernet_layers(TINY)
                                              if layer.path[0] != "stage1_block1"]
    assert [layer.widths(shape.mids) for layer in kept] == [
        (1, 2), (2, 4), (4, 8), (2, 8), (8, 8), (8, 8), (8, 12), (12, 12), (8, 12), (12, 3)]
    by_layer = cost.macs_by_layer(TINY, arch)
    assert by_layer == {
        "stem": 1 * 2 * 9 * 25, "stage0_block0/conv1": 2 * 4 * 9 * 25, "stage0_block0/conv2": 4 * 8 * 9 * 25,
        "stage0_block0/shortcut": 2 * 8 * 25, "stage0_block1/conv1": 8 * 8 * 9 * 25,
        "stage0_block1/conv2": 8 * 8 * 9 * 25, "stage1_block0/conv1": 8 * 12 * 9 * 9,
        "stage1_block0/conv2": 12 * 12 * 9 * 9, "stage1_block0/shortcut": 8 * 12 * 9, "head": 12 * 3}
    assert cost.macs(TINY, arch) == sum(by_layer.values())
    weights = (9 * 1 * 2 + 9 * 2 * 4 + 9 * 4 * 8 + 2 * 8 + 9 * 8 * 8 * 2 + 9 * 8 * 12 + 9 * 12 * 12 + 8 * 12
               + 12 * 3 + 3)
    assert cost.params(TINY, arch) == weights
    # One frozen BatchNorm pair per output channel of every kept convolution.
    assert cost.params(TINY, arch, bn_affine=True) == weights + 2 * (2 + 4 + 8 + 8 + 8 + 8 + 12 + 12 + 12)


# ----------------------------------------------------------------------------- per-layer MACs
def reference_macs_by_layer(space, arch) -> dict:
    """Per-layer MACs (padding taps counted) from a walk of the topology written out here, not `layers`."""
    depth = np.asarray(arch.depth).tolist()
    mids = np.asarray(space_lib.block_mids(space, arch)).tolist()
    size, cin = space.input_size, space.stem_width
    found = {"stem": space.input_channels * space.stem_width * 9 * size * size}
    for s, width in enumerate(space.stage_widths):
        for b in range(depth[s] + 1):
            stride = space.stage_strides[s] if b == 0 else 1
            out = -(-size // stride)  # 3x3, padding 1
            mid = mids[s * space.blocks_per_stage + b]
            found[f"stage{s}_block{b}/conv1"] = cin * mid * 9 * out * out
            found[f"stage{s}_block{b}/conv2"] = mid * width * 9 * out * out
            if b == 0:
                found[f"stage{s}_block{b}/shortcut"] = cin * width * out * out
            size, cin = out, width
    found["head"] = cin * space.num_classes
    return found


@pytest.mark.parametrize("space_fn", [lambda: PAPER, digits_space, lambda: TINY],
                         ids=["paper", "digits", "tiny"])
def test_per_layer_macs_equal_a_separate_walk(space_fn):
    space = space_fn()
    for arch in concrete_archs(space, 8, seed=2):
        by_layer = cost.macs_by_layer(space, arch)
        assert by_layer == reference_macs_by_layer(space, arch)
        assert sum(by_layer.values()) == cost.macs(space, arch)


def real_input_taps(size, kernel, stride) -> int:
    """Kernel taps on real input, counted by convolving ones with ones (padding contributes zeros)."""
    pad = (kernel - 1) // 2
    ones = jnp.ones((1, size, size, 1), jnp.float32)
    taps = jax.lax.conv_general_dilated(ones, jnp.ones((kernel, kernel, 1, 1), jnp.float32),
                                        (stride, stride), ((pad, pad), (pad, pad)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return int(taps.sum())


def test_per_layer_macs_without_padding_taps_on_odd_sizes():
    space = TINY
    for arch in concrete_archs(space, 4, seed=3):
        shape = subnet.subnet_shape(space, arch)
        expected = {}
        for layer in layers.kept_layers(space, shape.depth):
            cin, cout = layer.widths(shape.mids)
            expected["/".join(layer.path)] = cin * cout * real_input_taps(layer.input_size, layer.kernel,
                                                                          layer.stride)
        assert cost.macs_by_layer(space, arch, count_padding=False) == expected


def test_kept_follows_depth_and_widths_follow_mids():
    stage1_block1_conv2 = next(layer for layer in layers.supernet_layers(TINY)
                               if layer.path == ("stage1_block1", "conv2"))
    assert stage1_block1_conv2.kept([0, 1]) and not stage1_block1_conv2.kept([1, 0])
    assert stage1_block1_conv2.widths([4, 8, 6, 12]) == (12, 12)
    assert stage1_block1_conv2.widths([4, 8, 12, 6]) == (6, 12)
    stem = layers.supernet_layers(TINY)[0]
    assert stem.kept([0, 0]) and stem.widths([4, 4, 6, 6]) == (1, 2)
