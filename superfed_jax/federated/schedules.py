"""MaxNet aggregation weights: the beta schedule of SuperFed.

Khare et al., "SuperFed: Weight Shared Federated Learning", arXiv 2301.10879 (docs/algorithm.md section 4.1):
in round t the client given the largest subnet (the "MaxNet") is weighted ``beta_t`` in the server's
aggregation and every other sampled client ``(1 - beta_t) / (P - 1)``. ``beta_t`` decays from ``beta0``
to ``beta_final`` over ``decay_rounds`` rounds (T) and then stays there; with the default
``beta_final = 1/P`` the rule ends exactly as uniform averaging. Rounds are 0-based.

Schedules (``fl.beta_schedule``):

* ``uniform``:  every client weight 1 (no MaxNet weighting; the heuristics-only ablation).
* ``linear``:   beta_t = beta0 + (betaT - beta0) * min(t, T) / T.
* ``cosine``:   beta_t = beta0 * [(1 - a) * (1 + cos(pi * min(t, T) / T)) / 2 + a], a = betaT / beta0
  (the method's default).
* ``constant``: beta_t = beta0 (the paper's "constant beta 0.9" ablation).

Everything here runs inside the jitted round: the round is a traced int32, the schedule name and the
hyperparameters are static Python values bound by the caller.
"""
import jax
import jax.numpy as jnp

__all__ = ["SCHEDULES", "DECAYING_SCHEDULES", "beta", "client_weights", "decay_progress", "first_flagged"]

SCHEDULES = ("uniform", "linear", "cosine", "constant")
DECAYING_SCHEDULES = ("linear", "cosine")  # the schedules that decay over fl.decay_fraction of the rounds


def _check_schedule(schedule: str) -> None:
    if schedule not in SCHEDULES:
        raise ValueError(f"fl.beta_schedule={schedule!r}: allowed values are {SCHEDULES}")


def decay_progress(round: jax.Array, decay_rounds: int) -> jax.Array:
    """float32 scalar: min(t, T) / T in [0, 1]; 1 from round 0 on when T <= 0 (nothing to decay)."""
    t = jnp.asarray(round, jnp.float32)
    total = jnp.asarray(decay_rounds, jnp.float32)
    # max(T, 1) keeps the unused branch of the where finite (no NaN in its gradient or value).
    progress = jnp.clip(t / jnp.maximum(total, 1.0), 0.0, 1.0)
    return jnp.where(total > 0, progress, 1.0)


def beta(schedule: str, round: jax.Array, *, beta0: float, beta_final: float,
         decay_rounds: int) -> jax.Array:
    """The MaxNet weight ``beta_t`` of round ``round``.

    Args:
      schedule: one of ``SCHEDULES`` (static).
      round: 0-based round, int scalar (traced or not).
      beta0: beta at round 0 (paper: 0.9).
      beta_final: beta from round T on (paper: 1/P).
      decay_rounds: T (paper: 0.8 * rounds); T <= 0 means beta_final from round 0.

    Returns:
      float32 scalar. For ``uniform`` it returns ``beta_final``: the value is never used by
      ``client_weights`` (uniform weights are all ones), but returning a finite number keeps logging of
      beta uniform across schedules.
    """
    _check_schedule(schedule)
    beta0 = jnp.float32(beta0)
    beta_final = jnp.float32(beta_final)
    progress = decay_progress(round, decay_rounds)
    if schedule == "linear":
        return beta0 + (beta_final - beta0) * progress
    if schedule == "cosine":
        # The paper's beta0 * [(1 - a) * c + a] with a = betaT / beta0 and c = (1 + cos(pi p)) / 2,
        # multiplied out so that beta0 = 0 does not divide by zero.
        return beta_final + (beta0 - beta_final) * (1.0 + jnp.cos(jnp.pi * progress)) / 2.0
    if schedule == "constant":
        return beta0
    return beta_final


def first_flagged(flags: jax.Array) -> jax.Array:
    """bool [P]: only the first True of ``flags`` (bool [P]) stays True."""
    return flags & (jnp.cumsum(flags.astype(jnp.int32)) == 1)


def client_weights(schedule: str, beta_t: jax.Array, is_maxnet: jax.Array) -> jax.Array:
    """Aggregation weights of the P clients of a round.

    Args:
      schedule: one of ``SCHEDULES`` (static).
      beta_t: float scalar from ``beta``.
      is_maxnet: bool [P], the client(s) that trained the largest subnet.

    Returns:
      float32 [P]. ``uniform``: all ones. Otherwise the MaxNet gets ``beta_t`` and every other client
      ``(1 - beta_t) / (P - 1)`` (the weights sum to 1). Edge cases:

      * several clients flagged (possible with random or static draws, never with the sandwich
        heuristics): only the first flagged position counts as the MaxNet, so the sum stays 1;
      * no client flagged: uniform weights 1/P (there is no MaxNet to favour);
      * P = 1: weight 1 (aggregation renormalises per element, so any positive weight is the same).
    """
    _check_schedule(schedule)
    is_maxnet = jnp.asarray(is_maxnet, bool)
    num_clients = is_maxnet.shape[0]
    if schedule == "uniform" or num_clients == 1:
        return jnp.ones(num_clients, jnp.float32)
    beta_t = jnp.asarray(beta_t, jnp.float32)
    maxnet = first_flagged(is_maxnet)
    weighted = jnp.where(maxnet, beta_t, (1.0 - beta_t) / (num_clients - 1))
    return jnp.where(maxnet.any(), weighted, jnp.float32(1.0 / num_clients))
