"""The assignment sequence: which clients and which subnets every round of a run uses, without data or training.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879 (docs/algorithm.md sections 3
and 8): the cost of a SuperFed run is a sum over rounds and sampled clients of the cost of the subnet each
client trains, so the paper's "9.43x cheaper than independent FedAvg" is a property of the assignment
sequence alone. Client sampling and subnet assignment depend only on (seed, round) and the tracking
counters, never on the data or the weights, so the whole sequence of a run can be replayed here.

Exactness: `assignment_sequence` calls `federated_round.assign_round`, the function the real round uses,
and carries the tracking counters from round to round, so it returns the clients and archs the real run
of the same settings and seed trains. The test
`tests/test_run_cost.py` checks this against real rounds. All rounds run as one jitted `lax.scan`.
"""
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from superfed_jax.federated import heuristics
from superfed_jax.federated import round as federated_round
from superfed_jax.supernet import family as family_lib

__all__ = ["assignment_sequence"]


@functools.partial(jax.jit, static_argnames=("family", "settings", "rounds"))
def _scan_rounds(family, settings, rounds, pool, rng, start_round, tracking):
    """All ``rounds`` rounds from ``start_round`` as one scan; ``settings.pool`` is None (pool is traced)."""
    def step(tracking, t):
        state = federated_round.ServerState(params=None, round=t, rng=rng, tracking=tracking)
        clients, archs, is_maxnet, tracking = federated_round.assign_round(
            family, settings._replace(pool=pool), state)
        return tracking, (clients, archs, is_maxnet)

    round_ids = start_round + jnp.arange(rounds, dtype=jnp.int32)
    tracking, (clients, archs, is_maxnet) = jax.lax.scan(step, tracking, round_ids)
    return {"round": round_ids, "clients": clients, "archs": archs, "is_maxnet": is_maxnet}, tracking


def _hashable_settings(settings: federated_round.RoundSettings):
    """(settings without the pool, pool as int32 arrays or None): the pool (NumPy arrays) is unhashable."""
    pool = settings.pool
    if pool is not None:
        pool = jax.tree.map(lambda x: jnp.asarray(x, jnp.int32), pool)
    return settings._replace(pool=None), pool


def assignment_sequence(family: family_lib.Family, settings: federated_round.RoundSettings,
                        seed: int, rounds: int, start_round: int = 0,
                        tracking: Optional[heuristics.TrackingState] = None) -> dict:
    """The sampled clients and assigned archs of rounds ``start_round .. start_round + rounds - 1``.

    Args:
      family: the run's supernet family.
      settings: the run's round settings (e.g. `run.build.round_settings(config, family)`); only sampling and
        assignment fields matter (chunking and the beta schedule do not change the sequence).
      seed: the run's ``config.seed``.
      rounds: number of rounds to return.
      start_round: first round returned (0-based).
      tracking: tracking counters before ``start_round`` (e.g. from a checkpoint). If None they are
        replayed from round 0, which is what an uninterrupted (or exactly resumed) run has.

    Returns:
      NumPy arrays: ``round`` int32 [R]; ``clients`` int32 [R, P]; ``archs`` the family's arch pytree
      with leading axes [R, P] (int32 leaves); ``is_maxnet`` bool [R, P] (the client weighted as MaxNet).
    """
    if rounds < 0 or start_round < 0:
        raise ValueError(f"rounds={rounds}, start_round={start_round}: need non-negative values")
    static_settings, pool = _hashable_settings(settings)
    rng = jax.random.key_data(jax.random.key(seed))
    first = start_round
    if tracking is None:
        tracking, first = heuristics.init_tracking(settings.num_clients), 0
    sequence, _ = _scan_rounds(family, static_settings, start_round + rounds - first, pool, rng,
                               jnp.int32(first), tracking)
    skip = start_round - first
    return {name: jax.tree.map(lambda x: np.asarray(x)[skip:], values) for name, values in sequence.items()}
