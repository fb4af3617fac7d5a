"""Tests for superfed_jax.federated.heuristics (which client trains which subnet, docs/algorithm.md section 3)."""
import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from superfed_jax.federated import heuristics as h
from superfed_jax.federated.sampling import sample_clients
from superfed_jax.supernet.ofa_resnet import space as space_lib
from superfed_jax.supernet.ofa_resnet.family import OFAResNet

SPACE = space_lib.SearchSpace()
FAMILY = OFAResNet(SPACE)
# One stage of two blocks, two expand choices: 6 distinct subnets, so random draws are often the
# largest (p = 1/8) or the smallest (p = 1/4, expand of the skipped block ignored).
TINY = space_lib.SearchSpace(stem_width=4, stage_widths=(8,), stage_strides=(1,), blocks_per_stage=2,
                             expand_choices=(0.5, 1.0), divisor=1, input_size=8)
TINY_FAMILY = OFAResNet(TINY)


def arch(depth, expand):
    return space_lib.Arch(depth=np.asarray(depth, np.int32), expand=np.asarray(expand, np.int32))


def rows(archs):
    """Per-position (depth tuple, expand tuple) of an Arch [P], for readable comparisons."""
    depth, expand = np.asarray(archs.depth), np.asarray(archs.expand)
    return [(tuple(d.tolist()), tuple(e.tolist())) for d, e in zip(depth, expand)]


def row(one):
    return tuple(np.asarray(one.depth).tolist()), tuple(np.asarray(one.expand).tolist())


LARGEST, SMALLEST = row(space_lib.largest(SPACE)), row(space_lib.smallest(SPACE))
POOL = space_lib.stack([arch([0, 0, 0, 0], [0] * 12), arch([0, 1, 0, 1], [1] * 12),
                        space_lib.largest(SPACE)])
POOL_ROWS = rows(POOL)


# (heuristic, number of clients, smallest_clients) -> how often ``assign_archs`` was traced for it.
TRACES = collections.Counter()


def _traced_assign(heuristic, family, key, round_num, clients, tracking, pool, smallest_clients):
    TRACES[heuristic, clients.shape[0], smallest_clients] += 1
    return h.assign_archs(heuristic, family, key, round_num, clients, tracking, pool,
                          smallest_clients=smallest_clients)


# Jitted once per (heuristic, family, shapes): eager op-by-op dispatch would dominate the test time,
# and every test shares the compiled programs.
_assign_jit = jax.jit(_traced_assign, static_argnums=(0, 1, 7))


def assign(heuristic, clients, round_num=0, tracking=None, pool=POOL, family=FAMILY, seed=0,
           smallest_clients=1):
    tracking = h.init_tracking(20) if tracking is None else tracking
    return _assign_jit(heuristic, family, jax.random.key(seed), jnp.int32(round_num),
                       jnp.asarray(clients, jnp.int32), tracking, pool, smallest_clients)


# ------------------------------------------------------------------------------- static, dynamic


def test_static_rule():
    archs, is_maxnet, tracking = assign("static", [4, 0, 7, 2], round_num=9)
    assert rows(archs) == [POOL_ROWS[i] for i in [1, 0, 1, 2]]  # c mod 3
    np.testing.assert_array_equal(is_maxnet, [False, False, False, True])
    np.testing.assert_array_equal(tracking.n_max, np.zeros(20))


@pytest.mark.parametrize("round_num, expected", [(0, [1, 0, 1, 2]), (1, [2, 1, 2, 0]),
                                                 (2, [0, 2, 0, 1]), (301, [2, 1, 2, 0])])
def test_dynamic_rule(round_num, expected):
    archs, is_maxnet, _ = assign("dynamic", [4, 0, 7, 2], round_num=round_num)
    assert rows(archs) == [POOL_ROWS[i] for i in expected]  # (c + t) mod 3
    np.testing.assert_array_equal(is_maxnet, [i == 2 for i in expected])


def test_single_arch_pool_is_fedavg():
    pool = space_lib.stack([arch([0, 1, 0, 1], [1] * 12)])
    archs, is_maxnet, _ = assign("dynamic", [3, 11, 5], round_num=7, pool=pool)
    assert rows(archs) == [POOL_ROWS[1]] * 3
    assert not np.asarray(is_maxnet).any()


# ------------------------------------------------------------------------------------- random


