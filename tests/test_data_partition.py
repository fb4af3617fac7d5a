"""Tests for the federated client partitions in superfed_jax.data.partition."""
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superfed_jax.data import partition as P


def _labels(num_classes=10, per_class=100, seed=0):
    """Shuffled balanced labels, so the split cannot lean on index order."""
    y = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(y).astype(np.int32)


def _assert_disjoint_cover(parts, n):
    flat = np.concatenate(parts)
    assert len(flat) == n
    np.testing.assert_array_equal(np.sort(flat), np.arange(n))


def _max_class_fraction(parts, labels, num_classes):
    """Mean over clients of the largest share one class has in the client."""
    fracs = [np.bincount(labels[p], minlength=num_classes).max() / len(p) for p in parts]
    return float(np.mean(fracs))


def _reference_dirichlet(labels, num_clients, alpha, seed, min_size):
    """Independent line-by-line transcription of the FedML 'hetero' loop."""
    rng = np.random.default_rng(seed)
    n, num_classes = len(labels), int(labels.max()) + 1
    smallest = -1
    while smallest < min_size:
        batch = [[] for _ in range(num_clients)]
        for k in range(num_classes):
            idx_k = np.where(labels == k)[0]
            rng.shuffle(idx_k)
            p = rng.dirichlet(np.repeat(alpha, num_clients))
            p = np.array([q * (len(b) < n / num_clients) for q, b in zip(p, batch)])
            p = p / p.sum()
            cuts = (np.cumsum(p) * len(idx_k)).astype(int)[:-1]
            batch = [b + piece.tolist() for b, piece in zip(batch, np.split(idx_k, cuts))]
            smallest = min(len(b) for b in batch)
    out = []
    for b in batch:
        b = np.array(b)
        rng.shuffle(b)
        out.append(b)
    return out


@pytest.mark.parametrize("alpha", [0.1, 0.5, 100.0])
def test_dirichlet_covers_each_index_once_and_respects_min_size(alpha):
    y = _labels()
    parts = P.dirichlet_partition(y, 10, alpha, seed=3, min_size=10)
    assert len(parts) == 10
    _assert_disjoint_cover(parts, len(y))
    assert min(len(p) for p in parts) >= 10
    assert all(p.dtype == np.int64 for p in parts)


def test_dirichlet_is_seeded():
    y = _labels()
    a = P.dirichlet_partition(y, 8, 0.5, seed=1)
    b = P.dirichlet_partition(y, 8, 0.5, seed=1)
    c = P.dirichlet_partition(y, 8, 0.5, seed=2)
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa, pb)
    assert any(len(pa) != len(pc) or np.any(pa != pc) for pa, pc in zip(a, c))


def test_dirichlet_alpha_controls_label_skew():
    y = _labels(per_class=200)
    uniform = _max_class_fraction(P.dirichlet_partition(y, 10, 100.0, seed=0), y, 10)
    skewed = _max_class_fraction(P.dirichlet_partition(y, 10, 0.1, seed=0), y, 10)
    # Balanced classes give 0.1; alpha=100 stays close, alpha=0.1 is dominated
    # by one or two classes per client.
    assert uniform < 0.2
    assert skewed > 0.5


@pytest.mark.parametrize("alpha,seed", [(0.1, 0), (0.5, 4), (5.0, 7)])
def test_dirichlet_matches_independent_fedml_transcription(alpha, seed):
    y = _labels(per_class=60, seed=seed)
    ours = P.dirichlet_partition(y, 6, alpha, seed=seed, min_size=10)
    ref = _reference_dirichlet(y, 6, alpha, seed, min_size=10)
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)


def test_dirichlet_balance_cap_bounds_client_size():
    # With a very small alpha each class goes (almost) whole to one client.
    # The cap stops a client from taking another class once it holds N/K, so
    # no client can exceed N/K by more than one class's worth.
    y = _labels(num_classes=20, per_class=50)
    n, k = len(y), 5
    for seed in range(5):
        parts = P.dirichlet_partition(y, k, 0.01, seed=seed, min_size=1)
        assert max(len(p) for p in parts) < n / k + 50


def test_dirichlet_cap_on_crafted_case():
    # Two clients, N = 100, cap N/2 = 50. Class 0 (50 examples) comes first
    # and, with a tiny alpha, goes whole to one client, which then holds the
    # cap; so all five small classes (10 each) must go to the other client.
    # Without the cap each small class would land on a random client.
    y = np.concatenate([np.zeros(50, int), np.repeat(np.arange(1, 6), 10)])
    for seed in range(5):
        parts = P.dirichlet_partition(y, 2, 1e-3, seed=seed, min_size=1)
        big = [p for p in parts if 0 in y[p]]
        small = [p for p in parts if 0 not in y[p]]
        assert len(big) == 1 and len(small) == 1
        np.testing.assert_array_equal(np.sort(big[0]), np.arange(50))
        np.testing.assert_array_equal(np.sort(small[0]), np.arange(50, 100))


