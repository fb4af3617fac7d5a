"""The server's step from the clients' masked mean (docs/algorithm.md 4.2).

The paper's server replaces every element some client trained by the clients' masked weighted mean. An
adaptive federated optimiser (Reddi et al., "Adaptive Federated Optimization", ICLR 2021) instead treats
the difference as a gradient and steps on it. With overlapping subnets each element has its own set of
clients, so the difference exists only where some client trained the element:

    pseudo_grad[e] = server[e] - mean[e]         for every covered element e (mask count > 0)
    server[e] <- server[e] + update[e]           update from an optax transformation of pseudo_grad

and an element that no client covered this round keeps its value and every per-element piece of the
optimiser state (moments, accumulators) exactly: its moments do not decay while nobody trains it. State
leaves that are not per element (optax's step count, used by Adam's bias correction) advance once per
round; docs/algorithm.md 4.2 says what that means for an element first covered late.

`server.optimizer='none'` does no step at all: the round keeps today's `aggregation.finalize` result bit
for bit. 'sgd' with learning rate 1 and no momentum gives the same values up to float rounding.

A user's own rule is `server.optimizer='package.module:function'`: `function(server_config)` receives the
config's `server` section (an `ml_collections.ConfigDict`) and returns an `optax.GradientTransformation`.
Its `update(pseudo_grad, state, params)` sees the pseudo-gradient (0 at uncovered elements) and the
server params; the framework adds the updates at covered elements and keeps the uncovered elements'
state as described above, so any optax-style rule is exact for overlapping masks.
"""
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from superfed_jax import _import_path

# `server.optimizer` values; a user's own rule is an import path 'package.module:function'.
SERVER_OPTIMIZERS = ("none", "sgd", "adam", "yogi", "adagrad")
_ALLOWED = f"allowed are {list(SERVER_OPTIMIZERS)} or an import path 'package.module:function'"


def make_server_optimizer(server) -> Optional[optax.GradientTransformation]:
    """The optax transformation that `server` (the config's server section) names; None for 'none'.

    Raises:
      ValueError: naming `server.optimizer` when a user's path cannot be imported or its function does not
        return an `optax.GradientTransformation`.
    """
    name = server.optimizer
    if name == "none":
        return None
    if name == "sgd":  # FedAvgM with momentum
        return optax.sgd(server.learning_rate, momentum=server.momentum or None)
    if name == "adam":  # FedAdam (optax's bias correction included)
        return optax.adam(server.learning_rate, b1=server.b1, b2=server.b2, eps=server.eps)
    if name == "yogi":  # FedYogi
        return optax.yogi(server.learning_rate, b1=server.b1, b2=server.b2, eps=server.eps)
    if name == "adagrad":  # FedAdagrad
        return optax.adagrad(server.learning_rate, eps=server.eps)
    factory = _import_path.load("server.optimizer", name, _ALLOWED)
    optimizer = factory(server)
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(f"server.optimizer={name!r}: the function returned {type(optimizer).__name__}, "
                         "not an optax.GradientTransformation (it receives the server section of the "
                         "config; docs/algorithm.md 4.2)")
    return optimizer


# Params-sized buffers of each built-in rule's state (`state_slots`); a user's rule is budgeted like Adam.
_STATE_SLOTS = {"none": 0, "adam": 2, "yogi": 2, "adagrad": 1}
CUSTOM_RULE_SLOTS = 2


def state_slots(server) -> int:
    """Params-sized buffers the server optimiser keeps (`run/memory.py`'s `server_slots`): 0 for the mean,
    1 for momentum SGD or Adagrad, 2 for Adam's and Yogi's moments, `CUSTOM_RULE_SLOTS` for a user's rule.
    `server` is the config's server section (a mapping); a config saved before it existed reads as 'none'."""
    name = server.get("optimizer", "none")
    if name == "sgd":
        return int(float(server.get("momentum", 0.0)) > 0)
    return _STATE_SLOTS.get(name, CUSTOM_RULE_SLOTS)


def init_state(optimizer: Optional[optax.GradientTransformation], params) -> Any:
    """The optimiser's state before round 0; `()` (no leaves) when there is no server optimiser."""
    return () if optimizer is None else optimizer.init(params)


def _keep_uncovered(optimizer: optax.GradientTransformation, new_state, old_state, covered):
    """`new_state` where an element is covered, `old_state` where not, for every state leaf that is a copy
    of the params (moments, accumulators); other leaves (a step count) take their new value."""
    advance = object()  # marks the leaves that are not per element
    covered_like_state = optax.tree_utils.tree_map_params(
        optimizer, lambda _, cover: cover, new_state, covered, transform_non_params=lambda _: advance)

    def select(cover, new, old):
        return new if cover is advance else jnp.where(cover, new, old).astype(new.dtype)

    return jax.tree.map(select, covered_like_state, new_state, old_state,
                        is_leaf=lambda x: x is advance)


def server_step(optimizer: optax.GradientTransformation, params, state, mean, covered):
    """One server step on the masked mean: `(new params, new state)`.

    Args:
      optimizer: an optax transformation (`make_server_optimizer`).
      params: the server params before the round.
      state: the optimiser state before the round.
      mean: the clients' masked weighted mean, equal to `params` at uncovered elements
        (`aggregation.finalize`).
      covered: a tree like `params` of booleans, leaves broadcastable to the params' (the mask count > 0).
    """
    pseudo_grad = jax.tree.map(lambda p, m, c: jnp.where(c, p - m, 0).astype(p.dtype), params, mean, covered)
    updates, new_state = optimizer.update(pseudo_grad, state, params)
    new_params = jax.tree.map(lambda p, u, c: jnp.where(c, p + u, p).astype(p.dtype), params, updates, covered)
    return new_params, _keep_uncovered(optimizer, new_state, state, covered)