def test_random_is_keyed_by_client_id_not_position():
    clients = np.array([3, 17, 0, 9, 12])
    archs, _, _ = assign("random", clients, pool=None)
    perm = np.array([4, 2, 0, 3, 1])
    shuffled, _, _ = assign("random", clients[perm], pool=None)
    assert rows(shuffled) == [rows(archs)[i] for i in perm]
    assert len(set(rows(archs))) > 1  # the clients did not all draw the same arch


def test_random_is_maxnet_marks_canonical_largest():
    clients = np.arange(16)
    archs, is_maxnet, _ = assign("random", clients, family=TINY_FAMILY, pool=None, seed=3,
                                 tracking=h.init_tracking(16))
    expected = [d == (1,) and e == (1, 1) for d, e in rows(archs)]
    assert any(expected)  # p = 1/8 per draw: the seed gives some
    np.testing.assert_array_equal(is_maxnet, expected)


def test_matches_ignores_skipped_blocks():
    archs = space_lib.Arch(depth=np.array([[0], [0], [1]], np.int32),
                           expand=np.array([[0, 1], [0, 0], [0, 1]], np.int32))
    np.testing.assert_array_equal(h.matches(TINY_FAMILY, archs, space_lib.smallest(TINY)),
                                  [True, True, False])


# ----------------------------------------------------------------------------------- sandwich


@pytest.mark.parametrize("round_num, smallest_at, largest_at", [(0, 0, 1), (1, 1, 2), (3, 3, 0),
                                                                (6, 2, 3), (1001, 1, 2)])
def test_sandwich_positions(round_num, smallest_at, largest_at):
    archs, is_maxnet, tracking = assign("sandwich", [8, 3, 15, 1], round_num=round_num)
    got = rows(archs)
    assert got[smallest_at] == SMALLEST and got[largest_at] == LARGEST
    others = [r for i, r in enumerate(got) if i not in (smallest_at, largest_at)]
    assert SMALLEST not in others and LARGEST not in others
    np.testing.assert_array_equal(is_maxnet, np.arange(4) == largest_at)
    np.testing.assert_array_equal(tracking.n_max, np.zeros(20))  # no memory across rounds


@pytest.mark.parametrize("heuristic", ["sandwich", "tracking_sandwich"])
@pytest.mark.parametrize("round_num", [0, 1, 2])
def test_single_client_gets_largest(heuristic, round_num):
    archs, is_maxnet, tracking = assign(heuristic, [6], round_num=round_num)
    assert rows(archs) == [LARGEST]
    np.testing.assert_array_equal(is_maxnet, [True])
    if heuristic == "tracking_sandwich":
        assert int(tracking.n_max[6]) == 1 and int(tracking.n_min.sum()) == 0


# -------------------------------------------------------------------------- tracking sandwich


def test_tracking_sandwich_hand_case():
    n_max = np.zeros(20, np.int32)
    n_min = np.zeros(20, np.int32)
    # The higher id of each tie comes first in the list, so a tie-break by position would differ.
    n_max[[5, 9, 2, 7]] = [1, 0, 0, 3]  # smallest n_max: 9 and 2 tie -> lowest id 2 (position 2)
    n_min[[5, 9, 2, 7]] = [2, 1, 0, 1]  # 2 is taken by the max; 9 and 7 tie -> lowest id 7
    tracking = h.TrackingState(n_max=jnp.asarray(n_max), n_min=jnp.asarray(n_min))
    archs, is_maxnet, new = assign("tracking_sandwich", [5, 9, 2, 7], tracking=tracking)
    got = rows(archs)
    assert got[2] == LARGEST and got[3] == SMALLEST
    assert LARGEST not in (got[0], got[1]) and SMALLEST not in (got[0], got[1])
    np.testing.assert_array_equal(is_maxnet, [False, False, True, False])
    n_max[2] += 1
    n_min[7] += 1
    np.testing.assert_array_equal(new.n_max, n_max)
    np.testing.assert_array_equal(new.n_min, n_min)


@pytest.mark.parametrize("round_num, smallest_at, largest_at", [(0, (0, 2, 3), 1), (4, (4, 0, 1), 5),
                                                                (5, (5, 1, 2), 0)])
