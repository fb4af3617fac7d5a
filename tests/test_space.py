"""Tests for superfed_jax.supernet.ofa_resnet.space: the elastic search space, arch encodings and their JSON form.

Expected values are written out by hand from docs/algorithm.md section 2.1 (Khare et al., arXiv 2301.10879) or
computed by brute force, never with the functions under test.
"""
import functools
import itertools
import json

import jax
import numpy as np
import pytest

from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet.space import Arch, SearchSpace

PAPER = SearchSpace()
# Small space whose mid table has 5 distinct widths in every stage (checked by SearchSpace itself).
SMALL = SearchSpace(stem_width=8, stage_widths=(32, 48, 64, 96), divisor=1, input_size=8,
                    input_channels=1)
PAPER_RATIOS = [0.1, 0.14, 0.18, 0.22, 0.25]


def arch(depth, expand):
    return Arch(depth=np.asarray(depth, np.int32), expand=np.asarray(expand, np.int32))


# ----------------------------------------------------------------------------- widths
def test_paper_mid_table_matches_algorithm_md():
    expected = [[24, 40, 48, 56, 64],
                [48, 72, 96, 112, 128],
                [104, 144, 184, 224, 256],
                [208, 288, 368, 448, 512]]
    np.testing.assert_array_equal(PAPER.mid_table, expected)
    assert PAPER.max_mids == (64, 128, 256, 512)
    assert PAPER.num_stages == 4 and PAPER.num_blocks == 12 and PAPER.num_expand_choices == 5


def test_small_mid_table_by_hand():
    # divisor 1: round half up, then +1 if more than 10% below (e.g. 32 * 0.14 = 4.48 -> 4 < 4.032 -> 5).
    expected = [[3, 5, 6, 7, 8], [5, 7, 9, 11, 12], [6, 9, 12, 14, 16], [10, 13, 17, 21, 24]]
    np.testing.assert_array_equal(SMALL.mid_table, expected)
    assert SMALL.max_mids == (8, 12, 16, 24)


@pytest.mark.parametrize("value, divisor, expected", [
    (25.6, 8, 24),     # 256 * 0.10: nearest multiple
    (35.84, 8, 40),    # 256 * 0.14: 32 is more than 10% below -> 40
    (46.08, 8, 48),    # 256 * 0.18
    (56.32, 8, 56),    # 256 * 0.22
    (64.0, 8, 64),     # exact multiple stays
    (3.0, 8, 8),       # minimum is the divisor
    (0.5, 8, 8),
    (12.0, 8, 16),     # a tie rounds up
    (11.9, 8, 16),     # rounds to 8, which is > 10% below 11.9 -> 16
    (8.8, 8, 8),       # 8 is within 10% of 8.8
    (9.0, 8, 16),      # 8 < 0.9 * 9 = 8.1 -> 16
    (102.4, 8, 104),   # 1024 * 0.10
    (4.48, 1, 5),
    (7.04, 1, 7),
    (17, 4, 16),       # 16 >= 15.3 stays
])
def test_make_divisible_hand_cases(value, divisor, expected):
    assert space_lib.make_divisible(value, divisor) == expected


# ----------------------------------------------------------------------------- counting
def test_unique_subnets_paper():
    assert space_lib.num_unique_subnets(PAPER) == 577_200_625 == 155 ** 4


@pytest.mark.parametrize("space", [
    SearchSpace(stem_width=4, stage_widths=(16, 32), stage_strides=(1, 2), blocks_per_stage=2,
                expand_choices=(0.25, 0.5), divisor=1),
    SearchSpace(stem_width=4, stage_widths=(16, 32), stage_strides=(1, 2), blocks_per_stage=2,
                expand_choices=(0.2, 0.4, 0.6), divisor=1),
    SearchSpace(stem_width=4, stage_widths=(16,), stage_strides=(1,), blocks_per_stage=3,
                expand_choices=(0.25, 0.5), divisor=1),
])
def test_unique_subnets_brute_force(space):
    """Distinct (depth, middle widths of kept blocks) over every encoding equals the closed form."""
    seen = set()
    nb, ns = space.blocks_per_stage, space.num_stages
    for depth in itertools.product(range(nb), repeat=ns):
        for expand in itertools.product(range(space.num_expand_choices), repeat=space.num_blocks):
            kept = tuple(int(space.mid_table[s, expand[s * nb + b]])
                         for s in range(ns) for b in range(depth[s] + 1))
            seen.add((depth, kept))
    assert space_lib.num_unique_subnets(space) == len(seen)


