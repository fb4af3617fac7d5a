"""The suite's work accounting (benchmarks/suite.py `round_work`) against hand-counted MACs.

Computed over useful MACs is the figure that compares the masked and the sliced execution
(docs/performance.md 16), so its host arithmetic is checked on one round of two clients of the paper space:
the smallest arch on 20 examples (3 steps of batch 8) and the largest on 9 (2 steps); and the same round
of a tiny elastic TCN, whose costs are per token (a window of T tokens costs T times an arch's MACs).
"""
import os
import sys
import types

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import suite  # noqa: E402
from superfed_jax.supernet.ofa_resnet import cost  # noqa: E402
from superfed_jax.supernet.ofa_resnet import space as space_lib  # noqa: E402
from superfed_jax.supernet.tcn import family as tcn_family  # noqa: E402

SPACE = space_lib.SearchSpace()
SMALL, LARGE = space_lib.smallest(SPACE), space_lib.largest(SPACE)
SIZES = np.array([4, 20, 9, 4])
ROUND = dict(clients=np.array([1, 2]), archs=space_lib.stack([SMALL, LARGE]))  # as in a round's metrics
S, L = cost.macs(SPACE, SMALL), cost.macs(SPACE, LARGE)  # forward MACs per image
ROWS = 8 * 3  # a step's rows (batch 8) x 3 (forward + backward)


@pytest.mark.parametrize("execution,layout,chunk_size,expected", [
    ("masked", "side_by_side", 1, ROWS * L * (3 + 2)),  # the supernet on every row of each own step
    ("sliced", "side_by_side", 1, ROWS * (S * 3 + L * 2)),  # each client its own arch and steps
    ("sliced", "side_by_side", 2, ROWS * (S * 3 + L * 2)),  # one chunk, still own steps: done clients skip
    ("masked", "vmap", 2, ROWS * 3 * 2 * L),  # one chunk: the most steps for both, supernet width
    ("sliced", "vmap", 2, ROWS * 3 * 2 * L),  # one chunk: the most steps at the chunk's envelope
])
def test_round_work_counts_computed_macs_by_execution_and_layout(execution, layout, chunk_size, expected):
    work = suite.round_work(SPACE, SIZES, 20, [ROUND], 1, 8, chunk_size, execution, layout)
    assert work["computed_macs"] == expected
    assert work["useful_macs"] == 3 * (20 * S + 9 * L)
    assert work["computed_steps"] == (6 if layout == "vmap" else 5)


def test_envelope_macs_is_the_widest_kept_arch():
    medium_depth = np.array([1, 1, 1, 1])
    depth = np.stack([SMALL.depth, medium_depth])
    expand = np.stack([LARGE.expand, SMALL.expand])  # widest everywhere, but only in the shallow arch
    # Blocks kept by the deep arch alone run at its (smallest) width; the others at the widest.
    widest = np.where(np.asarray(space_lib.block_active(SPACE, space_lib.Arch(SMALL.depth, LARGE.expand))),
                      LARGE.expand, SMALL.expand)
    assert suite.envelope_macs(SPACE, depth, expand) == cost.macs(SPACE, space_lib.Arch(medium_depth, widest))


def test_paper_work_counts_the_paper_round_by_execution():
    """`benchmarks/paper_work.py` on 3 rounds of the paper's CIFAR-10 settings: side by side, sliced
    computes each client's own arch on its own steps (only the last batch's row padding above 1); one
    vmapped chunk of all 8 clients holds the tracking sandwich's largest arch, so its envelope is the
    supernet and sliced computes exactly what masked does."""
    import paper_work
    result = paper_work.main(["--rounds=3", "--seeds=0", "--alphas=100", "--chunk_sizes=1,8"])
    ratios = {label: v["mean"] for label, v in result["alphas"]["100"]["summary"].items()}
    assert 1.0 <= ratios["sliced, side by side"] < 1.05
    assert ratios["sliced, vmapped chunks of 8"] == ratios["masked, vmapped chunk of P"]
    assert ratios["masked, side by side"] > 1.8 * ratios["sliced, side by side"]
    # Before chunks ran their own steps every client ran the partition's largest count: never less.
    assert ratios[paper_work.BEFORE] >= ratios["masked, vmapped chunk of P"]


