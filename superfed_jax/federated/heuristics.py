"""Subnet distribution: which sampled client trains which subnet in a round.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879 (docs/algorithm.md section 3).
Heuristics (``fl.heuristic``; the reference code's names in brackets):

* ``static`` [static]: client c trains ``pool[c mod L]``; a one-arch pool is plain FedAvg of that arch.
* ``dynamic`` [dynamic]: ``pool[(c + t) mod L]``.
* ``random`` [all_random]: every client draws a uniformly random arch.
* ``sandwich`` [sandwich_all_random]: position ``t mod P`` of the sampled list trains the smallest arch,
  position ``(t + 1) mod P`` the largest, the rest random.
* ``tracking_sandwich`` [TS_all_random], the default: per-client counters ``n_max``, ``n_min``; among the
  sampled clients the one with the smallest ``n_max`` (ties: lowest id) trains the largest arch, among
  the rest the one with the smallest ``n_min`` (ties: lowest id) the smallest, the others random.

Both sandwich rules can give the smallest arch to k > 1 clients (``fl.smallest_clients``, an option beyond
the paper; docs/accuracy.md); k = 1 is the paper's rule.

Every function is pure and runs inside the jitted round: the round, the key, the client ids and the
tracking counters are traced arrays; the heuristic name, the family and the pool are static. Archs are
the family's pytrees (`supernet.family`): nothing here depends on what their leaves mean.

Randomness: the random arch of a client is ``family.sample(fold_in(key, client_id))``, keyed by the
client id rather than the position in the sampled list, so a client's draw does not depend on the order
(or padding) of the list. ``key`` must be this round's key for arch draws, derived by the caller from
(seed, round) with a stream distinct from the client-sampling key.
"""
import functools
from typing import Any, Optional, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from superfed_jax.supernet import family as family_lib

ArchTree = Any  # one arch or a batch of archs: a pytree of int32 arrays (`supernet.family`)

__all__ = ["HEURISTICS", "POOL_HEURISTICS", "TrackingState", "init_tracking", "assign_archs", "assign_static",
           "assign_dynamic", "assign_random", "assign_sandwich", "assign_tracking_sandwich",
           "random_archs", "sandwich_roles", "tracking_sandwich_roles", "update_tracking", "matches"]

HEURISTICS = ("static", "dynamic", "random", "sandwich", "tracking_sandwich")
POOL_HEURISTICS = ("static", "dynamic")  # the heuristics that draw archs from fl.pool


@flax.struct.dataclass
class TrackingState:
    """Tracking-sandwich counters; training state, checkpoint it with the params."""

    n_max: jax.Array  # int32 [K]: rounds in which each client trained the largest arch.
    n_min: jax.Array  # int32 [K]: rounds in which each client trained the smallest arch.


def init_tracking(num_clients: int) -> TrackingState:
    """All-zero counters for ``num_clients`` (K) clients."""
    zeros = jnp.zeros(num_clients, jnp.int32)
    return TrackingState(n_max=zeros, n_min=zeros)


# ---------------------------------------------------------------------------------------- helpers


def matches(family: family_lib.Family, archs: ArchTree, target: ArchTree) -> jax.Array:
    """bool [P]: whether each arch of ``archs`` (leading axis P) is the same subnet as ``target``.

    Compares canonical forms (`Family.canonical`) leaf by leaf, so choices that select nothing (e.g. those
    of blocks a depth skips) are ignored.
    """
    archs, target = family.canonical(archs), family.canonical(target)

    def same(a, t):
        a, t = jnp.asarray(a), jnp.asarray(t)
        return jnp.all(a == t, axis=tuple(range(a.ndim - t.ndim, a.ndim)))

    return functools.reduce(jnp.logical_and, [same(a, t) for a, t in zip(jax.tree.leaves(archs),
                                                                         jax.tree.leaves(target))])