# ----------------------------------------------------------------------------- JSON form
def test_parse_arch_scalar_expand():
    a = space_lib.parse_arch(PAPER, '{"d":[0,1,0,1],"e":0.14}')
    np.testing.assert_array_equal(a.depth, [0, 1, 0, 1])
    np.testing.assert_array_equal(a.expand, [1] * 12)
    assert np.asarray(a.depth).dtype == np.int32 and np.asarray(a.expand).dtype == np.int32


def test_parse_arch_list_expand():
    ratios = [0.1, 0.25, 0.18, 0.22, 0.14, 0.1, 0.25, 0.25, 0.18, 0.1, 0.14, 0.22]
    a = space_lib.parse_arch(PAPER, json.dumps({"d": [2, 0, 1, 2], "e": ratios}))
    np.testing.assert_array_equal(a.depth, [2, 0, 1, 2])
    np.testing.assert_array_equal(a.expand, [0, 4, 2, 3, 1, 0, 4, 4, 2, 0, 1, 3])


def test_arch_to_dict_scalar_and_list():
    assert space_lib.arch_to_dict(PAPER, arch([0, 1, 0, 1], [1] * 12)) == {"d": [0, 1, 0, 1], "e": 0.14}
    # One shared ratio on the kept blocks: a scalar, whatever the skipped blocks say.
    skipped_noise = [3, 0, 4, 3, 3, 1, 3, 2, 0, 3, 3, 3]  # kept: blocks 0, 3, 4, 6, 9, 10, 11
    assert space_lib.arch_to_dict(PAPER, arch([0, 1, 0, 2], skipped_noise)) == {"d": [0, 1, 0, 2],
                                                                                "e": 0.22}
    # Mixed ratios: the list, skipped blocks written as the smallest ratio (canonical form).
    d = space_lib.arch_to_dict(PAPER, arch([1, 0, 0, 0], [4, 2, 3, 1, 4, 4, 0, 1, 2, 3, 3, 3]))
    assert d == {"d": [1, 0, 0, 0],
                 "e": [0.25, 0.18, 0.1, 0.14, 0.1, 0.1, 0.1, 0.1, 0.1, 0.22, 0.1, 0.1]}


def test_arch_json_round_trip_random():
    archs = space_lib.sample(PAPER, jax.random.key(3), (40,))
    for i in range(40):
        a = jax.tree.map(lambda x: np.asarray(x[i]), archs)
        text = json.dumps(space_lib.arch_to_dict(PAPER, a))
        back = space_lib.parse_arch(PAPER, text)
        np.testing.assert_array_equal(back.depth, a.depth)
        active = (np.arange(3)[None, :] <= a.depth[:, None]).reshape(-1)  # [stage, block] row-major
        np.testing.assert_array_equal(np.asarray(back.expand)[active], a.expand[active])


ALLOWED_D = "0..2"
ALLOWED_E = "[0.1, 0.14, 0.18, 0.22, 0.25]"


@pytest.mark.parametrize("text", [
    '{"d":[0,1,0],"e":0.14}',                # wrong d length
    '{"d":[0,1,0,1,0],"e":0.14}',
    '{"d":[0,3,0,1],"e":0.14}',              # depth 3
    '{"d":[0,-1,0,1],"e":0.14}',             # negative depth
    '{"d":[0,1.5,0,1],"e":0.14}',            # non-integer depth
    '{"d":[0,"1",0,1],"e":0.14}',
    '{"d":[0,true,0,1],"e":0.14}',
    '{"d":0,"e":0.14}',
    '{"d":[0,1,0,1],"e":0.15}',              # expand value not in the space
    '{"d":[0,1,0,1],"e":0.5}',
    '{"d":[0,1,0,1],"e":"0.14"}',
    '{"d":[0,1,0,1],"e":[0.14,0.14]}',       # wrong e length
    '{"d":[0,1,0,1],"e":[0.14,0.14,0.14,0.14,0.14,0.14,0.14,0.14,0.14,0.14,0.14,0.3]}',
    '{"d":[0,1,0,1],"e":0.14',               # malformed JSON
    'not json',
    '{"d":[0,1,0,1]}',                       # missing key
    '{"e":0.14}',
    '{"d":[0,1,0,1],"e":0.14,"w":1}',        # extra key
    '[0,1,0,1]',
])
def test_parse_arch_errors_name_allowed_values(text):
    with pytest.raises(ValueError) as info:
        space_lib.parse_arch(PAPER, text)
    message = str(info.value)
    assert ALLOWED_D in message and ALLOWED_E in message, message


