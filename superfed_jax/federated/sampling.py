"""Which clients take part in a federated round.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879 (docs/algorithm.md section 3):
every round P of the K clients are sampled uniformly without replacement, deterministically from the seed
and the round, so that a run resumed from a checkpoint replays exactly the same client sequence.

The function is pure and jittable with a traced key; it never reads host state or a global seed.
"""
import jax
import jax.numpy as jnp

__all__ = ["sample_clients"]


def sample_clients(key: jax.Array, num_clients: int, clients_per_round: int) -> jax.Array:
    """Draws ``clients_per_round`` distinct client ids out of ``num_clients``, uniformly.

    The order of the result is the order of a random permutation (not sorted): position-based
    heuristics (sandwich) rely on it, as the reference code's ``np.random.choice(K, P, replace=False)``
    list does.

    Args:
      key: PRNG key of this round. The caller derives it from the run seed and the round, e.g.
        ``fold_in(fold_in(seed_key, round), CLIENT_SAMPLING_STREAM)``, so the sampled sequence depends
        only on (seed, round) and a resumed run replays it; use a stream constant distinct from the one
        that keys the random archs so the two draws are independent.
      num_clients: K, static.
      clients_per_round: P, static, 1 <= P <= K.

    Returns:
      int32 [P]: distinct client ids in [0, K).
    """
    if not 1 <= clients_per_round <= num_clients:
        raise ValueError(f"fl.clients_per_round={clients_per_round}: must be in 1..fl.num_clients "
                         f"({num_clients})")
    # A full permutation is O(K) and K is tens to hundreds; cheaper than anything cleverer at this size.
    return jax.random.permutation(key, num_clients)[:clients_per_round].astype(jnp.int32)