def test_dirichlet_impossible_request_fails_fast_with_advice():
    y = _labels(per_class=10)  # 100 examples
    start = time.perf_counter()
    with pytest.raises(ValueError, match="min_size=10") as info:
        P.dirichlet_partition(y, 10, 0.01, seed=0, min_size=10, max_tries=50)
    assert time.perf_counter() - start < 5.0
    msg = str(info.value)
    assert "fewer clients" in msg and "larger alpha" in msg and "smaller min size" in msg
    # Plainly impossible (more than N needed) is refused without trying.
    with pytest.raises(ValueError, match="cannot give every one of 20 clients"):
        P.dirichlet_partition(y, 20, 1.0, seed=0, min_size=10)


def test_dirichlet_rejects_nonpositive_alpha():
    with pytest.raises(ValueError, match="data.alpha"):
        P.dirichlet_partition(_labels(), 4, 0.0, seed=0)


def test_iid_partition_sizes_and_cover():
    parts = P.iid_partition(103, 10, seed=0)
    _assert_disjoint_cover(parts, 103)
    assert sorted(len(p) for p in parts) == [10] * 7 + [11] * 3
    again = P.iid_partition(103, 10, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_shards_partition_gives_few_classes_per_client():
    y = _labels(num_classes=10, per_class=100)
    parts = P.shards_partition(y, 20, 2, seed=0)
    _assert_disjoint_cover(parts, len(y))
    assert [len(p) for p in parts] == [50] * 20
    # 40 shards of 50 over label-sorted data: each shard is one class, so a
    # client sees at most 2 classes.
    assert max(len(np.unique(y[p])) for p in parts) <= 2


def test_shards_partition_rejects_too_many_shards():
    with pytest.raises(ValueError, match="shards_per_client"):
        P.shards_partition(np.zeros(10, int), 6, 2, seed=0)


def test_make_partition_dispatch_and_errors():
    y = _labels()
    for method in P.PARTITION_METHODS:
        # Client ids for 'natural' (5 clients of 200 examples); the other methods ignore them.
        parts = P.make_partition(y, 5, method, seed=0, client_ids=np.arange(len(y)) % 5)
        _assert_disjoint_cover(parts, len(y))
    with pytest.raises(ValueError, match=r"data.partition='pathological'.*dirichlet"):
        P.make_partition(y, 5, "pathological", seed=0)
    with pytest.raises(ValueError, match="num_clients=2000"):
        P.make_partition(y, 2000, "iid", seed=0)


def test_client_index_table_round_trips():
    parts = [np.array([5, 1, 7]), np.array([], np.int64), np.array([0, 2, 3, 4, 6])]
    table, sizes = P.client_index_table(parts)
    assert table.dtype == np.int32 and sizes.dtype == np.int32
    assert table.shape == (3, 5)
    np.testing.assert_array_equal(sizes, [3, 0, 5])
    np.testing.assert_array_equal(table[0], [5, 1, 7, 0, 0])
    np.testing.assert_array_equal(table[1], [0, 0, 0, 0, 0])
    for k, part in enumerate(parts):
        np.testing.assert_array_equal(table[k, : sizes[k]], part)


def test_client_index_table_from_real_partition():
    y = _labels()
    parts = P.make_partition(y, 7, "dirichlet", seed=0, alpha=0.3)
    table, sizes = P.client_index_table(parts)
    assert table.shape == (7, max(len(p) for p in parts))
    mask = np.arange(table.shape[1])[None, :] < sizes[:, None]
    assert np.all(table[~mask] == 0)
    np.testing.assert_array_equal(np.sort(table[mask]), np.arange(len(y)))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(20, 300), num_classes=st.integers(1, 12),
       num_clients=st.integers(1, 10), method=st.sampled_from(P.PARTITION_METHODS),
       alpha=st.floats(0.05, 50.0), seed=st.integers(0, 2**31 - 1))
def test_every_method_is_a_disjoint_cover(n, num_classes, num_clients, method, alpha, seed):
    labels = np.random.default_rng(seed).integers(0, num_classes, n)
    # For 'natural': num_clients non-contiguous ids, each on at least 2 examples (n >= 20), none dropped.
    client_ids = np.random.default_rng(seed).permutation(np.arange(n) % num_clients * 3 + 1)
    try:
        parts = P.make_partition(labels, num_clients, method, seed, alpha=alpha,
                                 shards_per_client=1, min_size=2, client_ids=client_ids)
    except ValueError as e:
        # Legitimate only for a Dirichlet split too skewed to give everyone
        # min_size examples, and then with the advice.
        assert method == "dirichlet" and "larger alpha" in str(e)
        return
    assert len(parts) == num_clients
    _assert_disjoint_cover(parts, n)
    if method == "dirichlet":
        assert min(len(p) for p in parts) >= 2