# ----------------------------------------------------------------------------- space validation
@pytest.mark.parametrize("kwargs, field", [
    (dict(stage_widths=(32, 48, 64, 96), divisor=8), "expand_choices"),   # mids collapse to 8
    (dict(stage_widths=(16, 16), stage_strides=(1, 2), divisor=2), "expand_choices"),
    (dict(stage_strides=(1, 2, 3, 2)), "stage_strides"),
    (dict(stage_strides=(1, 2, 2)), "stage_strides"),
    (dict(stage_strides=(0, 2, 2, 2)), "stage_strides"),
    (dict(expand_choices=(0.25, 0.1, 0.14, 0.18, 0.22)), "expand_choices"),  # not increasing
    (dict(expand_choices=(0.1, 0.14, 0.14, 0.22)), "expand_choices"),
    (dict(expand_choices=(0.1, 1.5)), "expand_choices"),
    (dict(expand_choices=()), "expand_choices"),
    (dict(blocks_per_stage=0), "blocks_per_stage"),
    (dict(stem_width=0), "stem_width"),
    (dict(stage_widths=()), "stage_widths"),
])
def test_search_space_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SearchSpace(**kwargs)


def test_search_space_is_hashable_and_lists_become_tuples():
    a = SearchSpace(stage_widths=[256, 512, 1024, 2048])
    assert a == PAPER and hash(a) == hash(PAPER)
    assert isinstance(a.stage_widths, tuple)


# ----------------------------------------------------------------------------- sampling
def _chi_square(counts):
    counts = np.asarray(counts, np.float64)
    expected = counts.sum() / counts.size
    return ((counts - expected) ** 2 / expected).sum()


def test_sample_uniform_jittable_and_shapes():
    n = 20_000
    sample_fn = jax.jit(functools.partial(space_lib.sample, PAPER, shape=(n,)))
    archs = sample_fn(jax.random.key(0))
    depth, expand = np.asarray(archs.depth), np.asarray(archs.expand)
    assert depth.shape == (n, 4) and expand.shape == (n, 12)
    assert depth.dtype == np.int32 and expand.dtype == np.int32
    # Chi-square critical values at p = 1e-4: df 2 -> 18.4, df 4 -> 23.5; df 14 (joint) -> 40.
    for s in range(4):
        counts = np.bincount(depth[:, s], minlength=3)
        assert counts.size == 3 and _chi_square(counts) < 18.4, counts
    for b in range(12):
        counts = np.bincount(expand[:, b], minlength=5)
        assert counts.size == 5 and _chi_square(counts) < 23.5, counts
    # Joint (depth of stage 0, expand of block 0) uniform over 15 cells: the two draws are independent.
    joint = np.bincount(depth[:, 0] * 5 + expand[:, 0], minlength=15)
    assert joint.size == 15 and _chi_square(joint) < 40.0, joint
    # Different blocks are not copies of each other.
    assert (expand[:, 0] != expand[:, 1]).mean() > 0.7
    # Jitted and eager draws agree (same key -> same archs).
    eager = space_lib.sample(PAPER, jax.random.key(0), (n,))
    np.testing.assert_array_equal(eager.depth, depth)
    np.testing.assert_array_equal(eager.expand, expand)


