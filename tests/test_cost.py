"""Tests for superfed_jax.supernet.ofa_resnet.cost: closed-form MACs and parameter counts of subnets (docs/algorithm.md 2.3, 8)."""
import json
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from superfed_jax.supernet.ofa_resnet import cost
from superfed_jax.supernet.ofa_resnet import model
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet import subnet

PAPER = space_lib.SearchSpace()
SMALL = space_lib.SearchSpace(stem_width=8, stage_widths=(32, 48, 64, 96), divisor=1, input_size=8,
                              input_channels=1)
REPO = pathlib.Path(__file__).resolve().parents[1]

# docs/algorithm.md 2.3: (depth, expand, GMACs to 6 decimals, params including the frozen BN affine pairs).
TABLE = [
    ([0, 0, 0, 0], 0.10, 0.458969, 10_396_746),
    ([0, 0, 0, 1], 0.14, 0.789271, 23_995_338),
    ([0, 1, 0, 1], 0.14, 0.959140, 24_660_058),
    ([0, 1, 1, 1], 0.14, 1.129009, 27_316_602),
    ([1, 1, 1, 1], 0.18, 1.643336, 34_400_298),
    ([1, 1, 1, 2], 0.22, 2.200130, 57_690_090),
    ([1, 2, 1, 2], 0.22, 2.464371, 58_723_530),
    ([1, 2, 2, 2], 0.22, 2.728612, 62_854_794),
    ([2, 2, 2, 2], 0.25, 3.403370, 71_726_538),
]


def paper_arch(depth, expand):
    return space_lib.arch_from_dict(PAPER, {"d": depth, "e": expand})


def random_archs(space, count, seed):
    """`count` uniformly random concrete archs as (depth [count, stages], expand [count, blocks])."""
    rng = np.random.default_rng(seed)
    depth = rng.integers(0, space.blocks_per_stage, (count, space.num_stages), dtype=np.int32)
    expand = rng.integers(0, space.num_expand_choices, (count, space.num_blocks), dtype=np.int32)
    return depth, expand


def relative_gap(measured, reference):
    return measured / reference - 1.0


# ----------------------------------------------------------------------------- closed form
def test_hand_computed_one_block_space():
    # Input 4x4x1, stem 2, one stage of one block: width 8, mid 4 (e=0.5), stride 1, projection 2 -> 8.
    space = space_lib.SearchSpace(stem_width=2, stage_widths=(8,), stage_strides=(1,), blocks_per_stage=1,
                                  expand_choices=(0.5, 1.0), divisor=1, input_size=4, input_channels=1,
                                  num_classes=10)
    arch = space_lib.arch_from_dict(space, {"d": [0], "e": 0.5})
    pixels, valid_taps = 4 * 4, 10 * 10  # 3x3 taps on real input: per axis 3 * 4 - 2 edge taps.
    assert cost.macs(space, arch) == (1 * 9 * 2 + 2 * 9 * 4 + 4 * 9 * 8 + 2 * 8) * pixels + 8 * 10
    assert cost.macs(space, arch, count_padding=False) == (
        (1 * 2 + 2 * 4 + 4 * 8) * valid_taps + 2 * 8 * pixels + 8 * 10)
    assert cost.params(space, arch) == 1 * 9 * 2 + 2 * 9 * 4 + 4 * 9 * 8 + 2 * 8 + 8 * 10 + 10
    assert cost.params(space, arch, bn_affine=True) == cost.params(space, arch) + 2 * (2 + 4 + 8 + 8)


def test_stride_two_taps_on_real_input():
    # 3x3 stride 2 on 4 pixels: outputs read inputs (-1,0,1) and (1,2,3); only one tap hits padding.
    assert cost.conv_macs(1, 1, 4, 3, 2) == 6 ** 2
    assert cost.conv_macs(1, 1, 4, 3, 2, count_padding=False) == 5 ** 2


@pytest.mark.parametrize("depth,expand,gmacs,table_params", TABLE)
def test_paper_table(depth, expand, gmacs, table_params):
    arch = paper_arch(depth, expand)
    assert round(cost.macs(PAPER, arch) / 1e9, 6) == pytest.approx(gmacs, abs=1e-9)
    assert cost.params(PAPER, arch, bn_affine=True) == table_params


@pytest.mark.parametrize("depth,expand,gmacs,table_params", TABLE)
def test_without_bn_affine_drops_one_pair_per_normalized_channel(depth, expand, gmacs, table_params):
    # One BN after the stem, after each kept conv1 (mid) and conv2 (width), and on each projection.
    arch = paper_arch(depth, expand)
    kept = np.asarray(space_lib.block_active(PAPER, arch))
    mids = np.asarray(space_lib.block_mids(PAPER, arch))
    widths = np.repeat(PAPER.stage_widths, PAPER.blocks_per_stage)
    channels = PAPER.stem_width + (mids * kept).sum() + (widths * kept).sum() + sum(PAPER.stage_widths)
    assert cost.params(PAPER, arch) == table_params - 2 * channels


