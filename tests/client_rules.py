"""Users' own client rules (`client.optimizer='client_rules:NAME'`, docs/algorithm.md 5.1), for
tests/test_client_optimizer.py and tests/test_validation.py.

Each takes the config's `client` section and returns an optax transformation, as a rule in a user's own
package would.
"""
import jax
import jax.numpy as jnp
import optax


def sign_sgd(client):
    """signSGD on the client's subnet: w <- w - lr * sign(g) * subnet. Reads the extra arg `subnet`, since
    sign(0) = 0 alone would already keep the elements outside it, but a rule should not rely on that."""

    def update(updates, state, params=None, *, subnet, **extra):
        del params, extra
        step = jax.tree.map(lambda g, s: -client.learning_rate * jnp.sign(g) * s, updates, subnet)
        return step, state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def adam(client):
    """Plain optax Adam at the configured learning rate (a plain GradientTransformation: no extra args).
    Zero gradients keep Adam's moments zero, so elements outside the subnet keep their value."""
    return optax.adam(client.learning_rate)


def not_a_transformation(client):
    """A broken rule: returns the learning rate instead of a transformation."""
    return client.learning_rate


def raises(client):
    """A broken rule: fails when called."""
    raise KeyError("no such option")


NOT_CALLABLE = 3
