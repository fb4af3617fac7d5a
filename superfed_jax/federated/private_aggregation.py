"""User-level differential privacy inside the round: DP-FedAvg for overlapping masks (docs/algorithm.md 4.3).

McMahan et al., "Learning Differentially Private Recurrent Language Models", ICLR 2018, bound each user's
influence on a round by clipping the user's update and add Gaussian noise to the sum of the updates. Here
every element of the supernet has its own set of clients, so the rule is written per element:

    delta_c        = clip(theta_c - server over client c's subnet, to L2 norm S)      (`clip_updates`)
    u_c            = w_c / max_c' w_c'                                                (`dp_weights`)
    num[e]         = sum_c u_c * M_c[e] * delta_c[e]  +  N(0, (z * S)^2)              (`add_noise`)
    den[e]         = sum_c u_c * M_c[e]
    mean_delta[e]  = num[e] / den[e]  where den[e] > 0, else 0 (the element keeps its value)

Each client's contribution to the vector `num` is `u_c * M_c * delta_c`, of L2 norm at most u_c * S <= S,
whatever its data: the Gaussian mechanism with noise multiplier z on a sum of sensitivity S (per user
added or removed; 2S when one user is replaced by another). `den` depends only on the round's clients and
archs, which are drawn from (seed, round, tracking counters) and never from data, so dividing by it, and
any server optimiser step after it, is post-processing and costs no privacy. Two things would break that
and are refused by the config check: weights by data size (`fl.weight_by_size`), and dropping a client
whose update is not finite from `den`; such a client contributes a zero update here and keeps its weight.
"""
import jax
import jax.numpy as jnp


def _norm(tree) -> jax.Array:
    """The L2 norm of a whole pytree, in float32."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def clip_updates(client_params, server_params, client_masks, clip_norm: float):
    """Each client's update over its own subnet, scaled down to L2 norm at most `clip_norm`.

    Args:
      client_params: trained params, leaves [C, ...].
      server_params: the round's server params, leaves [...].
      client_masks: leaves [C, ...] broadcastable to the params' (1 inside a client's subnet).
      clip_norm: S > 0.

    Returns:
      `(updates, clipped)`: updates like `client_params`, zero outside each client's subnet and zero for a
      client whose update is not finite; `clipped` bool [C], whether a client's update was scaled down.
    """
    def one(params, masks):
        update = jax.tree.map(lambda p, s, m: (p - s) * m.astype(p.dtype), params, server_params, masks)
        norm = _norm(update)
        finite = jnp.isfinite(norm)
        scale = jnp.where(finite, jnp.minimum(1.0, clip_norm / jnp.maximum(norm, 1e-30)), 0.0)
        update = jax.tree.map(lambda u: jnp.where(finite, u * scale.astype(u.dtype), 0), update)
        return update, finite & (norm > clip_norm)

    return jax.vmap(one)(client_params, client_masks)


def dp_weights(weights: jax.Array) -> jax.Array:
    """float32 [P]: the round's aggregation weights scaled so that the largest is 1 (each client's
    contribution to the noised sum then has norm at most the clip norm). All zero stays all zero."""
    return weights / jnp.maximum(jnp.max(weights), 1e-30)


def add_noise(numerator, key: jax.Array, std: float):
    """`numerator` plus independent N(0, std^2) on every element; one key per leaf, split from `key`."""
    leaves, treedef = jax.tree.flatten(numerator)
    keys = jax.random.split(key, len(leaves))
    noised = [x + std * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, noised)
