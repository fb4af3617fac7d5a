"""Client local training (algorithm.md section 5), written for one client and vmapped over clients.

Plain SGD (optax), no momentum or weight decay, a fresh optimizer each round, global-norm clipping before
every step, `epochs` passes over the client's own examples in shuffled batches with the last partial batch
used, cross-entropy averaged over the batch's real examples.

Clients of different sizes run in one program: every client gets the same static number of steps,
ceil(max_client_size / batch_size) per epoch. Examples are ordered real-first, so a client of n examples
fills ceil(n / batch_size) batches and the rest of its epoch is padding. A padded example has loss weight 0;
a step with no real example leaves params untouched (`jnp.where`), so padding changes nothing: not the
params, not the clipping norm, not the loss.
"""
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class ClientResult(NamedTuple):
    """What one client returns: trained params and the mean loss over the real examples it saw."""

    params: dict
    loss: jax.Array  # float32 scalar; NaN-free for a client with at least one example


def make_optimizer(learning_rate: float, clip_norm: float) -> optax.GradientTransformation:
    """Global-norm clipping then plain SGD. Masked weights have zero gradient, so the norm is the subnet's."""
    return optax.chain(optax.clip_by_global_norm(clip_norm), optax.sgd(learning_rate))


def epoch_order(key: jax.Array, size: jax.Array, max_size: int, num_batches: int, batch_size: int):
    """int32 [num_batches, batch_size] positions into the client's index row for one epoch.

    Real positions (< size) come first in a random order, then padding positions (>= size). Each
    position's random score depends only on (key, position), so the order of the real examples does not
    depend on how much padding the row has.
    """
    positions = jnp.arange(max_size)
    scores = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(positions)
    scores = jnp.where(positions < size, scores, 2.0)  # padding sorts last
    order = jnp.argsort(scores).astype(jnp.int32)
    order = jnp.pad(order, (0, num_batches * batch_size - max_size), constant_values=max_size)
    return order.reshape(num_batches, batch_size)


def cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    """Sum of per-example cross-entropy times `weights` (0 for padding)."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.sum(losses * weights)


def make_train_step(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
    """Builds `train_step(params, opt_state, arch, images, labels, weights, key) -> (params, opt_state, loss)`.

    One SGD step on one batch; `loss` is the mean over the batch's real examples (weights 1). A batch with
    no real example leaves params and optimizer state untouched.

    Args:
      loss_fn: `loss_fn(params, arch, images, labels, weights, key) -> summed weighted loss`; it applies the
        (masked) model to a batch and is responsible for augmentation with `key`.
      optimizer: an optax transformation.
    """

    def train_step(params, opt_state, arch, images, labels, weights, key):
        real = jnp.sum(weights)
        mean_loss = lambda p: loss_fn(p, arch, images, labels, weights, key) / jnp.maximum(real, 1.0)  # noqa: E731
        loss, grads = jax.value_and_grad(mean_loss)(params)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        params, opt_state = jax.tree.map(lambda new, old: jnp.where(real > 0, new, old),
                                         (new_params, new_opt_state), (params, opt_state))
        return params, opt_state, loss

    return train_step


def steps_per_epoch(max_size: int, batch_size: int) -> int:
    """Static steps of every client's epoch: enough batches for the largest client."""
    return -(-max_size // batch_size)


def make_client_update(loss_fn: Callable, optimizer: optax.GradientTransformation, *, epochs: int,
                       batch_size: int, max_size: int, unroll: int = 1) -> Callable:
    """Builds `client_update(params, arch, indices, size, key, images, labels) -> ClientResult`.

    Args:
      loss_fn, optimizer: as for `make_train_step`; the optimizer state is fresh for every call (a new
        optimizer every round).
      epochs, batch_size: local training schedule.
      max_size: the padded length of a client's index row (static).
      unroll: `lax.scan` unroll factor of the local steps (0 = fully unrolled). XLA:CPU runs convolution
        gradients slowly inside loop bodies (performance-notes.md), so unrolling short local schedules
        trades compile time for speed there.

    The returned function trains one client: `indices` int32 [max_size] are its rows in the device-resident
    `images` [N, H, W, C] / `labels` [N]; `size` is how many of them are real.
    """
    num_batches = steps_per_epoch(max_size, batch_size)
    train_step = make_train_step(loss_fn, optimizer)

    def client_update(params, arch, indices, size, key, images, labels):
        # Keys per (epoch, batch) by fold_in, so real steps see the same randomness whatever the padding.
        epoch_keys = jax.vmap(lambda e: jax.random.fold_in(key, e))(jnp.arange(epochs))
        orders = jax.vmap(lambda k: epoch_order(jax.random.fold_in(k, 0), size, max_size, num_batches,
                                                batch_size))(epoch_keys)
        keys = jax.vmap(lambda k: jax.vmap(lambda b: jax.random.fold_in(jax.random.fold_in(k, 1), b))(
            jnp.arange(num_batches)))(epoch_keys)
        orders = orders.reshape(epochs * num_batches, batch_size)
        keys = keys.reshape(epochs * num_batches)

        def step(carry, inputs):
            params, opt_state, loss_sum, count = carry
            positions, step_key = inputs
            weights = (positions < size).astype(jnp.float32)
            rows = indices[jnp.minimum(positions, max_size - 1)]
            params, opt_state, loss = train_step(params, opt_state, arch, images[rows], labels[rows],
                                                 weights, step_key)
            real = jnp.sum(weights)
            return (params, opt_state, loss_sum + loss * real, count + real), None

        init = (params, optimizer.init(params), jnp.float32(0.0), jnp.float32(0.0))
        (params, _, loss_sum, count), _ = jax.lax.scan(step, init, (orders, keys),
                                                   unroll=unroll if unroll > 0 else True)
        return ClientResult(params=params, loss=loss_sum / jnp.maximum(count, 1.0))

    return client_update
