"""The client's local optimiser (docs/algorithm.md 5.1): `make_client_optimizer(config.client)`.

Built in, `client.optimizer='sgd'`: per local step, with g the gradient of the client's mean loss,

    g <- g + prox_mu * (w - w_server) * subnet      (FedProx; only if prox_mu > 0)
    g <- clip_by_global_norm(g, clip_norm)
    g <- g + weight_decay * w * subnet              (only if weight_decay > 0; after clipping, as
                                                      PyTorch's SGD adds it)
    optax.sgd(learning_rate, momentum or None, nesterov)

With every option at its default this is exactly `optax.chain(clip_by_global_norm, sgd)`, the rule of
releases before the options existed: no extra transform, so results are the same bit for bit.

The proximal term is the gradient of mu/2 * ||(w - w_server) * subnet||^2, part of the local objective, so
it comes before clipping. Both it and the decay are multiplied by the client's subnet mask, and the
momentum buffer of an element whose gradient is always zero stays zero: an element outside the client's
subnet never changes, whatever the options, and masked, sliced and dense execution train the same.

A user's own rule, `client.optimizer='package.module:function'`:

    def function(client: ml_collections.ConfigDict) -> optax.GradientTransformation

It receives the `client` section (learning_rate, clip_norm, momentum, ... as configured) and returns an
optax transformation, built once per run, its state fresh every round. If it is a
`GradientTransformationExtraArgs`, its `update` is called as

    update(grads, state, params, *, subnet, anchor)

`subnet`: a tree like params, 1.0 inside the client's subnet and 0.0 outside (possibly of broadcastable
shapes); `anchor`: the server params the client started the round from. A plain `GradientTransformation`
is called without them. A custom rule must itself keep elements outside the subnet unchanged (their
gradient is zero; a rule that moves them anyway, e.g. with decay not masked by `subnet`, makes masked and
sliced execution differ and trains weights the client's subnet does not have).
"""
from typing import Any, Callable

import jax
import optax

from superfed_jax import _import_path

# `client.optimizer` values; a user's own rule is an import path 'package.module:function'.
CLIENT_OPTIMIZERS = ("sgd",)

_ALLOWED = (f"allowed are {list(CLIENT_OPTIMIZERS)} or an import path 'package.module:function' to a "
            "function taking the client config section and returning an optax GradientTransformation")


