"""The suite's work accounting (benchmarks/suite.py `round_work`) against hand-counted MACs.

Computed over useful MACs is the figure that compares the masked and the sliced execution
(docs/performance.md 16), so its host arithmetic is checked on one round of two clients of the paper space:
the smallest arch on 20 examples (3 steps of batch 8) and the largest on 9 (2 steps).
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import suite  # noqa: E402
from superfed_jax.supernet.ofa_resnet import cost  # noqa: E402
from superfed_jax.supernet.ofa_resnet import space as space_lib  # noqa: E402

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