def test_sandwich_several_smallest_follow_the_largest(round_num, smallest_at, largest_at):
    # fl.smallest_clients = 3 of P = 6: positions t, t+2, t+3 (mod 6) train the smallest, t+1 the largest.
    archs, is_maxnet, _ = assign("sandwich", [8, 3, 15, 1, 0, 12], round_num=round_num, smallest_clients=3)
    got = rows(archs)
    assert [i for i, r in enumerate(got) if r == SMALLEST] == sorted(smallest_at)
    assert [i for i, r in enumerate(got) if r == LARGEST] == [largest_at]
    np.testing.assert_array_equal(is_maxnet, np.arange(6) == largest_at)


def test_tracking_sandwich_several_smallest_hand_case():
    n_max = np.zeros(20, np.int32)
    n_min = np.zeros(20, np.int32)
    n_max[[5, 9, 2, 7, 4]] = [0, 1, 1, 1, 1]  # 5 trains the largest
    n_min[[5, 9, 2, 7, 4]] = [0, 3, 1, 1, 2]  # of the others: 2 and 7 (tie at 1), then 4 (2); 9 is left
    tracking = h.TrackingState(n_max=jnp.asarray(n_max), n_min=jnp.asarray(n_min))
    archs, is_maxnet, new = assign("tracking_sandwich", [5, 9, 2, 7, 4], tracking=tracking,
                                   smallest_clients=3)
    got = rows(archs)
    assert got[0] == LARGEST and got[2] == got[3] == got[4] == SMALLEST
    assert got[1] not in (LARGEST, SMALLEST)
    np.testing.assert_array_equal(is_maxnet, [True, False, False, False, False])
    n_max[5] += 1
    n_min[[2, 7, 4]] += 1
    np.testing.assert_array_equal(new.n_max, n_max)
    np.testing.assert_array_equal(new.n_min, n_min)
    # With two of them, the tie at n_min = 1 still goes to both 2 and 7, and 4 draws at random.
    archs, _, new = assign("tracking_sandwich", [5, 9, 2, 7, 4], tracking=tracking, smallest_clients=2)
    assert [i for i, r in enumerate(rows(archs)) if r == SMALLEST] == [2, 3]


def test_pool_heuristics_ignore_smallest_clients():
    # A FedAvg baseline (static) made from a config that sets fl.smallest_clients trains as without it.
    for heuristic in ("static", "dynamic", "random"):
        one = assign(heuristic, [5, 9, 2, 7], round_num=3)
        three = assign(heuristic, [5, 9, 2, 7], round_num=3, smallest_clients=3)
        assert rows(one[0]) == rows(three[0]), heuristic


@pytest.mark.parametrize("heuristic", ["sandwich", "tracking_sandwich", "static"])
@pytest.mark.parametrize("smallest_clients", [0, 4])
def test_smallest_clients_out_of_range_names_field(heuristic, smallest_clients):
    # P = 4: one client trains the largest, so at most 3 can train the smallest.
    with pytest.raises(ValueError, match=rf"fl\.smallest_clients={smallest_clients}: must be between 1 "
                                         r"and fl\.clients_per_round - 1 = 3"):
        h.assign_archs(heuristic, FAMILY, jax.random.key(0), jnp.int32(0), jnp.asarray([5, 9, 2, 7]),
                       h.init_tracking(20), POOL, smallest_clients=smallest_clients)


def test_two_clients_one_largest_one_smallest():
    for round_num in range(4):
        archs, is_maxnet, _ = assign("tracking_sandwich", [11, 4], round_num=round_num)
        assert sorted(rows(archs)) == sorted([LARGEST, SMALLEST])


def reference_tracking_sandwich(clients, draws, n_max, n_min, count_random_extremes, smallest_clients=1):
    """Slow pure-Python tracking sandwich of one round; ``draws[c]`` is client c's random arch."""
    blocks, choices = TINY.blocks_per_stage, TINY.num_expand_choices

    def is_largest(a):
        return all(d == blocks - 1 for d in a[0]) and all(e == choices - 1 for e in a[1])

    def is_smallest(a):
        kept = [s * blocks for s in range(TINY.num_stages)]  # depth 0 keeps the first block only
        return all(d == 0 for d in a[0]) and all(a[1][b] == 0 for b in kept)

    top = min(clients, key=lambda c: (n_max[c], c))
    bottom = sorted((c for c in clients if c != top), key=lambda c: (n_min[c], c))[:smallest_clients]
    archs, is_maxnet = [], []
    for c in clients:
        if c == top:
            archs.append(row(space_lib.largest(TINY)))
            n_max[c] += 1
        elif c in bottom:
            archs.append(row(space_lib.smallest(TINY)))
            n_min[c] += 1
        else:
            archs.append(draws[c])
            if count_random_extremes and is_largest(draws[c]):
                n_max[c] += 1
            elif count_random_extremes and is_smallest(draws[c]):
                n_min[c] += 1
        is_maxnet.append(c == top)
    return archs, is_maxnet