def test_sample_shapes_and_single():
    one = space_lib.sample(SMALL, jax.random.key(1))
    assert one.depth.shape == (4,) and one.expand.shape == (12,)
    many = space_lib.sample(SMALL, jax.random.key(1), (2, 3))
    assert many.depth.shape == (2, 3, 4) and many.expand.shape == (2, 3, 12)
    space_lib.validate(SMALL, many)
    a, b = space_lib.sample(SMALL, jax.random.key(1)), space_lib.sample(SMALL, jax.random.key(2))
    assert not (np.array_equal(a.depth, b.depth) and np.array_equal(a.expand, b.expand))


def test_smallest_and_largest():
    s, l = space_lib.smallest(PAPER), space_lib.largest(PAPER)
    np.testing.assert_array_equal(s.depth, [0, 0, 0, 0])
    np.testing.assert_array_equal(s.expand, [0] * 12)
    np.testing.assert_array_equal(l.depth, [2, 2, 2, 2])
    np.testing.assert_array_equal(l.expand, [4] * 12)
    assert space_lib.arch_to_dict(PAPER, s) == {"d": [0, 0, 0, 0], "e": 0.1}
    assert space_lib.arch_to_dict(PAPER, l) == {"d": [2, 2, 2, 2], "e": 0.25}
    np.testing.assert_array_equal(space_lib.block_mids(PAPER, l), np.repeat([64, 128, 256, 512], 3))
    np.testing.assert_array_equal(space_lib.block_mids(PAPER, s), np.repeat([24, 48, 104, 208], 3))


def test_block_active_hand_cases():
    a = arch([0, 1, 2, 0], [0] * 12)
    expected = [1, 0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0]
    np.testing.assert_array_equal(space_lib.block_active(PAPER, a), np.asarray(expected, bool))
    batch = space_lib.stack([a, space_lib.largest(PAPER), space_lib.smallest(PAPER)])
    got = np.asarray(space_lib.block_active(PAPER, batch))
    assert got.shape == (3, 12)
    np.testing.assert_array_equal(got[0], np.asarray(expected, bool))
    assert got[1].all()
    np.testing.assert_array_equal(got[2], np.asarray([1, 0, 0] * 4, bool))


def test_block_mids_hand_cases():
    a = arch([2, 2, 2, 2], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])
    expected = [24, 40, 48, 112, 128, 48, 144, 184, 224, 512, 208, 288]
    np.testing.assert_array_equal(space_lib.block_mids(PAPER, a), expected)
    # Skipped blocks still report their (ignored) width.
    b = arch([0, 0, 0, 0], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])
    np.testing.assert_array_equal(space_lib.block_mids(PAPER, b), expected)
    batch = space_lib.block_mids(SMALL, space_lib.stack([a, space_lib.largest(SMALL)]))
    np.testing.assert_array_equal(batch, [[3, 5, 6, 11, 12, 5, 9, 12, 14, 24, 10, 13],
                                          [8] * 3 + [12] * 3 + [16] * 3 + [24] * 3])


def test_canonical():
    a = arch([0, 1, 2, 0], [4, 3, 2, 1, 4, 3, 2, 1, 4, 3, 2, 1])
    c = space_lib.canonical(PAPER, a)
    np.testing.assert_array_equal(c.depth, [0, 1, 2, 0])
    np.testing.assert_array_equal(c.expand, [4, 0, 0, 1, 4, 0, 2, 1, 4, 3, 0, 0])
    # Idempotent and batched.
    cc = space_lib.canonical(PAPER, c)
    np.testing.assert_array_equal(cc.expand, c.expand)
    batch = space_lib.canonical(PAPER, space_lib.stack([a, a]))
    np.testing.assert_array_equal(batch.expand, [np.asarray(c.expand)] * 2)


@pytest.mark.parametrize("depth, expand", [
    ([0, 1, 0], [0] * 12),
    ([0, 1, 0, 3], [0] * 12),
    ([0, -1, 0, 0], [0] * 12),
    ([0, 1, 0, 0], [0] * 11),
    ([0, 1, 0, 0], [0] * 11 + [5]),
    ([0, 1, 0, 0], [0] * 11 + [-1]),
])
def test_validate_rejects(depth, expand):
    with pytest.raises(ValueError):
        space_lib.validate(PAPER, arch(depth, expand))


def test_validate_accepts():
    space_lib.validate(PAPER, space_lib.largest(PAPER))
    space_lib.validate(PAPER, space_lib.smallest(PAPER))
