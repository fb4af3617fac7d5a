"""Tests for superfed_jax.supernet.ofa_resnet.masks: subnet mask pytrees (docs/algorithm.md section 2.2).

Mask values are checked by hand for one arch, the count of ones against the sliced dense subnet and the
paper's parameter table (docs/algorithm.md 2.3), and tracing against a Python counter (one trace, many archs).
"""
import collections
import functools
import json

import jax
import numpy as np
import pytest

from superfed_jax.supernet.ofa_resnet import masks as masks_lib
from superfed_jax.supernet.ofa_resnet import model as model_lib
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet import subnet as subnet_lib
from superfed_jax.supernet.ofa_resnet.space import Arch, SearchSpace

PAPER = SearchSpace()
SMALL = SearchSpace(stem_width=8, stage_widths=(32, 48, 64, 96), divisor=1, input_size=8,
                    input_channels=1)


def arch(depth, expand):
    return Arch(depth=np.asarray(depth, np.int32), expand=np.asarray(expand, np.int32))


@functools.lru_cache(maxsize=None)
def param_shapes(space):
    return jax.eval_shape(functools.partial(model_lib.init_params, space), jax.random.key(0))


def zero_params(space):
    # np.zeros is lazily allocated, so even the paper-size tree is cheap; extract only slices it.
    return jax.tree.map(lambda s: np.zeros(s.shape, np.float32), param_shapes(space))


def ones_count(space, masks):
    """Number of ones of every mask broadcast to its parameter's full shape (without materialising)."""
    total = 0
    for mask, shape in zip(jax.tree.leaves(masks), jax.tree.leaves(param_shapes(space))):
        mask = np.asarray(mask)
        total += int(mask.sum()) * (int(np.prod(shape.shape)) // mask.size)
    return total


def dense_count(space, a):
    return sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(
        subnet_lib.extract(space, zero_params(space), a)))


# ----------------------------------------------------------------------------- structure
@pytest.mark.parametrize("space", [SMALL, PAPER], ids=["small", "paper"])
def test_structure_matches_params_and_leaves_broadcast(space):
    shapes = param_shapes(space)
    for a in (space_lib.smallest(space), space_lib.largest(space),
              space_lib.sample(space, jax.random.key(0))):
        masks = masks_lib.arch_masks(space, a)
        assert jax.tree.structure(masks) == jax.tree.structure(shapes)
        for (path, mask), shape in zip(jax.tree_util.tree_leaves_with_path(masks), jax.tree.leaves(shapes)):
            name = jax.tree_util.keystr(path)
            assert mask.ndim == len(shape.shape), name
            assert np.broadcast_shapes(mask.shape, shape.shape) == shape.shape, name
            assert mask.dtype == np.float32, name
            assert set(np.unique(np.asarray(mask)).tolist()) <= {0.0, 1.0}, name


def test_largest_mask_is_all_ones():
    masks = masks_lib.arch_masks(SMALL, space_lib.largest(SMALL))
    for mask in jax.tree.leaves(masks):
        assert np.all(np.asarray(mask) == 1.0)


# ----------------------------------------------------------------------------- hand values
def test_mask_values_by_hand():
    # SMALL mid table: [3,5,6,7,8], [5,7,9,11,12], [6,9,12,14,16], [10,13,17,21,24]; max 8, 12, 16, 24.
    a = arch([0, 1, 2, 1], [1, 3, 3, 2, 0, 4, 4, 1, 0, 0, 3, 2])
    expected_mid = {  # (stage, block) -> used middle width, 0 if skipped
        (0, 0): 5, (0, 1): 0, (0, 2): 0,
        (1, 0): 9, (1, 1): 5, (1, 2): 0,
        (2, 0): 16, (2, 1): 9, (2, 2): 6,
        (3, 0): 10, (3, 1): 21, (3, 2): 0,
    }
    masks = jax.tree.map(np.asarray, masks_lib.arch_masks(SMALL, a))
    np.testing.assert_array_equal(masks["stage0_block0"]["conv1"]["kernel"].reshape(-1),
                                  [1, 1, 1, 1, 1, 0, 0, 0])
    assert masks["stage0_block0"]["conv1"]["kernel"].shape == (1, 1, 1, 8)
    assert masks["stage0_block0"]["conv2"]["kernel"].shape == (1, 1, 8, 1)
    for (s, b), mid in expected_mid.items():
        block = masks[f"stage{s}_block{b}"]
        mid_max = SMALL.max_mids[s]
        row = [1.0] * mid + [0.0] * (mid_max - mid)
        np.testing.assert_array_equal(block["conv1"]["kernel"].reshape(-1), row, err_msg=f"{s},{b}")
        np.testing.assert_array_equal(block["conv2"]["kernel"].reshape(-1), row, err_msg=f"{s},{b}")
        if b == 0:
            np.testing.assert_array_equal(block["shortcut"]["kernel"], np.ones((1, 1, 1, 1)))
        else:
            assert "shortcut" not in block
    for leaf in jax.tree.leaves(masks["stage0_block1"]) + jax.tree.leaves(masks["stage3_block2"]):
        assert not leaf.any()
    for leaf in jax.tree.leaves(masks["stem"]) + jax.tree.leaves(masks["head"]):
        assert leaf.all()