# ---------------------------------------------------------------------------- the elastic TCN (per token)
# A tiny TCN counted by hand (supernet/tcn/cost.py): C 10, k 2, V 7, windows of T 5 tokens, mids 5 and 10;
# block 0 is kept by every arch, depth index d keeps 1 + d blocks. MACs per token: 2*C*k*mid = 40*mid per
# kept block, plus the decoder C*V = 70.
TCN = tcn_family.ElasticTCN(tcn_family.TCNSpace(channels=10, levels=3, kernel_size=2, depth_choices=(0, 1, 2),
                                                expand_choices=(0.5, 1.0), num_classes=7, input_shape=(5,)))
T = 5
# a: 2 blocks at mid 5 (200 + 200 + 70 = 470); b: block 0 only, at mid 10 (400 + 70 = 470); b's
# expand index 1 on the blocks it drops must not widen the envelope.
TCN_ARCHS = tcn_family.TCNArch(np.array([1, 0], np.int32), np.array([[0, 0, 0], [1, 1, 1]], np.int32))
A = B = 470
SUPER = 3 * 400 + 70  # 1270: every block at mid 10
ENVELOPE = 400 + 200 + 70  # 670: 2 blocks, block 0 at b's 10, block 1 at a's 5 (b drops it)
TCN_ROUND = dict(clients=np.array([1, 2]), archs=TCN_ARCHS)


def test_tcn_costs_by_hand():
    assert suite.units_per_example(TCN) == T and suite.units_per_example(tcn_family.ElasticTCN()) == 80
    assert TCN.macs(TCN.largest()) == SUPER and TCN.macs(TCN.smallest()) == 270
    assert list(TCN.macs_batch(TCN_ARCHS)) == [A, B]
    assert suite.tcn_envelope_macs(TCN.space, TCN_ARCHS.depth, TCN_ARCHS.expand) == ENVELOPE


@pytest.mark.parametrize("execution,layout,chunk_size,expected", [
    ("masked", "side_by_side", 1, SUPER * (3 + 2)),  # the supernet on every row of each own step
    ("sliced", "side_by_side", 1, A * 3 + B * 2),  # each client its own arch and steps
    ("masked", "vmap", 2, SUPER * 3 * 2),  # one chunk: the most steps for both, supernet width
    ("sliced", "vmap", 2, ENVELOPE * 3 * 2),  # one chunk: the most steps at the chunk's envelope
])
def test_round_work_counts_tcn_macs_per_token_of_every_window(execution, layout, chunk_size, expected):
    """Clients of 20 and 9 windows (3 and 2 steps of batch 8, 1 epoch): a row is a window of T tokens,
    x 3 for forward and backward."""
    work = suite.round_work(TCN, SIZES, 20, [TCN_ROUND], 1, 8, chunk_size, execution, layout)
    assert work["computed_macs"] == 8 * 3 * T * expected
    assert work["useful_macs"] == 3 * T * (20 * A + 9 * B)
    assert work["supernet_macs_on_real_examples"] == 3 * T * 29 * SUPER
    assert work["real_examples"] == 29 and work["computed_rows"] == 8 * work["computed_steps"]


def test_tcn_envelope_macs_is_the_sliced_envelope():
    """The host envelope against the one the sliced round computes (`Family.sliced.envelope`) on random groups."""
    rng = np.random.default_rng(0)
    mids = np.array(TCN.space.mids)
    for _ in range(20):
        size = int(rng.integers(1, 5))
        archs = tcn_family.TCNArch(rng.integers(0, 3, size).astype(np.int32),
                                   rng.integers(0, 2, (size, 3)).astype(np.int32))
        env = TCN.sliced.envelope(archs)
        blocks, expand = int(env.blocks), np.asarray(env.expand)
        by_envelope = sum(2 * 10 * 2 * int(mids[expand[i]]) for i in range(blocks)) + 70
        assert suite.tcn_envelope_macs(TCN.space, archs.depth, archs.expand) == by_envelope


def test_scored_targets_counts_each_clients_real_rows():
    """Client 0 owns rows 2 and 0, client 1 row 1 (its second table entry is padding)."""
    data = types.SimpleNamespace(labels=np.array([[1, -1, -1], [2, 3, 4], [-1, -1, -1]]),
                                 index_table=np.array([[2, 0], [1, 2]]), sizes=np.array([2, 1]))
    assert list(suite.scored_targets(data)) == [1, 3]