# The options' values in configs saved before they existed (config_schema's `absent`, which this layer may
# not import; tests/test_client_optimizer.py checks that the two agree): the plain rule.
ABSENT = {"optimizer": "sgd", "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "prox_mu": 0.0}


def _option(client_config, name: str):
    """`client.<name>`, or its value for configs saved before the field existed."""
    return client_config.get(name, ABSENT[name])


def proximal_term(mu: float) -> optax.GradientTransformationExtraArgs:
    """Adds FedProx's gradient mu * (params - anchor) * subnet to the updates (extra args `subnet`,
    `anchor`): the gradient of mu/2 * ||(w - w_server) * subnet||^2, zero outside the subnet."""

    def update(updates, state, params=None, *, subnet, anchor, **extra):
        del extra
        updates = jax.tree.map(lambda g, w, a, s: g + (mu * (w - a) * s).astype(g.dtype),
                               updates, params, anchor, subnet)
        return updates, state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def masked_weight_decay(weight_decay: float) -> optax.GradientTransformationExtraArgs:
    """Adds weight_decay * params * subnet to the updates (extra arg `subnet`): L2 decay of the client's own
    subnet only, so elements outside it get no update (optax.add_decayed_weights would decay them all)."""

    def update(updates, state, params=None, *, subnet, **extra):
        del extra
        updates = jax.tree.map(lambda g, w, s: g + (weight_decay * w * s).astype(g.dtype),
                               updates, params, subnet)
        return updates, state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def builtin_sgd(client_config) -> optax.GradientTransformationExtraArgs:
    """`client.optimizer='sgd'` with its options (module docstring). Options at their defaults add
    nothing to the chain, which is then exactly today's `chain(clip_by_global_norm, sgd)`."""
    prox_mu, decay = float(_option(client_config, "prox_mu")), float(_option(client_config, "weight_decay"))
    momentum = float(_option(client_config, "momentum"))
    chain = [proximal_term(prox_mu)] if prox_mu > 0 else []
    chain.append(optax.clip_by_global_norm(client_config.clip_norm))
    if decay > 0:
        chain.append(masked_weight_decay(decay))
    # momentum=None, not 0.0: optax.sgd then has no momentum buffer, as before the option existed.
    chain.append(optax.sgd(client_config.learning_rate, momentum=momentum or None,
                           nesterov=bool(_option(client_config, "nesterov"))))
    return optax.chain(*chain)


def load_rule(value: str) -> Callable:
    """The function that `client.optimizer=value` ('package.module:function') names; ValueError naming
    the field, the value and what is allowed if it cannot be loaded or is not callable."""
    rule = _import_path.load("client.optimizer", value, _ALLOWED, noun="client optimizer")
    if not callable(rule):
        raise ValueError(f"client.optimizer={value!r}: {type(rule).__name__} is not a function; {_ALLOWED}")
    return rule


def custom_rule(value: str, client_config) -> optax.GradientTransformationExtraArgs:
    """The user's rule `value` built for `client_config`, with extra-args support (a plain transformation
    ignores `subnet` and `anchor`); ValueError if it does not return an optax GradientTransformation."""
    rule = load_rule(value)
    try:
        made: Any = rule(client_config)
    except Exception as error:  # the user's code: one message naming the field, not a traceback
        raise ValueError(f"client.optimizer={value!r}: calling it with the client section raised "
                         f"{type(error).__name__}: {error}; {_ALLOWED}") from error
    if not isinstance(made, optax.GradientTransformation):
        raise ValueError(f"client.optimizer={value!r}: returned {type(made).__name__}, not an optax "
                         f"GradientTransformation; {_ALLOWED}")
    return optax.with_extra_args_support(made)


def make_client_optimizer(client_config) -> optax.GradientTransformationExtraArgs:
    """The local optimiser of `client_config` (the config's `client` section): built-in SGD with its
    options, or the user's rule that `client.optimizer` names (module docstring). Its `update` accepts
    the extra args `subnet` and `anchor`."""
    name = _option(client_config, "optimizer")
    if name in CLIENT_OPTIMIZERS:
        return builtin_sgd(client_config)
    return custom_rule(name, client_config)


def needs_subnet(client_config) -> bool:
    """Whether the optimiser reads the extra args `subnet` and `anchor`: a user's rule may, the built-in
    one only for weight decay or the proximal term. Without them the client passes none, so the default
    rule's program is the one of releases before the options (nothing to compute, nothing to remove)."""
    if _option(client_config, "optimizer") not in CLIENT_OPTIMIZERS:
        return True
    return float(_option(client_config, "prox_mu")) > 0 or float(_option(client_config, "weight_decay")) > 0


# Params-sized state a user's rule is assumed to keep per client (Adam's two moments): the memory check
# cannot see inside a rule, so it budgets for the common adaptive case.
CUSTOM_RULE_SLOTS = 2


def state_slots(client_config) -> int:
    """Params-sized buffers a training client holds for its optimiser beyond the params and gradients
    (`run/memory.py`'s `optimizer_slots`): 1 for the momentum buffer, 1 for the subnet mask when the rule
    reads it (params-sized in the sliced execution's pieces; an upper bound for the masked one), and for a
    user's rule `CUSTOM_RULE_SLOTS` and the mask. 0 for the default rule."""
    if _option(client_config, "optimizer") not in CLIENT_OPTIMIZERS:
        return CUSTOM_RULE_SLOTS + 1
    return int(float(_option(client_config, "momentum")) > 0) + int(needs_subnet(client_config))