@pytest.fixture(scope="module")
def small_params():
    """Zero arrays with the supernet's parameter tree: only shapes matter, and tracing is fast on CPU."""
    shapes = jax.eval_shape(lambda key: model.init_params(SMALL, key), jax.random.key(0))
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def test_largest_arch_counts_every_supernet_parameter(small_params):
    params = small_params
    total = sum(leaf.size for leaf in jax.tree.leaves(params))
    assert cost.params(SMALL, space_lib.largest(SMALL)) == total


def test_params_equal_extracted_subnet_sizes(small_params):
    params = small_params
    depth, expand = random_archs(SMALL, 20, seed=1)
    for d, e in zip(depth, expand):
        arch = space_lib.Arch(depth=d, expand=e)
        dense = subnet.extract(SMALL, params, arch)
        assert cost.params(SMALL, arch) == sum(leaf.size for leaf in jax.tree.leaves(dense))


# ----------------------------------------------------------------------------- batch forms
@pytest.mark.parametrize("space", [PAPER, SMALL], ids=["paper", "small"])
def test_batch_forms_equal_scalar_forms(space):
    depth, expand = random_archs(space, 200, seed=2)
    scalar = {
        "macs": [cost.macs(space, space_lib.Arch(d, e)) for d, e in zip(depth, expand)],
        "valid": [cost.macs(space, space_lib.Arch(d, e), count_padding=False) for d, e in zip(depth, expand)],
        "params": [cost.params(space, space_lib.Arch(d, e)) for d, e in zip(depth, expand)],
        "bn": [cost.params(space, space_lib.Arch(d, e), bn_affine=True) for d, e in zip(depth, expand)],
    }
    batch = {
        "macs": cost.macs_batch(space, depth, expand),
        "valid": cost.macs_batch(space, depth, expand, count_padding=False),
        "params": cost.params_batch(space, depth, expand),
        "bn": cost.params_batch(space, depth, expand, bn_affine=True),
    }
    for name, values in batch.items():
        assert values.dtype == np.int64, name
        np.testing.assert_array_equal(values, scalar[name], err_msg=name)
    # Leading batch axes are kept.
    grid = cost.macs_batch(space, depth.reshape(10, 20, -1), expand.reshape(10, 20, -1))
    np.testing.assert_array_equal(grid, np.reshape(scalar["macs"], (10, 20)))


@pytest.mark.parametrize("space", [PAPER, SMALL], ids=["paper", "small"])
def test_jittable_forms_match_exact_counts(space):
    depth, expand = random_archs(space, 200, seed=3)
    archs = space_lib.Arch(depth=depth.reshape(10, 20, -1), expand=expand.reshape(10, 20, -1))
    macs = jax.jit(lambda a: cost.macs_array(space, a))(archs)
    params = jax.jit(lambda a: cost.params_array(space, a, bn_affine=True))(archs)
    assert macs.shape == params.shape == (10, 20)
    exact_macs = cost.macs_batch(space, depth, expand).reshape(10, 20)
    np.testing.assert_allclose(np.asarray(macs, np.float64), exact_macs, rtol=1e-6)
    np.testing.assert_array_equal(params, cost.params_batch(space, depth, expand, True).reshape(10, 20))


def test_params_array_refuses_int32_overflow():
    huge = space_lib.SearchSpace(stage_widths=(4096, 8192, 16384, 32768))
    with pytest.raises(ValueError, match="int32"):
        cost.params_array(huge, space_lib.smallest(huge))


def test_batch_rejects_archs_outside_the_space():
    depth, expand = random_archs(PAPER, 3, seed=4)
    depth[1, 2] = PAPER.blocks_per_stage
    with pytest.raises(ValueError, match="depth"):
        cost.macs_batch(PAPER, depth, expand)


# ----------------------------------------------------------------------------- XLA cross-check
def test_xla_flops_track_macs_on_small_space():
    depth, expand = random_archs(SMALL, 2, seed=10)
    archs = [space_lib.smallest(SMALL), space_lib.largest(SMALL)]
    archs += [space_lib.Arch(d, e) for d, e in zip(depth, expand)]
    for arch in archs:
        flops = cost.xla_flops(SMALL, arch)
        # XLA adds ReLUs, adds, pooling (a sum and a divide per input pixel) and the bias on top of 2
        # flops per MAC: 2.5-6.5% in this tiny net, whose 3-channel middle layers do few MACs per activation.
        assert 0 <= relative_gap(flops, 2 * cost.macs(SMALL, arch, count_padding=False)) < 0.08
        # Padding taps are real work in the paper's convention but not for XLA.
        assert flops < 2 * cost.macs(SMALL, arch)


