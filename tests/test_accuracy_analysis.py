"""benchmarks/accuracy_analysis.py's per-round quantities (docs/accuracy.md) against a slow NumPy loop over
hand-built masks (tests/tiny_setup.py, docs/algorithm.md 2.2) for one round of four clients."""
import os
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import tiny_setup as T
from superfed_jax.federated import round as federated_round
from superfed_jax.supernet.ofa_resnet import space as space_lib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import accuracy_analysis  # noqa: E402

SMALLEST, LARGEST = space_lib.smallest(T.SPACE), space_lib.largest(T.SPACE)
ARCHS = [SMALLEST, LARGEST, T.MEDIUM, SMALLEST]  # two clients train the smallest as itself
CLIENTS = np.array([3, 0, 5, 6])
IS_MAXNET = np.array([False, True, False, False])
SIZES = np.array(T.CLIENT_SIZES)
BETA, EPOCHS = 0.7, 2
# Per client (8), training examples per class (3 classes): one-class, two-class and mixed clients.
CLASS_COUNTS = np.array([[3, 0, 0], [0, 5, 0], [4, 4, 0], [11, 0, 0], [0, 0, 13], [8, 8, 0], [0, 20, 0],
                         [8, 8, 8]], np.float32)


def settings(schedule):
    return federated_round.RoundSettings(
        num_clients=T.NUM_CLIENTS, clients_per_round=4, chunk_size=4, heuristic="tracking_sandwich", pool=None,
        count_random_extremes=True, beta_schedule=schedule, beta0=0.9, beta_final=0.25, decay_rounds=10)


def by_hand(arch, schedule):
    """The five quantities with NumPy, element by element."""
    masks = [np.concatenate([m.ravel() for m in _leaves(T.np_full_masks(a.depth, a.expand))]) for a in ARCHS]
    own = np.concatenate([m.ravel() for m in _leaves(T.np_full_masks(arch.depth, arch.expand))]) > 0
    if schedule == "uniform":
        weights = np.ones(4)
    else:
        weights = np.where(IS_MAXNET, BETA, (1 - BETA) / 3)
    itself = np.array([np.array_equal(a.depth, arch.depth) and np.array_equal(
        np.asarray(a.expand)[T.np_active(a.depth).ravel()], np.asarray(arch.expand)[T.np_active(arch.depth).ravel()])
        for a in ARCHS])
    examples = SIZES[CLIENTS] * EPOCHS
    coverage = np.array([m[own].sum() / own.sum() for m in masks])
    own_share, max_share, effective, shares = [], [], [], np.zeros(4)
    for e in np.flatnonzero(own):
        covering = np.array([m[e] for m in masks]) * weights
        own_share.append(covering[itself].sum() / covering.sum())
        max_share.append(covering[IS_MAXNET].sum() / covering.sum())
        effective.append(covering.sum() ** 2 / (covering ** 2).sum())
        shares += covering / covering.sum()
    shares /= own.sum()

    def classes(client_shares):
        histograms = CLASS_COUNTS[CLIENTS] / CLASS_COUNTS[CLIENTS].sum(1, keepdims=True)
        mixture = (client_shares[:, None] * histograms).sum(0)
        mixture = mixture[mixture > 0] / mixture.sum()
        return np.exp(-(mixture * np.log(mixture)).sum())

    return {"as_itself_clients": itself.sum(), "as_itself_examples": examples[itself].sum() / examples.sum(),
            "covered_examples": (examples * coverage).sum() / examples.sum(),
            "own_weight": np.mean(own_share), "maxnet_weight": np.mean(max_share),
            "effective_clients": np.mean(effective), "effective_classes": classes(shares),
            "fedavg_effective_classes": classes(np.full(4, 0.25))}


def _leaves(tree):
    import jax
    return jax.tree.leaves(tree)


@pytest.mark.parametrize("name, schedule", [("smallest", "cosine"), ("medium", "cosine"),
                                            ("largest", "uniform")])
def test_per_round_matches_an_element_loop(name, schedule):
    arch = {"smallest": SMALLEST, "medium": T.MEDIUM, "largest": LARGEST}[name]
    got = accuracy_analysis.per_round(T.FAMILY, settings(schedule), T.as_jnp(T.init_params()), arch, space_lib.stack(ARCHS),
                                      jnp.asarray(CLIENTS), jnp.asarray(IS_MAXNET), jnp.float32(BETA),
                                      jnp.asarray(SIZES), EPOCHS, jnp.asarray(CLASS_COUNTS))
    want = by_hand(arch, schedule)
    for quantity in accuracy_analysis.QUANTITIES:
        np.testing.assert_allclose(float(got[quantity]), want[quantity], rtol=1e-5, err_msg=quantity)
    if name == "smallest":  # every subnet contains the smallest: all training reaches it
        assert float(got["covered_examples"]) == pytest.approx(1.0)
        assert float(got["as_itself_clients"]) == 2


def test_class_counts_and_effective_classes_by_hand():
    """Clients 3, 0, 5, 6 hold classes {0}, {0}, {0, 1} and {1}: with equal shares the mixture is
    (1/4)(1, 0, 0) + (1/4)(1, 0, 0) + (1/4)(1/2, 1/2, 0) + (1/4)(0, 1, 0) = (5/8, 3/8, 0), exp(entropy) =
    exp(-(5/8 ln 5/8 + 3/8 ln 3/8)) = exp(0.66156) = 1.9378."""
    class Data:
        labels = np.array([0, 0, 1, 2, 2, 1])
        index_table = np.array([[0, 1, 2], [3, 4, 0], [5, 0, 0]])
        sizes = np.array([3, 2, 1])
    np.testing.assert_array_equal(accuracy_analysis.class_counts(Data, 3), [[2, 1, 0], [0, 0, 2], [0, 1, 0]])
    got = by_hand(LARGEST, "uniform")["fedavg_effective_classes"]
    assert got == pytest.approx(np.exp(-(5 / 8 * np.log(5 / 8) + 3 / 8 * np.log(3 / 8))), rel=1e-6)
    assert got == pytest.approx(1.9378, abs=1e-4)