def select(flags: jax.Array, chosen: ArchTree, otherwise: ArchTree) -> ArchTree:
    """archs [P]: ``chosen`` (one arch, broadcast) where ``flags`` (bool [P]) is set, else ``otherwise``."""
    def pick(c, o):
        return jnp.where(flags.reshape(flags.shape + (1,) * (jnp.ndim(o) - 1)), jnp.asarray(c)[None], o)
    return jax.tree.map(pick, chosen, otherwise)


def take_pool(pool: ArchTree, index: jax.Array) -> ArchTree:
    """archs [P]: ``pool[index]`` for int32 [P] indices into the pool's leading axis."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.int32)[index], pool)


def pool_size(pool: ArchTree) -> int:
    """L, the number of archs of a pool (the leading axis of every leaf)."""
    return np.shape(jax.tree.leaves(pool)[0])[0]


def _check_pool(heuristic: str, family: family_lib.Family, pool: Optional[ArchTree]) -> None:
    if pool is None:
        raise ValueError(f"fl.pool=None: fl.heuristic={heuristic!r} needs a pool of archs "
                         f"(heuristics that use one: {POOL_HEURISTICS})")
    bounds = family.arch_bounds()
    shapes = [np.shape(leaf) for leaf in jax.tree.leaves(pool)]
    needed = [np.shape(bound) for bound in jax.tree.leaves(bounds)]
    leading = {shape[0] for shape in shapes if shape}
    if (jax.tree.structure(pool) != jax.tree.structure(bounds) or len(shapes) != len(needed)
            or any(shape[1:] != need or len(shape) != len(need) + 1 for shape, need in zip(shapes, needed))
            or len(leading) != 1 or min(leading) < 1):
        wanted = " and ".join("[" + ", ".join(["L", *map(str, need)]) + "]" for need in needed)
        raise ValueError(f"fl.pool: leaf shapes {', '.join(map(str, shapes))}; need {wanted} with L >= 1 "
                         "(stack the archs with supernet.family.stack)")


def _check_smallest_clients(smallest_clients: int, num_positions: int) -> None:
    most = max(1, num_positions - 1)  # one position is the largest arch's (with P = 1: nobody's)
    if not 1 <= smallest_clients <= most:
        raise ValueError(f"fl.smallest_clients={smallest_clients!r}: must be between 1 and "
                         f"fl.clients_per_round - 1 = {most} (one sampled client trains the largest)")


# ------------------------------------------------------------------------------------- heuristics


def assign_static(family: family_lib.Family, clients: jax.Array,
                  pool: ArchTree) -> Tuple[ArchTree, jax.Array]:
    """Client c trains ``pool[c mod L]``.

    Args:
      family: the supernet family (static).
      clients: int32 [P] sampled client ids.
      pool: a batch of archs with leading axis [L].

    Returns:
      (archs [P], is_maxnet: bool [P] whether each arch is the largest).
    """
    archs = take_pool(pool, jnp.mod(clients, pool_size(pool)))
    return archs, matches(family, archs, family.largest())


def assign_dynamic(family: family_lib.Family, round: jax.Array, clients: jax.Array,
                   pool: ArchTree) -> Tuple[ArchTree, jax.Array]:
    """Client c trains ``pool[(c + t) mod L]`` in round t; shapes as in ``assign_static``."""
    index = jnp.mod(clients + jnp.asarray(round, jnp.int32), pool_size(pool))
    archs = take_pool(pool, index)
    return archs, matches(family, archs, family.largest())


def random_archs(family: family_lib.Family, key: jax.Array, clients: jax.Array) -> ArchTree:
    """archs [P]: a uniformly random arch per client, keyed by ``fold_in(key, client_id)``."""
    return jax.vmap(lambda c: family.sample(jax.random.fold_in(key, c)))(clients)


def assign_random(family: family_lib.Family, key: jax.Array,
                  clients: jax.Array) -> Tuple[ArchTree, jax.Array]:
    """Every client draws a random arch; is_maxnet marks draws that equal the largest arch."""
    archs = random_archs(family, key, clients)
    return archs, matches(family, archs, family.largest())


def _flag(num_positions: int, picked: jax.Array) -> jax.Array:
    """bool [num_positions]: True at the positions listed in `picked` (int [k])."""
    return jnp.zeros(num_positions, bool).at[picked].set(True)


def sandwich_roles(round: jax.Array, num_positions: int,
                   smallest_clients: int = 1) -> Tuple[jax.Array, jax.Array]:
    """(is_min, is_max), bool [P]: position t mod P is the smallest, (t + 1) mod P the largest.

    With ``smallest_clients`` = k > 1 (`fl.smallest_clients`) positions (t + 2) .. (t + k) mod P also
    train the smallest, so the k smallest-arch positions and the largest one are consecutive from t.
    With P = 1 both rules name position 0; it trains the largest arch (it is then the MaxNet of the
    beta weighting). The reference code gives it the smallest there; P = 1 is outside the paper's runs.
    """
    position = jnp.arange(num_positions)
    t = jnp.asarray(round, jnp.int32)
    is_max = position == jnp.mod(t + 1, num_positions)
    offsets = jnp.asarray([0] + list(range(2, smallest_clients + 1)), jnp.int32)  # after t: t+1 is the max
    is_min = _flag(num_positions, jnp.mod(t + offsets, num_positions)) & ~is_max
    return is_min, is_max


def assign_sandwich(family: family_lib.Family, key: jax.Array, round: jax.Array,
                    clients: jax.Array, smallest_clients: int = 1) -> Tuple[ArchTree, jax.Array]:
    """Sandwich rule, no memory across rounds; returns (archs [P], is_maxnet [P])."""
    is_min, is_max = sandwich_roles(round, clients.shape[0], smallest_clients)
    archs = random_archs(family, key, clients)
    archs = select(is_min, family.smallest(), archs)
    archs = select(is_max, family.largest(), archs)
    return archs, is_max


def _lowest_first(counts: jax.Array, clients: jax.Array) -> jax.Array:
    """int32 [P]: positions ordered by count, ties broken by the lowest client id."""
    # lexsort's last key is the primary one. The reference scans a Python set of small ints, which
    # iterates in increasing id order, so its tie-break is the lowest id too.
    return jnp.lexsort((clients, counts))


def tracking_sandwich_roles(clients: jax.Array, tracking: TrackingState,
                            smallest_clients: int = 1) -> Tuple[jax.Array, jax.Array]:
    """(is_min, is_max), bool [P]: who trains the smallest and the largest arch under tracking sandwich.

    The largest goes to the sampled client with the smallest ``n_max``; the smallest to the client with
    the smallest ``n_min`` among the others (ties: lowest client id), or with ``smallest_clients`` = k > 1
    (`fl.smallest_clients`) to the k clients with the smallest ``n_min`` among the others. With P = 1 the
    only client trains the largest and nobody the smallest.
    """
    position = jnp.arange(clients.shape[0])
    is_max = position == _lowest_first(tracking.n_max[clients], clients)[0]
    # The MaxNet client is out of the running for the smallest arch: give it the largest possible count.
    n_min = jnp.where(is_max, jnp.iinfo(jnp.int32).max, tracking.n_min[clients])
    is_min = _flag(clients.shape[0], _lowest_first(n_min, clients)[:smallest_clients]) & ~is_max
    return is_min, is_max


def update_tracking(tracking: TrackingState, clients: jax.Array, hit_min: jax.Array,
                    hit_max: jax.Array) -> TrackingState:
    """Adds one to ``n_min`` / ``n_max`` of the clients flagged by ``hit_min`` / ``hit_max`` (bool [P])."""
    return TrackingState(n_max=tracking.n_max.at[clients].add(hit_max.astype(jnp.int32)),
                         n_min=tracking.n_min.at[clients].add(hit_min.astype(jnp.int32)))


def assign_tracking_sandwich(family: family_lib.Family, key: jax.Array, clients: jax.Array,
                             tracking: TrackingState, *, count_random_extremes: bool = True,
                             smallest_clients: int = 1) -> Tuple[ArchTree, jax.Array, TrackingState]:
    """Tracking sandwich (the method's default).

    Args:
      family: the supernet family (static).
      key: this round's arch key.
      clients: int32 [P] sampled client ids.
      tracking: counters before this round.
      count_random_extremes: also count a random draw that happens to be the largest (else smallest)
        arch, as the reference code does (it checks "is max net" first, then "is min net"). Static.
      smallest_clients: how many clients train the smallest arch (`tracking_sandwich_roles`). Static.

    Returns:
      (archs [P], is_maxnet: bool [P] exactly the position given the largest arch by the rule,
      tracking: counters after this round).
    """
    is_min, is_max = tracking_sandwich_roles(clients, tracking, smallest_clients)
    drawn = random_archs(family, key, clients)
    archs = select(is_min, family.smallest(), drawn)
    archs = select(is_max, family.largest(), archs)
    hit_max, hit_min = is_max, is_min
    if count_random_extremes:
        is_random = ~(is_min | is_max)
        random_max = is_random & matches(family, drawn, family.largest())
        random_min = is_random & ~random_max & matches(family, drawn, family.smallest())
        hit_max, hit_min = hit_max | random_max, hit_min | random_min
    return archs, is_max, update_tracking(tracking, clients, hit_min, hit_max)


# ------------------------------------------------------------------------------------- dispatcher


def assign_archs(heuristic: str, family: family_lib.Family, key: jax.Array, round: jax.Array,
                 clients: jax.Array, tracking: TrackingState, pool: Optional[ArchTree] = None, *,
                 count_random_extremes: bool = True, smallest_clients: int = 1
                 ) -> Tuple[ArchTree, jax.Array, TrackingState]:
    """Archs of the sampled clients of one round under ``heuristic``.

    Args:
      heuristic: one of ``HEURISTICS`` (static).
      family: the supernet family (static).
      key: this round's arch key, derived from (seed, round) by the caller.
      round: 0-based round, int32 scalar (traced).
      clients: int32 [P] sampled client ids (from ``sampling.sample_clients``).
      tracking: tracking-sandwich counters; only ``tracking_sandwich`` changes them.
      pool: a batch of archs with leading axis [L] (static or not); needed by ``static`` and ``dynamic``.
      count_random_extremes: see ``assign_tracking_sandwich``.
      smallest_clients: the sandwich heuristics' number of clients given the smallest arch (k, static;
        1 <= k <= max(1, P - 1)); the other heuristics ignore it, so FedAvg baselines (``static``) made
        from a config that sets it run unchanged.

    Returns:
      (archs [P], is_maxnet: bool [P], tracking). ``is_maxnet`` marks the client given the
      largest arch by the rule (sandwich heuristics: exactly one position; static, dynamic and random:
      every client whose arch is canonically the largest, possibly none or several).
    """
    if heuristic not in HEURISTICS:
        raise ValueError(f"fl.heuristic={heuristic!r}: allowed values are {HEURISTICS}")
    clients = jnp.asarray(clients, jnp.int32)
    if heuristic in POOL_HEURISTICS:
        _check_pool(heuristic, family, pool)
    _check_smallest_clients(smallest_clients, clients.shape[0])
    if heuristic == "static":
        return (*assign_static(family, clients, pool), tracking)
    if heuristic == "dynamic":
        return (*assign_dynamic(family, round, clients, pool), tracking)
    if heuristic == "random":
        return (*assign_random(family, key, clients), tracking)
    if heuristic == "sandwich":
        return (*assign_sandwich(family, key, round, clients, smallest_clients), tracking)
    return assign_tracking_sandwich(family, key, clients, tracking,
                                    count_random_extremes=count_random_extremes,
                                    smallest_clients=smallest_clients)