def test_xla_flops_track_macs_on_paper_space():
    arch = space_lib.smallest(PAPER)
    # Measured: +0.25% (elementwise ops) over the taps on real input, -9.5% against the padded count.
    gap = relative_gap(cost.xla_flops(PAPER, arch), 2 * cost.macs(PAPER, arch, count_padding=False))
    assert 0 <= gap < 0.005
    # The im2col convolution multiplies zero-padded patches, so it does at least the paper's padded count;
    # where a conv narrows (Cin > Cout) it multiplies before shifting, at the input resolution, which for
    # stride-2 convs is more work than the closed form counts (measured +59% on this arch).
    gap = relative_gap(cost.xla_flops(PAPER, arch, conv_impl="im2col"), 2 * cost.macs(PAPER, arch))
    assert 0 <= gap < 1.0


# ----------------------------------------------------------------------------- command line
def run_command(*args):
    # --json: the exact figures, one JSON object per arch and line (the default is a readable summary).
    return subprocess.run([sys.executable, "-m", "superfed_jax.reports.arch_size", "--json", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def write_config(path, space):
    fields = {f: getattr(space, f) for f in ("stem_width", "stage_widths", "stage_strides",
                                             "blocks_per_stage", "expand_choices", "divisor",
                                             "input_size", "input_channels", "num_classes")}
    path.write_text(textwrap.dedent(f"""\
        import ml_collections

        def get_config():
            config = ml_collections.ConfigDict()
            config.space = ml_collections.ConfigDict({fields!r})
            return config
        """))
    return str(path)


def test_command_prints_costs_of_the_smallest_arch(tmp_path):
    config = write_config(tmp_path / "config.py", PAPER)
    result = run_command(f"--config={config}", '--arch={"d":[0,0,0,0],"e":0.1}')
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["arch"] == {"d": [0, 0, 0, 0], "e": 0.1}
    assert report["macs"] == 458_969_088 and round(report["gmacs"], 6) == 0.458969
    assert report["params_with_bn_affine"] == 10_396_746
    assert report["params"] == 10_396_746 - 2 * (64 + 384 + 2 * 3840)


def test_command_uses_the_config_space(tmp_path):
    config = write_config(tmp_path / "small.py", SMALL)
    arch = '{"d":[1,0,2,0],"e":0.18}'
    result = run_command(f"--config={config}", f"--arch={arch}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    expected = space_lib.parse_arch(SMALL, arch)
    assert report["macs"] == cost.macs(SMALL, expected)
    assert report["params"] == cost.params(SMALL, expected)


@pytest.mark.parametrize("arch,problem", [
    ('{"d":[0,0,0],"e":0.1}', "'d'=[0, 0, 0]"),
    ('{"d":[0,0,0,3],"e":0.1}', "depth 3"),
    ('{"d":[0,0,0,0],"e":0.3}', "0.3"),
    ('{"d":[0,0,0,0],"e":', "not valid JSON"),
])
def test_command_rejects_bad_archs(arch, problem):
    result = run_command(f"--arch={arch}")
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and problem in lines[0]
    assert "0..2" in lines[0] and "[0.1, 0.14, 0.18, 0.22, 0.25]" in lines[0]


# The reference's sizes table (SuperFedNAS text tasks, tied decoder counted once): arch -> (params,
# forward MACs per token) for Shakespeare (LEAF's 80 symbols, channels 450, 3 levels, expand 0.2/0.5/1)
# and PTB (10,000 words, channels 600, 4 levels).
TCN_SIZES = {
    "shakespeare": [("smallest", {"d": 0, "e": 0.2}, 280_160, 279_000),
                    ("small", {"d": 1, "e": 0.2}, 524_240, 522_000),
                    ("medium", {"d": 1, "e": 0.5}, 1_253_780, 1_251_000),
                    ("large", {"d": 1, "e": 1.0}, 2_469_680, 2_466_000),
                    ("largest", {"d": 2, "e": 1.0}, 3_686_480, 3_681_000)],
    "ptb": [("smallest", {"d": 0, "e": 0.1}, 6_444_640, 6_432_000),
            ("small", {"d": 1, "e": 0.2}, 7_310_320, 7_296_000),
            ("medium", {"d": 1, "e": 0.5}, 9_255_400, 9_240_000),
            ("large", {"d": 1, "e": 1.0}, 12_497_200, 12_480_000),
            ("largest", {"d": 2, "e": 1.0}, 14_659_600, 14_640_000)],
}


@pytest.mark.parametrize("task", sorted(TCN_SIZES))
def test_the_tcn_sizes_table_as_superfed_cost_prints_it(task):
    vocabulary = {"shakespeare": 80, "ptb": 10_000}[task]
    result = run_command(f"--config=configs/{task}.py", f"--config.space.num_classes={vocabulary}")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["name"], r["arch"], r["params"], r["macs"]) for r in rows] == TCN_SIZES[task]
    for name, arch, params, macs in TCN_SIZES[task][::4]:  # by name and by JSON: the same one line
        for given in (name, json.dumps(arch)):
            one = run_command(f"--config=configs/{task}.py", f"--config.space.num_classes={vocabulary}",
                              f"--arch={given}")
            assert one.returncode == 0, one.stderr
            assert json.loads(one.stdout) == {"arch": arch, "macs": macs, "gmacs": macs / 1e9,
                                              "params": params}