@pytest.mark.parametrize("count_random_extremes, smallest_clients", [(True, 1), (False, 1), (True, 2)])
def test_tracking_sandwich_matches_python_reference(count_random_extremes, smallest_clients):
    k, p, rounds = 6, 4, 50
    seed_key = jax.random.key(7)
    traces = []

    @jax.jit
    def step(tracking, round_num):
        traces.append(1)
        round_key = jax.random.fold_in(seed_key, round_num)
        clients = sample_clients(jax.random.fold_in(round_key, 0), k, p)
        arch_key = jax.random.fold_in(round_key, 1)
        archs, is_maxnet, tracking = h.assign_archs(
            "tracking_sandwich", TINY_FAMILY, arch_key, round_num, clients, tracking,
            count_random_extremes=count_random_extremes, smallest_clients=smallest_clients)
        # Every client's own random draw, written out independently of the heuristic's code.
        draws = jax.vmap(lambda c: space_lib.sample(TINY, jax.random.fold_in(arch_key, c)))(
            jnp.arange(k))
        return tracking, (clients, archs, is_maxnet, draws)

    tracking = h.init_tracking(k)
    n_max, n_min = [0] * k, [0] * k
    random_extremes = 0
    for round_num in range(rounds):
        tracking, (clients, archs, is_maxnet, draws) = step(tracking, jnp.int32(round_num))
        clients = np.asarray(clients).tolist()
        draws = rows(draws)
        before = sum(n_max) + sum(n_min)
        want_archs, want_maxnet = reference_tracking_sandwich(clients, draws, n_max, n_min,
                                                              count_random_extremes, smallest_clients)
        random_extremes += sum(n_max) + sum(n_min) - before - 1 - smallest_clients
        assert rows(archs) == want_archs, round_num
        np.testing.assert_array_equal(is_maxnet, want_maxnet)
        np.testing.assert_array_equal(tracking.n_max, n_max)
        np.testing.assert_array_equal(tracking.n_min, n_min)
    assert len(traces) == 1  # one trace for every round
    # The tiny space makes random draws hit the extremes, so the extra counting rule is exercised.
    assert (random_extremes > 10) if count_random_extremes else (random_extremes == 0)


def run_rounds(heuristic, k=20, p=8, rounds=500, seed=0, smallest_clients=1):
    """Scans ``rounds`` rounds; returns the final tracking state and per-round role counts."""
    seed_key = jax.random.key(seed)
    largest, smallest = space_lib.largest(SPACE), space_lib.smallest(SPACE)

    def body(tracking, round_num):
        round_key = jax.random.fold_in(seed_key, round_num)
        clients = sample_clients(jax.random.fold_in(round_key, 0), k, p)
        archs, is_maxnet, tracking = h.assign_archs(heuristic, FAMILY, jax.random.fold_in(round_key, 1),
                                                    round_num, clients, tracking,
                                                    smallest_clients=smallest_clients)
        got_max = h.matches(FAMILY, archs, largest)
        got_min = h.matches(FAMILY, archs, smallest)
        counted = (jnp.zeros(k, jnp.int32).at[clients].add(got_max),
                   jnp.zeros(k, jnp.int32).at[clients].add(got_min))
        return tracking, (got_max.sum(), got_min.sum(), (is_maxnet == got_max).all(), counted)

    rounds_axis = jnp.arange(rounds, dtype=jnp.int32)
    tracking, (num_max, num_min, flags_ok, counted) = jax.jit(
        lambda t: jax.lax.scan(body, t, rounds_axis))(h.init_tracking(k))
    n_max, n_min = (np.asarray(c).sum(axis=0) for c in counted)
    return tracking, np.asarray(num_max), np.asarray(num_min), np.asarray(flags_ok), n_max, n_min


@functools.lru_cache(maxsize=None)
def balance_runs():
    return run_rounds("tracking_sandwich"), run_rounds("sandwich")


def spread(counts):
    return counts.max() - counts.min()