# ----------------------------------------------------------------------------- counts
def test_ones_count_equals_dense_subnet_param_count_small():
    archs = space_lib.sample(SMALL, jax.random.key(7), (20,))
    archs_list = [jax.tree.map(lambda x: np.asarray(x[i]), archs) for i in range(20)]
    archs_list += [space_lib.smallest(SMALL), space_lib.largest(SMALL)]
    counts = set()
    for a in archs_list:
        count = ones_count(SMALL, masks_lib.arch_masks(SMALL, a))
        assert count == dense_count(SMALL, a)
        counts.add(count)
    assert len(counts) > 10


# docs/algorithm.md 2.3: (d, e, params including 2 frozen BN affine values per BN channel).
PAPER_TABLE = [
    ([0, 0, 0, 0], 0.10, 10_396_746), ([0, 0, 0, 1], 0.14, 23_995_338),
    ([0, 1, 0, 1], 0.14, 24_660_058), ([0, 1, 1, 1], 0.14, 27_316_602),
    ([1, 1, 1, 1], 0.18, 34_400_298), ([1, 1, 1, 2], 0.22, 57_690_090),
    ([1, 2, 1, 2], 0.22, 58_723_530), ([1, 2, 2, 2], 0.22, 62_854_794),
    ([2, 2, 2, 2], 0.25, 71_726_538),
]


@pytest.mark.parametrize("depth, ratio, table_params", PAPER_TABLE)
def test_paper_ones_count_matches_table(depth, ratio, table_params):
    a = space_lib.parse_arch(PAPER, json.dumps({"d": depth, "e": ratio}))
    mid = {0.10: [24, 48, 104, 208], 0.14: [40, 72, 144, 288], 0.18: [48, 96, 184, 368],
           0.22: [56, 112, 224, 448], 0.25: [64, 128, 256, 512]}[ratio]
    widths = [256, 512, 1024, 2048]
    # BN channels: stem 64; per kept block its mid and width; per stage one shortcut BN of the width.
    bn = 64 + sum((d + 1) * (m + w) + w for d, m, w in zip(depth, mid, widths))
    count = ones_count(PAPER, masks_lib.arch_masks(PAPER, a))
    assert count == table_params - 2 * bn
    assert count == dense_count(PAPER, a)


# ----------------------------------------------------------------------------- tracing
def test_masks_trace_once_for_many_archs():
    traces = collections.Counter()

    def fn(a):
        traces["masks"] += 1
        return masks_lib.arch_masks(SMALL, a)

    jitted = jax.jit(fn)
    archs = space_lib.sample(SMALL, jax.random.key(11), (10,))
    for i in range(10):
        a = jax.tree.map(lambda x: x[i], archs)
        got = jitted(a)
        expected = masks_lib.arch_masks(SMALL, jax.tree.map(np.asarray, a))
        for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
            np.testing.assert_array_equal(g, e)
    assert traces["masks"] == 1
    assert jitted._cache_size() == 1


def test_masks_vmap_equals_per_arch():
    archs = space_lib.sample(SMALL, jax.random.key(12), (6,))
    batched = jax.jit(jax.vmap(functools.partial(masks_lib.arch_masks, SMALL)))(archs)
    for i in range(6):
        single = masks_lib.arch_masks(SMALL, jax.tree.map(lambda x: x[i], archs))
        for b, s in zip(jax.tree.leaves(batched), jax.tree.leaves(single)):
            np.testing.assert_array_equal(np.asarray(b)[i], s)