def test_tracking_sandwich_spatial_and_temporal_balance():
    (tracking, num_max, num_min, flags_ok, n_max, n_min), _ = balance_runs()
    # Spatial: every round trains the largest and the smallest subnet exactly once.
    np.testing.assert_array_equal(num_max, 1)
    np.testing.assert_array_equal(num_min, 1)
    assert flags_ok.all()
    # The counters are exactly what was assigned (random draws never hit the extremes of this space).
    np.testing.assert_array_equal(tracking.n_max, n_max)
    np.testing.assert_array_equal(tracking.n_min, n_min)
    # Temporal: every client's data reaches the largest and the smallest subnet about equally often.
    for counts in (n_max, n_min):
        assert counts.sum() == 500
        assert spread(counts) <= 3 + 0.1 * counts.mean(), counts


def test_tracking_sandwich_with_three_smallest_stays_balanced():
    tracking, num_max, num_min, flags_ok, n_max, n_min = run_rounds("tracking_sandwich", smallest_clients=3)
    np.testing.assert_array_equal(num_max, 1)
    np.testing.assert_array_equal(num_min, 3)  # every round, three clients train the smallest
    assert flags_ok.all()
    np.testing.assert_array_equal(tracking.n_min, n_min)
    assert n_min.sum() == 1500 and spread(n_min) <= 3 + 0.1 * n_min.mean(), n_min
    assert n_max.sum() == 500 and spread(n_max) <= 3 + 0.1 * n_max.mean(), n_max


def test_plain_sandwich_is_less_balanced():
    (_, _, _, _, ts_max, ts_min), (tracking, num_max, num_min, flags_ok, n_max, n_min) = balance_runs()
    np.testing.assert_array_equal(num_max, 1)
    np.testing.assert_array_equal(num_min, 1)
    assert flags_ok.all()
    np.testing.assert_array_equal(tracking.n_max, 0)  # sandwich keeps no counters
    # Without tracking each count is Binomial(500, 1/20): spreads near 15, versus about 2 with it.
    assert spread(n_max) > 2 * spread(ts_max) and spread(n_min) > 2 * spread(ts_min)
    assert spread(n_max) > 3 + 0.1 * n_max.mean()


# ------------------------------------------------------------------------------------- jit, errors


@pytest.mark.parametrize("heuristic", h.HEURISTICS)
def test_one_trace_over_rounds(heuristic):
    tracking = h.init_tracking(20)
    for round_num in range(6):
        archs, is_maxnet, tracking = assign(heuristic, [4, 0, 7, 2], round_num=round_num,
                                            tracking=tracking, seed=round_num)
        assert archs.depth.shape == (4, 4) and archs.expand.shape == (4, 12)
        assert is_maxnet.dtype == jnp.bool_ and is_maxnet.shape == (4,)
    # Other tests may have compiled the same program first: at most one trace either way.
    assert TRACES[heuristic, 4, 1] == 1


def test_unknown_heuristic_names_field():
    with pytest.raises(ValueError, match=r"fl.heuristic='TS_all_random'.*tracking_sandwich"):
        assign("TS_all_random", [0, 1])


@pytest.mark.parametrize("heuristic", ["static", "dynamic"])
def test_pool_required(heuristic):
    with pytest.raises(ValueError, match=rf"fl.pool=None.*{heuristic}"):
        assign(heuristic, [0, 1], pool=None)


def test_pool_needs_leading_axis():
    with pytest.raises(ValueError, match="fl.pool"):
        assign("static", [0, 1], pool=space_lib.largest(SPACE))


def test_names():
    assert h.HEURISTICS == ("static", "dynamic", "random", "sandwich", "tracking_sandwich")


def test_pool_leaves_need_one_leading_length_and_the_arch_shapes():
    uneven = space_lib.Arch(depth=np.zeros((2, 4), np.int32), expand=np.zeros((3, 12), np.int32))
    with pytest.raises(ValueError, match=r"fl.pool: leaf shapes \(2, 4\), \(3, 12\); need \[L, 4\] and "
                                         r"\[L, 12\] with L >= 1"):
        h.assign_archs("static", FAMILY, jax.random.key(0), 0, jnp.arange(2), h.init_tracking(4), uneven)
    narrow = space_lib.Arch(depth=np.zeros((2, 3), np.int32), expand=np.zeros((2, 12), np.int32))
    with pytest.raises(ValueError, match=r"leaf shapes \(2, 3\), \(2, 12\)"):
        h.assign_archs("static", FAMILY, jax.random.key(0), 0, jnp.arange(2), h.init_tracking(4), narrow)
